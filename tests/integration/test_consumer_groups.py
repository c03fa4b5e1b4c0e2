"""Issue #4: consumer groups, driven by the official SDK's ``ConsumerWorker`` (aliyun-log-python-sdk, pinned)
against a real hub process. The SDK is used unchanged; the tests only configure it.

Timing: heartbeat_interval 1 s, data_fetch_interval 0.2 s and a group timeout of 4 s. The SDK derives the
timeout it sends as 2 x heartbeat_interval (= 2 s); the tests set ``LogHubConfig.consumer_group_time_out``, the
attribute the SDK sends on create/update, to 4 s, so one late heartbeat on a loaded 2-core machine does not
expire a live consumer and make the tests flaky. Every wait is a polling loop with a deadline.

Consumers record what they do through ``RecordingProcessor`` (``tests/integration/_sdk_worker.py``, also the
script run as a separate process): the id of every processed log with the shard and a timestamp, and each
shard consumer's ``initialize`` and ``shutdown`` (after its final checkpoint flush). An ownership interval of a
shard is [initialize, shutdown] of one consumer; the hub's handoff rule says these never overlap across
consumers.
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import pytest
from aliyun.log import LogClient, LogException, LogItem, PutLogsRequest
from aliyun.log.consumer import (
    ConsumerProcessorAdaptor,
    ConsumerProcessorBase,
    ConsumerWorker,
    CursorPosition,
    LogHubConfig,
)
from aliyun.log.consumer.exceptions import ClientWorkerException

from sluice.testing import HubProcess
from tests.conftest import unique
from tests.integration._sdk_worker import RecordingProcessor

HB = 1  # heartbeat_interval, seconds
FETCH = 0.2  # data_fetch_interval, seconds
GROUP_TIMEOUT = 4  # consumer liveness timeout sent to the hub, seconds
REPO_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- helpers
def wait_until(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def new_logstore(sdk: LogClient, project: str, shards: int) -> str:
    name = unique("ls").replace("-", "_")
    sdk.create_logstore(project, name, ttl=7, shard_count=shards)
    return name


def put_ids(client: LogClient, project: str, logstore: str, ids: Iterable[int | str], *, topic: str = "t",
            hash_key: str | None = None, extra: Sequence[tuple[str, str]] = ()) -> None:
    """One PutLogs (one LogGroup) holding a log per id, each with content ``id``."""
    now = int(time.time())
    items = []
    for i in ids:
        item = LogItem(timestamp=now)
        item.set_contents([("id", str(i)), *extra])
        items.append(item)
    client.put_logs(PutLogsRequest(project, logstore, topic, "src", items, hashKey=hash_key))


def shard_ids(sdk: LogClient, project: str, logstore: str) -> dict[int, dict[str, Any]]:
    return {s["shardID"]: s for s in sdk.list_shards(project, logstore).get_shards_info()}


def read_shard(sdk: LogClient, project: str, logstore: str, shard: int, cursor: str | None = None,
               limit: int | None = None) -> list[tuple[str, dict[str, str]]]:
    """(topic, contents) of every log of a shard from ``cursor`` (default: begin) to its end."""
    if cursor is None:
        cursor = sdk.get_begin_cursor(project, logstore, shard).get_cursor()
    out: list[tuple[str, dict[str, str]]] = []
    while limit is None or len(out) < limit:
        resp = sdk.pull_logs(project, logstore, shard, cursor, count=1000)
        if resp.get_loggroup_count() == 0:
            break
        for group in resp.get_loggroup_list().LogGroups:
            for log in group.Logs:
                out.append((group.Topic, {c.Key: c.Value for c in log.Contents}))
        cursor = resp.get_next_cursor()
    return out if limit is None else out[:limit]


def read_logstore(sdk: LogClient, project: str, logstore: str) -> list[tuple[str, dict[str, str]]]:
    return [rec for shard in sorted(shard_ids(sdk, project, logstore))
            for rec in read_shard(sdk, project, logstore, shard)]


def end_cursor(sdk: LogClient, project: str, logstore: str, shard: int) -> str:
    return sdk.get_end_cursor(project, logstore, shard).get_cursor()


def checkpoints(sdk: LogClient, project: str, logstore: str, group: str) -> dict[int, dict[str, Any]]:
    return {c["shard"]: c for c in sdk.get_check_point(project, logstore, group).get_consumer_group_check_points()}


class Recorder:
    """Thread-safe record of what consumers did: processed logs and shard-consumer lifecycle events."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logs: list[tuple[str, int, str, float]] = []  # (consumer, shard, id, t)
        self.events: list[tuple[str, str, int, float]] = []  # (ev, consumer, shard, t), ev in init/shutdown

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        with self.lock:
            for r in records:
                if r["ev"] == "log":
                    self.logs.append((r["consumer"], r["shard"], r["id"], r["t"]))
                elif r["ev"] in ("init", "shutdown"):
                    self.events.append((r["ev"], r["consumer"], r["shard"], r["t"]))

    def load(self, path: Path) -> None:
        """Merge the JSON lines a ``_sdk_worker`` process wrote (a torn last line after SIGKILL is ignored)."""
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        self.add(records)

    def snapshot(self) -> tuple[list[tuple[str, int, str, float]], list[tuple[str, str, int, float]]]:
        with self.lock:
            return list(self.logs), list(self.events)

    def id_counts(self) -> collections.Counter[str]:
        with self.lock:
            return collections.Counter(i for _, _, i, _ in self.logs)

    def ids(self) -> set[str]:
        with self.lock:
            return {i for _, _, i, _ in self.logs}

    def owned(self) -> dict[str, set[int]]:
        """Shards each consumer has initialised and not yet shut down."""
        held: dict[str, set[int]] = collections.defaultdict(set)
        for ev, consumer, shard, _ in self.snapshot()[1]:
            if ev == "init":
                held[consumer].add(shard)
            else:
                held[consumer].discard(shard)
        return dict(held)

    def intervals(self, until: float | None = None) -> dict[int, list[tuple[float, float, str]]]:
        """Per shard, the ownership intervals (start, end, consumer); open ones end at ``until`` (default now)."""
        until = time.time() if until is None else until
        opened: dict[tuple[str, int], float] = {}
        out: dict[int, list[tuple[float, float, str]]] = collections.defaultdict(list)
        for ev, consumer, shard, t in sorted(self.snapshot()[1], key=lambda e: e[3]):
            key = (consumer, shard)
            if ev == "init":
                opened.setdefault(key, t)  # the SDK re-runs initialize if an init attempt fails
            elif key in opened:
                out[shard].append((opened.pop(key), t, consumer))
        for (consumer, shard), start in opened.items():
            out[shard].append((start, until, consumer))
        return {s: sorted(v) for s, v in out.items()}


class MemorySink:
    """The ``RecordingProcessor`` sink of an in-process worker."""

    def __init__(self, recorder: Recorder, consumer: str) -> None:
        self.recorder = recorder
        self.consumer = consumer

    def write(self, records: list[dict[str, Any]]) -> None:
        self.recorder.add({"consumer": self.consumer, **r} for r in records)


def assert_no_overlap(intervals: dict[int, list[tuple[float, float, str]]]) -> None:
    """A shard's ownership intervals of different consumers never overlap in time."""
    for shard, spans in intervals.items():
        for (s1, e1, c1), (s2, e2, c2) in zip(spans, spans[1:]):
            assert e1 <= s2, (f"shard {shard} was held by {c1} [{s1:.3f}, {e1:.3f}] and {c2} "
                              f"[{s2:.3f}, {e2:.3f}] at the same time")


def option(hub: HubProcess, project: str, logstore: str, group: str, consumer: str, *,
           in_order: bool = False, **kw: Any) -> LogHubConfig:
    opt = LogHubConfig(hub.endpoint, hub.access_key_id, hub.access_key_secret, project, logstore, group, consumer,
                       cursor_position=kw.pop("cursor_position", CursorPosition.BEGIN_CURSOR),
                       heartbeat_interval=HB, data_fetch_interval=FETCH, in_order=in_order, **kw)
    opt.consumer_group_time_out = GROUP_TIMEOUT
    return opt


def recording_worker(hub: HubProcess, project: str, logstore: str, group: str, consumer: str,
                     recorder: Recorder, *, in_order: bool = False, checkpoint_timeout: float = 3.0,
                     **kw: Any) -> ConsumerWorker:
    """An SDK worker whose processor records into ``recorder`` and checkpoints every ``checkpoint_timeout`` s
    (the SDK default is 3 s; 0 persists after every batch)."""
    return ConsumerWorker(RecordingProcessor, option(hub, project, logstore, group, consumer, in_order=in_order, **kw),
                          args=(MemorySink(recorder, consumer), checkpoint_timeout))


def stop_workers(workers: Iterable[ConsumerWorker], timeout: float = 30.0) -> list[str]:
    """Shut the workers down together; return the names of any still running after ``timeout``."""
    workers = list(workers)
    for w in workers:
        w.shutdown()
    deadline = time.monotonic() + timeout
    for w in workers:
        if w.ident is not None:
            w.join(max(0.0, deadline - time.monotonic()))
        else:
            w.executor.shutdown(wait=False)
    return [w.option.consumer_name for w in workers if w.is_alive()]


class Producer(threading.Thread):
    """Writes numbered logs until stopped: ``batch`` ids per PutLogs, cycling through ``keys`` (hash routing)
    or load-balanced when ``keys`` is None. ``acked`` holds the ids of every acknowledged PutLogs.

    A PutLogs refused with ShardReadOnly (racing a split or merge: a hub bug, see
    ``test_puts_racing_a_split_are_never_refused``) was not written, so it is retried with the same ids and
    counted in ``readonly_retries``; any other error is recorded and fails the test (see ``check``)."""

    def __init__(self, hub: HubProcess, project: str, logstore: str, *, keys: Sequence[str] | None = None,
                 batch: int = 5, pause: float = 0.03, first_id: int = 0) -> None:
        super().__init__(daemon=True)
        self.client = LogClient(hub.endpoint, hub.access_key_id, hub.access_key_secret)
        self.project, self.logstore, self.keys = project, logstore, keys
        self.batch, self.pause = batch, pause
        self.next_id = first_id
        self.acked: list[str] = []
        self.key_of: dict[str, str | None] = {}
        self.readonly_retries = 0
        self.errors: list[str] = []
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        n = 0
        while not self._stop_event.is_set():
            key = self.keys[n % len(self.keys)] if self.keys else None
            ids = [str(i) for i in range(self.next_id, self.next_id + self.batch)]
            try:
                put_ids(self.client, self.project, self.logstore, ids, hash_key=key)
            except LogException as exc:
                if exc.get_error_code() == "ShardReadOnly":
                    self.readonly_retries += 1
                    continue
                self.errors.append(f"{exc.get_error_code()}: {exc.get_error_message()}")
                return
            with self._lock:
                self.acked.extend(ids)
                self.key_of.update(dict.fromkeys(ids, key))
            self.next_id += self.batch
            n += 1
            self._stop_event.wait(self.pause)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)

    def check(self) -> set[str]:
        assert not self.is_alive(), "the producer did not stop"
        assert not self.errors, f"the producer got errors: {self.errors}"
        return set(self.acked)


class HeldSampler(threading.Thread):
    """Samples, every few ms, what each SDK worker holds (its last heartbeat answer) and reports (its
    heartbeat body), and records any shard seen in two workers' sets at once.

    Reads of different workers are not simultaneous, so each worker is read twice (pass 1 over all workers,
    then pass 2); a shard counts as held only if both reads have it. Then it was held throughout an interval
    containing the moment between the passes, and two such holders really overlapped."""

    def __init__(self, workers: Sequence[ConsumerWorker]) -> None:
        super().__init__(daemon=True)
        self.workers = list(workers)
        self.violations: list[str] = []
        self.samples = 0
        self._stop_event = threading.Event()

    def add(self, worker: ConsumerWorker) -> None:
        self.workers = [*self.workers, worker]

    def _read(self, workers: Sequence[ConsumerWorker]) -> list[tuple[set[int], set[int]]]:
        return [(set(w.heart_beat.get_held_shards()), set(list(w.heart_beat.mheart_shards))) for w in workers]

    def run(self) -> None:
        while not self._stop_event.wait(0.005):
            workers = self.workers
            first, second = self._read(workers), self._read(workers)
            self.samples += 1
            for kind in (0, 1):
                seen: dict[int, str] = {}
                for w, a, b in zip(workers, first, second):
                    for shard in a[kind] & b[kind]:
                        other = seen.setdefault(shard, w.option.consumer_name)
                        if other != w.option.consumer_name:
                            what = "granted" if kind == 0 else "reported"
                            self.violations.append(f"shard {shard} {what} to {other} and {w.option.consumer_name}")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def held_anywhere(workers: Iterable[ConsumerWorker]) -> set[int]:
    """Shards any running worker holds or still reports in its heartbeat."""
    out: set[int] = set()
    for w in workers:
        if w.is_alive():
            out |= set(w.heart_beat.get_held_shards()) | set(list(w.heart_beat.mheart_shards))
    return out


# ---------------------------------------------------------------------------------------------- 1. seed 002
class SampleConsumer(ConsumerProcessorBase):
    """Seed 002's processor, as published (minus the prints)."""

    shard_id = -1
    last_check_time = 0
    log_results: list[dict[str, Any]] = []
    lock = threading.RLock()

    def initialize(self, shard: int) -> None:
        self.shard_id = shard

    def process(self, log_groups: Any, check_point_tracker: Any) -> None:
        for log_group in log_groups.LogGroups:
            items = []
            for log in log_group.Logs:
                item: dict[str, Any] = {"time": log.Time}
                for content in log.Contents:
                    item[content.Key] = content.Value
                items.append(item)
            log_items = {"topic": log_group.Topic, "source": log_group.Source, "logs": items}
            with SampleConsumer.lock:
                SampleConsumer.log_results.append(log_items)
        current_time = time.time()
        if current_time - self.last_check_time > 3:
            self.last_check_time = current_time
            check_point_tracker.save_check_point(True)
        else:
            check_point_tracker.save_check_point(False)
        return None

    def shutdown(self, check_point_tracker: Any) -> None:
        check_point_tracker.save_check_point(True)


def test_seed_002_two_workers_consume_all_and_checkpoint(hub: HubProcess, sdk: LogClient, project: str) -> None:
    """Seed 002: two SDK workers in one group consume all 20 logs of a 4-shard logstore, each exactly once;
    on shutdown every shard's checkpoint is the shard's end, visible through get_check_point,
    list_consumer_group and get_check_point_fixed."""
    logstore = unique("ali-test-logstore").replace("-", "_")
    sdk.create_logstore(project, logstore, 2, 4)  # ttl=2, shard_count=4, as the seed calls it
    group = unique("consumer-group")
    for i in range(20):
        item = LogItem()
        item.set_time(int(time.time()))
        item.set_contents([("user", f"magic_user_{i}"), ("avg", f"magic_age_{i}")])
        sdk.put_logs(PutLogsRequest(project, logstore, "python-ide-test", "", [item]))

    SampleConsumer.log_results = []
    names = [f"{group}-A", f"{group}-B"]
    workers = [ConsumerWorker(SampleConsumer, consumer_option=option(hub, project, logstore, group, n)) for n in names]
    try:
        for w in workers:
            w.start()
        wait_until(lambda: sum(len(r["logs"]) for r in SampleConsumer.log_results) >= 20, 30, "20 logs")
        groups = sdk.list_consumer_group(project, logstore).get_consumer_groups()
        assert [(g.get_consumer_group_name(), g.get_timeout(), g.is_in_order()) for g in groups] == \
            [(group, GROUP_TIMEOUT, False)]
    finally:
        alive = stop_workers(workers)
    assert alive == []

    users = sorted(log["user"] for r in SampleConsumer.log_results for log in r["logs"])
    assert users == sorted(f"magic_user_{i}" for i in range(20)), "each log exactly once"
    assert all(r["topic"] == "python-ide-test" for r in SampleConsumer.log_results)

    cps = sdk.get_check_point(project, logstore, group).get_consumer_group_check_points()
    assert sorted(c["shard"] for c in cps) == [0, 1, 2, 3]
    for c in cps:
        assert c["checkpoint"] == end_cursor(sdk, project, logstore, c["shard"]), c
        assert c["consumer"] in names and c["updateTime"] > 0
    one = sdk.get_check_point(project, logstore, group, 2).get_consumer_group_check_points()
    assert [c["shard"] for c in one] == [2]
    for g in sdk.list_consumer_group(project, logstore).get_consumer_groups():
        fixed = sdk.get_check_point_fixed(project, logstore, g.get_consumer_group_name())
        for c in fixed.get_consumer_group_check_points():
            if c["checkpoint"] != sdk.get_begin_cursor(project, logstore, c["shard"]).get_cursor():
                # the receive time of the last consumed group: within the test's lifetime
                assert abs(c["checkpoint_previous_cursor_time"] - time.time()) < 120, c


# ---------------------------------------------------------------------------------------------- 2. dispatch
TOPICS = ("ngnix", "sql_audit", "click")


def test_dispatch_by_topic_with_put_log_raw(hub: HubProcess, sdk: LogClient, project: str) -> None:
    """Seeds 003/004: ConsumerProcessorAdaptor + put_log_raw copies each LogGroup to the logstore of its topic.
    1000 logs with topics ngnix/sql_audit/click (plus 100 with a topic nobody routes) end up exactly once in
    the right target, and the targets hold nothing else."""
    source = new_logstore(sdk, project, 2)
    targets = {topic: new_logstore(sdk, project, 1) for topic in TOPICS}
    expected: dict[str, set[str]] = {topic: set() for topic in TOPICS}
    next_id = 0
    for n in range(110):  # 100 groups of 10 logs for the three topics, then 10 groups of an unrouted topic
        topic = TOPICS[n % 3] if n < 100 else "other"
        ids = [str(i) for i in range(next_id, next_id + 10)]
        next_id += 10
        put_ids(sdk, project, source, ids, topic=topic)
        if topic in expected:
            expected[topic].update(ids)
    assert sum(map(len, expected.values())) == 1000

    # the seed's get_option(), pointed at the hub
    to_client = LogClient(hub.endpoint, hub.access_key_id, hub.access_key_secret)
    put_methods = {topic: partial(to_client.put_log_raw, project=project, logstore=targets[topic]) for topic in TOPICS}

    def copy_data(shard_id: int, log_groups: Any) -> None:
        for log_group in log_groups.LogGroups:
            if log_group.Topic in put_methods:
                put_methods[log_group.Topic](log_group=log_group)

    group = unique("dispatch_data")
    workers = []
    for consumer in (f"{group}-1", f"{group}-2"):  # "launch it several times" for concurrency
        opt = option(hub, project, source, group, consumer, cursor_position=CursorPosition.SPECIAL_TIMER_CURSOR,
                     cursor_start_time="2018-12-26 0:0:0")
        workers.append(ConsumerWorker(ConsumerProcessorAdaptor, opt, args=(copy_data,)))

    def copied() -> dict[str, int]:
        return {t: len(read_logstore(sdk, project, targets[t])) for t in TOPICS}

    try:
        for w in workers:
            w.start()
        want = {t: len(ids) for t, ids in expected.items()}
        wait_until(lambda: all(copied()[t] >= want[t] for t in TOPICS), 40, f"copies {want}", interval=0.3)
        time.sleep(2 * HB)  # a quiet period: nothing more may arrive (no second copy)
    finally:
        alive = stop_workers(workers)
    assert alive == []

    for topic in TOPICS:
        logs = read_logstore(sdk, project, targets[topic])
        assert {t for t, _ in logs} == {topic}
        got = [c["id"] for _, c in logs]
        assert len(got) == len(set(got)) == len(expected[topic]), f"{topic}: {len(got)} copies"
        assert set(got) == expected[topic]


# ---------------------------------------------------------------------------------------------- 3. join
def test_join_rebalances_without_double_ownership(hub: HubProcess, sdk: LogClient, project: str) -> None:
    """A third consumer joins a 4-shard group held 2/2 by two: the shards rebalance to 2/1/1, and no shard is
    ever held by two consumers at once (neither in the SDK's granted or reported sets, sampled continuously,
    nor in the processors' initialize..shutdown intervals); every log is processed exactly once."""
    logstore = new_logstore(sdk, project, 4)
    group = unique("join")
    rec = Recorder()
    names = [f"{group}-a", f"{group}-b", f"{group}-c"]
    workers = [recording_worker(hub, project, logstore, group, n, rec) for n in names]
    producer = Producer(hub, project, logstore, batch=4, pause=0.05)
    sampler = HeldSampler(workers[:2])
    try:
        producer.start()
        sampler.start()
        workers[0].start()
        workers[1].start()

        def counts() -> list[int]:
            owned = rec.owned()
            return sorted(len(owned.get(n, ())) for n in names if owned.get(n))

        wait_until(lambda: counts() == [2, 2], 20, "a 2/2 split between two consumers")
        wait_until(lambda: len(rec.ids()) > 50, 20, "consumption")
        sampler.add(workers[2])
        workers[2].start()
        wait_until(lambda: counts() == [1, 1, 2], 20, "a 2/1/1 split after the join")
        mark = producer.count()
        wait_until(lambda: producer.count() > mark + 40, 10, "more writes after the rebalance")
        time.sleep(2 * HB)
        assert counts() == [1, 1, 2], "the assignment must be stable once balanced"
        owned = rec.owned()
        assert set().union(*owned.values()) == {0, 1, 2, 3}
        producer.stop()
        acked = producer.check()
        wait_until(lambda: rec.ids() >= acked, 20, "every acknowledged log processed")
    finally:
        producer.stop()
        sampler.stop()
        alive = stop_workers(workers)
    assert alive == []
    assert sampler.samples > 100 and sampler.violations == [], sampler.violations[:5]
    assert_no_overlap(rec.intervals())
    counts_by_id = rec.id_counts()
    assert set(counts_by_id) == acked
    assert [i for i, c in counts_by_id.items() if c > 1] == [], "graceful handoff: exactly once"


# ---------------------------------------------------------------------------------------------- 4. failover
@pytest.mark.slow  # a fault test (pyproject's "slow": soak and fault tests): a consumer process is SIGKILLed
def test_failover_after_sigkill_resumes_from_checkpoint(hub: HubProcess, sdk: LogClient, project: str,
                                                        tmp_path: Path) -> None:
    """A consumer process is SIGKILLed mid-stream. Its shards move to the survivors only after the group
    timeout, and they resume from its last saved checkpoints: every log is processed at least once, and the
    only logs processed twice are those the dead consumer processed after its last saved checkpoint."""
    logstore = new_logstore(sdk, project, 4)
    group = unique("failover")
    rec = Recorder()
    out = tmp_path / "victim.jsonl"
    victim = f"{group}-victim"
    cmd = [sys.executable, "-m", "tests.integration._sdk_worker", "--endpoint", hub.endpoint,
           "--key-id", hub.access_key_id, "--key-secret", hub.access_key_secret, "--project", project,
           "--logstore", logstore, "--group", group, "--consumer", victim, "--out", str(out),
           "--heartbeat", str(HB), "--fetch", str(FETCH), "--timeout", str(GROUP_TIMEOUT)]
    survivors = [recording_worker(hub, project, logstore, group, f"{group}-s{i}", rec) for i in (1, 2)]
    producer = Producer(hub, project, logstore, batch=4, pause=0.05)
    err_path = tmp_path / "victim.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        producer.start()

        def victim_view() -> Recorder:
            r = Recorder()
            if out.exists():
                r.load(out)
            return r

        wait_until(lambda: len(victim_view().ids()) > 0 or proc.poll() is not None, 30, "the victim consuming")
        assert proc.poll() is None, err_path.read_text(errors="replace")[-3000:]
        for w in survivors:
            w.start()

        def balanced() -> bool:
            owned = {**victim_view().owned(), **rec.owned()}
            return sorted(len(v) for v in owned.values() if v) == [1, 1, 2]

        wait_until(balanced, 25, "a 2/1/1 split among victim and survivors")
        assert proc.poll() is None, err_path.read_text(errors="replace")[-3000:]
        mark = len(victim_view().ids())
        wait_until(lambda: len(victim_view().ids()) > mark + 8, 15, "the victim processing mid-stream")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = time.time()
        dead = victim_view()
        victim_shards = dead.owned()[victim]
        assert victim_shards, "the victim held shards when killed"
        saved = checkpoints(sdk, project, logstore, group)  # nobody writes these until the survivors take over

        wait_until(lambda: set().union(*rec.owned().values()) == {0, 1, 2, 3}, 10 + GROUP_TIMEOUT,
                   "the survivors holding all shards")
        mark = producer.count()
        wait_until(lambda: producer.count() > mark + 20, 10, "writes after the takeover")
        producer.stop()
        acked = producer.check()
        wait_until(lambda: (rec.ids() | dead.ids()) >= acked, 20, "every acknowledged log processed")
    finally:
        producer.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        alive = stop_workers(survivors)
    assert alive == []

    logs, events = rec.snapshot()
    dead_logs = dead.snapshot()[0]
    # shards move only once the victim's liveness timeout has run out, and not much later
    for shard in victim_shards:
        took = min(t for ev, _, s, t in events if ev == "init" and s == shard and t > killed_at)
        assert GROUP_TIMEOUT - HB - 0.5 <= took - killed_at <= GROUP_TIMEOUT + 4 * HB, (shard, took - killed_at)
    # nothing lost
    assert (rec.ids() | dead.ids()) >= acked
    # resumed from the saved checkpoint: the survivors' first log on a victim shard is the log at that checkpoint
    expected_dups: set[str] = set()
    for shard in victim_shards:
        cp = saved[shard]["checkpoint"]
        first_at_cp = read_shard(sdk, project, logstore, shard, cp or None, limit=1)[0][1]["id"]
        after = sorted((t, int(i)) for _, s, i, t in logs if s == shard and t > killed_at)
        assert after and after[0][1] == int(first_at_cp), (shard, after[:3], first_at_cp)
        expected_dups |= {i for _, s, i, _ in dead_logs if s == shard and int(i) >= int(first_at_cp)}
    # the only logs processed twice are the victim's unsaved tail; every other handoff was graceful
    both = collections.Counter(i for _, _, i, _ in logs) + collections.Counter(i for _, _, i, _ in dead_logs)
    assert {i for i, c in both.items() if c > 1} == expected_dups
    assert max(both.values()) <= 2


# ---------------------------------------------------------------------------------------------- 5. leave
def test_graceful_shutdown_hands_over_exactly_once(hub: HubProcess, sdk: LogClient, project: str) -> None:
    """A worker calls shutdown() while logs flow: it flushes its checkpoints, its shards move to the others
    after the group timeout (the SDK sends no leave), and no log is delivered twice or lost."""
    logstore = new_logstore(sdk, project, 4)
    group = unique("leave")
    rec = Recorder()
    names = [f"{group}-a", f"{group}-b", f"{group}-c"]
    workers = [recording_worker(hub, project, logstore, group, n, rec) for n in names]
    producer = Producer(hub, project, logstore, batch=4, pause=0.05)
    try:
        producer.start()
        for w in workers:
            w.start()
        wait_until(lambda: sorted(len(v) for v in rec.owned().values() if v) == [1, 1, 2], 25, "a 2/1/1 split")
        leaver = next(w for w in workers if rec.owned().get(w.option.consumer_name))
        left_name = leaver.option.consumer_name
        mark = len(rec.ids())
        wait_until(lambda: len(rec.ids()) > mark + 40, 15, "logs flowing")
        t0 = time.monotonic()
        leaver.shutdown()
        leaver.join(15)
        assert not leaver.is_alive() and time.monotonic() - t0 < 10
        left_shards = {s for ev, c, s, _ in rec.snapshot()[1] if c == left_name and ev == "init"}
        rest = [w.option.consumer_name for w in workers if w is not leaver]
        wait_until(lambda: set().union(*(rec.owned().get(n, set()) for n in rest)) == {0, 1, 2, 3},
                   10 + GROUP_TIMEOUT, "the others holding all shards")
        assert not rec.owned().get(left_name), "the leaver shut down every shard consumer"
        mark = producer.count()
        wait_until(lambda: producer.count() > mark + 20, 10, "writes after the handover")
        producer.stop()
        acked = producer.check()
        wait_until(lambda: rec.ids() >= acked, 20, "every acknowledged log processed")
    finally:
        producer.stop()
        alive = stop_workers(workers)
    assert alive == []
    assert left_shards
    assert_no_overlap(rec.intervals())
    counts = rec.id_counts()
    assert set(counts) == acked
    assert [i for i, c in counts.items() if c > 1] == [], "each log exactly once across all consumers"


# ---------------------------------------------------------------------------------------------- 6. split/merge
KEY_Q = ["1" + "0" * 31, "5" + "0" * 31, "9" + "0" * 31, "d" + "0" * 31]  # one hash key per quarter
SPLIT_KEY = "4" + "0" * 31


def test_split_then_merge_in_order(hub: HubProcess, sdk: LogClient, project: str) -> None:
    """in_order=True with a split and then a merge while producers write by hash key:
    the parent turns readonly and takes no more writes (a hash key in its range lands in a child; splitting
    or merging it again is ShardReadOnly); no log of a child is processed before the last log of its
    parent(s); and every acknowledged log is processed exactly once (all handoffs are graceful and the
    processor persists its checkpoint after every batch).

    So that the ordering rule has something to bite on, each split or merge happens right after a burst of
    writes into the parents, and the consumers fetch only 2 LogGroups per PullLogs: the parents still hold
    seconds of unread data when their children start taking writes."""
    logstore = new_logstore(sdk, project, 2)  # shard 0: [0, 8...), shard 1: [8..., f...]
    group = unique("ordered")
    rec = Recorder()
    names = [f"{group}-a", f"{group}-b"]
    workers = [recording_worker(hub, project, logstore, group, n, rec, in_order=True, checkpoint_timeout=0,
                                max_fetch_log_group_size=2) for n in names]
    producer = Producer(hub, project, logstore, keys=KEY_Q, batch=3, pause=0.1)

    def burst(keys: Sequence[str], groups: int, tag: str) -> set[str]:
        ids = set()
        for n in range(groups):
            key = keys[n % len(keys)]
            put_ids(sdk, project, logstore, [f"{tag}-{n}"], hash_key=key)
            ids.add(f"{tag}-{n}")
        return ids

    try:
        producer.start()
        for w in workers:
            w.start()
        wait_until(lambda: {s for _, s, _, _ in rec.snapshot()[0]} == {0, 1}, 20, "both shards consumed")
        assert [(g.get_consumer_group_name(), g.is_in_order())
                for g in sdk.list_consumer_group(project, logstore).get_consumer_groups()] == [(group, True)]

        # split shard 0 at 4000...: children 2 [0, 4...) and 3 [4..., 8...)
        bursts = burst(KEY_Q[:2], 30, "burst-split")
        resp = sdk.split_shard(project, logstore, 0, SPLIT_KEY).get_shards_info()
        assert [(s["shardID"], s["status"].lower()) for s in resp] == [(0, "readonly"), (2, "readwrite"),
                                                                       (3, "readwrite")]
        parent_end = end_cursor(sdk, project, logstore, 0)
        shards = shard_ids(sdk, project, logstore)
        assert shards[0]["status"].lower() == "readonly"
        assert (shards[2]["inclusiveBeginKey"], shards[2]["exclusiveEndKey"]) == ("0" * 32, SPLIT_KEY)
        assert (shards[3]["inclusiveBeginKey"], shards[3]["exclusiveEndKey"]) == (SPLIT_KEY, "8" + "0" * 31)
        for action in (lambda: sdk.split_shard(project, logstore, 0, "2" + "0" * 31),
                       lambda: sdk.merge_shard(project, logstore, 0)):
            with pytest.raises(LogException) as exc:
                action()
            assert exc.value.get_error_code() == "ShardReadOnly"
        put_ids(sdk, project, logstore, ["marker-split"], hash_key="2" + "0" * 31)  # in the parent's range

        wait_until(lambda: {2, 3} <= {s for _, s, _, _ in rec.snapshot()[0]}, 25, "both children consumed")
        bursts |= burst(KEY_Q[:2], 30, "burst-merge")
        resp = sdk.merge_shard(project, logstore, 2).get_shards_info()
        by_id = {s["shardID"]: s["status"].lower() for s in resp}
        assert by_id == {4: "readwrite", 2: "readonly", 3: "readonly"}
        shards = shard_ids(sdk, project, logstore)
        assert (shards[4]["inclusiveBeginKey"], shards[4]["exclusiveEndKey"]) == ("0" * 32, "8" + "0" * 31)
        assert {s: shards[s]["status"].lower() for s in (0, 1, 2, 3)} == \
            {0: "readonly", 1: "readwrite", 2: "readonly", 3: "readonly"}
        children_ends = {s: end_cursor(sdk, project, logstore, s) for s in (2, 3)}
        put_ids(sdk, project, logstore, ["marker-merge"], hash_key="3" + "0" * 31)

        wait_until(lambda: 4 in {s for _, s, _, _ in rec.snapshot()[0]}, 25, "the merged shard consumed")
        mark = producer.count()
        wait_until(lambda: producer.count() > mark + 30, 10, "writes after the merge")
        producer.stop()
        acked = producer.check() | {"marker-split", "marker-merge"} | bursts
        wait_until(lambda: rec.ids() >= acked, 20, "every acknowledged log processed")
        # readonly shards take no writes: their ends did not move while producers wrote into their ranges
        assert end_cursor(sdk, project, logstore, 0) == parent_end
        assert {s: end_cursor(sdk, project, logstore, s) for s in (2, 3)} == children_ends
    finally:
        producer.stop()
        alive = stop_workers(workers)
    assert alive == []

    logs = rec.snapshot()[0]
    shard_of = {i: s for _, s, i, _ in logs}
    assert shard_of["marker-split"] == 2 and shard_of["marker-merge"] == 4
    times: dict[int, list[float]] = collections.defaultdict(list)
    for _, s, _, t in logs:
        times[s].append(t)
    assert set(times) == {0, 1, 2, 3, 4}
    for parents, child in (((0,), 2), ((0,), 3), ((2, 3), 4)):
        last_parent = max(max(times[p]) for p in parents)
        assert min(times[child]) > last_parent, f"shard {child} processed before its parent(s) {parents} finished"
    # hash routing stayed inside the key ranges: quarter 0/1 keys never reach shard 1, quarters 2/3 only shard 1
    for i, s in shard_of.items():
        key = producer.key_of.get(i)
        if key is not None:
            assert (s == 1) == (key >= "8" + "0" * 31), (i, key, s)
    counts = collections.Counter(i for _, _, i, _ in logs)
    assert set(counts) == acked
    assert [i for i, c in counts.items() if c > 1] == [], "exactly once"
    assert_no_overlap(rec.intervals())


def test_puts_racing_a_split_are_never_refused(hub: HubProcess, sdk: LogClient, project: str) -> None:
    """A PutLogs routed by hash key or load-balanced names no shard, so a concurrent split must not make it
    fail: it lands in whichever readwrite shard covers the key when it is written (the parent or a child).
    Writers hammer one hash key (and lb) while the shard covering that key is split repeatedly."""
    logstore = new_logstore(sdk, project, 1)
    key = KEY_Q[0]
    errors: list[str] = []
    stop = threading.Event()

    def writer(hash_key: str | None) -> None:
        client = LogClient(hub.endpoint, hub.access_key_id, hub.access_key_secret)
        n = 0
        while not stop.is_set():
            try:
                put_ids(client, project, logstore, [f"race-{n}"], hash_key=hash_key)
            except LogException as exc:
                errors.append(f"{'route' if hash_key else 'lb'}: {exc.get_error_code()} {exc.get_error_message()}")
            n += 1

    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in (key, key, key, None)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 10
        splits = 0
        while not errors and splits < 40 and time.monotonic() < deadline:
            covering = next(s for s in shard_ids(sdk, project, logstore).values()
                            if s["status"].lower() == "readwrite" and s["inclusiveBeginKey"] <= key < s["exclusiveEndKey"])
            begin, end = int(covering["inclusiveBeginKey"], 16), int(covering["exclusiveEndKey"], 16)
            sdk.split_shard(project, logstore, covering["shardID"], f"{(begin + end) // 2:032x}")
            splits += 1
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert splits >= 1
    assert errors == [], f"{len(errors)} PutLogs refused during {splits} splits, e.g. {errors[0]}"


# ---------------------------------------------------------------------------------------------- 7. quota
def test_group_quota(tmp_path: Path) -> None:
    """With --group-quota 3 the 4th CreateConsumerGroup is refused with ConsumerGroupQuotaExceed, and a
    ConsumerWorker for a 4th group fails cleanly in its constructor (ClientWorkerException, no thread left
    running); workers for existing groups still construct; deleting a group frees a slot."""
    with HubProcess(tmp_path / "data", extra_args=["--group-quota", "3"]) as qhub:
        client = LogClient(qhub.endpoint, qhub.access_key_id, qhub.access_key_secret)
        client.create_project("quota", "")
        client.create_logstore("quota", "events", shard_count=2)
        for g in ("g1", "g2", "g3"):
            client.create_consumer_group("quota", "events", g, 10)
        with pytest.raises(LogException) as exc:
            client.create_consumer_group("quota", "events", "g4", 10)
        assert exc.value.get_error_code() == "ConsumerGroupQuotaExceed"
        assert exc.value.get_request_id()

        threads = threading.active_count()
        with pytest.raises(ClientWorkerException, match="ConsumerGroupQuotaExceed"):
            ConsumerWorker(SampleConsumer, option(qhub, "quota", "events", "g4", "c1"))
        assert threading.active_count() == threads
        groups = client.list_consumer_group("quota", "events").get_consumer_groups()
        assert sorted(g.get_consumer_group_name() for g in groups) == ["g1", "g2", "g3"]

        existing = ConsumerWorker(SampleConsumer, option(qhub, "quota", "events", "g1", "c1"))  # update path
        assert stop_workers([existing]) == []
        client.delete_consumer_group("quota", "events", "g3")
        client.create_consumer_group("quota", "events", "g4", 10)


# ---------------------------------------------------------------------------------------------- 8. readonly release
def test_finished_readonly_shards_are_released(hub: HubProcess, sdk: LogClient, project: str) -> None:
    """in_order=True: a split parent that holds no data at all, and one consumed to its end, are released
    (in no worker's held or reported set within a few heartbeats, and never handed out again) and do not
    block their children, which are consumed."""
    logstore = new_logstore(sdk, project, 2)
    group = unique("release")
    rec = Recorder()
    workers = [recording_worker(hub, project, logstore, group, f"{group}-{n}", rec, in_order=True,
                                checkpoint_timeout=0) for n in "ab"]
    first = [str(i) for i in range(30)]
    for chunk in range(3):
        put_ids(sdk, project, logstore, first[chunk * 10:(chunk + 1) * 10], hash_key=KEY_Q[0])  # shard 0 only
    try:
        for w in workers:
            w.start()
        wait_until(lambda: set().union(*rec.owned().values(), set()) == {0, 1}, 20, "both shards held")
        wait_until(lambda: rec.ids() >= set(first), 20, "shard 0 consumed")
        wait_until(lambda: checkpoints(sdk, project, logstore, group)[0]["checkpoint"] ==
                   end_cursor(sdk, project, logstore, 0), 10, "shard 0's checkpoint at its end")
        assert checkpoints(sdk, project, logstore, group)[1]["checkpoint"] == ""  # empty, never checkpointed

        sdk.split_shard(project, logstore, 0, SPLIT_KEY)  # consumed to its end -> children 2, 3
        sdk.split_shard(project, logstore, 1, "c" + "0" * 31)  # holds no data at all -> children 4, 5
        split_at = time.time()
        child_keys = {2: KEY_Q[0], 3: KEY_Q[1], 4: KEY_Q[2], 5: KEY_Q[3]}
        second: dict[str, int] = {}
        for shard, key in child_keys.items():
            ids = [f"{shard}-{i}" for i in range(5)]
            put_ids(sdk, project, logstore, ids, hash_key=key)
            second.update(dict.fromkeys(ids, shard))

        wait_until(lambda: not (held_anywhere(workers) & {0, 1}), 4 * HB + 5, "parents released")
        wait_until(lambda: rec.ids() >= set(second), 20, "the children consumed")
        deadline = time.monotonic() + 3 * HB
        while time.monotonic() < deadline:  # a few more heartbeats: they stay released
            assert not (held_anywhere(workers) & {0, 1})
            time.sleep(0.05)
    finally:
        alive = stop_workers(workers)
    assert alive == []
    logs, events = rec.snapshot()
    assert {i: s for _, s, i, _ in logs if i in second} == second
    assert not [e for e in events if e[2] in (0, 1) and e[0] == "init" and e[3] > split_at], \
        "a finished readonly shard was handed out again"
    assert collections.Counter(i for _, _, i, _ in logs) == collections.Counter([*first, *second])
    assert_no_overlap(rec.intervals())
