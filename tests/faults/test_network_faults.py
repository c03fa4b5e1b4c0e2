"""Network faults between a consumer and the hub: resets, truncated responses, black-holed connections.

A ``sluice`` consumer process reaches the hub only through ``FaultyProxy``; a producer writes to the hub
directly the whole time. The proxy resets every connection, cuts responses mid-body and swallows traffic
(connections touched by a stall never come back, so only the consumer's own timeouts free it). Rules shown:
the consumer recovers by itself each time (no restart), every log is handled at least once, first deliveries
keep per-shard order, and after the faults it keeps up with new writes.

The consumer runs with a 3 s request timeout and a 2 s long-poll so a black-holed request is noticed
within seconds (the defaults are 60 s and 25 s; see docs/consumer.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sluice.client import Client
from sluice.testing import HubProcess
from tests._consumers import SteadyProducer, WorkerProc
from tests._faulty_proxy import FaultyProxy
from tests.faults._figures import record

pytestmark = pytest.mark.slow

SHARDS = 2


def test_consumer_recovers_from_resets_truncation_and_stalls(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data", log_path=tmp_path / "hub.log")
    hub.start()
    proxy = FaultyProxy(hub.host, hub.port)
    admin = Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=10)
    admin.create_project("netfault")
    admin.create_logstore("netfault", "events", shard_count=SHARDS)
    worker = WorkerProc(hub, "netfault", "events", "behind-proxy", "c1", tmp_path, endpoint=proxy.url,
                        heartbeat=1, timeout=4, checkpoint_interval=0.5, long_poll=2, client_timeout=3)
    producer = SteadyProducer(hub, "netfault", "events", shards=SHARDS, per_group=10, pause=0.02)
    try:
        _until(lambda: worker.has_event("started"), 30, "the consumer to start", worker)
        producer.start()
        _until(lambda: len(worker.ids()) > 100, 30, "the consumer to handle data", worker)
        faults = [("reset", lambda: proxy.reset())] * 3 + [("truncate", lambda: proxy.truncate(2))] * 3 + [
            ("stall", lambda: proxy.stall(4.0)), ("reset", lambda: proxy.reset()),
            ("truncate", lambda: proxy.truncate(5)), ("stall", lambda: proxy.stall(2.0))]
        for name, inject in faults:
            handled_before = len(set(worker.ids()))
            inject()
            # recovered = handles new logs again, by itself
            _until(lambda: len(set(worker.ids())) > handled_before + 50, 45,
                   f"the consumer to recover after a {name}", worker)
        written = producer.finish()
        _until(lambda: len(set(worker.ids())) >= written, 60, "every log to be handled", worker)
        assert set(worker.ids()) == set(map(str, range(written)))
        _check_order(worker)
        assert worker.proc.poll() is None, "the consumer must still be running"
        assert worker.terminate() == 0, worker.log_tail()
        ids = worker.ids()
        record("network_faults", faults_injected=len(faults), **proxy.stats, logs_written=written,
               logs_lost=0, duplicate_deliveries=len(ids) - len(set(ids)))
    finally:
        producer.stop.set()
        worker.close()
        proxy.close()
        admin.close()
        hub.close()


def _until(pred, timeout: float, what: str, worker: WorkerProc) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert worker.proc.poll() is None, f"the consumer died while waiting for {what}:\n{worker.log_tail()}"
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{worker.log_tail()}")
        time.sleep(0.1)


def _check_order(worker: WorkerProc) -> None:
    seen: set[str] = set()
    last: dict[int, int] = {}
    for r in worker.batches():
        for log_id in r["ids"]:
            if log_id in seen:
                continue
            seen.add(log_id)
            n = int(log_id)
            assert n > last.get(r["shard"], -1), f"shard {r['shard']}: id {n} first handled out of order"
            last[r["shard"]] = n
