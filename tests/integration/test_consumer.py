"""sluice's consumer library against real hub processes.

* The seed programs (002: a consumer-group sample; 003/004: dispatch by topic with ``put_log_raw``) run with
  only their imports switched to ``sluice.consumer``.
* Several sluice consumers in one group, as separate processes (``_sluice_worker.py``): SIGKILL of one loses
  nothing and duplicates only its uncommitted window; a join and a graceful leave duplicate nothing.
* Start positions, bounded consumption, handler errors, invalid and expired checkpoints, one event loop
  following 50 logstores on two hubs, and put -> handler latency thanks to long-poll.

Short heartbeats (1 s) and group timeouts (3 s); every wait is a poll with a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest

from sluice.client import AsyncClient, Client
from sluice.consumer import AsyncConsumer, ByteBudget, ConsumerConfig, Processor, ShardContext
from sluice.testing import HubProcess
from sluice.wire.batch import Batch
from sluice.wire.cursor import decode_cursor, encode_cursor
from sluice.wire.loggroup import parse_group
from tests._consumers import WorkerProc, hash_key_for as _hash_key
from tests.conftest import unique


# ---------------------------------------------------------------------------------------------- helpers
def _name(prefix: str) -> str:
    return unique(prefix).replace("-", "_")


def _wait_for(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def _until(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def _put_ids(client: AsyncClient, project: str, logstore: str, ids: list[str], *, per_group: int = 5,
                   shards: int = 1, topic: str = "t") -> None:
    """Write ``ids`` as groups of ``per_group`` logs, group j to shard j % shards."""
    for j in range(0, len(ids), per_group):
        logs = [{"id": i, "msg": f"log {i}"} for i in ids[j:j + per_group]]
        await client.put_logs(project, logstore, logs, topic=topic,
                              hash_key=_hash_key((j // per_group) % shards, shards))


def _pull_groups(client: Client, project: str, logstore: str) -> list[bytes]:
    """Every stored LogGroup's bytes, all shards, from the beginning."""
    out: list[bytes] = []
    for s in client.list_shards(project, logstore):
        shard = s["shardID"]
        cursor = client.get_cursor(project, logstore, shard, "begin")
        while True:
            r = client.pull_logs(project, logstore, shard, cursor, count=1000)
            if r.count == 0:
                break
            out.extend(bytes(b) for b in r.group_bytes())
            cursor = r.next_cursor
    return out


class Sink:
    """What a recording processor saw: every batch (time, shard, cursor, ids) and which shards initialized."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, int, str, list[str]]] = []
        self.initialized: set[int] = set()
        self.shutdowns: list[int] = []

    @property
    def ids(self) -> list[str]:
        return [i for b in self.batches for i in b[3]]


class Recorder(Processor):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def initialize(self, ctx: ShardContext) -> None:
        self.sink.initialized.add(ctx.shard)

    async def process(self, batch: Batch, ctx: ShardContext) -> str | None:
        self.sink.batches.append((time.monotonic(), batch.shard, batch.cursor,
                                  [str(d.get("id")) for d in batch.logs()]))
        ctx.checkpoint()
        return None

    async def shutdown(self, ctx: ShardContext) -> None:
        self.sink.shutdowns.append(ctx.shard)


def _config(project: str, logstore: str, group: str, **kw: Any) -> ConsumerConfig:
    kw.setdefault("heartbeat_interval", 1.0)
    kw.setdefault("timeout", 3)
    kw.setdefault("checkpoint_interval", 0.2)
    kw.setdefault("long_poll", 3.0)
    return ConsumerConfig(project=project, logstore=logstore, group=group, consumer=kw.pop("consumer", group + "-c"),
                          **kw)


def _recording_consumer(client: AsyncClient, config: ConsumerConfig, **kw: Any) -> tuple[AsyncConsumer, Sink]:
    sink = Sink()
    return AsyncConsumer(client, config, processor=lambda: Recorder(sink), **kw), sink


async def _checkpoints(client: AsyncClient, project: str, logstore: str, group: str) -> dict[int, str]:
    return {e["shard"]: e["checkpoint"] for e in await client.get_checkpoints(project, logstore, group)}


def _run(coro: Awaitable[None], timeout: float = 90) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)
    asyncio.run(bounded())


@pytest.fixture
def aclient_args(hub: HubProcess) -> tuple[str, str, str]:
    return hub.url, hub.access_key_id, hub.access_key_secret


@pytest.fixture
def sclient(hub: HubProcess) -> Iterator[Client]:
    c = Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=10)
    yield c
    c.close()


@pytest.fixture
def sproject(sclient: Client, hub_log_on_failure: None) -> Iterator[str]:
    name = unique("cp")
    sclient.create_project(name)
    yield name
    try:
        sclient.delete_project(name)
    except Exception:  # noqa: BLE001
        pass


class Producer(threading.Thread):
    """Writes ids 0..n-1 in groups of ``per_group`` (group j to shard j % shards), pausing between groups."""

    def __init__(self, hub: HubProcess, project: str, logstore: str, n: int, *, per_group: int = 20,
                 shards: int = 4, pause: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.hub, self.project, self.logstore = hub, project, logstore
        self.n, self.per_group, self.shards, self.pause = n, per_group, shards, pause
        self.error: BaseException | None = None
        self.written = 0

    def run(self) -> None:
        try:
            with Client(self.hub.url, self.hub.access_key_id, self.hub.access_key_secret, timeout=10) as c:
                for j, start in enumerate(range(0, self.n, self.per_group)):
                    logs = [{"id": str(i), "pad": "x" * 50} for i in range(start, min(self.n, start + self.per_group))]
                    c.put_logs(self.project, self.logstore, logs, topic="t",
                               hash_key=_hash_key(j % self.shards, self.shards))
                    self.written = start + len(logs)
                    time.sleep(self.pause)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            self.error = exc

    def finish(self, timeout: float = 60) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the producer did not finish"
        if self.error is not None:
            raise self.error


# ---------------------------------------------------------------------------------------------- the seeds
SEED_002 = '''
import os
import time
from sluice.consumer import ConsumerProcessorBase, ConsumerWorker, CursorPosition, LogHubConfig
from aliyun.log import LogClient, LogItem, PutLogsRequest
from threading import RLock


class SampleConsumer(ConsumerProcessorBase):
    shard_id = -1
    last_check_time = 0
    log_results = []
    lock = RLock()

    def initialize(self, shard):
        self.shard_id = shard

    def process(self, log_groups, check_point_tracker):
        for log_group in log_groups.LogGroups:
            items = []
            for log in log_group.Logs:
                item = dict()
                item['time'] = log.Time
                for content in log.Contents:
                    item[content.Key] = content.Value
                items.append(item)
            log_items = dict()
            log_items['topic'] = log_group.Topic
            log_items['source'] = log_group.Source
            log_items['logs'] = items

            with SampleConsumer.lock:
                SampleConsumer.log_results.append(log_items)
                print(log_items)

        current_time = time.time()
        if current_time - self.last_check_time > 3:
            try:
                self.last_check_time = current_time
                check_point_tracker.save_check_point(True)
            except Exception:
                import traceback
                traceback.print_exc()
        else:
            try:
                check_point_tracker.save_check_point(False)
            except Exception:
                import traceback
                traceback.print_exc()

        # None means succesful process
        # if need to roll-back to previous checkpoint,return check_point_tracker.get_check_point()
        return None

    def shutdown(self, check_point_tracker):
        try:
            check_point_tracker.save_check_point(True)
        except Exception:
            import traceback
            traceback.print_exc()


test_item_count = 20


def _prepare_data(client, project, logstore):
    topic = 'python-ide-test'
    source = ''

    for i in range(0, test_item_count):
        logitemList = []  # LogItem list

        contents = [
            ('user', 'magic_user_' + str(i)),
            ('avg', 'magic_age_' + str(i))
        ]
        logItem = LogItem()
        logItem.set_time(int(time.time()))
        logItem.set_contents(contents)

        logitemList.append(logItem)

        request = PutLogsRequest(project, logstore, topic, source, logitemList)

        response = client.put_logs(request)
        print("successfully put logs in logstore")


def sleep_until(seconds, exit_condition=None, expect_error=False):
    if not exit_condition:
        time.sleep(seconds)
        return

    s = time.time()
    while time.time() - s < seconds:
        try:
            if exit_condition():
                break
        except Exception:
            if expect_error:
                continue
        time.sleep(1)


def sample_consumer_group():
    endpoint = os.environ.get('ALIYUN_LOG_SAMPLE_ENDPOINT', 'cn-hangzhou.log.aliyuncs.com')
    accessKeyId = os.environ.get('ALIBABA_CLOUD_ACCESS_KEY_ID', '')
    accessKey = os.environ.get('ALIBABA_CLOUD_ACCESS_KEY_SECRET', '')
    project = os.environ.get('ALIYUN_LOG_SAMPLE_PROJECT', 'ali-test-project-python')
    logstore = 'ali-test-logstore'
    consumer_group = 'consumer-group-1'
    consumer_name1 = "consumer-group-1-A"
    consumer_name2 = "consumer-group-1-B"
    token = ""

    if not logstore:
        logstore = 'consumer_group_test_' + str(time.time()).replace('.', '_')

    assert endpoint and accessKeyId and accessKey and project, ValueError("endpoint/access_id/key and "
                                                                          "project cannot be empty")
    client = LogClient(endpoint, accessKeyId, accessKey, token)
    ret = client.create_logstore(project, logstore, 2, 4)
    print("successfully create logstore")
    time.sleep(60)
    SampleConsumer.log_results = []
    try:
        _prepare_data(client, project, logstore)

        option1 = LogHubConfig(endpoint, accessKeyId, accessKey, project, logstore, consumer_group,
                               consumer_name1, cursor_position=CursorPosition.BEGIN_CURSOR, heartbeat_interval=6,
                               data_fetch_interval=1)
        option2 = LogHubConfig(endpoint, accessKeyId, accessKey, project, logstore, consumer_group,
                               consumer_name2, cursor_position=CursorPosition.BEGIN_CURSOR, heartbeat_interval=6,
                               data_fetch_interval=1)

        print("*** start to consume data...")
        client_worker1 = ConsumerWorker(SampleConsumer, consumer_option=option1)
        client_worker1.start()
        client_worker2 = ConsumerWorker(SampleConsumer, consumer_option=option2)
        client_worker2.start()

        sleep_until(300, lambda: len(SampleConsumer.log_results) >= test_item_count)

        print("*** consumer group status ***")
        ret = client.list_consumer_group(project, logstore)
        print("successfully list consumergroup")
        for c in ret.get_consumer_groups():
            ret = client.get_check_point_fixed(project, logstore, c.get_consumer_group_name())
            print("successfully get checkpoint fixed")

        print("*** stopping workers")
        client_worker1.shutdown()
        client_worker2.shutdown()
    finally:
        ret = client.list_logstore(project, logstore)
        print("successfully list logstore")

    ret = str(SampleConsumer.log_results)
    print("*** get content:")
    print(ret)
    assert 'magic_user_0' in ret and 'magic_age_0' in ret \\
           and 'magic_user_' + str(test_item_count-1) in ret \\
           and 'magic_age_' + str(test_item_count-1) in ret


if __name__ == '__main__':
    sample_consumer_group()
'''

# The seed waits 60 s after CreateLogstore for SLS to provision it; a hub needs no wait. The program is run
# unchanged through this shim, which only shortens sleeps of 30 s and more.
SLEEP_SHIM = textwrap.dedent('''
    import runpy, sys, time
    _sleep = time.sleep
    time.sleep = lambda s: _sleep(0 if s >= 30 else s)
    runpy.run_path(sys.argv[1], run_name="__main__")
''')

SEED_DISPATCH = '''
# encoding: utf8
import os
import logging
from functools import partial
from multiprocessing import current_process

from aliyun.log import LogClient
from sluice.consumer import ConsumerProcessorAdaptor, ConsumerWorker, CursorPosition, LogHubConfig

logging.basicConfig(level=logging.INFO)
logger = logging.getLogger(__name__)


def get_option():
    ##########################
    # basic options
    ##########################

    accessKeyId = os.environ.get('SLS_AK_ID', '')
    accessKey = os.environ.get('SLS_AK_KEY', '')
    endpoint = os.environ.get('SLS_ENDPOINT', '')
    project = os.environ.get('SLS_PROJECT', '')
    logstore = os.environ.get('SLS_LOGSTORE', '')
    to_endpoint = os.environ.get('SLS_ENDPOINT_TO', endpoint)
    to_project = os.environ.get('SLS_PROJECT_TO', project)
    to_logstore1 = os.environ.get('SLS_LOGSTORE_TO1', '')
    to_logstore2 = os.environ.get('SLS_LOGSTORE_TO2', '')
    to_logstore3 = os.environ.get('SLS_LOGSTORE_TO3', '')
    consumer_group = os.environ.get('SLS_CG', '')

    # the starting point: used the first time only; later runs continue from the saved checkpoint
    cursor_start_time = "2018-12-26 0:0:0"

    # do not change the consumer name, especially when running in parallel
    consumer_name = "{0}-{1}".format(consumer_group, current_process().pid)

    option = LogHubConfig(endpoint, accessKeyId, accessKey, project, logstore, consumer_group, consumer_name,
                          cursor_position=CursorPosition.SPECIAL_TIMER_CURSOR, cursor_start_time=cursor_start_time)

    # bind put_log_raw which is faster
    to_client = LogClient(to_endpoint, accessKeyId, accessKey)
    put_method1 = partial(to_client.put_log_raw, project=to_project, logstore=to_logstore1)
    put_method2 = partial(to_client.put_log_raw, project=to_project, logstore=to_logstore2)
    put_method3 = partial(to_client.put_log_raw, project=to_project, logstore=to_logstore3)

    return option, {u'ngnix': put_method1, u'sql_audit': put_method2, u'click': put_method3}


if __name__ == '__main__':
    option, put_methods = get_option()  # the article calls it get_copy_option(), a typo in the article

    def copy_data(shard_id, log_groups):
        for log_group in log_groups.LogGroups:
            # update topic
            if log_group.Topic in put_methods:
                put_methods[log_group.Topic](log_group=log_group)

    logger.info("*** start to consume data...")
    worker = ConsumerWorker(ConsumerProcessorAdaptor, option, args=(copy_data, ))
    worker.start(join=True)
'''


def test_seed_002_consumer_group_sample(hub: HubProcess, sclient: Client, sproject: str, tmp_path: Path) -> None:
    """Seed 002 with its consumer imports switched to sluice: two ConsumerWorkers consume all 20 logs, the
    program's own assertions pass, and the group's checkpoints sit at each shard's end."""
    program = tmp_path / "sample_consumer_group.py"
    program.write_text(SEED_002)
    env = {**os.environ, "ALIYUN_LOG_SAMPLE_ENDPOINT": hub.endpoint, "ALIBABA_CLOUD_ACCESS_KEY_ID": hub.access_key_id,
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": hub.access_key_secret, "ALIYUN_LOG_SAMPLE_PROJECT": sproject,
           "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", SLEEP_SHIM, str(program)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=90)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    out = proc.stdout
    for line in ("successfully create logstore", "*** start to consume data...", "successfully list consumergroup",
                 "successfully get checkpoint fixed", "*** stopping workers", "*** get content:"):
        assert line in out
    results = [eval(line) for line in out.splitlines() if line.startswith("{'topic'")]  # noqa: S307 - our own output
    users = sorted(log["user"] for r in results for log in r["logs"])
    assert users == sorted(f"magic_user_{i}" for i in range(20)), "each log handled exactly once"
    assert all(r["topic"] == "python-ide-test" for r in results)
    assert elapsed < 40, f"the sample took {elapsed:.1f}s"

    logstore, group = "ali-test-logstore", "consumer-group-1"
    cps = {e["shard"]: e["checkpoint"] for e in sclient.get_checkpoints(sproject, logstore, group)}
    assert sorted(cps) == [0, 1, 2, 3]
    for shard, cp in cps.items():
        end = sclient.get_cursor(sproject, logstore, shard, "end")
        if decode_cursor(end) > 0:
            assert cp == end, f"shard {shard}: checkpoint {cp!r} should be the end cursor {end!r}"


def test_dispatch_seed_routes_by_topic(hub: HubProcess, sclient: Client, sproject: str, tmp_path: Path) -> None:
    """The dispatch seed (003/004) with its consumer imports switched: ConsumerProcessorAdaptor + the SDK's
    ``put_log_raw(log_group=<lazy group>)`` route 1000 logs by topic into three logstores, exactly once each,
    forwarding every group's bytes unchanged."""
    from aliyun.log import LogClient, LogItem, PutLogsRequest

    src = _name("src")
    targets = {"ngnix": _name("to1"), "sql_audit": _name("to2"), "click": _name("to3")}
    sclient.create_logstore(sproject, src, shard_count=2)
    for ls in targets.values():
        sclient.create_logstore(sproject, ls, shard_count=2)

    sdk = LogClient(hub.endpoint, hub.access_key_id, hub.access_key_secret)
    topics = ["ngnix", "sql_audit", "click"]
    expected: dict[str, set[str]] = {t: set() for t in topics}
    n = 0
    j = 0
    while n < 1000:  # groups of 1..13 logs, topics in turn, plus some groups nobody routes
        topic = topics[j % 3]
        size = min(1 + j % 13, 1000 - n)
        items = []
        for i in range(n, n + size):
            item = LogItem(timestamp=int(time.time()))
            item.set_contents([("id", str(i)), ("msg", f"日志 {i} ✓"), ("empty", "")])
            items.append(item)
            expected[topic].add(str(i))
        sdk.put_logs(PutLogsRequest(sproject, src, topic, f"10.0.0.{j % 7}", items))
        n += size
        if j % 10 == 0:
            other = LogItem(timestamp=int(time.time()))
            other.set_contents([("id", f"other-{j}")])
            sdk.put_logs(PutLogsRequest(sproject, src, "other", "", [other]))
        j += 1
    src_groups = _pull_groups(sclient, sproject, src)

    program = tmp_path / "dispatch_data.py"
    program.write_text(SEED_DISPATCH)
    env = {**os.environ, "SLS_ENDPOINT": hub.endpoint, "SLS_AK_ID": hub.access_key_id,
           "SLS_AK_KEY": hub.access_key_secret, "SLS_PROJECT": sproject, "SLS_LOGSTORE": src,
           "SLS_LOGSTORE_TO1": targets["ngnix"], "SLS_LOGSTORE_TO2": targets["sql_audit"],
           "SLS_LOGSTORE_TO3": targets["click"], "SLS_CG": "dispatch_data", "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "dispatch.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, str(program)], env=env, cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT)

    def routed() -> dict[str, list[bytes]]:
        return {t: _pull_groups(sclient, sproject, ls) for t, ls in targets.items()}

    def count(groups: list[bytes]) -> int:
        return sum(len(parse_group(g).Logs) for g in groups)

    try:
        _wait_for(lambda: proc.poll() is not None or sum(count(g) for g in routed().values()) >= 1000, 45,
                  "1000 routed logs", interval=0.3)
        assert proc.poll() is None, f"the dispatch program exited:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.5)  # anything extra (a duplicate) would show up now
    finally:
        proc.terminate()
        proc.wait(15)

    got = routed()
    for topic, groups in got.items():
        ids = [c.Value for g in groups for lg in parse_group(g, raw=False).Logs for c in lg.Contents if c.Key == "id"]
        assert Counter(ids) == Counter(expected[topic]), f"{topic}: routed logs differ"
        assert all(parse_group(g, raw=False).Topic == topic for g in groups)
        # put_log_raw forwarded the lazy groups' received bytes: identical to the source's groups
        assert Counter(groups) == Counter(g for g in src_groups if parse_group(g, raw=False).Topic == topic)
    assert sum(count(g) for g in got.values()) == 1000


# ---------------------------------------------------------------------------------------------- processes
def test_sigkill_one_consumer_loses_nothing(hub: HubProcess, sclient: Client, sproject: str, tmp_path: Path) -> None:
    """Three consumer processes share a 4-shard logstore while a producer writes; one is SIGKILLed mid-stream.

    No log is lost (the outputs' union is every id). Duplicates are allowed only in the killed consumer's
    uncommitted window: checkpoints are written every ``checkpoint_interval`` (0.5 s), so a batch the victim
    handled more than ``checkpoint_interval`` + 1.5 s (a checkpoint round trip plus scheduling slack on a
    loaded 2-core machine) before the kill was committed and must not be read again. So every duplicate is an
    id handled once by a survivor and once by the victim in a batch it handled within that window before the
    kill, and the survivors never duplicate among themselves.
    """
    interval = 0.5
    window = interval + 1.5
    ls = _name("kill")
    sclient.create_logstore(sproject, ls, shard_count=4)
    group = "cg"
    workers = [WorkerProc(hub, sproject, ls, group, f"w{i}", tmp_path, checkpoint_interval=interval)
               for i in range(3)]
    n = 8000
    producer = Producer(hub, sproject, ls, n, per_group=20, shards=4, pause=0.02)
    try:
        _wait_for(lambda: all(w.has_event("started") for w in workers), 30, "the workers to start")
        producer.start()
        _wait_for(lambda: all(w.batches() for w in workers), 20,
                  "every worker to hold a shard and handle data")
        time.sleep(window + 1.0)  # so the victim has a committed past as well as an uncommitted window
        now = time.time()
        active = [w for w in workers if w.batches()[-1]["t"] > now - 1.0]
        assert active, "nobody is consuming"
        victim = min(active, key=lambda w: w.batches()[0]["t"])  # a busy one with the longest history
        assert producer.written < n, "the producer finished before the kill; the test needs a mid-stream kill"
        t_kill = time.time()
        victim.kill()
        producer.finish()
        survivors = [w for w in workers if w is not victim]
        _wait_for(lambda: len(set().union(*(w.ids() for w in workers))) >= n, 30, "every id to be consumed",
                  interval=0.2)
        time.sleep(0.5)
        for w in survivors:
            assert w.terminate() == 0, w.log_tail()
            assert w.has_event("stopped")
    finally:
        producer.join(1)
        for w in workers:
            w.close()

    all_ids = [i for w in workers for i in w.ids()]
    assert set(all_ids) == {str(i) for i in range(n)}, "a log was lost"
    survivor_ids = Counter(i for w in survivors for i in w.ids())
    assert max(survivor_ids.values()) == 1, "survivors must not duplicate among themselves"
    victim_ids = Counter(victim.ids())
    assert max(victim_ids.values()) == 1
    late = {i for b in victim.batches() if b["t"] >= t_kill - window for i in b["ids"]}
    dups = {i for i, c in Counter(all_ids).items() if c > 1}
    assert dups <= late, (f"{len(dups - late)} duplicates were committed before the kill "
                          f"(e.g. {sorted(dups - late)[:5]})")
    assert len(dups) <= len(late) < len(victim_ids), "the victim's earlier batches were committed"
    print(f"victim {victim.name}: {len(victim_ids)} handled, {len(late)} in its last {window}s, {len(dups)} duplicated")


def test_rebalance_on_join_and_graceful_leave_without_duplicates(hub: HubProcess, sclient: Client, sproject: str,
                                                                 tmp_path: Path) -> None:
    """A consumer runs alone; a second joins (shards rebalance); the first stops gracefully (SIGTERM ->
    ``stop()``), all while a producer writes. Every id is handled exactly once."""
    ls = _name("rebal")
    sclient.create_logstore(sproject, ls, shard_count=4)
    n = 4000
    producer = Producer(hub, sproject, ls, n, per_group=10, shards=4, pause=0.02)
    a = WorkerProc(hub, sproject, ls, "cg", "a", tmp_path)
    workers = [a]
    try:
        _wait_for(lambda: a.has_event("started"), 30, "a to start")
        producer.start()
        _wait_for(lambda: len({b["shard"] for b in a.batches()}) == 4, 20, "a to consume all four shards")
        b = WorkerProc(hub, sproject, ls, "cg", "b", tmp_path)
        workers.append(b)
        _wait_for(lambda: bool(b.batches()), 20, "b to take over shards after joining")
        joined_written = producer.written
        time.sleep(1.0)
        assert a.terminate() == 0, a.log_tail()
        assert a.has_event("stopped")
        left_at = time.time()
        assert producer.written < n, "the producer finished before the leave"
        producer.finish()
        _wait_for(lambda: len(set(a.ids()) | set(b.ids())) >= n, 30, "every id to be consumed", interval=0.2)
        time.sleep(0.5)
        assert b.terminate() == 0, b.log_tail()
    finally:
        producer.join(1)
        for w in workers:
            w.close()

    counts = Counter(a.ids() + b.ids())
    assert set(counts) == {str(i) for i in range(n)}
    dups = sorted((i for i, c in counts.items() if c > 1), key=int)
    assert not dups, f"{len(dups)} duplicates on a planned rebalance, e.g. {dups[:10]}"
    assert {x["shard"] for x in b.batches() if x["t"] > left_at} == {0, 1, 2, 3}, "b took every shard over"
    assert joined_written < n


# ---------------------------------------------------------------------------------------------- in-process
def test_start_positions_and_resume_from_checkpoint(aclient_args: tuple[str, str, str], sproject: str) -> None:
    """begin / end / a time (seed-style string, ISO 8601, unix seconds) choose where a group with no
    checkpoint starts; once a group has a checkpoint, a restarted consumer resumes from it whatever its
    start position says."""

    async def main() -> None:
        async with AsyncClient(*aclient_args, timeout=10) as client:
            ls = _name("start")
            await client.create_logstore(sproject, ls, shard_count=2)
            a_ids = [f"a{i}" for i in range(20)]
            b_ids = [f"b{i}" for i in range(20)]
            c_ids = [f"c{i}" for i in range(20)]
            d_ids = [f"d{i}" for i in range(20)]
            await _put_ids(client, sproject, ls, a_ids, shards=2)
            t = int(time.time()) + 1  # every A group was received before t, every B group at or after it
            await asyncio.sleep(t + 0.05 - time.time())
            await _put_ids(client, sproject, ls, b_ids, shards=2)
            g = time.gmtime(t)
            seed_style = f"{g.tm_year}-{g.tm_mon}-{g.tm_mday} {g.tm_hour}:{g.tm_min}:{g.tm_sec}"
            iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", g)
            starts: dict[str, Any] = {"begin": "begin", "end": "end", "seed": seed_style, "iso": iso, "unix": t,
                                      "digits": str(t), "old": "2018-12-26 0:0:0"}
            expected = {"begin": a_ids + b_ids + c_ids, "end": c_ids, "seed": b_ids + c_ids, "iso": b_ids + c_ids,
                        "unix": b_ids + c_ids, "digits": b_ids + c_ids, "old": a_ids + b_ids + c_ids}
            running: dict[str, tuple[AsyncConsumer, Sink]] = {}
            try:
                for key, start in starts.items():
                    running[key] = _recording_consumer(client, _config(sproject, ls, f"g-{key}", start=start))
                    await running[key][0].start()
                await _until(lambda: all(s.initialized == {0, 1} for _, s in running.values()), 20,
                             "every consumer to hold both shards")
                await _put_ids(client, sproject, ls, c_ids, shards=2)
                await _until(lambda: all(set(s.ids) >= set(expected[k]) for k, (_, s) in running.items()), 20,
                             "every group to consume what its start position covers")
                await asyncio.sleep(0.3)
                for key, (_, sink) in running.items():
                    assert sorted(sink.ids) == sorted(expected[key]), f"start {starts[key]!r}"
                # restart two groups after more data arrived: both resume from their checkpoints
                for key in ("begin", "end"):
                    await running.pop(key)[0].stop()
                for key in ("begin", "end"):
                    cps = await _checkpoints(client, sproject, ls, f"g-{key}")
                    assert all(cps[s] for s in (0, 1)), f"{key}: stop() wrote both checkpoints: {cps}"
                await _put_ids(client, sproject, ls, d_ids, shards=2)
                for key in ("begin", "end"):
                    running[key + "2"] = _recording_consumer(client, _config(sproject, ls, f"g-{key}", start=key))
                    await running[key + "2"][0].start()
                await _until(lambda: all(set(running[k][1].ids) >= set(d_ids) for k in ("begin2", "end2")), 20,
                             "the restarted consumers to read the new data")
                await asyncio.sleep(0.3)
                for key in ("begin2", "end2"):
                    assert sorted(running[key][1].ids) == sorted(d_ids), key
            finally:
                await asyncio.gather(*(c.stop() for c, _ in running.values()))

    _run(main())


def test_native_dispatch_packs_groups_and_keeps_every_log(aclient_args: tuple[str, str, str],
                                                          sproject: str) -> None:
    """The native dispatcher's way (docs/consumer.md): route a batch's groups by topic and hand each target its
    groups with ``put_log_groups``. Groups with the same header share PutLogs requests; every log arrives in
    its target once, in order, under its own topic, source and tags; groups that differ stay apart."""

    async def main() -> None:
        async with AsyncClient(*aclient_args, timeout=10) as client:
            src = _name("psrc")
            await client.create_logstore(sproject, src, shard_count=1)
            targets = {"web": _name("pweb"), "db": _name("pdb")}
            for ls in targets.values():
                await client.create_logstore(sproject, ls, shard_count=1)
            sent: list[tuple[str, str, str]] = []  # (topic, tag, id) in write order
            for j in range(60):
                topic = ("web", "db")[j % 3 == 2]
                tag = f"host{j // 20}"  # the header changes every 20 groups
                ids = [f"{j}-{k}" for k in range(7)]
                await client.put_logs(sproject, src, [{"id": i} for i in ids], topic=topic, source="10.0.0.9",
                                      tags={"host": tag})
                sent += [(topic, tag, i) for i in ids]
            requests: list[int] = []
            handled = [0]

            async def handle(batch: Batch) -> None:
                by_target: dict[str, list[Any]] = {}
                for group in batch:
                    by_target.setdefault(targets[group.topic], []).append(group)
                requests.extend(await asyncio.gather(*(client.put_log_groups(sproject, ls, groups)
                                                       for ls, groups in by_target.items())))
                handled[0] += batch.count

            consumer = AsyncConsumer(client, _config(sproject, src, "g-pack"), handler=handle)
            await consumer.start()
            try:
                await _until(lambda: handled[0] >= 60, 20, "the consumer to dispatch every group")
            finally:
                await consumer.stop()
            assert sum(requests) < 60 / 2, f"{sum(requests)} PutLogs for 60 groups: nothing was packed"
            for topic, ls in targets.items():
                got = []
                cursor = await client.get_cursor(sproject, ls, 0, "begin")
                while True:
                    res = await client.pull_logs(sproject, ls, 0, cursor)
                    if res.count == 0:
                        break
                    got += [(d["__topic__"], d["__tag__:host"], d["__source__"], d["id"]) for d in res.logs()]
                    cursor = res.next_cursor
                want = [(t, tag, "10.0.0.9", i) for t, tag, i in sent if t == topic]
                assert got == want, topic

    _run(main())


def test_checkpoint_marked_later_from_another_thread_is_written(aclient_args: tuple[str, str, str],
                                                                 sproject: str) -> None:
    """A checkpoint marked outside ``process`` (here from a timer thread, as a handler that acknowledges
    asynchronously would) is written within ``checkpoint_interval``: the checkpoint routine sleeps while
    nothing is marked and must be woken from that thread. Nothing else would write it in time: the caught-up
    write happens when ``process`` returns (before the mark) and again only when the next long-poll (20 s)
    comes back empty."""

    class LateMarker(Processor):
        async def process(self, batch: Batch, ctx: ShardContext) -> str | None:
            cursor = batch.next_cursor
            threading.Timer(0.3, ctx.checkpoint, args=(cursor,)).start()
            return None

    async def main() -> None:
        async with AsyncClient(*aclient_args, timeout=10) as client:
            ls = _name("late")
            await client.create_logstore(sproject, ls, shard_count=1)
            await _put_ids(client, sproject, ls, [f"x{i}" for i in range(10)])
            end = await client.get_cursor(sproject, ls, 0, "end")
            consumer = AsyncConsumer(client, _config(sproject, ls, "g-late", checkpoint_interval=0.5, long_poll=20),
                                     processor=LateMarker)
            await consumer.start()
            try:
                await _until(lambda: 0 in consumer.shards, 10, "the consumer to hold the shard")
                deadline = time.monotonic() + 4  # mark at +0.3 s, written by +0.8 s; slack for a slow machine
                while (await _checkpoints(client, sproject, ls, "g-late")).get(0) != end:
                    assert time.monotonic() < deadline, "the late checkpoint was not written while running"
                    await asyncio.sleep(0.1)
            finally:
                await consumer.stop()

    _run(main())


def test_bounded_consumption_stops_at_end_time(aclient_args: tuple[str, str, str], sproject: str) -> None:
    """``ConsumerConfig(end=<time>)``: run() returns by itself once every shard reached the end position,
    having consumed exactly the logs received before it; the checkpoints sit at the end position."""

    async def main() -> None:
        async with AsyncClient(*aclient_args, timeout=10) as client:
            ls = _name("bounded")
            await client.create_logstore(sproject, ls, shard_count=2)
            before = [f"x{i}" for i in range(30)]
            after = [f"y{i}" for i in range(30)]
            await _put_ids(client, sproject, ls, before, shards=2, per_group=3)
            t = int(time.time()) + 1
            await asyncio.sleep(t + 0.05 - time.time())
            await _put_ids(client, sproject, ls, after, shards=2, per_group=3)
            consumer, sink = _recording_consumer(client, _config(sproject, ls, "batch", end=t))
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(consumer.run(), 20)
            finally:
                await consumer.stop()
            assert time.monotonic() - t0 < 15
            assert sorted(sink.ids) == sorted(before)
            cps = await _checkpoints(client, sproject, ls, "batch")
            for shard in (0, 1):
                assert cps[shard] == await client.get_cursor(sproject, ls, shard, t)

    _run(main())


def test_bounded_consumption_with_end_time_in_the_future(aclient_args: tuple[str, str, str], sproject: str) -> None:
    """``end`` a little in the future: logs written before it (after the consumer started) are consumed, then
    the consumer stops by itself; logs written after it are not."""

    async def main() -> None:
        async with AsyncClient(*aclient_args, timeout=10) as client:
            ls = _name("future")
            await client.create_logstore(sproject, ls, shard_count=1)
            end = int(time.time()) + 2
            consumer, sink = _recording_consumer(client, _config(sproject, ls, "batch", end=end))
            task = asyncio.ensure_future(consumer.run())
            try:
                await _until(lambda: sink.initialized == {0} or task.done(), 10, "the shard")
                await client.put_logs(sproject, ls, [{"id": "before"}])
                await _until(lambda: bool(sink.ids) or task.done(), 5, "the log written before the end")
                assert sink.ids == ["before"], f"stopped before the end time, having read {sink.ids}"
                await asyncio.sleep(end + 0.1 - time.time())
                await client.put_logs(sproject, ls, [{"id": "after"}])
                await asyncio.wait_for(asyncio.shield(task), 10)
                assert sink.ids == ["before"]
            finally:
                await consumer.stop()
                await task

    _run(main())


def test_failing_handler_is_retried_and_nothing_skipped(aclient_args: tuple[str, str, str], sproject: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A handler that raises gets the same batch again (with back-off); meanwhile the checkpoint stays at
    that batch's start; later data waits behind it; nothing is skipped or handled twice once it succeeds."""
    caplog.set_level(logging.ERROR, logger="sluice.consumer")

    async def main() -> None:
        async with AsyncClient(*aclient_args, timeout=10) as client:
            ls = _name("retry")
            await client.create_logstore(sproject, ls, shard_count=1)
            calls: list[tuple[str, list[str], str]] = []  # (batch cursor, ids, checkpoint while in the handler)
            handled: list[str] = []
            failures = 2

            async def handler(batch: Batch) -> None:
                ids = [d["id"] for d in batch.logs()]
                if "poison0" in ids:
                    cp = (await _checkpoints(client, sproject, ls, "cg"))[0]
                    calls.append((batch.cursor, ids, cp))
                    if len(calls) <= failures:
                        if len(calls) == 1:
                            await _put_ids(client, sproject, ls, [f"after{i}" for i in range(5)])
                        raise RuntimeError("handler bug")
                handled.extend(ids)

            consumer = AsyncConsumer(client, _config(sproject, ls, "cg"), handler=handler)
            await consumer.start()
            try:
                pre = [f"pre{i}" for i in range(10)]
                await _put_ids(client, sproject, ls, pre)
                await _until(lambda: len(handled) == 10, 20, "the first logs")
                end1 = await client.get_cursor(sproject, ls, 0, "end")
                await _until(lambda: consumer.shards.get(0) is not None and consumer.shards[0].ctx.committed == end1,
                             10, "the checkpoint after the first logs")
                poison = [f"poison{i}" for i in range(5)]
                await _put_ids(client, sproject, ls, poison)
                await _until(lambda: len(handled) == 20, 20, "the poison batch to succeed and the rest to follow")
                end2 = await client.get_cursor(sproject, ls, 0, "end")
                await _until(lambda: consumer.shards[0].ctx.committed == end2, 10, "the final checkpoint")
            finally:
                await consumer.stop()
            assert len(calls) == failures + 1, calls
            assert len({c[0] for c in calls}) == 1, "every retry got the same batch"
            assert all(c[1] == calls[0][1] for c in calls)
            for cursor, _, cp in calls:
                assert cp == end1 == cursor, "the checkpoint must not move past a failing batch"
            assert handled == pre + poison + [f"after{i}" for i in range(5)], "in order, nothing skipped"
            assert (await _checkpoints(client, sproject, ls, "cg"))[0] == end2

    _run(main())
    assert sum("handler failed" in r.getMessage() for r in caplog.records) == 2


def test_stop_returns_even_if_a_handler_hangs(aclient_args: tuple[str, str, str], sproject: str) -> None:
    """A handler stuck on a dead downstream: stop() still returns (after ``shutdown_grace``, here 3 s), and the
    stuck batch is not checkpointed (it is read again next time)."""

    async def main() -> None:
        async with AsyncClient(*aclient_args, timeout=10) as client:
            ls = _name("stuck")
            await client.create_logstore(sproject, ls, shard_count=1)
            await client.put_logs(sproject, ls, [{"id": "1"}])
            entered = asyncio.Event()

            async def handler(batch: Batch) -> None:
                entered.set()
                await asyncio.sleep(3600)

            consumer = AsyncConsumer(client, dataclasses.replace(_config(sproject, ls, "cg"), shutdown_grace=3.0),
                                     handler=handler)
            await consumer.start()
            await asyncio.wait_for(entered.wait(), 10)
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(consumer.stop(), 10)
            except asyncio.TimeoutError:
                raise AssertionError(f"stop() had not returned after {time.monotonic() - t0:.1f}s") from None
            cps = await _checkpoints(client, sproject, ls, "cg")
            assert cps[0] in ("", await client.get_cursor(sproject, ls, 0, "begin"))

    _run(main())


def test_put_to_handler_latency_long_poll(aclient_args: tuple[str, str, str], sproject: str) -> None:
    """Long-poll: a log reaches the handler well within the SDK's 2 s poll interval (figures: bench/)."""

    async def main() -> None:
        async with AsyncClient(*aclient_args, timeout=10) as client:
            ls = _name("latency")
            await client.create_logstore(sproject, ls, shard_count=1)
            received: dict[str, float] = {}

            async def handler(batch: Batch) -> None:
                now = time.monotonic()
                for d in batch.logs():
                    received[d["id"]] = now

            consumer = AsyncConsumer(client, _config(sproject, ls, "cg"), handler=handler)
            await consumer.start()
            latencies = []
            try:
                await _until(lambda: 0 in consumer.shards, 10, "the shard")
                await asyncio.sleep(0.3)  # the consumer now sits in a long-poll on an empty shard
                for k in range(6):
                    t0 = time.monotonic()
                    await client.put_logs(sproject, ls, [{"id": f"l{k}"}])
                    await _until(lambda: f"l{k}" in received, 5, f"log {k}", interval=0.002)
                    latencies.append(received[f"l{k}"] - t0)
                    await asyncio.sleep(0.1)
            finally:
                await consumer.stop()
            assert max(latencies) < 1.0, latencies
            assert sorted(latencies)[len(latencies) // 2] < 0.5, latencies

    _run(main())


def test_one_loop_follows_50_logstores_on_two_hubs(hub: HubProcess, tmp_path: Path) -> None:
    """One event loop runs 50 consumers (25 logstores x 2 shards on each of two hubs, on two loopback
    addresses) with one shared byte budget: all data (written before and while they run) is consumed
    exactly once, and stop() of all of them returns promptly."""
    with HubProcess(tmp_path / "hub2") as hub2:
        assert hub2.host != hub.host

        async def main() -> None:
            clients = [AsyncClient(h.url, h.access_key_id, h.access_key_secret, timeout=10) for h in (hub, hub2)]
            budget = ByteBudget(8 << 20)
            consumers: list[AsyncConsumer] = []
            seen: list[str] = []
            expected: list[str] = []
            try:
                project = unique("multi")
                for c in clients:
                    await c.create_project(project)
                targets = [(c, f"ls{k}") for c in clients for k in range(25)]
                await asyncio.gather(*(c.create_logstore(project, ls, shard_count=2) for c, ls in targets))

                async def fill(c: AsyncClient, ls: str, tag: str) -> None:
                    ids = [f"{c.endpoint}/{ls}/{tag}{i}" for i in range(8)]
                    expected.extend(ids)
                    await _put_ids(c, project, ls, ids, shards=2, per_group=2)

                await asyncio.gather(*(fill(c, ls, "pre") for c, ls in targets))

                async def handler(batch: Batch) -> None:
                    seen.extend(d["id"] for d in batch.logs())

                for c, ls in targets:
                    consumers.append(AsyncConsumer(c, _config(project, ls, "monitor", consumer="one"),
                                                   handler=handler, budget=budget))
                await asyncio.gather(*(x.start() for x in consumers))
                await _until(lambda: len(seen) >= len(expected), 30, "the data written before start")
                await asyncio.gather(*(fill(c, ls, "live") for c, ls in targets))
                await _until(lambda: len(seen) >= len(expected), 30, "the data written while running")
                await asyncio.sleep(0.3)
                assert len(expected) == 50 * 16
                assert Counter(seen) == Counter(expected)
                assert budget.used == 0
                t0 = time.monotonic()
                await asyncio.wait_for(asyncio.gather(*(x.stop() for x in consumers)), 10)
                stop_time = time.monotonic() - t0
                consumers.clear()
                assert stop_time < 3.0, f"stopping 50 consumers took {stop_time:.2f}s"
                for c, ls in targets[:3] + targets[-3:]:
                    cps = await _checkpoints(c, project, ls, "monitor")
                    for s in (0, 1):
                        assert cps[s] == await c.get_cursor(project, ls, s, "end"), (c.endpoint, ls, s)
            finally:
                await asyncio.gather(*(x.stop() for x in consumers), return_exceptions=True)
                for c in clients:
                    await c.aclose()

        _run(main())


# ---------------------------------------------------------------------------------------------- bad checkpoints
def _edit_db(hub: HubProcess, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Change the stopped hub's database behind its back (what a damaged checkpoint or retention looks like)."""
    assert hub.proc is None, "stop the hub first"
    conn = sqlite3.connect(hub.data_dir / "hub.db")
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A hub of its own, prepared with
    * logstore ``bad`` (2 shards, 10 groups each): group ``g`` has an invalid checkpoint on each shard
      (shard 0: beyond the end; shard 1: not a cursor at all);
    * logstore ``old`` (1 shard, ttl 1 day, 10 groups): groups ``g1``/``g2`` checkpointed at group 3, then the
      first 6 groups are aged 3 days so retention deletes them (the checkpoints expire).
    """
    hub = HubProcess(tmp_path_factory.mktemp("damaged") / "data", extra_args=["--ttl-interval", "0.2"])
    hub.start()
    try:
        with Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=10) as c:
            c.create_project("damaged")
            c.create_logstore("damaged", "bad", shard_count=2, ttl=7)
            c.create_logstore("damaged", "old", shard_count=1, ttl=1)
            for j in range(20):
                c.put_logs("damaged", "bad", [{"id": f"bad{j}-{i}"} for i in range(3)], hash_key=_hash_key(j % 2, 2))
            for j in range(10):
                c.put_logs("damaged", "old", [{"id": f"old{j}-{i}"} for i in range(3)])
            c.create_consumer_group("damaged", "bad", "cg", 3)
            for g in ("g1", "g2"):
                c.create_consumer_group("damaged", "old", g, 3)
                c.update_checkpoint("damaged", "old", g, 0, encode_cursor(3), force=True)
            for shard in (0, 1):
                c.update_checkpoint("damaged", "bad", "cg", shard, encode_cursor(1), force=True)
        hub.stop()
        _edit_db(hub, "UPDATE checkpoints SET cursor=?, seq=? WHERE logstore='bad' AND shard=0",
                 (encode_cursor(10**12), 10**12))
        _edit_db(hub, "UPDATE checkpoints SET cursor=? WHERE logstore='bad' AND shard=1", ("not a cursor!",))
        conn = sqlite3.connect(hub.data_dir / "hub.db")
        (uid,) = conn.execute("SELECT uid FROM shards WHERE logstore='old'").fetchone()
        conn.close()
        _edit_db(hub, "UPDATE log SET recv_ms = recv_ms - ? WHERE id >= ? AND id < ?",
                 (3 * 86400 * 1000, uid << 40, (uid << 40) + 6))
        hub.start()
        with Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=10) as c:
            _wait_for(lambda: decode_cursor(c.get_cursor("damaged", "old", 0, "begin")) == 6, 10,
                      "retention to drop the aged groups")
        yield {"hub": hub, "old_kept": [f"old{j}-{i}" for j in range(6, 10) for i in range(3)],
               "bad_all": [f"bad{j}-{i}" for j in range(20) for i in range(3)]}
    finally:
        crashed = hub.proc is not None and hub.proc.poll() is not None
        hub.close()
        assert not crashed, "the hub died"


def _consume_damaged(hub: HubProcess, logstore: str, group: str, start: str, expected: list[str],
                     extra: list[str]) -> tuple[list[str], list[logging.LogRecord]]:
    """Run a consumer (start position ``start``, which a damaged checkpoint must not fall back to) until it
    has ``expected`` plus ``extra`` (written once it runs); return what it read and what it logged."""
    records = _Records()
    log = logging.getLogger("sluice.consumer")
    log.addHandler(records)
    old_level = log.level
    log.setLevel(logging.INFO)
    got: list[str] = []

    async def main() -> None:
        async with AsyncClient(hub.url, hub.access_key_id, hub.access_key_secret, timeout=10) as client:
            # heartbeat 0.5 s, timeout 1 s: the restarted hub's coordinator holds back shards nobody reported
            # for one group timeout (its recovery window), so keep that short
            consumer, sink = _recording_consumer(client, _config("damaged", logstore, group, start=start,
                                                                 consumer=group + "-1", heartbeat_interval=0.5,
                                                                 timeout=1))
            await consumer.start()
            try:
                shards = {s["shardID"] for s in await client.list_shards("damaged", logstore)}
                await _until(lambda: sink.initialized == shards, 10, "the shards")
                await _put_ids(client, "damaged", logstore, extra, shards=len(shards), per_group=1)
                want = set(expected) | set(extra)
                await _until(lambda: set(sink.ids) >= want, 15, "the kept data")
                await asyncio.sleep(0.3)
            finally:
                await consumer.stop()
            got.extend(sink.ids)

    try:
        _run(main())
    finally:
        log.removeHandler(records)
        log.setLevel(old_level)
    return got, records.records


def test_invalid_checkpoint_resumes_from_oldest_data(damaged: dict[str, Any]) -> None:
    """A checkpoint PullLogs refuses (InvalidCursor: beyond the end, or not a cursor) makes the consumer
    resume from the oldest data kept, with a warning, never from the end (the SDK jumps to the end)."""
    extra = ["bad-new-0", "bad-new-1"]
    got, records = _consume_damaged(damaged["hub"], "bad", "cg", "end", damaged["bad_all"], extra)
    assert Counter(got) == Counter(damaged["bad_all"] + extra)
    warnings = [r for r in records if r.levelno == logging.WARNING and "no longer valid" in r.getMessage()]
    assert {r.args[0] for r in warnings if isinstance(r.args, tuple)} == {0, 1}, [r.getMessage() for r in records]


def test_expired_checkpoint_resumes_from_oldest_kept(damaged: dict[str, Any]) -> None:
    """A checkpoint whose data retention deleted resumes from the oldest data kept, not from the end (nor
    from the start position, here "end")."""
    extra = ["old-new-0"]
    got, _ = _consume_damaged(damaged["hub"], "old", "g1", "end", damaged["old_kept"], extra)
    assert Counter(got) == Counter(damaged["old_kept"] + extra)


def test_expired_checkpoint_is_reported(damaged: dict[str, Any]) -> None:
    """A checkpoint older than retention resumes from the oldest kept data and says so (a warning)."""
    got, records = _consume_damaged(damaged["hub"], "old", "g2", "end", damaged["old_kept"], [])
    # an earlier test of this module may have appended "old-new-*" logs to the same logstore
    assert Counter(g for g in got if not g.startswith("old-new")) == Counter(damaged["old_kept"])
    assert any(r.levelno >= logging.WARNING for r in records), "no warning about the expired checkpoint"
