"""The official SDK (aliyun-log-python-sdk, pinned) drives every data-plane route of a real hub process."""

from __future__ import annotations

import time

import pytest
from aliyun.log import LogClient, LogException, LogItem, PutLogsRequest
from aliyun.log.log_logs_raw_pb2 import LogGroupRaw

from sluice.wire.loggroup import split_groups
from tests.conftest import unique


def _put(sdk: LogClient, project: str, logstore: str, n: int, *, topic: str = "t", compress: bool = True,
         compress_type: str | None = None, hash_key: str | None = None, start: int = 0) -> None:
    items = []
    for i in range(start, start + n):
        item = LogItem(timestamp=1700000000 + i)
        item.set_contents([("i", str(i)), ("msg", f"hello {i}")])
        items.append(item)
    req = PutLogsRequest(project, logstore, topic, "src", items, hashKey=hash_key, compress=compress,
                         compress_type=compress_type)
    sdk.put_logs(req)


def _pull_all(sdk: LogClient, project: str, logstore: str, shard: int, **kw: object) -> list[dict[str, str]]:
    cursor = sdk.get_cursor(project, logstore, shard, "begin").get_cursor()
    out: list[dict[str, str]] = []
    while True:
        resp = sdk.pull_logs(project, logstore, shard, cursor, count=100, **kw)
        if resp.get_log_count() == 0:
            assert resp.get_next_cursor() == cursor, "an empty pull must return the same cursor"
            return out
        out.extend(resp.get_flatten_logs_json())
        cursor = resp.get_next_cursor()


def _logstore(sdk: LogClient, project: str, shards: int = 2, ttl: int = 7) -> str:
    name = unique("ls").replace("-", "_")
    sdk.create_logstore(project, name, ttl=ttl, shard_count=shards)
    return name


def test_project_lifecycle(sdk: LogClient) -> None:
    """Projects can be created, read, listed (Host without project) and deleted; a missing one is 404."""
    name = unique("proj")
    sdk.create_project(name, "a description")
    got = sdk.get_project(name).body
    assert got["projectName"] == name and got["description"] == "a description"
    assert name in [p["projectName"] for p in sdk.list_project(size=-1).get_projects()]
    sdk.update_project(name, "changed")
    assert sdk.get_project(name).get_description() == "changed"
    sdk.delete_project(name)
    with pytest.raises(LogException) as exc:
        sdk.get_project(name)
    assert exc.value.get_error_code() == "ProjectNotExist" and exc.value.resp_status == 404
    assert exc.value.get_request_id()


def test_logstore_lifecycle(sdk: LogClient, project: str) -> None:
    """Logstores: create with shard count and ttl, get, update ttl, list, delete; duplicates are refused."""
    sdk.create_logstore(project, "web", ttl=3, shard_count=3)
    got = sdk.get_logstore(project, "web")
    assert (got.get_ttl(), got.get_shard_count()) == (3, 3)
    sdk.update_logstore(project, "web", ttl=9)
    assert sdk.get_logstore(project, "web").get_ttl() == 9
    sdk.create_logstore(project, "app", ttl=1, shard_count=1)
    assert sorted(sdk.list_logstore(project, size=-1).get_logstores()) == ["app", "web"]
    with pytest.raises(LogException) as exc:
        sdk.create_logstore(project, "web")
    assert exc.value.get_error_code() == "LogStoreAlreadyExist"
    sdk.delete_logstore(project, "web")
    with pytest.raises(LogException) as exc:
        sdk.get_logstore(project, "web")
    assert exc.value.get_error_code() == "LogStoreNotExist" and exc.value.resp_status == 404


def test_list_shards_key_ranges(sdk: LogClient, project: str) -> None:
    """N fresh shards split the MD5 space at i * 2^128 / N; the last end is all 'f'."""
    ls = _logstore(sdk, project, shards=4)
    shards = sdk.list_shards(project, ls).get_shards_info()
    assert [s["shardID"] for s in shards] == [0, 1, 2, 3]
    assert [s["inclusiveBeginKey"] for s in shards] == [
        "00000000000000000000000000000000", "40000000000000000000000000000000",
        "80000000000000000000000000000000", "c0000000000000000000000000000000"]
    assert [s["exclusiveEndKey"] for s in shards][:3] == [
        "40000000000000000000000000000000", "80000000000000000000000000000000",
        "c0000000000000000000000000000000"]
    assert shards[3]["exclusiveEndKey"] == "f" * 32
    assert all(s["status"] == "readwrite" for s in shards)


@pytest.mark.parametrize("compress,compress_type", [(True, None), (True, "lz4"), (True, "zstd"), (False, None)])
def test_put_and_pull_each_compression(sdk: LogClient, project: str, compress: bool, compress_type: str | None) -> None:
    """PutLogs with lz4, zstd and no compression; everything written is pulled back, in order."""
    ls = _logstore(sdk, project, shards=1)
    for batch in range(5):
        _put(sdk, project, ls, 20, compress=compress, compress_type=compress_type, start=batch * 20)
    logs = _pull_all(sdk, project, ls, 0)
    assert [int(x["i"]) for x in logs] == list(range(100))
    assert logs[0]["msg"] == "hello 0" and logs[0]["__topic__"] == "t" and logs[0]["__source__"] == "src"
    assert logs[0]["__time__"] == 1700000000


@pytest.mark.parametrize("accept", ["lz4", "zstd", "deflate"])
def test_pull_response_encodings(sdk: LogClient, project: str, accept: str) -> None:
    """PullLogs answers in the encoding the client accepts (x-log-compresstype, never Content-Encoding)."""
    ls = _logstore(sdk, project, shards=1)
    _put(sdk, project, ls, 50)
    logs = _pull_all(sdk, project, ls, 0, accept_compress_type=accept)
    assert [int(x["i"]) for x in logs] == list(range(50))
    cursor = sdk.get_cursor(project, ls, 0, "begin").get_cursor()
    resp = sdk.pull_logs(project, ls, 0, cursor, accept_compress_type=accept)
    assert resp.get_all_headers().get("x-log-compresstype") == accept
    assert "content-encoding" not in {k.lower() for k in resp.get_all_headers()}


def test_pull_uncompressed(sdk: LogClient, project: str) -> None:
    """compress=False pulls an identity body."""
    ls = _logstore(sdk, project, shards=1)
    _put(sdk, project, ls, 10)
    assert len(_pull_all(sdk, project, ls, 0, compress=False)) == 10


def test_put_log_raw_round_trips_bytes_exactly(sdk: LogClient, project: str) -> None:
    """put_log_raw's LogGroup comes back from PullLogs byte for byte (stored as received, framed, not re-encoded)."""
    ls = _logstore(sdk, project, shards=1)
    sent = []
    for g in range(3):
        group = LogGroupRaw()
        group.Topic = f"topic-{g}"
        group.Source = "10.0.0.1"
        for i in range(4):
            log = group.Logs.add()
            log.Time = 1700000000 + i
            log.Time_ns = 17
            c = log.Contents.add()
            c.Key, c.Value = "payload", bytes([0xFF, 0x00, i])  # not UTF-8: must still round-trip
        tag = group.LogTags.add()
        tag.Key, tag.Value = "__pack_id__", f"ABC-{g}"
        sdk.put_log_raw(project, ls, group)
        sent.append(group.SerializeToString())
    cursor = sdk.get_cursor(project, ls, 0, "begin").get_cursor()
    resp = sdk.pull_logs(project, ls, 0, cursor)
    raw_body = resp._raw_uncompressed_body  # the decompressed LogGroupList, before the SDK parses it
    assert resp.get_loggroup_count() == 3 and resp.get_log_count() == 12
    assert [bytes(b) for b in split_groups(raw_body)] == sent
    assert [g.Topic for g in resp.get_loggroup_list().LogGroups] == ["topic-0", "topic-1", "topic-2"]


def test_hash_key_routing(sdk: LogClient, project: str) -> None:
    """PutLogs with a hash key lands in the shard whose range holds the key."""
    ls = _logstore(sdk, project, shards=4)
    _put(sdk, project, ls, 5, hash_key="c0000000000000000000000000000001")
    _put(sdk, project, ls, 3, hash_key="00000000000000000000000000000000")
    assert len(_pull_all(sdk, project, ls, 3)) == 5
    assert len(_pull_all(sdk, project, ls, 0)) == 3
    assert _pull_all(sdk, project, ls, 1) == [] and _pull_all(sdk, project, ls, 2) == []


def test_load_balanced_puts_spread_over_shards(sdk: LogClient, project: str) -> None:
    """Without a hash key, writes spread across the writable shards and none is lost."""
    ls = _logstore(sdk, project, shards=2)
    for b in range(10):
        _put(sdk, project, ls, 10, start=b * 10)
    per_shard = [_pull_all(sdk, project, ls, s) for s in (0, 1)]
    assert all(per_shard)
    assert sorted(int(x["i"]) for logs in per_shard for x in logs) == list(range(100))


def test_cursors_by_time_and_cursor_time(sdk: LogClient, project: str) -> None:
    """GetCursor from a unix time returns the first group received at or after it; GetCursorTime inverts it."""
    ls = _logstore(sdk, project, shards=1)
    _put(sdk, project, ls, 1, start=0)
    time.sleep(1.1)
    middle = int(time.time())
    time.sleep(0.1)
    _put(sdk, project, ls, 1, start=1)
    begin = sdk.get_begin_cursor(project, ls, 0).get_cursor()
    end = sdk.get_end_cursor(project, ls, 0).get_cursor()
    at = sdk.get_cursor(project, ls, 0, middle).get_cursor()
    assert begin != at != end
    resp = sdk.pull_logs(project, ls, 0, at)
    assert [x["i"] for x in resp.get_flatten_logs_json()] == ["1"]
    assert sdk.get_cursor(project, ls, 0, 1000).get_cursor() == begin
    assert sdk.get_cursor(project, ls, 0, int(time.time()) + 3600).get_cursor() == end
    t0 = sdk.get_cursor_time(project, ls, 0, begin).get_cursor_time()
    assert abs(t0 - middle) <= 2
    assert sdk.get_cursor_time(project, ls, 0, at).get_cursor_time() >= middle


def test_end_cursor_bounds_pull(sdk: LogClient, project: str) -> None:
    """end_cursor stops a pull before it; pull_log iterates a time range to its end."""
    ls = _logstore(sdk, project, shards=1)
    for b in range(4):
        _put(sdk, project, ls, 1, start=b)
    begin = sdk.get_begin_cursor(project, ls, 0).get_cursor()
    two = sdk.pull_logs(project, ls, 0, begin, count=2).get_next_cursor()
    resp = sdk.pull_logs(project, ls, 0, begin, count=100, end_cursor=two)
    assert resp.get_loggroup_count() == 2 and resp.get_next_cursor() == two
    everything = [x for r in sdk.pull_log(project, ls, 0, 0, int(time.time()) + 10) for x in r.get_flatten_logs_json()]
    assert [x["i"] for x in everything] == ["0", "1", "2", "3"]


def test_get_checkpoint_fixed_style_cursor_math(sdk: LogClient, project: str) -> None:
    """The SDK's own cursor arithmetic (decode, minus one, re-encode) yields a cursor the hub accepts."""
    import base64
    ls = _logstore(sdk, project, shards=1)
    _put(sdk, project, ls, 3)
    end = sdk.get_end_cursor(project, ls, 0).get_cursor()
    prev = base64.b64encode(str(int(base64.b64decode(end)) - 1).encode()).decode()
    assert sdk.get_cursor_time(project, ls, 0, prev).get_cursor_time() > 0
