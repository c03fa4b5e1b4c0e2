"""#17.10: a signed header sent twice is refused with 400 in SLS's error format.

The signature was checked over one copy (the last) and the handler read the other (the first): a PutLogs signed
for hash key ff... landed in shard 0, the shard of 00... Each request here is sent raw (``http.client``, the
header written twice) and signed the way a client that means the last copy would sign it.
"""

from __future__ import annotations

import http.client
import json
from typing import Iterator

import pytest

from sluice.client import Client
from sluice.testing import HubProcess
from sluice.wire.loggroup import LogGroup
from sluice.wire.signing import sign_request

PROJECT, LOGSTORE = "dupheaders", "dup"


@pytest.fixture(scope="module")
def dup_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("dup") / "data")
    hub.start()
    try:
        with Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=10) as c:
            c.create_project(PROJECT)
            c.create_logstore(PROJECT, LOGSTORE, shard_count=2, ttl=1)
        yield hub
    finally:
        hub.stop()


def _group() -> bytes:
    g = LogGroup()
    c = g.Logs.add()
    c.Time = 1_700_000_000
    kv = c.Contents.add()
    kv.Key, kv.Value = "k", "v"
    return g.SerializeToString()


def _send_twice(hub: HubProcess, name: str, first: str, last: str, body: bytes) -> tuple[int, dict[str, str]]:
    """PutLogs to /shards/lb with ``name`` sent twice (``first`` then ``last``), signed over ``last``."""
    path = f"/logstores/{LOGSTORE}/shards/lb"
    headers = {"x-log-apiversion": "0.6.0", "x-log-bodyrawsize": str(len(body)),
               "Content-Type": "application/x-protobuf", "Host": f"{PROJECT}.{hub.host}", name: last}
    headers.update(sign_request("POST", path, [], headers, body, hub.access_key_id, hub.access_key_secret))
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
    try:
        conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader(name, first)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _shard_sizes(hub: HubProcess) -> list[int]:
    with Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=10) as c:
        return [c.pull_logs(PROJECT, LOGSTORE, s, c.get_cursor(PROJECT, LOGSTORE, s, "begin")).count
                for s in (0, 1)]


def test_hash_key_sent_twice_is_refused_and_nothing_is_written(dup_hub: HubProcess) -> None:
    before = _shard_sizes(dup_hub)
    status, err = _send_twice(dup_hub, "x-log-hashkey", "0" * 32, "f" * 32, _group())
    assert (status, err.get("errorCode")) == (400, "ParameterInvalid"), err
    assert "x-log-hashkey" in err["errorMessage"]
    assert _shard_sizes(dup_hub) == before


@pytest.mark.parametrize("name,first,last", [
    ("x-log-compresstype", "lz4", ""),
    ("Content-MD5", "0" * 32, "F" * 32),
    ("x-acs-security-token", "a", "b"),
])
def test_other_signed_headers_sent_twice_are_refused(dup_hub: HubProcess, name: str, first: str, last: str) -> None:
    status, err = _send_twice(dup_hub, name, first, last, _group())
    assert (status, err.get("errorCode")) == (400, "ParameterInvalid"), err


def test_an_unsigned_header_may_repeat(dup_hub: HubProcess) -> None:
    status, err = _send_twice(dup_hub, "Accept", "application/json", "*/*", _group())
    assert status == 200, err
