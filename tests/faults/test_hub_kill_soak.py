"""The hub SIGKILLed 20 times at random moments while producers write and a consumer group reads.

Rules shown, after every kill and at the end:
* every acknowledged PutLogs is stored exactly once, in acknowledgement order per shard (a write whose answer
  was lost to the kill may be stored or not, but at most once);
* every checkpoint the hub had acknowledged is still there after the restart (never older);
* the consumer (a separate ``sluice`` consumer process) rides through all of it by itself and handles
  every acknowledged log at least once, in order per shard.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from sluice.client import Client, RetryPolicy
from sluice.testing import HubProcess
from sluice.wire.cursor import decode_cursor
from sluice.wire.errors import SluiceError
from tests._consumers import WorkerProc, hash_key_for
from tests.faults._figures import record

pytestmark = pytest.mark.slow

KILLS = 20
SHARDS = 2
WRITERS = 2
PER_BATCH = 20


class Writer(threading.Thread):
    """Writes batches ``w-b`` of PER_BATCH logs, alternating shards; never retries blindly: a failed batch
    is recorded as *uncertain* and the next batch gets a new number."""

    def __init__(self, hub: HubProcess, w: int) -> None:
        super().__init__(daemon=True)
        self.client = Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=5,
                             retry=RetryPolicy(attempts=1))
        self.w = w
        self.acked: list[int] = []
        self.uncertain: set[int] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        batch = 0
        while not self.stop.is_set():
            batch += 1
            logs = [{"id": f"{self.w}-{batch}-{i}", "w": str(self.w), "b": str(batch)} for i in range(PER_BATCH)]
            try:
                self.client.put_logs("soak", "events", logs, hash_key=hash_key_for(batch % SHARDS, SHARDS))
            except SluiceError:
                self.uncertain.add(batch)
                time.sleep(0.05)
                continue
            self.acked.append(batch)
            time.sleep(0.005)
        self.client.close()


def _checkpoints(client: Client) -> dict[int, int]:
    rows = client.get_checkpoints("soak", "events", "readers")
    return {int(r["shard"]): decode_cursor(r["checkpoint"]) for r in rows if r.get("checkpoint")}


def test_hub_sigkilled_20_times_under_producers_and_consumers(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data", log_path=tmp_path / "hub.log")
    hub.start()
    admin = Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=5, retry=RetryPolicy(attempts=1))
    worker = None
    writers = [Writer(hub, w) for w in range(WRITERS)]
    try:
        admin.create_project("soak")
        admin.create_logstore("soak", "events", shard_count=SHARDS)
        worker = WorkerProc(hub, "soak", "events", "readers", "reader-1", tmp_path,
                            heartbeat=1, timeout=3, checkpoint_interval=0.3)
        for w in writers:
            w.start()
        rng = random.Random(20261123)
        checkpoints_seen = 0
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.0))
            before = _retry(lambda: _checkpoints(admin))
            hub.kill()
            time.sleep(rng.uniform(0.0, 0.2))
            hub.start()
            after = _retry(lambda: _checkpoints(admin))
            for shard, seq in before.items():
                checkpoints_seen += 1
                assert after.get(shard, -1) >= seq, (
                    f"shard {shard}: acknowledged checkpoint {seq} lost by a SIGKILL (now {after.get(shard)})")
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(timeout=30)
        assert checkpoints_seen > KILLS // 2, "the consumer should have committed checkpoints between kills"
        assert all(len(w.acked) > 50 for w in writers), "writers should progress between kills"

        stored = _stored(admin)
        _check_stored(stored, writers)
        expected = {f"{w.w}-{b}-{i}" for w in writers for b in w.acked for i in range(PER_BATCH)}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not expected <= set(worker.ids()):
            assert worker.proc.poll() is None, f"the consumer died:\n{worker.log_tail()}"
            time.sleep(0.2)
        missing = expected - set(worker.ids())
        assert not missing, f"{len(missing)} acknowledged logs never handled, e.g. {sorted(missing)[:5]}"
        _check_handled_order(worker)
        handled = worker.ids()
        record("hub_sigkill_soak", kills=KILLS, acknowledged_logs=len(expected),
               uncertain_batches=sum(len(w.uncertain) for w in writers), checkpoints_checked=checkpoints_seen,
               logs_lost=0, stored_twice=0, deliveries=len(handled), redeliveries=len(handled) - len(set(handled)))
    finally:
        for w in writers:
            w.stop.set()
        if worker is not None:
            worker.close()
        admin.close()
        hub.close()


def _retry(fn, attempts: int = 50):  # type: ignore[no-untyped-def]
    """A read right after a restart: the hub is up (start() waited), but allow a transient miss."""
    for i in range(attempts):
        try:
            return fn()
        except SluiceError:
            if i == attempts - 1:
                raise
            time.sleep(0.1)


def _stored(client: Client) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for shard in range(SHARDS):
        cursor = client.get_cursor("soak", "events", shard, "begin")
        while True:
            result = client.pull_logs("soak", "events", shard, cursor)
            if result.count == 0:
                break
            for group in result.log_groups():
                assert len(group.Logs) == PER_BATCH, "a group is stored whole or not at all"
                fields = {c.Key: c.Value for c in group.Logs[0].Contents}
                out[shard].append((int(fields["w"]), int(fields["b"])))
            cursor = result.next_cursor
    return out


def _check_stored(stored: dict[int, list[tuple[int, int]]], writers: list[Writer]) -> None:
    count: dict[tuple[int, int], int] = defaultdict(int)
    for shard, rows in stored.items():
        last: dict[int, int] = {}
        for w, b in rows:
            assert b > last.get(w, 0), f"shard {shard}: writer {w} batch {b} stored out of order"
            last[w] = b
            count[(w, b)] += 1
    for writer in writers:
        lost = [b for b in writer.acked if count.get((writer.w, b), 0) != 1]
        assert not lost, f"writer {writer.w}: acknowledged batches lost or doubled: {lost[:10]}"
    phantom = [k for k in count if k[1] not in writer_batches(writers, k[0])]
    assert not phantom, f"stored batches that were never sent: {phantom[:10]}"


def writer_batches(writers: list[Writer], w: int) -> set[int]:
    return set(writers[w].acked) | writers[w].uncertain


def _check_handled_order(worker: WorkerProc) -> None:
    """Per shard, first deliveries come in storage order: a writer's batches never go backwards."""
    first_seen: set[str] = set()
    last: dict[tuple[int, int], int] = {}
    for batch in worker.batches():
        for log_id in batch["ids"]:
            if log_id in first_seen:
                continue  # a redelivery after a restart: allowed (at-least-once)
            first_seen.add(log_id)
            w, b, _ = (int(x) for x in log_id.split("-"))
            key = (batch["shard"], w)
            assert b >= last.get(key, 0), f"shard {batch['shard']}: writer {w} batch {b} handled out of order"
            last[key] = b
