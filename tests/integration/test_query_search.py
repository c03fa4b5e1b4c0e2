"""GetLogs / GetHistograms / index configs through the official SDK against a real hub (#21)."""

from __future__ import annotations

import time

import pytest
from aliyun.log import (GetHistogramsRequest, GetLogsRequest, IndexConfig, IndexKeyConfig, IndexLineConfig,
                        LogException, LogItem, PutLogsRequest)

from tests.conftest import unique

NOW = int(time.time())


def _put(sdk, project: str, logstore: str, rows: list[dict[str, str]], topic: str = "", t: int = NOW) -> None:  # type: ignore[no-untyped-def]
    items = []
    for r in rows:
        item = LogItem(timestamp=t)
        item.set_contents(list(r.items()))
        items.append(item)
    sdk.put_logs(PutLogsRequest(project, logstore, topic, "", items))


def _index() -> IndexConfig:
    keys = {"status": IndexKeyConfig(index_type="long"), "method": IndexKeyConfig(index_type="text"),
            "ms": IndexKeyConfig(index_type="double"), "path": IndexKeyConfig(index_type="text")}
    return IndexConfig(line_config=IndexLineConfig(token_list=[" ", ",", "/", ":"]), key_config_list=keys)


ROWS = [{"status": str(s), "method": m, "ms": str(ms), "path": p, "msg": msg}
        for s, m, ms, p, msg in [
            (200, "GET", 1.5, "/api/users", "ok"), (500, "POST", 230.0, "/api/orders", "disk full on db1"),
            (404, "GET", 3.0, "/missing", "no such page"), (500, "GET", 120.5, "/api/orders", "timeout"),
            (200, "POST", 12.0, "/api/orders", "created"), (503, "POST", 999.0, "/api/pay", "upstream down")]]


@pytest.fixture
def indexed(sdk, project):  # type: ignore[no-untyped-def]
    name = unique("idx")
    sdk.create_logstore(project, name, shard_count=2)
    sdk.create_index(project, name, _index())
    _put(sdk, project, name, ROWS[:3], topic="web")
    _put(sdk, project, name, ROWS[3:], topic="web", t=NOW + 1)
    _wait_indexed(sdk, project, name, len(ROWS))
    return name


def _wait_indexed(sdk, project: str, logstore: str, n: int, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        resp = sdk.get_log(project, logstore, NOW - 60, NOW + 60, query="* | select count(*) as n")
        got = int(resp.get_logs()[0].get_contents()["n"])
        if got >= n or time.monotonic() > deadline:
            assert got >= n, f"only {got} of {n} logs searchable after {timeout} s"
            return
        time.sleep(0.1)


def test_index_config_create_get_update_delete(sdk, project) -> None:  # type: ignore[no-untyped-def]
    name = unique("idx")
    sdk.create_logstore(project, name, shard_count=1)
    with pytest.raises(LogException) as info:
        sdk.get_index_config(project, name)
    assert info.value.get_error_code() == "IndexConfigNotExist"
    sdk.create_index(project, name, _index())
    got = sdk.get_index_config(project, name).get_index_config()
    assert got.key_config_list["status"].index_type == "long" and got.line_config.token_list == [" ", ",", "/", ":"]
    with pytest.raises(LogException) as info:
        sdk.create_index(project, name, _index())
    assert info.value.get_error_code() == "IndexAlreadyExist"
    cfg = _index()
    cfg.key_config_list["user"] = IndexKeyConfig(index_type="text", case_sensitive=True)
    sdk.update_index(project, name, cfg)
    assert sdk.get_index_config(project, name).get_index_config().key_config_list["user"].case_sensitive is True
    assert sdk.get_logstore(project, name).get_ttl() > 0  # the logstore itself is unharmed
    sdk.delete_index(project, name)
    with pytest.raises(LogException) as info:
        sdk.delete_index(project, name)
    assert info.value.get_error_code() == "IndexConfigNotExist"


def test_search_syntax(sdk, project, indexed) -> None:  # type: ignore[no-untyped-def]
    def q(query: str, **kw: object) -> list[dict[str, str]]:
        resp = sdk.get_log(project, indexed, NOW - 60, NOW + 60, query=query, **kw)
        assert resp.is_completed()
        return [log.get_contents() for log in resp.get_logs()]

    assert {r["msg"] for r in q("status: 500 and method: POST")} == {"disk full on db1"}
    assert len(q("status >= 500")) == 3 and len(q("ms in [100 250]")) == 2
    assert {r["msg"] for r in q('"disk full"')} == {"disk full on db1"}
    assert {r["msg"] for r in q("path: /api/or*")} == {"disk full on db1", "timeout", "created"}
    assert {r["msg"] for r in q("timeout or upstream")} == {"timeout", "upstream down"}
    assert len(q("method: GET not status: 200")) == 2
    assert len(q("*", topic="web")) == 6 and q("*", topic="other") == []
    times = [int(log.get_time()) for log in sdk.get_log(project, indexed, NOW - 60, NOW + 60, query="*").get_logs()]
    assert times == sorted(times) and times[0] == NOW and times[-1] == NOW + 1
    back = [int(log.get_time()) for log in
            sdk.get_log(project, indexed, NOW - 60, NOW + 60, query="*", reverse=True).get_logs()]
    assert back == sorted(times, reverse=True)
    page = sdk.get_log(project, indexed, NOW - 60, NOW + 60, query="*", size=2, offset=4)
    assert page.get_count() == 2
    everything = [log for resp in sdk.get_log_all(project, indexed, NOW - 60, NOW + 60, query="*")
                  for log in resp.get_logs()]
    assert len(everything) == 6


def test_sql_after_the_bar(sdk, project, indexed) -> None:  # type: ignore[no-untyped-def]
    resp = sdk.get_log(project, indexed, NOW - 60, NOW + 60,
                       query="* | select status, count(*) as c group by status order by status")
    assert [(r.get_contents()["status"], r.get_contents()["c"]) for r in resp.get_logs()] == \
        [("200", "2"), ("404", "1"), ("500", "2"), ("503", "1")]
    resp = sdk.get_log(project, indexed, NOW - 60, NOW + 60,
                       query="method: POST | select count(*) as n, avg(ms) as avg_ms, "
                             "approx_percentile(ms, 0.5) as p50")
    row = resp.get_logs()[0].get_contents()
    assert row["n"] == "3" and abs(float(row["avg_ms"]) - (230 + 12 + 999) / 3) < 1e-6
    resp = sdk.get_log(project, indexed, NOW - 60, NOW + 60,
                       query="* | select date_trunc('minute', __time__) as m, count(*) as c group by m")
    assert sum(int(r.get_contents()["c"]) for r in resp.get_logs()) == 6


def test_histograms(sdk, project, indexed) -> None:  # type: ignore[no-untyped-def]
    resp = sdk.get_histograms(GetHistogramsRequest(project, indexed, NOW - 30, NOW + 30, query="status >= 500"))
    assert resp.is_completed() and resp.get_total_count() == 3
    assert sum(h.get_count() for h in resp.get_histograms()) == 3
    assert resp.get_histograms()[0].get_from() == NOW - 30


@pytest.mark.parametrize("query", ["status >", "(a", "* | selec x", "* | select nosuchkey",
                                   "* | select * from read_csv('/etc/passwd')", "* | drop table logs"])
def test_invalid_queries_get_sls_errors(sdk, project, indexed, query: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LogException) as info:
        sdk.get_log(project, indexed, NOW - 60, NOW + 60, query=query)
    assert info.value.get_error_code() == "ParameterInvalid" and info.value.get_resp_status() == 400


def test_logstore_without_index_is_scanned_and_refuses_sql(sdk, project) -> None:  # type: ignore[no-untyped-def]
    name = unique("scan")
    sdk.create_logstore(project, name, shard_count=2)
    _put(sdk, project, name, ROWS, topic="web")
    resp = sdk.get_logs(GetLogsRequest(project, name, NOW - 60, NOW + 60, query="status: 500 and GET"))
    assert [log.get_contents()["msg"] for log in resp.get_logs()] == ["timeout"]
    assert sdk.get_histograms(GetHistogramsRequest(project, name, NOW - 60, NOW + 60, query="POST")).get_total_count() == 3
    with pytest.raises(LogException) as info:
        sdk.get_log(project, name, NOW - 60, NOW + 60, query="* | select count(*)")
    assert info.value.get_error_code() == "IndexConfigNotExist"


def test_get_logs_v1_form(sdk, project, indexed) -> None:  # type: ignore[no-untyped-def]
    sdk._get_logs_v2_enabled = False  # the SDK's older GET /logstores/{ls}?type=log form
    resp = sdk.get_log(project, indexed, NOW - 60, NOW + 60, query="status: 404")
    assert resp.is_completed() and [log.get_contents()["msg"] for log in resp.get_logs()] == ["no such page"]


def test_new_logs_are_searchable_within_two_seconds(sdk, project, indexed) -> None:  # type: ignore[no-untyped-def]
    _put(sdk, project, indexed, [{"status": "418", "msg": "teapot"}])
    t0 = time.monotonic()
    while not sdk.get_log(project, indexed, NOW - 60, NOW + 60, query="status: 418").get_logs():
        assert time.monotonic() - t0 < 2.0, "not searchable within 2 s"
        time.sleep(0.05)


def test_aliyun_log_cli_get_log(hub, sdk, project, indexed, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`aliyunlog log get_log` (aliyun-log-cli, on the pinned SDK) against the hub."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    exe = shutil.which("aliyunlog") or os.path.join(os.path.dirname(sys.executable), "aliyunlog")
    env = {**os.environ, "HOME": str(tmp_path)}  # the CLI writes its log file and config under HOME
    out = subprocess.run(
        [exe, "log", "get_log", f"--project={project}", f"--logstore={indexed}", f"--from_time={NOW - 60}",
         f"--to_time={NOW + 60}", "--query=status: 500 and method: POST", f"--access-id={hub.access_key_id}",
         f"--access-key={hub.access_key_secret}", f"--region-endpoint={hub.endpoint}"],
        env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    logs = json.loads(out.stdout)
    assert [log["msg"] for log in logs] == ["disk full on db1"]


def test_index_resumes_after_kill_9_without_duplicates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from aliyun.log import LogClient

    from sluice.testing import HubProcess

    with HubProcess(tmp_path / "data") as proc:
        sdk = LogClient(proc.endpoint, proc.access_key_id, proc.access_key_secret)
        sdk.create_project("crash", "")
        sdk.create_logstore("crash", "web", shard_count=2)
        sdk.create_index("crash", "web", _index())
        for i in range(20):
            _put(sdk, "crash", "web", [{"status": "500" if i % 2 else "200", "n": str(i)}] * 10)
        _wait_indexed(sdk, "crash", "web", 200)
        proc.kill()  # SIGKILL: the index file holds rows and checkpoint of one transaction
        proc.start()
        for i in range(5):
            _put(sdk, "crash", "web", [{"status": "500", "n": f"after{i}"}] * 10)
        _wait_indexed(sdk, "crash", "web", 250)
        time.sleep(1.0)  # a duplicate re-index would show up by now
        resp = sdk.get_log("crash", "web", NOW - 60, NOW + 60, query="* | select count(*) as n, "
                                                                     "count_if(status = 500) as e")
        row = resp.get_logs()[0].get_contents()
        assert (row["n"], row["e"]) == ("250", "150")


def test_read_only_key_may_query_but_not_change_the_index(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from aliyun.log import LogClient

    from sluice.testing import HubProcess

    with HubProcess(tmp_path / "data", extra_args=["--access-key", "reader:reader-secret-1234:rop:ro"]) as proc:
        admin = LogClient(proc.endpoint, proc.access_key_id, proc.access_key_secret)
        admin.create_project("rop", "")
        admin.create_logstore("rop", "web", shard_count=1)
        admin.create_index("rop", "web", _index())
        _put(admin, "rop", "web", ROWS)
        _wait_indexed(admin, "rop", "web", len(ROWS))
        reader = LogClient(proc.endpoint, "reader", "reader-secret-1234")
        assert reader.get_log("rop", "web", NOW - 60, NOW + 60, query="status: 500").get_count() == 2
        assert reader.get_index_config("rop", "web").get_index_config().key_config_list["status"].index_type == "long"
        for call in (lambda: reader.update_index("rop", "web", _index()), lambda: reader.delete_index("rop", "web")):
            with pytest.raises(LogException) as info:
                call()
            assert info.value.get_error_code() == "Unauthorized"
