"""Issue #20.3 and #20.5: the compat consumer's options and behaviours, each as an SDK user would notice it.

Every public name of ``aliyun.log.consumer`` exists; ``LogHubConfig`` has the SDK's parameters and refuses an
unknown keyword with TypeError; options are honoured (SPL ``query`` passed through and evaluated by the hub,
``worker_pool_size``/``shared_executor``, ``credentials_refresher``, ``cursor_start_time`` read as the SDK
reads it) or refused at start with a clear error (a query or processor the server cannot evaluate); the hub
reports ``autoSplit: false``; ``sluice status`` shows the holder of a shard with no checkpoint yet, reading
the Alibaba Cloud credential variables.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import pytest

import aliyun.log.consumer as sdk_consumer
import sluice.consumer as our_consumer
from aliyun.log import LogItem, PutLogsRequest
from aliyun.log.consumer import LogHubConfig as SDKLogHubConfig
from aliyun.log.pulllog_response import PullLogResponse
from aliyun.log.util import parse_timestamp
from sluice.client import AsyncClient
from sluice.consumer import (ConsumerJsonProcessorBase, ConsumerProcessorBase, ConsumerWorker, CursorPosition,
                             LogHubConfig)
from sluice.compat import sdk_time
from sluice.testing import HubProcess
from sluice.wire.errors import ConfigError, SLSError

from ..conftest import unique


def _wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


def test_every_public_name_of_the_sdk_consumer_package_exists() -> None:
    public = [n for n in dir(sdk_consumer) if not n.startswith("_") and not inspect.ismodule(getattr(sdk_consumer, n))]
    assert public, "the SDK package lists no names"
    missing = [n for n in public if not hasattr(our_consumer, n)]
    assert missing == []
    assert issubclass(our_consumer.ConsumerJsonProcessorBase, our_consumer.ConsumerProcessorBase)


def test_loghubconfig_has_the_sdks_parameters_and_refuses_unknown_keywords() -> None:
    ours = list(inspect.signature(LogHubConfig).parameters)
    theirs = list(inspect.signature(SDKLogHubConfig).parameters)
    assert ours == theirs
    with pytest.raises(TypeError):
        LogHubConfig("e", "k", "s", "p", "l", "g", "c", heartbeat_intervall=3)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="max_fetch_log_group_size"):
        LogHubConfig("e", "k", "s", "p", "l", "g", "c", max_fetch_log_group_size=5000)
    with pytest.raises(ConfigError, match="region"):
        LogHubConfig("e", "k", "s", "p", "l", "g", "c", auth_version="v4")
    with pytest.raises(ConfigError, match="accept_compress_type"):
        LogHubConfig("e", "k", "s", "p", "l", "g", "c", accept_compress_type="gzip")


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "UTC", "America/New_York"])
def test_cursor_start_time_is_read_as_the_sdk_reads_it(tz: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        for value in ("2018-12-26 0:0:0", "2018-12-26 08:00:00", "2018-1-2 3:4:5", "2024-06-30T23:59:59", "2018-12-26T08:00:00+8:00",
                      "2018-12-26 08:00:00+08:00", "2018-12-26T00:00:00Z", "Dec 26 2018 10:30", 1545782400,
                      "1545782400", 1545782400.7):
            assert sdk_time(value) == str(parse_timestamp(value)), value
        assert sdk_time("begin") == "begin" and sdk_time("end") == "end"
        with pytest.raises(ConfigError):
            sdk_time("not a date")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# ---------------------------------------------------------------------------------------------- with a hub
def _put(sdk: Any, project: str, logstore: str, rows: list[dict[str, str]], topic: str = "t") -> None:
    items = [LogItem(timestamp=int(time.time()), contents=list(r.items())) for r in rows]
    sdk.put_logs(PutLogsRequest(project, logstore, topic, "src", items))


class Recorder(ConsumerProcessorBase):
    seen: list[Any]
    threads: set[str]
    lock = threading.Lock()

    def process(self, log_groups: Any, check_point_tracker: Any) -> None:
        with self.lock:
            for g in log_groups.LogGroups:
                for log in g.Logs:
                    type(self).seen.append({c.Key: c.Value for c in log.Contents})
            type(self).threads.add(threading.current_thread().name)
        self.save_checkpoint(check_point_tracker)


def _recorder() -> type[Recorder]:
    return type("Rec", (Recorder,), {"seen": [], "threads": set()})


def _option(hub: HubProcess, project: str, logstore: str, **kw: Any) -> LogHubConfig:
    return LogHubConfig(hub.endpoint, kw.pop("key_id", hub.access_key_id), hub.access_key_secret, project, logstore,
                        unique("cg"), unique("c"), cursor_position=CursorPosition.BEGIN_CURSOR, **kw)


@pytest.fixture
def logstore(sdk: Any, project: str) -> str:
    name = unique("ls")
    sdk.create_logstore(project, name, 1, 2)
    return name


def test_spl_query_is_passed_through_and_evaluated(hub: HubProcess, sdk: Any, project: str, logstore: str) -> None:
    _put(sdk, project, logstore, [{"status": str(s), "i": str(i)} for i, s in enumerate([200, 500, 404, 500, 200])])
    rec = _recorder()
    worker = ConsumerWorker(rec, _option(hub, project, logstore, query="* | where status = '500'"))
    worker.start()
    try:
        _wait_for(lambda: len(rec.seen) >= 2, 20, "the filtered logs")
        time.sleep(0.3)
    finally:
        worker.shutdown()
    assert sorted(d["i"] for d in rec.seen) == ["1", "3"] and {d["status"] for d in rec.seen} == {"500"}


@pytest.mark.parametrize("kw", [{"query": "* | where status = "}, {"processor": "consume-processor-1"}])
def test_a_query_the_server_cannot_evaluate_is_refused_at_start(hub: HubProcess, sdk: Any, project: str,
                                                                  logstore: str, kw: dict[str, str]) -> None:
    _put(sdk, project, logstore, [{"status": "200"}])
    rec = _recorder()
    worker = ConsumerWorker(rec, _option(hub, project, logstore, **kw))
    with pytest.raises(ConfigError, match="refused the SPL") as info:
        worker.start()
    assert "ParameterInvalid" in str(info.value)
    assert not worker.is_alive() and rec.seen == []


def test_a_setup_failure_raises_the_sdks_log_exception_from_start(hub: HubProcess, project: str,
                                                                   logstore: str) -> None:
    from sluice.compat import LogException

    worker = ConsumerWorker(_recorder(), _option(hub, project, logstore, key_id="no-such-key"))
    with pytest.raises(LogException) as info:
        worker.start()
    assert info.value.get_error_code() == "InvalidAccessKeyId" and info.value.get_request_id()
    assert not worker.is_alive()


def test_cursor_end_time_end_consumes_what_is_there_and_stops(hub: HubProcess, sdk: Any, project: str,
                                                               logstore: str) -> None:
    _put(sdk, project, logstore, [{"i": str(i)} for i in range(7)])
    rec = _recorder()
    worker = ConsumerWorker(rec, _option(hub, project, logstore, cursor_end_time="end"))
    t = threading.Thread(target=worker.start, kwargs={"join": True})
    t.start()
    t.join(30)
    assert not t.is_alive() and not worker.is_alive(), "the bounded consumer did not stop by itself"
    assert sorted(d["i"] for d in rec.seen) == [str(i) for i in range(7)]


def test_json_processor_gets_the_sdks_flattened_logs(hub: HubProcess, sdk: Any, project: str, logstore: str) -> None:
    rows = [{"a": str(i), "b": "x" * i} for i in range(5)]
    _put(sdk, project, logstore, rows, topic="json")
    got: list[dict[str, Any]] = []

    class Json(ConsumerJsonProcessorBase):
        def process(self, flattern_json_list: list[dict[str, Any]], check_point_tracker: Any) -> None:
            got.extend(flattern_json_list)

    worker = ConsumerWorker(Json, _option(hub, project, logstore))
    worker.start()
    try:
        _wait_for(lambda: len(got) >= 5, 20, "five logs")
    finally:
        worker.shutdown()
    expected = []
    for s in sdk.list_shards(project, logstore).get_shards_info():
        r = sdk.pull_logs(project, logstore, s["shardID"], sdk.get_begin_cursor(project, logstore, s["shardID"]).get_cursor())
        expected += PullLogResponse.loggroups_to_flattern_list(r.get_loggroup_list())
    key = json.dumps
    assert sorted(map(key, got)) == sorted(map(key, expected))


def test_shared_executor_runs_the_processors(hub: HubProcess, sdk: Any, project: str, logstore: str) -> None:
    _put(sdk, project, logstore, [{"a": "1"}, {"a": "2"}])
    rec = _recorder()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mine") as pool:
        worker = ConsumerWorker(rec, _option(hub, project, logstore, shared_executor=pool))
        worker.start()
        try:
            _wait_for(lambda: len(rec.seen) >= 2, 20, "two logs")
        finally:
            worker.shutdown()
        assert rec.threads and all(t.startswith("mine") for t in rec.threads)
    rec2 = _recorder()
    worker = ConsumerWorker(rec2, _option(hub, project, logstore))
    worker.start()
    try:
        _wait_for(lambda: len(rec2.seen) >= 2, 20, "two logs")
    finally:
        worker.shutdown()
    assert all(t.startswith("sluice-processor") for t in rec2.threads)


def test_credentials_refresher_is_asked_on_an_auth_error(hub: HubProcess, sdk: Any, project: str,
                                                         logstore: str) -> None:
    _put(sdk, project, logstore, [{"a": "1"}])
    calls: list[float] = []

    def refresher() -> tuple[str, str, str]:
        calls.append(time.time())
        return hub.access_key_id, hub.access_key_secret, ""

    rec = _recorder()
    worker = ConsumerWorker(rec, _option(hub, project, logstore, key_id="expired-key", credentials_refresher=refresher))
    worker.start()
    try:
        _wait_for(lambda: len(rec.seen) >= 1, 20, "the log")
    finally:
        worker.shutdown()
    assert len(calls) == 1


def test_async_client_credentials_provider_objects(hub: HubProcess, project: str) -> None:
    from aliyun.log.credentials import StaticCredentialsProvider

    async def main() -> None:
        provider = StaticCredentialsProvider(hub.access_key_id, hub.access_key_secret, "")
        async with AsyncClient(hub.endpoint, "stale", "stale", credentials_provider=provider) as c:
            assert project in await c.list_projects()
            assert c.transport.credentials.access_key_id == hub.access_key_id
        async with AsyncClient(hub.endpoint, "stale", "stale") as c:
            with pytest.raises(SLSError) as info:
                await c.list_projects()
            assert info.value.error_code == "InvalidAccessKeyId"  # what the provider would have fixed

    asyncio.run(main())


def test_hub_reports_that_it_does_not_auto_split(sdk: Any, project: str) -> None:
    name = unique("ls")
    sdk.create_logstore(project, name, 1, 2, auto_split=True)  # what the SDK sends by default
    assert sdk.get_logstore(project, name).auto_split is False


def test_status_shows_the_holder_before_any_checkpoint(hub: HubProcess, sdk: Any, project: str, logstore: str) -> None:
    sdk.create_consumer_group(project, logstore, "holders", 60)
    held = sdk.heart_beat(project, logstore, "holders", "worker-a", []).get_shards()
    assert held
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLS_")}
    env.update(ALIBABA_CLOUD_ACCESS_KEY_ID=hub.access_key_id, ALIBABA_CLOUD_ACCESS_KEY_SECRET=hub.access_key_secret)
    proc = subprocess.run([sys.executable, "-m", "sluice", "status", "--endpoint", hub.url, "--project", project,
                           "--logstore", logstore, "--group", "holders", "--json"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {r["shard"]: r["consumer"] for r in rows if r["shard"] in held} == {s: "worker-a" for s in held}
    assert all(r["checkpoint"] == "" for r in rows)
