"""Conformance: the request forms the official Go and Java SDKs send, as raw signed HTTP requests.

Each request is built here the way that SDK builds it (path, query parameters and their encoding, headers),
signed with SLS signature v1 (``sluice.wire.signing``, the algorithm every SDK uses) and sent with
``http.client``, so nothing of sluice's client is involved. The forms were read from the SDKs' request
builders (aliyun/aliyun-log-go-sdk: log_store.go PutLogs/PostLogStoreLogs/GetLogsBytesWithQuery/GetCursor,
model.go PullLogRequest.ToURLParams, client_consumer.go, client_store.go; aliyun/aliyun-log-java-sdk:
Client.java PutLogs/BatchGetLog/pullLogs/GetCursor/GetCursorTime/consumer groups and the request classes).

The Go SDK writes with ``POST /logstores/{logstore}`` and reads with ``type=logs``; the Java SDK writes with
``/shards/lb`` (plus ``x-log-mode: batch_group``) and ``/shards/route?key=&seqid=``. A read-only key may use
every read form (and the consumer-group bookkeeping), never a write form.
"""

from __future__ import annotations

import http.client
import json
from typing import Any, Iterator
from urllib.parse import urlencode

import lz4.block
import pytest
import zstandard

from sluice.testing import HubProcess
from sluice.wire.cursor import decode_cursor, encode_cursor
from sluice.wire.loggroup import LogGroup, parse_group, split_groups
from sluice.wire.signing import sign_request

RO_ID, RO_SECRET = "reader", "reader-secret"
PROJECT = "forms"


@pytest.fixture(scope="module")
def forms_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("forms") / "data",
                     extra_args=["--access-key", f"{RO_ID}:{RO_SECRET}:*:ro"])
    hub.start()
    try:
        st, _, _ = _send(hub, "POST", "/", project=PROJECT, body=json.dumps(
            {"projectName": PROJECT, "description": ""}).encode(), content_type="application/json")
        assert st == 200
        yield hub
    finally:
        hub.stop()


def _send(hub: HubProcess, method: str, path: str, *, project: str | None = PROJECT,
          params: list[tuple[str, str]] | None = None, body: bytes = b"", headers: dict[str, str] | None = None,
          content_type: str | None = None, key: tuple[str, str] | None = None,
          go_encoding: bool = True) -> tuple[int, dict[str, str], bytes]:
    """One request as an SDK sends it: ``x-log-apiversion``, ``x-log-bodyrawsize``, Host ``<project>.<endpoint>``,
    signature v1 over the path and the (unencoded, sorted) parameters. Go encodes the query with
    ``url.Values.Encode`` (keys sorted); Java keeps its map's order (``go_encoding=False``: as given)."""
    key_id, secret = key or (hub.access_key_id, hub.access_key_secret)
    params = list(params or [])
    h = {"x-log-apiversion": "0.6.0", "x-log-bodyrawsize": "0", "User-Agent": "sdk-form-test",
         "Host": f"{project}.{hub.host}" if project else hub.host}
    if content_type:
        h["Content-Type"] = content_type
    h.update(headers or {})
    h.update(sign_request(method, path, params, h, body, key_id, secret))
    query = urlencode(sorted(params) if go_encoding else params)
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
    try:
        conn.request(method, path + (f"?{query}" if query else ""), body=body or None, headers=h)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _group(tag: str, n: int = 3) -> bytes:
    g = LogGroup()
    g.Topic = "forms"
    for i in range(n):
        lg = g.Logs.add()
        lg.Time = 1_700_000_000 + i
        c = lg.Contents.add()
        c.Key, c.Value = "id", f"{tag}-{i}"
    return g.SerializeToString()


def _logstore(hub: HubProcess, name: str, shards: int = 1) -> str:
    st, _, body = _send(hub, "POST", "/logstores", body=json.dumps(
        {"logstoreName": name, "ttl": 7, "shardCount": shards}).encode(), content_type="application/json")
    assert st == 200, body
    return name


def _cursor(hub: HubProcess, ls: str, shard: int, where: str, key: tuple[str, str] | None = None) -> str:
    # Go: fmt.Sprintf("/logstores/%v/shards/%v?type=cursor&from=%v") (the same form as Java's GetCursorRequest)
    st, _, body = _send(hub, "GET", f"/logstores/{ls}/shards/{shard}", params=[("type", "cursor"), ("from", where)],
                        key=key)
    assert st == 200, body
    return json.loads(body)["cursor"]


def _ids(payload: bytes, headers: dict[str, str]) -> list[str]:
    raw = int(headers["x-log-bodyrawsize"])
    if not raw:
        return []
    ctype = headers.get("x-log-compresstype")
    data = lz4.block.decompress(payload, uncompressed_size=raw) if ctype == "lz4" else \
        zstandard.ZstdDecompressor().decompress(payload, max_output_size=raw) if ctype == "zstd" else payload
    groups = [parse_group(bytes(g), raw=False) for g in split_groups(data)]
    return [c.Value for g in groups for lg in g.Logs for c in lg.Contents if c.Key == "id"]


def _go_pull(hub: HubProcess, ls: str, shard: int, cursor: str, count: int = 1000,
             key: tuple[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Go's GetLogsBytesWithQuery: type=logs, cursor, count (end_cursor if set), Accept-Encoding lz4."""
    return _send(hub, "GET", f"/logstores/{ls}/shards/{shard}", key=key,
                 params=[("type", "logs"), ("cursor", cursor), ("count", str(count))],
                 headers={"Accept": "application/x-protobuf", "Accept-Encoding": "lz4"})


def test_go_put_logs_on_the_logstore_path(forms_hub: HubProcess) -> None:
    """Go PutLogs/PutRawLog/PostLogStoreLogs without a hash key: ``POST /logstores/{logstore}``, lz4, none or
    zstd; read back with lz4 and zstd answers."""
    ls = _logstore(forms_hub, "go_put")
    raw = _group("lz4")
    st, h, body = _send(forms_hub, "POST", f"/logstores/{ls}", body=lz4.block.compress(raw, store_size=False),
                        content_type="application/x-protobuf",
                        headers={"x-log-compresstype": "lz4", "x-log-bodyrawsize": str(len(raw))})
    assert (st, body) == (200, b"") and h["x-log-requestid"]
    plain = _group("none")
    st, _, body = _send(forms_hub, "POST", f"/logstores/{ls}", body=plain, content_type="application/x-protobuf",
                        headers={"x-log-bodyrawsize": str(len(plain))})
    assert (st, body) == (200, b"")
    zraw = _group("zstd")  # Go's Compress_ZSTD: x-log-compresstype zstd
    st, _, body = _send(forms_hub, "POST", f"/logstores/{ls}", body=zstandard.ZstdCompressor().compress(zraw),
                        content_type="application/x-protobuf",
                        headers={"x-log-compresstype": "zstd", "x-log-bodyrawsize": str(len(zraw))})
    assert (st, body) == (200, b"")
    want = [f"{tag}-{i}" for tag in ("lz4", "none", "zstd") for i in range(3)]
    st, h, payload = _go_pull(forms_hub, ls, 0, _cursor(forms_hub, ls, 0, "begin"))
    assert st == 200 and h["x-log-compresstype"] == "lz4" and _ids(payload, h) == want
    # GetLogsBytesWithQuery with CompressType zstd asks Accept-Encoding: zstd
    st, h, payload = _send(forms_hub, "GET", f"/logstores/{ls}/shards/0",
                           params=[("type", "logs"), ("cursor", _cursor(forms_hub, ls, 0, "begin")), ("count", "10")],
                           headers={"Accept": "application/x-protobuf", "Accept-Encoding": "zstd"})
    assert st == 200 and h["x-log-compresstype"] == "zstd" and _ids(payload, h) == want


def test_go_post_logstore_logs_with_a_hash_key(forms_hub: HubProcess) -> None:
    """Go PostLogStoreLogs with a hash key: ``POST /logstores/{ls}/shards/route?key=<hex>``."""
    ls = _logstore(forms_hub, "go_route", shards=2)
    raw = _group("routed")
    st, _, body = _send(forms_hub, "POST", f"/logstores/{ls}/shards/route", params=[("key", "f" * 32)], body=raw,
                        content_type="application/x-protobuf", headers={"x-log-bodyrawsize": str(len(raw))})
    assert (st, body) == (200, b"")
    st, h, payload = _go_pull(forms_hub, ls, 1, _cursor(forms_hub, ls, 1, "begin"))
    assert st == 200 and _ids(payload, h) == [f"routed-{i}" for i in range(3)]


def test_go_pull_logs_type_logs_with_end_cursor(forms_hub: HubProcess) -> None:
    """Go PullLogs: ``GET /logstores/{ls}/shards/{id}?count=&cursor=&end_cursor=&type=logs``; the next cursor
    and counts come back in the x-log-* headers."""
    ls = _logstore(forms_hub, "go_pull")
    for j in range(3):
        raw = _group(f"g{j}", 2)
        assert _send(forms_hub, "POST", f"/logstores/{ls}", body=raw, content_type="application/x-protobuf",
                     headers={"x-log-bodyrawsize": str(len(raw))})[0] == 200
    begin, end = _cursor(forms_hub, ls, 0, "begin"), _cursor(forms_hub, ls, 0, "end")
    st, h, payload = _send(forms_hub, "GET", f"/logstores/{ls}/shards/0",
                           params=[("type", "logs"), ("cursor", begin), ("count", "1000"),
                                   ("end_cursor", encode_cursor(2))],
                           headers={"Accept": "application/x-protobuf", "Accept-Encoding": "lz4"})
    assert st == 200 and h["x-log-count"] == "2" and decode_cursor(h["x-log-cursor"]) == 2
    assert _ids(payload, h) == ["g0-0", "g0-1", "g1-0", "g1-1"]
    st, h, payload = _go_pull(forms_hub, ls, 0, end)
    assert st == 200 and h["x-log-count"] == "0" and h["x-log-cursor"] == end and payload == b""


def test_go_consumer_library_round(forms_hub: HubProcess) -> None:
    """What the Go consumer library sends: create the group, list shards, heartbeat, read with type=logs,
    commit the checkpoint (forceSuccess=false) and read it back."""
    ls = _logstore(forms_hub, "go_consumer", shards=2)
    raw = _group("c")
    assert _send(forms_hub, "POST", f"/logstores/{ls}", body=raw, content_type="application/x-protobuf",
                 headers={"x-log-bodyrawsize": str(len(raw))})[0] == 200
    st, _, body = _send(forms_hub, "POST", f"/logstores/{ls}/consumergroups", content_type="application/json",
                        body=json.dumps({"consumerGroup": "gocg", "timeout": 10, "order": False}).encode())
    assert st == 200, body
    st, _, body = _send(forms_hub, "GET", f"/logstores/{ls}/shards")
    assert st == 200 and [s["shardID"] for s in json.loads(body)] == [0, 1]
    st, _, body = _send(forms_hub, "POST", f"/logstores/{ls}/consumergroups/gocg",
                        params=[("type", "heartbeat"), ("consumer", "go-1")], body=b"[]",
                        content_type="application/json")
    assert st == 200 and sorted(json.loads(body)) == [0, 1]
    st, _, body = _send(forms_hub, "POST", f"/logstores/{ls}/consumergroups/gocg",
                        params=[("type", "heartbeat"), ("consumer", "go-1")], body=b"[0,1]",
                        content_type="application/json")
    assert st == 200 and sorted(json.loads(body)) == [0, 1]
    read = []
    for shard in (0, 1):
        st, h, payload = _go_pull(forms_hub, ls, shard, _cursor(forms_hub, ls, shard, "begin"))
        assert st == 200
        read += _ids(payload, h)
        st, _, body = _send(forms_hub, "POST", f"/logstores/{ls}/consumergroups/gocg",
                            params=[("type", "checkpoint"), ("consumer", "go-1"), ("forceSuccess", "false")],
                            body=json.dumps({"shard": shard, "checkpoint": h["x-log-cursor"]}).encode(),
                            content_type="application/json")
        assert (st, body) == (200, b"")
    assert sorted(read) == [f"c-{i}" for i in range(3)]
    st, _, body = _send(forms_hub, "GET", f"/logstores/{ls}/consumergroups/gocg")
    assert st == 200
    saved = {cp["shard"]: cp for cp in json.loads(body)}
    assert sorted(saved) == [0, 1] and all(cp["consumer"] == "go-1" for cp in saved.values())
    assert sum(decode_cursor(cp["checkpoint"]) for cp in saved.values()) == 1  # one group was written


def test_java_put_and_pull_forms(forms_hub: HubProcess) -> None:
    """Java PutLogs: ``/shards/lb`` with ``x-log-mode: batch_group``, ``/shards/route?key=&seqid=``; BatchGetLog /
    pullLogs with ``type=log``; GetCursorTime; GetCheckPoint with ``shard=``."""
    ls = _logstore(forms_hub, "java_forms", shards=2)
    raw = _group("lb")
    st, _, body = _send(forms_hub, "POST", f"/logstores/{ls}/shards/lb", body=lz4.block.compress(raw, store_size=False),
                        content_type="application/x-protobuf", go_encoding=False,
                        headers={"x-log-mode": "batch_group", "x-log-compresstype": "lz4",
                                 "x-log-bodyrawsize": str(len(raw))})
    assert (st, body) == (200, b"")
    raw = _group("route")
    st, _, body = _send(forms_hub, "POST", f"/logstores/{ls}/shards/route", go_encoding=False,
                        params=[("key", "0" * 32), ("seqid", "7")], body=raw, content_type="application/x-protobuf",
                        headers={"x-log-bodyrawsize": str(len(raw))})
    assert (st, body) == (200, b"")
    ids = []
    for shard in (0, 1):
        st, h, payload = _send(forms_hub, "GET", f"/logstores/{ls}/shards/{shard}", go_encoding=False,
                               params=[("type", "log"), ("cursor", _cursor(forms_hub, ls, shard, "begin")),
                                       ("count", "100")],
                               headers={"Accept": "application/x-protobuf", "Accept-Encoding": "lz4"})
        assert st == 200
        ids += _ids(payload, h)
    assert sorted(ids) == sorted([f"lb-{i}" for i in range(3)] + [f"route-{i}" for i in range(3)])
    st, _, body = _send(forms_hub, "GET", f"/logstores/{ls}/shards/0", go_encoding=False,
                        params=[("type", "cursor_time"), ("cursor", _cursor(forms_hub, ls, 0, "begin"))])
    assert st == 200 and json.loads(body)["cursor_time"] > 0
    st, _, _ = _send(forms_hub, "POST", f"/logstores/{ls}/consumergroups", content_type="application/json",
                     body=json.dumps({"consumerGroup": "javacg", "timeout": 10, "order": True}).encode())
    assert st == 200
    st, _, body = _send(forms_hub, "GET", f"/logstores/{ls}/consumergroups/javacg", params=[("shard", "1")])
    assert st == 200 and [cp["shard"] for cp in json.loads(body)] == [1]


def test_read_only_key_may_use_every_read_form_but_no_write_form(forms_hub: HubProcess) -> None:
    """A read-only key reads with Go's ``type=logs`` and Java's ``type=log``, gets cursors and runs a consumer
    group; Go's ``POST /logstores/{ls}`` is a write and is refused (401 Unauthorized), like ``/shards/lb``."""
    ls = _logstore(forms_hub, "ro_forms")
    raw = _group("ro")
    assert _send(forms_hub, "POST", f"/logstores/{ls}", body=raw, content_type="application/x-protobuf",
                 headers={"x-log-bodyrawsize": str(len(raw))})[0] == 200
    ro = (RO_ID, RO_SECRET)
    begin = _cursor(forms_hub, ls, 0, "begin", key=ro)
    st, h, payload = _go_pull(forms_hub, ls, 0, begin, key=ro)
    assert st == 200 and _ids(payload, h) == [f"ro-{i}" for i in range(3)]
    st, h, payload = _send(forms_hub, "GET", f"/logstores/{ls}/shards/0", key=ro,
                           params=[("type", "log"), ("cursor", begin), ("count", "10")])
    assert st == 200 and _ids(payload, h) == [f"ro-{i}" for i in range(3)]
    st, _, _ = _send(forms_hub, "POST", f"/logstores/{ls}/consumergroups", key=ro, content_type="application/json",
                     body=json.dumps({"consumerGroup": "rocg", "timeout": 10, "order": False}).encode())
    assert st == 200
    st, _, body = _send(forms_hub, "POST", f"/logstores/{ls}/consumergroups/rocg", key=ro, body=b"[]",
                        params=[("type", "heartbeat"), ("consumer", "ro-1")], content_type="application/json")
    assert st == 200 and json.loads(body) == [0]
    for path in (f"/logstores/{ls}", f"/logstores/{ls}/shards/lb"):
        st, _, body = _send(forms_hub, "POST", path, key=ro, body=raw, content_type="application/x-protobuf",
                            headers={"x-log-bodyrawsize": str(len(raw))})
        err: dict[str, Any] = json.loads(body)
        assert (st, err["errorCode"]) == (401, "Unauthorized") and "read-only" in err["errorMessage"]


def test_unknown_pull_type_and_route_answer_sls_errors(forms_hub: HubProcess) -> None:
    """A type no SDK sends is 400 ParameterInvalid naming the valid ones; an unknown path is 404 RouteNotFound."""
    ls = _logstore(forms_hub, "bad_forms")
    st, _, body = _send(forms_hub, "GET", f"/logstores/{ls}/shards/0", params=[("type", "everything")])
    err = json.loads(body)
    assert (st, err["errorCode"]) == (400, "ParameterInvalid") and "logs" in err["errorMessage"]
    st, _, body = _send(forms_hub, "GET", f"/logstores/{ls}/nothing/here")
    assert (st, json.loads(body)["errorCode"]) == (404, "RouteNotFound")
