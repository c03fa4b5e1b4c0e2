"""Consumers SIGKILLed and restarted at random, for a while, under a steady load.

Three ``sluice`` consumer processes share a 4-shard logstore; every few seconds one of them is SIGKILLed and
started again under the same name (a crash-looping host), while a producer keeps writing. Rules shown:
* every log written is handled at least once (at-least-once through crashes and takeovers);
* per shard, logs are first handled in the order they were written;
* every duplicate is a log that a SIGKILLed process had handled shortly before its death (its uncommitted
  window: checkpoint interval plus a commit round trip and scheduling slack); survivors of a graceful path
  never duplicate each other.

The length is ``SLUICE_SOAK_SECONDS`` (default 60; CI uses the default, soak longer by hand).
"""

from __future__ import annotations

import os
import random
import time
from collections import defaultdict
from pathlib import Path

import pytest

from sluice.client import Client
from sluice.testing import HubProcess
from tests._consumers import SteadyProducer, WorkerProc
from tests.faults._figures import record

pytestmark = pytest.mark.slow

SHARDS = 4
CONSUMERS = 3
CHECKPOINT_INTERVAL = 0.5
# Generous on purpose: under constant kills and restarts on a 2-core machine a commit can lag its batch.
UNCOMMITTED_WINDOW = CHECKPOINT_INTERVAL + 3.0


def test_consumers_sigkilled_and_restarted_under_load(tmp_path: Path) -> None:
    seconds = float(os.environ.get("SLUICE_SOAK_SECONDS", "60"))
    hub = HubProcess(tmp_path / "data", log_path=tmp_path / "hub.log")
    hub.start()
    admin = Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=10)
    admin.create_project("csoak")
    admin.create_logstore("csoak", "events", shard_count=SHARDS)
    rng = random.Random(7)
    generation = defaultdict(int)

    def spawn(name: str) -> WorkerProc:
        generation[name] += 1
        out_dir = tmp_path / f"{name}-{generation[name]}"  # each incarnation keeps its own output
        out_dir.mkdir()
        return WorkerProc(hub, "csoak", "events", "crashy", name, out_dir,
                          heartbeat=1, timeout=3, checkpoint_interval=CHECKPOINT_INTERVAL)

    live: dict[str, WorkerProc] = {}
    dead: list[tuple[WorkerProc, float]] = []  # (process, time of its SIGKILL)
    producer = SteadyProducer(hub, "csoak", "events", shards=SHARDS, per_group=20, pause=0.01)
    try:
        for i in range(CONSUMERS):
            live[f"c{i}"] = spawn(f"c{i}")
        producer.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(rng.uniform(2.0, 6.0))
            name = rng.choice(sorted(live))
            victim = live[name]
            assert victim.proc.poll() is None, f"{name} died by itself:\n{victim.log_tail()}"
            victim.kill()
            dead.append((victim, time.time()))
            time.sleep(rng.uniform(0.0, 1.0))
            live[name] = spawn(name)
        written = producer.finish()
        everyone = list(live.values()) + [p for p, _ in dead]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if len(set().union(*(w.ids() for w in everyone))) >= written:
                break
            time.sleep(0.3)
        handled = set().union(*(w.ids() for w in everyone))
        missing = set(map(str, range(written))) - handled
        assert not missing, f"{len(missing)} of {written} logs never handled, e.g. {sorted(missing, key=int)[:5]}"
        for w in live.values():
            assert w.terminate() == 0, w.log_tail()
        duplicates = _check(everyone, dead)
        record("consumer_sigkill_soak", seconds=seconds, kills=len(dead), logs_written=written,
               logs_lost=0, duplicate_deliveries=duplicates, uncommitted_window_s=UNCOMMITTED_WINDOW)
    finally:
        producer.stop.set()
        for w in list(live.values()) + [p for p, _ in dead]:
            w.close()
        admin.close()
        hub.close()


def _check(everyone: list[WorkerProc], dead: list[tuple[WorkerProc, float]]) -> int:
    """Order of first deliveries per shard, and every duplicate inside a victim's uncommitted window."""
    records = sorted(((r["t"], w, r) for w in everyone for r in w.batches()), key=lambda x: x[0])
    killed_at = {id(p): t for p, t in dead}
    first: dict[str, tuple[WorkerProc, float]] = {}
    last_per_shard: dict[int, int] = {}
    duplicates = 0
    for t, w, r in records:
        for log_id in r["ids"]:
            n = int(log_id)
            if log_id not in first:
                first[log_id] = (w, t)
                # ids rise within a shard (group j of 20 ids goes to shard j % SHARDS)
                assert n > last_per_shard.get(r["shard"], -1), f"shard {r['shard']}: id {n} handled out of order"
                last_per_shard[r["shard"]] = n
                continue
            duplicates += 1
            earlier, t_earlier = first[log_id]
            kill_time = killed_at.get(id(earlier))
            assert kill_time is not None, (
                f"id {log_id} handled twice, but its first handler was never killed (a graceful path duplicated)")
            assert kill_time - t_earlier <= UNCOMMITTED_WINDOW, (
                f"id {log_id} re-handled although it was handled {kill_time - t_earlier:.1f}s before its "
                f"handler's SIGKILL (beyond the {UNCOMMITTED_WINDOW}s uncommitted window)")
    return duplicates
