"""Fuzzing the hub's request parsing and body decoding, and a property-based sweep over the documented routes.

Every request is correctly signed, so it gets past authentication and exercises the parsing behind it:
* bodies: PutLogs with mutated LogGroup protobufs, random bytes, each compression with wrong declared sizes,
  decompression bombs; JSON bodies of every documented route with fields of random types and values;
* parameters: random cursors, counts, end cursors, shard ids, hash keys, query values of every kind.

Rules: every answer is 200 or an SLS error JSON (a known ``errorCode`` and an ``errorMessage``) with a 4xx (or
507) status, never a 5xx, never a hang (each request has a deadline); the hub logs no unhandled error; and
afterwards it still serves valid writes and reads, and data written before the sweep is intact.

Sized by ``SLUICE_FUZZ_EXAMPLES`` (default 500 per sweep); hypothesis keeps failing examples in .hypothesis/.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import lz4.block
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.client import Client
from sluice.client._async import build_log_group
from sluice.testing import HubProcess
from sluice.wire.errors import all_codes
from sluice.wire.signing import sign_request
from tests.faults._figures import record

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "500"))
PROJECT = "fuzzsweep"
SENTINEL = "sentinel"  # a project the sweep never names; its data must come out intact
KNOWN_CODES = set(all_codes())
tried = {"requests": 0, "ok": 0, "errors": 0}


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    tmp = tmp_path_factory.mktemp("fuzz")
    hub = HubProcess(tmp / "data", log_path=tmp / "hub.log")
    hub.start()
    try:
        with Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=10) as c:
            for p in (PROJECT, SENTINEL):
                c.create_project(p)
                c.create_logstore(p, "main", shard_count=2)
            c.put_logs(SENTINEL, "main", [{"k": str(i)} for i in range(100)], topic="before")
    except BaseException:
        hub.close()
        raise
    yield hub
    log = Path(hub.log_path).read_text(errors="replace")
    alive = hub.proc is not None and hub.proc.poll() is None
    hub.close()
    assert alive, "the hub died during the fuzz sweep"
    assert "unhandled error" not in log and "Traceback" not in log, f"the hub logged a crash:\n{log[-3000:]}"


def _send(hub: HubProcess, method: str, resource: str, params: list[tuple[str, str]], body: bytes,
          headers: dict[str, str], project: str | None = PROJECT) -> tuple[int, bytes]:
    host = f"{project}.{hub.host}" if project else hub.host
    h = {"Host": host, "x-log-apiversion": "0.6.0", **headers}
    h.update(sign_request(method, resource, params, h, body, hub.access_key_id, hub.access_key_secret))
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=30)
    try:
        conn.request(method, quote(resource) + (f"?{query}" if query else ""), body=body or None, headers=h)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _check(status: int, data: bytes) -> None:
    tried["requests"] += 1
    assert status < 500 or status == 507, (status, data[:300])
    if status == 200:
        tried["ok"] += 1
        return
    tried["errors"] += 1
    err = json.loads(data)
    assert set(err) == {"errorCode", "errorMessage"}, err
    assert err["errorCode"] in KNOWN_CODES, f"undocumented error code {err['errorCode']!r}"
    assert isinstance(err["errorMessage"], str) and err["errorMessage"]


# ------------------------------------------------------------------------------------ PutLogs bodies
def _valid_group(n: int) -> bytes:
    return build_log_group([{"k": str(i), "msg": "x" * i} for i in range(n)], topic="fz")


@st.composite
def _mutated_group(draw: st.DrawFn) -> bytes:
    raw = bytearray(_valid_group(draw(st.integers(1, 20))))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "varint"]))
        pos = draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del raw[pos:]
        elif op == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:  # an absurd length prefix
            raw[pos:pos] = b"\x0a\xff\xff\xff\xff\x0f"
    return bytes(raw)


_plain_bodies = st.one_of(_mutated_group(), st.binary(max_size=2000), st.builds(_valid_group, st.integers(0, 5)))


def _encode(body: bytes, how: str) -> tuple[bytes, str | None]:
    if how == "lz4":
        return lz4.block.compress(body, store_size=False), "lz4"
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(body), "zstd"
    if how == "deflate":
        import zlib

        return zlib.compress(body), "deflate"
    return body, None


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_plain_bodies, how=st.sampled_from(["none", "lz4", "zstd", "deflate"]),
       raw_size=st.one_of(st.none(), st.integers(-5, 1 << 40), st.sampled_from(["abc", "", "1e9"])),
       route=st.sampled_from(["lb", "route", "lb-hashkey"]),
       key=st.one_of(st.sampled_from(["0" * 32, "f" * 32, "8" * 32]),
                     # codec: valid UTF-8 text only; a lone surrogate has no bytes to send
                     st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40)))
def test_putlogs_body_fuzz(fuzz_hub: HubProcess, body: bytes, how: str, raw_size: Any, route: str, key: str) -> None:
    data, ctype = _encode(body, how)
    headers = {"Content-Type": "application/x-protobuf"}
    headers["x-log-bodyrawsize"] = str(len(body) if raw_size is None else raw_size)
    if ctype:
        headers["x-log-compresstype"] = ctype
    params: list[tuple[str, str]] = []
    path = "/logstores/main/shards/lb"
    if route == "route":
        path, params = "/logstores/main/shards/route", [("key", key)]
    elif route == "lb-hashkey":
        headers["x-log-hashkey"] = key.encode().decode("latin-1")  # the raw UTF-8 bytes on the wire
    _check(*_send(fuzz_hub, "POST", path, params, data, headers))


@settings(max_examples=max(20, EXAMPLES // 10), deadline=None, suppress_health_check=list(HealthCheck))
@given(how=st.sampled_from(["zstd", "deflate", "lz4"]), declared=st.sampled_from([None, 100, 1 << 31, 10 << 20]))
def test_decompression_bombs_are_refused(fuzz_hub: HubProcess, how: str, declared: int | None) -> None:
    """64 MiB of zeros in a few kB: refused by the declared size or the decompression bound, never inflated."""
    bomb = b"\0" * (64 << 20)
    data, ctype = _encode(bomb, how)
    headers = {"Content-Type": "application/x-protobuf", "x-log-compresstype": ctype or "",
               "x-log-bodyrawsize": str(len(bomb) if declared is None else declared)}
    status, resp = _send(fuzz_hub, "POST", "/logstores/main/shards/lb", [], data, headers)
    _check(status, resp)
    assert status != 200, "a 64 MiB body of zeros is not a LogGroup within the limits"


# ------------------------------------------------------------------------------------ cursors and reads
_cursor = st.one_of(
    st.integers(-10, 1 << 70).map(lambda n: base64.b64encode(str(n).encode()).decode()),
    st.text(max_size=80), st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(["", "MA==", "MA", "MA==\n", "begin", "end", "=" * 10]))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(shard=st.one_of(st.sampled_from(["0", "1"]), st.text(max_size=6)), cursor=_cursor,
       end=st.one_of(st.none(), _cursor), count=st.one_of(st.none(), st.integers(-5, 5000).map(str), st.text(max_size=5)),
       kind=st.sampled_from(["log", "cursor", "cursor_time"]),
       frm=st.one_of(st.sampled_from(["begin", "end", "0", "-1", "99999999999999"]), st.text(max_size=12)),
       accept=st.sampled_from(["lz4", "zstd", "deflate", "", "gzip, br", "lz4;q=0"]))
def test_read_parameter_fuzz(fuzz_hub: HubProcess, shard: str, cursor: str, end: str | None, count: str | None,
                             kind: str, frm: str, accept: str) -> None:
    params = [("type", kind)]
    if kind == "cursor":
        params.append(("from", frm))
    else:
        params.append(("cursor", cursor))
    if count is not None:
        params.append(("count", count))
    if end is not None:
        params.append(("end_cursor", end))
    headers = {"Accept": "application/x-protobuf", "Accept-Encoding": accept, "x-sluice-wait": "0.01"}
    _check(*_send(fuzz_hub, "GET", f"/logstores/main/shards/{shard}", params, b"", headers))


# ------------------------------------------------------------------------------------ documented routes
_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(allow_nan=True),
                         st.text(max_size=30))
_json_any = st.recursive(_json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                              st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                         max_leaves=12)
_ls_name = st.sampled_from(["main", "other", "sweep-ls", "x" * 70, "Bad Name", ""])
_cg_name = st.sampled_from(["cg", "sweep-cg", "-", "x" * 200, ""])


def _doc_body(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """The documented JSON object with each field either well-typed or of a random type, or any JSON at all."""
    mixed = {k: st.one_of(v, _json_scalar) for k, v in fields.items()}
    return st.one_of(st.fixed_dictionaries({}, optional=mixed), _json_any)


ROUTES: list[tuple[str, str, st.SearchStrategy[Any], st.SearchStrategy[Any]]] = [
    # (method, path template, query params strategy, JSON body strategy)
    ("GET", "/", st.fixed_dictionaries({}, optional={"offset": st.integers(-5, 999).map(str),
                                                      "size": st.integers(-5, 999).map(str)}), st.none()),
    ("PUT", "/", st.just({}), _doc_body({"description": st.text(max_size=300)})),
    ("GET", "/logstores", st.fixed_dictionaries({}, optional={"offset": st.text(max_size=4), "size": st.text(max_size=4),
                                                                "logstoreName": st.text(max_size=5)}), st.none()),
    ("POST", "/logstores", st.just({}), _doc_body({
        "logstoreName": _ls_name, "ttl": st.integers(-5, 5000), "shardCount": st.integers(-2, 300),
        "enable_tracking": st.booleans(), "autoSplit": st.booleans(), "maxSplitShard": st.integers(-1, 300),
        "appendMeta": st.booleans(), "telemetryType": st.sampled_from(["", "None", "Metrics", "x"])})),
    ("GET", "/logstores/{ls}", st.just({}), st.none()),
    ("PUT", "/logstores/{ls}", st.just({}), _doc_body({"logstoreName": _ls_name, "ttl": st.integers(-5, 5000),
                                                       "shardCount": st.integers(-2, 300)})),
    ("GET", "/logstores/{ls}/shards", st.just({}), st.none()),
    ("POST", "/logstores/{ls}/shards/{shard}", st.fixed_dictionaries(
        {"action": st.sampled_from(["split", "merge", "x"])},
        optional={"key": st.one_of(st.sampled_from(["4" * 32, "0" * 32, "f" * 32]), st.text(max_size=34))}), st.none()),
    ("GET", "/logstores/{ls}/consumergroups", st.just({}), st.none()),
    ("POST", "/logstores/{ls}/consumergroups", st.just({}), _doc_body({
        "consumerGroup": _cg_name, "timeout": st.integers(-5, 100000), "order": st.booleans()})),
    ("PUT", "/logstores/{ls}/consumergroups/{cg}", st.just({}), _doc_body({"timeout": st.integers(-5, 99),
                                                                          "order": st.booleans()})),
    ("POST", "/logstores/{ls}/consumergroups/{cg}", st.fixed_dictionaries(
        {"type": st.just("heartbeat"), "consumer": st.text(max_size=20)}),
     st.one_of(st.lists(st.integers(-3, 1 << 40), max_size=5), _json_any)),
    ("POST", "/logstores/{ls}/consumergroups/{cg}", st.fixed_dictionaries(
        {"type": st.just("checkpoint"), "consumer": st.text(max_size=10),
         "forceSuccess": st.sampled_from(["true", "false", "True", "x"])}),
     _doc_body({"shard": st.integers(-2, 5), "checkpoint": _cursor})),
    ("GET", "/logstores/{ls}/consumergroups/{cg}", st.fixed_dictionaries({}, optional={"shard": st.text(max_size=4)}),
     st.none()),
    ("DELETE", "/logstores/{ls}/consumergroups/{cg}", st.just({}), st.none()),
    ("DELETE", "/logstores/{ls}/shards/{shard}", st.just({}), st.none()),
    ("DELETE", "/logstores/{ls}", st.just({}), st.none()),
]


@settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(ROUTES), data=st.data(), ls=_ls_name, cg=_cg_name,
       shard=st.one_of(st.integers(-1, 6).map(str), st.text(max_size=4)))
def test_documented_routes_sweep(fuzz_hub: HubProcess, route: tuple[str, str, Any, Any], data: st.DataObject,
                                 ls: str, cg: str, shard: str) -> None:
    method, template, params_st, body_st = route
    if ls == "main" and method == "DELETE" and template == "/logstores/{ls}":
        ls = "sweep-ls"  # keep the logstore the other sweeps write to
    path = template.format(ls=ls, cg=cg, shard=shard)
    params = sorted(data.draw(params_st).items())
    body_obj = data.draw(body_st)
    body = b"" if body_obj is None else json.dumps(body_obj).encode()
    headers = {"Content-Type": "application/json", "x-log-bodyrawsize": str(len(body))}
    _check(*_send(fuzz_hub, method, path, params, body, headers))


# ------------------------------------------------------------------------------------ malformed HTTP
_token = st.binary(min_size=1, max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.one_of(st.sampled_from([b"GET", b"POST", b"PUT"]), _token),
       path=st.one_of(st.just(b"/"), _token), version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9", b""]),
       headers=st.lists(st.tuples(_token, st.binary(max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b)),
                        max_size=4))
def test_malformed_http_gets_sls_errors(fuzz_hub: HubProcess, method: bytes, path: bytes, version: bytes,
                                        headers: list[tuple[bytes, bytes]]) -> None:
    """Requests broken below the API (request line, header syntax): an SLS error JSON, never text or a hang.
    Each request is complete (blank line, Content-Length: 0), so the hub must answer it, within the timeout."""
    head = b" ".join(x for x in (method, path, version) if x) + b"\r\n"
    head += b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    with socket.create_connection((fuzz_hub.host, fuzz_hub.port), timeout=10) as sock:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/"), data[:200]
    status = int(status_line.split()[1])
    body = rest.partition(b"\r\n\r\n")[2]
    if b"transfer-encoding: chunked" in rest.lower().partition(b"\r\n\r\n")[0]:
        return _check(status, b"{}") if status == 200 else None  # chunked bodies only come with success
    _check(status, body)


# ------------------------------------------------------------------------------------ afterwards
def test_hub_serves_and_kept_data_after_the_sweeps(fuzz_hub: HubProcess) -> None:
    with Client(fuzz_hub.url, fuzz_hub.access_key_id, fuzz_hub.access_key_secret, timeout=10) as c:
        before = []
        for shard in (0, 1):
            result = c.pull_logs(SENTINEL, "main", shard, c.get_cursor(SENTINEL, "main", shard, "begin"))
            before += [log["k"] for log in result.logs()]
        assert sorted(before, key=int) == [str(i) for i in range(100)], "data written before the sweep changed"
        c.put_logs(SENTINEL, "main", [{"k": "after"}], topic="after")
        end_seen = []
        for shard in (0, 1):
            result = c.pull_logs(SENTINEL, "main", shard, c.get_cursor(SENTINEL, "main", shard, "begin"))
            end_seen += [log["k"] for log in result.logs()]
        assert "after" in end_seen
    assert tried["requests"] > 0
    record("fuzz_and_route_sweep", requests=tried["requests"], answered_200=tried["ok"],
           answered_sls_error=tried["errors"], server_errors=0, crashes=0, examples_per_sweep=EXAMPLES)
