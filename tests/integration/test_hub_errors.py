"""Bad input gets SLS's error JSON with SLS's status and a request id; the hub keeps serving afterwards."""

from __future__ import annotations

import asyncio
import http.client
import json
from typing import Any

import lz4.block
import pytest
from aliyun.log import LogClient, LogException, LogItem, PutLogsRequest

from sluice.client._transport import Credentials, Transport
from sluice.testing import HubProcess
from sluice.wire.errors import SLSError
from tests.conftest import unique


def _raw(hub: HubProcess, method: str, resource: str, *, project: str | None = None, params: Any = (),
         headers: dict[str, str] | None = None, body: bytes = b"") -> SLSError | None:
    """Send one signed request with our transport (no retries); return the SLS error, or None on 200."""
    async def go() -> SLSError | None:
        t = Transport(hub.url, Credentials(hub.access_key_id, hub.access_key_secret))
        try:
            await t.request(method, resource, project=project, params=list(params), headers=headers or {},
                            body=body, retry=False)
            return None
        except SLSError as exc:
            return exc
        finally:
            await t.aclose()
    return asyncio.run(go())


def _assert_still_serving(sdk: LogClient) -> None:
    assert sdk.list_project().get_count() >= 0


@pytest.fixture
def logstore(sdk: LogClient, project: str) -> str:
    sdk.create_logstore(project, "errs", ttl=1, shard_count=1)
    return "errs"


def test_wrong_secret_is_signature_not_match(hub: HubProcess, sdk: LogClient, project: str) -> None:
    """A request signed with the wrong secret: 401 SignatureNotMatch."""
    bad = LogClient(hub.endpoint, hub.access_key_id, "wrong-secret")
    with pytest.raises(LogException) as exc:
        bad.get_project(project)
    assert (exc.value.get_error_code(), exc.value.resp_status) == ("SignatureNotMatch", 401)
    assert exc.value.get_request_id()
    _assert_still_serving(sdk)


def test_unknown_key_and_unsigned(hub: HubProcess, sdk: LogClient, project: str) -> None:
    """An unknown access key id is 401 InvalidAccessKeyId; a request with no signature is 401 Unauthorized."""
    with pytest.raises(LogException) as exc:
        LogClient(hub.endpoint, "nobody", "secret").get_project(project)
    assert (exc.value.get_error_code(), exc.value.resp_status) == ("InvalidAccessKeyId", 401)
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
    conn.request("GET", "/logstores", headers={"Host": f"{project}.{hub.host}", "x-log-apiversion": "0.6.0"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 401 and body["errorCode"] == "Unauthorized" and body["errorMessage"]
    assert resp.getheader("x-log-requestid") and resp.getheader("Content-Type") == "application/json"
    _assert_still_serving(sdk)


def test_missing_resources(sdk: LogClient, project: str, logstore: str) -> None:
    """Unknown project, logstore and shard each get their SLS code and status."""
    cases = [
        (lambda: sdk.list_logstore("no-such-project"), "ProjectNotExist", 404),
        (lambda: sdk.list_shards(project, "nope"), "LogStoreNotExist", 404),
        (lambda: sdk.get_cursor(project, logstore, 7, "begin"), "ShardNotExist", 400),
        (lambda: sdk.pull_logs(project, logstore, 7, "MA=="), "ShardNotExist", 400),
    ]
    for call, code, status in cases:
        with pytest.raises(LogException) as exc:
            call()
        assert (exc.value.get_error_code(), exc.value.resp_status) == (code, status)
    _assert_still_serving(sdk)


def test_invalid_cursors(sdk: LogClient, project: str, logstore: str) -> None:
    """A cursor that is not one, or points past the end, is 400 InvalidCursor; a bad `from` is ParameterInvalid."""
    for cursor in ("not-a-cursor", "OTk5OTk5", "%%%"):
        with pytest.raises(LogException) as exc:
            sdk.pull_logs(project, logstore, 0, cursor)
        assert (exc.value.get_error_code(), exc.value.resp_status) == ("InvalidCursor", 400)
    _assert_still_serving(sdk)


def test_invalid_cursor_from(hub: HubProcess, sdk: LogClient, project: str, logstore: str) -> None:
    """GetCursor with a `from` that is neither begin, end nor a unix time is 400 ParameterInvalid."""
    for value in ("yesterday-ish", "nan", "-5", ""):
        err = _raw(hub, "GET", f"/logstores/{logstore}/shards/0", project=project,
                   params=[("type", "cursor"), ("from", value)])
        assert err is not None and (err.error_code, err.http_status) == ("ParameterInvalid", 400), (value, err)
    _assert_still_serving(sdk)


def test_cursor_tolerance(sdk: LogClient, project: str, logstore: str) -> None:
    """Cursors with a trailing newline or without padding are accepted (the SDK and other clients send them)."""
    begin = sdk.get_begin_cursor(project, logstore, 0).get_cursor()
    for cursor in (begin + "\n", begin.rstrip("=")):
        assert sdk.pull_logs(project, logstore, 0, cursor).get_log_count() == 0


def test_malformed_protobuf(hub: HubProcess, sdk: LogClient, project: str, logstore: str) -> None:
    """A body that is not a LogGroup is 400 PostBodyInvalid, compressed or not."""
    garbage = b"\x0a\xff\xff\xff\xff\x0f" + b"junk" * 10
    for ctype in ("", "lz4"):
        body = lz4.block.compress(garbage, store_size=False) if ctype else garbage
        headers = {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(len(garbage))}
        if ctype:
            headers["x-log-compresstype"] = ctype
        err = _raw(hub, "POST", f"/logstores/{logstore}/shards/lb", project=project, headers=headers, body=body)
        assert err is not None and (err.error_code, err.http_status) == ("PostBodyInvalid", 400), err
    _assert_still_serving(sdk)


@pytest.mark.parametrize("ctype", ["lz4", "zstd", "deflate", "brotli"])
def test_malformed_compression(hub: HubProcess, sdk: LogClient, project: str, logstore: str, ctype: str) -> None:
    """A body that does not decompress is 400 PostBodyUncompressError; an unknown type InvalidCompressType."""
    headers = {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": "1000", "x-log-compresstype": ctype}
    err = _raw(hub, "POST", f"/logstores/{logstore}/shards/lb", project=project, headers=headers,
               body=b"\xf0\xff\xff\xff\xffnot compressed at all")
    expected = "InvalidCompressType" if ctype == "brotli" else "PostBodyUncompressError"
    assert err is not None and (err.error_code, err.http_status) == (expected, 400), err
    _assert_still_serving(sdk)


def test_lz4_size_bomb_refused(hub: HubProcess, sdk: LogClient, project: str, logstore: str) -> None:
    """A declared raw size over the limit is refused before decompressing (no memory blow-up)."""
    headers = {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(1 << 40),
               "x-log-compresstype": "lz4"}
    err = _raw(hub, "POST", f"/logstores/{logstore}/shards/lb", project=project, headers=headers, body=b"\x00" * 16)
    assert err is not None and (err.error_code, err.http_status) == ("PostBodyTooLarge", 400), err
    _assert_still_serving(sdk)


def test_body_too_large(sdk: LogClient, project: str, logstore: str) -> None:
    """A PutLogs over the hub's size limit (10 MiB uncompressed) is 400 PostBodyTooLarge; nothing is stored."""
    item = LogItem(contents=[("blob", "x" * (1 << 20))])
    with pytest.raises(LogException) as exc:
        sdk.put_logs(PutLogsRequest(project, logstore, "", "", [item] * 11))
    assert (exc.value.get_error_code(), exc.value.resp_status) == ("PostBodyTooLarge", 400)
    assert sdk.pull_logs(project, logstore, 0, sdk.get_begin_cursor(project, logstore, 0).get_cursor()
                         ).get_log_count() == 0
    _assert_still_serving(sdk)


def test_too_many_logs(sdk: LogClient, project: str, logstore: str) -> None:
    """More logs in one request than the hub allows (40960) is 400 InvalidLogSize (the SDK splits on it)."""
    items = [LogItem(contents=[("k", "v")]) for _ in range(40961)]
    with pytest.raises(LogException) as exc:
        sdk.put_logs(PutLogsRequest(project, logstore, "", "", items))
    assert (exc.value.get_error_code(), exc.value.resp_status) == ("InvalidLogSize", 400)
    _assert_still_serving(sdk)


def test_unknown_route_and_bad_json(hub: HubProcess, sdk: LogClient, project: str) -> None:
    """An unknown path is a JSON 404; a broken JSON body is 400 PostBodyInvalid; never a 500."""
    err = _raw(hub, "GET", "/nothing/here", project=project)
    assert err is not None and (err.error_code, err.http_status) == ("RouteNotFound", 404)
    err = _raw(hub, "POST", "/logstores", project=project, headers={"Content-Type": "application/json"},
               body=b"{not json")
    assert err is not None and (err.error_code, err.http_status) == ("PostBodyInvalid", 400)
    name = unique("bad").upper()
    err = _raw(hub, "POST", "/logstores", project=project, headers={"Content-Type": "application/json"},
               body=json.dumps({"logstoreName": name, "ttl": 1, "shardCount": 1}).encode())
    assert err is not None and err.error_code == "LogStoreInfoInvalid"
    _assert_still_serving(sdk)
