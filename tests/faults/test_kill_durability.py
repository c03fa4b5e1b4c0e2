"""Acknowledged writes survive SIGKILL of the hub: kill it repeatedly under a writer, restart on the same
data directory, and every acknowledged batch is read back exactly once, in order per shard."""

from __future__ import annotations

import random
import threading
import time

import pytest

from sluice.client import Client, RetryPolicy
from sluice.testing import HubProcess
from sluice.wire.errors import SluiceError

pytestmark = pytest.mark.slow


def test_acknowledged_batches_survive_sigkill(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Rule: a PutLogs answered 200 is on disk; kill -9 at any moment loses none and corrupts nothing."""
    hub = HubProcess(tmp_path / "data")
    hub.start()
    try:
        _run(hub)
    finally:
        hub.close()


def _run(hub: HubProcess) -> None:
    client = Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=5,
                    retry=RetryPolicy(attempts=1))
    client.create_project("durable")
    client.create_logstore("durable", "events", shard_count=2)
    acked: list[int] = []
    attempted = [0]
    stop = threading.Event()

    def writer() -> None:
        batch = 0
        while not stop.is_set():
            batch += 1
            attempted[0] = batch
            logs = [{"batch": str(batch), "i": str(i), "pad": "x" * 200} for i in range(50)]
            try:
                client.put_logs("durable", "events", logs, topic="t")
            except SluiceError:
                time.sleep(0.05)  # hub down: a new batch id next time, never a blind retry
                continue
            acked.append(batch)

    thread = threading.Thread(target=writer)
    thread.start()
    rng = random.Random(1234)
    try:
        for _ in range(5):
            time.sleep(rng.uniform(0.3, 0.8))
            hub.kill()
            time.sleep(rng.uniform(0.0, 0.2))
            hub.start()
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert len(acked) > 20, "the writer should have made progress between kills"

    seen: dict[int, int] = {}
    for shard in (0, 1):
        cursor = client.get_cursor("durable", "events", shard, "begin")
        last_batch = 0
        while True:
            result = client.pull_logs("durable", "events", shard, cursor)
            if result.count == 0:
                break
            for group in result.log_groups():
                batch = int(group.Logs[0].Contents[0].Value)
                assert len(group.Logs) == 50, "a group is stored whole or not at all"
                assert batch > last_batch, "order within a shard is the order of acknowledgement"
                last_batch = batch
                seen[batch] = seen.get(batch, 0) + 1
            cursor = result.next_cursor
    client.close()
    missing = [b for b in acked if b not in seen]
    assert not missing, f"acknowledged batches lost: {missing[:10]}"
    assert all(n == 1 for n in seen.values()), "no batch may be stored twice"
    assert set(seen) <= set(range(1, attempted[0] + 1))
