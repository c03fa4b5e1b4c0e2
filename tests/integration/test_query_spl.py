"""SPL on PullLogs (rule-based consumption) through the official SDK against a real hub (#21)."""

from __future__ import annotations

import time

import pytest
from aliyun.log import LogException, LogItem, PutLogsRequest

from tests.conftest import unique


@pytest.fixture
def logstore(sdk, project):  # type: ignore[no-untyped-def]
    name = unique("spl")
    sdk.create_logstore(project, name, shard_count=1)
    return name


def _put(sdk, project: str, logstore: str, rows: list[dict[str, str]], topic: str = "") -> None:  # type: ignore[no-untyped-def]
    items = []
    for r in rows:
        item = LogItem(timestamp=int(time.time()))
        item.set_contents(list(r.items()))
        items.append(item)
    sdk.put_logs(PutLogsRequest(project, logstore, topic, "", items))


def test_invalid_spl_is_refused_with_sls_error(sdk, project, logstore) -> None:  # type: ignore[no-untyped-def]
    _put(sdk, project, logstore, [{"status": "500"}])
    cursor = sdk.get_cursor(project, logstore, 0, "begin").get_cursor()
    with pytest.raises(LogException) as info:
        sdk.pull_logs(project, logstore, 0, cursor, 10, query="* | where status = = '500'")
    assert info.value.get_error_code() == "ParameterInvalid"
    assert "invalid query" in info.value.get_error_message()


def _pull_all(sdk, project: str, logstore: str, query: str):  # type: ignore[no-untyped-def]
    cursor = sdk.get_cursor(project, logstore, 0, "begin").get_cursor()
    end = sdk.get_cursor(project, logstore, 0, "end").get_cursor()
    logs, raw_groups, responses = [], 0, []
    while cursor != end:
        resp = sdk.pull_logs(project, logstore, 0, cursor, 2, query=query)
        responses.append(resp)
        logs.extend(resp.get_flatten_logs_json())
        raw_groups += resp.get_raw_log_group_count_before_query()
        cursor = resp.get_next_cursor()
    return logs, raw_groups, responses


def test_where_filters_and_cursor_moves_over_raw_data(sdk, project, logstore) -> None:  # type: ignore[no-untyped-def]
    rows = [{"status": str(s), "method": m, "n": str(i)}
            for i, (s, m) in enumerate([(200, "GET"), (500, "POST"), (404, "GET"), (500, "GET"), (503, "POST")])]
    for r in rows:  # one group per log: 5 raw groups
        _put(sdk, project, logstore, [r])
    logs, raw_groups, responses = _pull_all(sdk, project, logstore,
                                            "* | where cast(status as bigint) >= 500 and method = 'POST'")
    assert [l["n"] for l in logs] == ["1", "4"]
    assert raw_groups == 5  # x-log-rawdatacount: groups read before the filter
    assert all(r.get_raw_size_before_query() > 0 for r in responses)
    assert sum(r.get_loggroup_count() for r in responses) == 2  # x-log-count: groups after the filter


def test_a_batch_filtered_to_nothing_still_advances(sdk, project, logstore) -> None:  # type: ignore[no-untyped-def]
    _put(sdk, project, logstore, [{"status": "200"}, {"status": "201"}])
    cursor = sdk.get_cursor(project, logstore, 0, "begin").get_cursor()
    resp = sdk.pull_logs(project, logstore, 0, cursor, 10, query="* | where status = '500'")
    assert resp.get_loggroup_count() == 0 and resp.get_log_count() == 0
    assert resp.get_raw_size() == 0 and resp.get_raw_log_group_count_before_query() == 1
    assert resp.get_next_cursor() == sdk.get_cursor(project, logstore, 0, "end").get_cursor()


def test_commands_rewrite_logs_and_keep_group_fields(sdk, project, logstore) -> None:  # type: ignore[no-untyped-def]
    _put(sdk, project, logstore, [
        {"content": '10.0.0.1 GET /a 500', "body": '{"user": "ann", "ms": 12}', "drop": "x"},
        {"content": '10.0.0.2 PUT /b 200', "body": 'not json', "drop": "y"},
    ], topic="web")
    spl = ("* | parse-regexp content, '(\\S+) (\\S+) (\\S+) (\\d+)' as ip, method, path, status"
           " | parse-json body | extend code = cast(status as bigint) * 2 | project-away drop, content"
           " | project-rename verb = method")
    logs, _, _ = _pull_all(sdk, project, logstore, spl)
    assert len(logs) == 2
    first, second = logs
    assert first["__topic__"] == "web"
    assert (first["ip"], first["verb"], first["path"], first["status"], first["code"]) == ("10.0.0.1", "GET", "/a",
                                                                                           "500", "1000")
    assert (first["user"], first["ms"]) == ("ann", "12")
    assert "drop" not in first and "content" not in first and "method" not in first
    assert second["verb"] == "PUT" and "user" not in second
    only, _, _ = _pull_all(sdk, project, logstore, "* | where verb_missing is null | project ip")
    # ip does not exist before parse-regexp: project keeps only the meta fields; the logs stay
    assert len(only) == 2 and all(set(log) == {"__time__", "__topic__", "__source__"} for log in only)


def test_sdk_consumer_group_with_spl(hub, sdk, project, logstore) -> None:  # type: ignore[no-untyped-def]
    """The official SDK's ConsumerWorker with LogHubConfig(query=...): only the filtered logs arrive."""
    import threading

    from aliyun.log.consumer import ConsumerProcessorBase, ConsumerWorker, CursorPosition, LogHubConfig

    seen: list[dict[str, str]] = []
    lock = threading.Lock()

    class Processor(ConsumerProcessorBase):  # type: ignore[misc]
        def process(self, log_groups, check_point_tracker):  # type: ignore[no-untyped-def]
            with lock:
                for g in log_groups.LogGroups:
                    for log in g.Logs:
                        seen.append({c.Key: c.Value for c in log.Contents})
            return None

    _put(sdk, project, logstore, [{"status": str(s), "i": str(i)} for i, s in enumerate([200, 500, 404, 500, 503])])
    option = LogHubConfig(hub.endpoint, hub.access_key_id, hub.access_key_secret, project, logstore,
                          unique("cg"), "c1", cursor_position=CursorPosition.BEGIN_CURSOR, heartbeat_interval=1,
                          data_fetch_interval=0.2, query="* | where cast(status as bigint) >= 500 | project i")
    worker = ConsumerWorker(Processor, option)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with lock:
                if len(seen) >= 3:
                    break
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        worker.shutdown()
        worker.join(15)  # the SDK's threads finish their last checkpoint while the hub is still up
    assert sorted(r["i"] for r in seen) == ["1", "3", "4"] and all(set(r) == {"i"} for r in seen)


def test_c_where_through_the_hub_equals_brute_force(sdk, project, logstore) -> None:  # type: ignore[no-untyped-def]
    """The where forms the hub runs in C (hub/query/_splscan.c), through the SDK: the logs that arrive are
    those a per-log evaluation of the statement's meaning keeps, in order, with their group fields."""
    import random

    from sluice.hub.query.spl import compile_spl

    rng = random.Random(7)
    rows = [{"status": rng.choice(["200", "404", "500", "503", " 500", "5e2", "abc"]),
             "method": rng.choice(["GET", "POST", "PUT"]), "path": rng.choice(["/api/a", "/b", "/api/ö"]),
             "i": str(i)} for i in range(300)]
    for k in range(0, 300, 50):  # six groups of 50 logs
        _put(sdk, project, logstore, [{kk: v for kk, v in r.items() if not (kk == "method" and int(r["i"]) % 7 == 0)}
                                      for r in rows[k:k + 50]], topic="web")

    def number(v: str) -> float | None:
        try:
            return float(v)
        except ValueError:
            return None

    cases = {
        "* | where status = '500' and method = 'POST'": lambda r: r["status"] == "500" and r.get("method") == "POST",
        "* | where cast(status as double) >= 500 and path like '/api%'":
            lambda r: (number(r["status"]) or 0) >= 500 and r["path"].startswith("/api"),
        "* | where method is null or status in ('404', 'abc')":
            lambda r: "method" not in r or r["status"] in ("404", "abc"),
        "* | where not method = 'GET' and __topic__ = 'web'": lambda r: r.get("method") not in (None, "GET"),
    }
    for spl, keep in cases.items():
        assert compile_spl(spl).native_where is not None, spl
        logs, raw_groups, _ = _pull_all(sdk, project, logstore, spl)
        expect = [r["i"] for r in rows
                  if keep({kk: v for kk, v in r.items() if not (kk == "method" and int(r["i"]) % 7 == 0)})]
        assert [log["i"] for log in logs] == expect, spl
        assert raw_groups == 6 and all(log["__topic__"] == "web" for log in logs)
