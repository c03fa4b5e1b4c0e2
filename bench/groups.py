"""Consumer groups end to end: rebalance after a join, failover after a kill, and what heartbeats cost the hub.

Everything runs against a hub subprocess on loopback, driven from this process (asyncio, the signed Transport).
Simulated consumers behave like the SDK: each heartbeat reports the shards the consumer holds. It reads a shard
from the response that grants it. A shard left out of a response is read until the next heartbeat, which
no longer reports it.

* rebalance: ``--consumers`` consumers (default 2) on a ``--shards``-shard logstore (default 8), heartbeating
  every ``--interval`` seconds at random phases. One more joins; time and heartbeat intervals until the group is
  balanced (every shard read by exactly one consumer, counts differ by at most one). Target: 2 intervals.
* failover: one consumer of a balanced group (group timeout ``--timeout``) dies right after a heartbeat. Time
  from its death until the survivors read all its shards and are balanced. Target: timeout + 1 interval.
* heartbeat cost: ``--load-consumers`` consumers (default 1,000) in groups of 10 over ``--load-logstores``
  logstores (4-20 shards each), one heartbeat per consumer per second, for ``--load-seconds``. Hub CPU (user+system
  of its pid) as a % of one core, CPU-seconds per 1,000 heartbeats, achieved heartbeats/s, latency p50/p99.
  Target: 1,000 heartbeats/s for < 20% of one core.

Every phase checks that no shard was ever read by two consumers at once: a consumer starts reading when its
response arrives and stops when it sends the heartbeat that no longer reports the shard. These are the
conservative ends, because the hub sees the release after that send and sends the grant before that arrival.

Usage: python bench/groups.py [--quick] [--interval 1.0] [--timeout 3] [--trials 5] [--load-consumers 1000] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
from _harness import percentile, report  # noqa: E402

from sluice.client._async import AsyncClient  # noqa: E402
from sluice.client._transport import Transport  # noqa: E402
from sluice.testing import HubProcess, free_port  # noqa: E402

PROJECT = "bench"
_JSON = {"Content-Type": "application/json"}
now = time.perf_counter


# ---------------------------------------------------------------------------------------------- simulation
@dataclass
class Tracker:
    """Who reads which shard of one group, as the simulated consumers see it; records double reads."""

    shards: list[int]
    readers: dict[int, set[str]] = field(default_factory=dict)
    alive: set[str] = field(default_factory=set)
    double_reads: list[tuple[float, int, tuple[str, ...]]] = field(default_factory=list)
    moves: int = 0  # shard acquisitions by a consumer other than the shard's previous reader
    last_reader: dict[int, str] = field(default_factory=dict)
    on_change: Any = None

    def acquire(self, consumer: str, shard: int) -> None:
        holders = self.readers.setdefault(shard, set())
        if holders - {consumer}:
            self.double_reads.append((now(), shard, tuple(sorted(holders | {consumer}))))
        holders.add(consumer)
        prev = self.last_reader.get(shard)
        if prev is not None and prev != consumer:
            self.moves += 1
        self.last_reader[shard] = consumer

    def release(self, consumer: str, shard: int) -> None:
        self.readers.get(shard, set()).discard(consumer)

    def counts(self) -> dict[str, int]:
        c = dict.fromkeys(self.alive, 0)
        for shard in self.shards:
            for r in self.readers.get(shard, ()):
                if r in c:
                    c[r] += 1
        return c

    def balanced(self) -> bool:
        """Every shard read by exactly one alive consumer, and the alive consumers' counts differ by at most one."""
        if not self.alive:
            return False
        for shard in self.shards:
            r = self.readers.get(shard, ())
            if len(r) != 1 or next(iter(r)) not in self.alive:
                return False
        counts = self.counts().values()
        return max(counts) - min(counts) <= 1

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


class SimConsumer:
    """One SDK-like consumer: heartbeats what it holds every ``interval`` seconds, reads what it is granted."""

    def __init__(self, name: str, tracker: Tracker, transport: Transport, logstore: str, group: str,
                 interval: float, phase: float) -> None:
        self.name = name
        self.tracker = tracker
        self.transport = transport
        self.path = f"/logstores/{logstore}/consumergroups/{group}"
        self.params = [("type", "heartbeat"), ("consumer", name)]
        self.interval = interval
        self.phase = phase
        self.held: frozenset[int] = frozenset()  # the last response: what the next heartbeat reports
        self.reading: set[int] = set()  # held, plus revoked shards not yet released
        self.beats = 0
        self.errors = 0
        self.latencies: list[float] | None = None  # seconds, recorded only while set
        self.die_after_beat = False
        self.died_at: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.stopping = False
        self.in_flight = False

    async def beat(self) -> None:
        tr = self.tracker
        for shard in self.reading - self.held:  # released: the consumer stops reporting them from this heartbeat on
            tr.release(self.name, shard)
        self.reading = set(self.held)
        body = json.dumps(sorted(self.held)).encode()
        t0 = now()
        self.in_flight = True
        try:
            resp = await self.transport.request("POST", self.path, project=PROJECT, params=self.params,
                                                headers=_JSON, body=body, retry=False)
        except Exception:  # noqa: BLE001 - counted; the consumer keeps what it has, as the SDK does
            self.errors += 1
            return
        finally:
            self.in_flight = False
        if self.latencies is not None:
            self.latencies.append(now() - t0)
        granted = frozenset(int(s) for s in resp.json())
        for shard in sorted(granted - self.reading):
            tr.acquire(self.name, shard)
        self.reading |= granted
        self.held = granted
        self.beats += 1
        tr.changed()

    def die(self) -> None:
        """Killed: stops reading everything at once and never heartbeats again."""
        for shard in self.reading:
            self.tracker.release(self.name, shard)
        self.reading = set()
        self.tracker.alive.discard(self.name)
        self.died_at = now()
        self.tracker.changed()

    async def run(self, start: float) -> None:
        k = 0
        while True:
            delay = start + self.phase + k * self.interval - now()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.stopping:
                return
            await self.beat()
            if self.stopping:
                return
            if self.die_after_beat:
                self.die()
                return
            k += 1

    def start(self, start: float | None = None) -> None:
        self.tracker.alive.add(self.name)
        self.task = asyncio.create_task(self.run(now() if start is None else start))


async def stop_all(consumers: list[SimConsumer]) -> None:
    """Stop every consumer. One in the middle of a heartbeat finishes it first: cancelling a request mid-flight
    can leave a broken connection in the pool for the next request to trip over."""
    for c in consumers:
        c.stopping = True
        if c.task is not None and not c.task.done() and not c.in_flight:
            c.task.cancel()
    await asyncio.gather(*(c.task for c in consumers if c.task is not None), return_exceptions=True)


async def wait_for(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
        return True
    except TimeoutError:
        return False


# ---------------------------------------------------------------------------------------------- rebalance
async def rebalance_trial(client: AsyncClient, logstore: str, shards: int, group: str, n: int, interval: float,
                          timeout: int, rng: random.Random) -> dict[str, Any]:
    await client.create_consumer_group(PROJECT, logstore, group, timeout)
    tr = Tracker(list(range(shards)))
    settled = asyncio.Event()
    tr.on_change = lambda: settled.set() if tr.balanced() else None
    consumers = [SimConsumer(f"c{i}", tr, client.transport, logstore, group, interval, rng.uniform(0, interval))
                 for i in range(n)]
    t_start = now()
    for c in consumers:
        c.start(t_start)
    try:
        if not await wait_for(settled, 10 * interval + timeout):
            raise RuntimeError(f"{group}: the first {n} consumers never balanced: {tr.counts()}")
        await asyncio.sleep(interval * rng.uniform(1.0, 2.0))  # steady state, then join at a random moment
        moves_before = tr.moves
        balanced = asyncio.Event()
        joiner = SimConsumer(f"c{n}", tr, client.transport, logstore, group, interval, 0.0)
        at: list[tuple[float, int]] = []  # when the group became balanced, and the joiner's heartbeats by then

        def check() -> None:
            if not at and tr.balanced():
                at.append((now(), joiner.beats))
                balanced.set()

        tr.on_change = check
        consumers.append(joiner)
        t_join = now()
        joiner.start(t_join)  # "alive" from now: the group is unbalanced until the joiner reads its share
        ok = await wait_for(balanced, 10 * interval + timeout)
        t_bal, beats = at[0] if at else (now(), joiner.beats)
        rounds = beats - 1  # heartbeat intervals: the joiner's heartbeats after its first, up to the balance
        seconds = t_bal - t_join
        counts = tr.counts()
        moves = tr.moves - moves_before
        await asyncio.sleep(2 * interval)  # it must stay balanced, with no further moves
        stable = tr.balanced() and tr.moves - moves_before == moves
    finally:
        await stop_all(consumers)
    return {"ok": ok, "seconds": seconds, "intervals": seconds / interval, "rounds": rounds, "moves": moves,
            "counts": sorted(counts.values()), "stable": stable, "double_reads": len(tr.double_reads),
            "errors": sum(c.errors for c in consumers)}


# ---------------------------------------------------------------------------------------------- failover
async def failover_trial(client: AsyncClient, logstore: str, shards: int, group: str, n: int, interval: float,
                         timeout: int, rng: random.Random) -> dict[str, Any]:
    await client.create_consumer_group(PROJECT, logstore, group, timeout)
    tr = Tracker(list(range(shards)))
    settled = asyncio.Event()
    tr.on_change = lambda: settled.set() if tr.balanced() else None
    consumers = [SimConsumer(f"c{i}", tr, client.transport, logstore, group, interval, rng.uniform(0, interval))
                 for i in range(n)]
    t_start = now()
    for c in consumers:
        c.start(t_start)
    try:
        if not await wait_for(settled, 10 * interval + timeout):
            raise RuntimeError(f"{group}: the {n} consumers never balanced: {tr.counts()}")
        await asyncio.sleep(interval * rng.uniform(1.0, 2.0))
        victim = max(consumers, key=lambda c: (len(c.reading), c.name))  # the one with the most shards
        lost = set(victim.reading)
        taken = asyncio.Event()
        t_taken: list[float] = []
        t_balanced: list[float] = []
        balanced = asyncio.Event()

        def check() -> None:
            if victim.died_at is None:
                return
            if not t_taken and all(tr.readers.get(s) and tr.readers[s] <= tr.alive for s in lost):
                t_taken.append(now())
                taken.set()
            if not t_balanced and tr.balanced():
                t_balanced.append(now())
                balanced.set()

        tr.on_change = check
        victim.die_after_beat = True  # dies right after its next heartbeat: the hub has just seen it alive
        while victim.died_at is None:
            await asyncio.sleep(interval / 20)
        t_dead = victim.died_at
        ok = await wait_for(taken, timeout + 10 * interval) and await wait_for(balanced, 10 * interval)
        t_bal = t_balanced[0] if t_balanced else now()
        seconds = (t_taken[0] if t_taken else t_bal) - t_dead
        await asyncio.sleep(interval)
        stable = tr.balanced()
    finally:
        await stop_all(consumers)
    return {"ok": ok, "lost": len(lost), "seconds": seconds, "balanced_s": t_bal - t_dead,
            "beyond_timeout_intervals": (seconds - timeout) / interval, "counts": sorted(tr.counts().values()),
            "stable": stable, "double_reads": len(tr.double_reads), "errors": sum(c.errors for c in consumers)}


# ---------------------------------------------------------------------------------------------- load
async def heartbeat_load(client: AsyncClient, hub_pid: int, *, consumers: int, logstores: int,
                         min_shards: int, max_shards: int, period: float, warmup: float, seconds: float,
                         timeout: int, rng: random.Random) -> dict[str, Any]:
    sem = asyncio.Semaphore(8)
    shard_counts = [rng.randint(min_shards, max_shards) for _ in range(logstores)]

    async def setup(i: int) -> None:
        async with sem:
            await client.create_logstore(PROJECT, f"load{i}", ttl=1, shard_count=shard_counts[i])
            await client.create_consumer_group(PROJECT, f"load{i}", "load", timeout)

    t0 = now()
    await asyncio.gather(*(setup(i) for i in range(logstores)))
    setup_s = now() - t0

    trackers = [Tracker(list(range(shard_counts[i]))) for i in range(logstores)]
    sims = [SimConsumer(f"c{j}", trackers[j % logstores], client.transport, f"load{j % logstores}", "load", period,
                        period * j / consumers)  # phases spread evenly: a steady rate, not bursts
            for j in range(consumers)]
    out: dict[str, Any] = {"setup_s": setup_s, "shards_total": sum(shard_counts)}
    before: list[int] = []
    out |= await measure(sims, hub_pid, warmup, seconds,
                         on_start=lambda: before.append(sum(t.balanced() for t in trackers)))
    out |= {"target_per_s": consumers / period, "groups_balanced_after_warmup": before[0],
            "groups_balanced_at_end": sum(t.balanced() for t in trackers),
            "double_reads": sum(len(t.double_reads) for t in trackers)}
    return out


class Pinger(SimConsumer):
    """The baseline: the cheapest signed request (GetProject), on the same schedule as a consumer's heartbeats."""

    async def beat(self) -> None:
        t0 = now()
        self.in_flight = True
        try:
            await self.transport.request("GET", "/", project=PROJECT, retry=False)
        except Exception:  # noqa: BLE001 - counted
            self.errors += 1
            return
        finally:
            self.in_flight = False
        if self.latencies is not None:
            self.latencies.append(now() - t0)
        self.beats += 1


async def baseline_load(client: AsyncClient, hub_pid: int, *, clients: int, period: float, warmup: float,
                        seconds: float) -> dict[str, Any]:
    tr = Tracker([])
    sims: list[SimConsumer] = [Pinger(f"p{j}", tr, client.transport, "-", "-", period, period * j / clients)
                               for j in range(clients)]
    return {**await measure(sims, hub_pid, warmup, seconds), "target_per_s": clients / period}


async def measure(sims: list[SimConsumer], hub_pid: int, warmup: float, seconds: float,
                  on_start: Any = None) -> dict[str, Any]:
    """Start ``sims``, let them warm up, then measure requests/s, latency and the CPU of the hub and of us."""
    hub = psutil.Process(hub_pid)
    me = psutil.Process(os.getpid())
    start = now() + 0.05
    for s in sims:
        s.start(start)
    try:
        await asyncio.sleep(warmup)
        if on_start is not None:
            on_start()
        lat: list[float] = []
        for s in sims:
            s.latencies = lat
        n0, e0 = sum(s.beats for s in sims), sum(s.errors for s in sims)
        h0, m0, w0 = hub.cpu_times(), me.cpu_times(), now()
        await asyncio.sleep(seconds)
        h1, m1, w1 = hub.cpu_times(), me.cpu_times(), now()
        n1, e1 = sum(s.beats for s in sims), sum(s.errors for s in sims)
        for s in sims:
            s.latencies = None
    finally:
        await stop_all(sims)
    wall = w1 - w0
    hub_cpu = (h1.user + h1.system) - (h0.user + h0.system)
    gen_cpu = (m1.user + m1.system) - (m0.user + m0.system)
    n = n1 - n0
    return {"wall_s": wall, "requests": n, "errors": e1 - e0, "per_s": n / wall,
            "hub_cpu_s": hub_cpu, "hub_cpu_pct": 100 * hub_cpu / wall,
            "hub_cpu_s_per_1k": hub_cpu / (n / 1000) if n else float("nan"), "gen_cpu_pct": 100 * gen_cpu / wall,
            "p50_ms": 1000 * percentile(lat, 50), "p99_ms": 1000 * percentile(lat, 99),
            "max_ms": 1000 * max(lat) if lat else float("nan")}


async def idle_cpu(hub_pid: int, seconds: float) -> float:
    """The hub's CPU % of one core with no requests at all (its timers and threads)."""
    p = psutil.Process(hub_pid)
    c0, w0 = p.cpu_times(), now()
    await asyncio.sleep(seconds)
    c1, w1 = p.cpu_times(), now()
    return float(100 * ((c1.user + c1.system) - (c0.user + c0.system)) / (w1 - w0))


# ---------------------------------------------------------------------------------------------- main
def _median(values: list[float]) -> float:
    return percentile(values, 50)


_COLUMNS = ("test", "trials", "median_s", "max_s", "result", "CPU_s_per_1k", "p50_ms", "p99_ms", "double_reads",
            "target", "pass", "detail")


def _row(**values: Any) -> dict[str, Any]:
    """One table row, every column in the same order (blank where it does not apply)."""
    assert set(values) <= set(_COLUMNS), set(values) - set(_COLUMNS)
    return {c: values.get(c) for c in _COLUMNS}


async def main_async(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        hub = HubProcess(Path(tmp) / "data", host="127.0.0.1", port=free_port())
        hub.start()
        assert hub.proc is not None
        client = AsyncClient(hub.url, hub.access_key_id, hub.access_key_secret, timeout=30)
        try:
            await client.create_project(PROJECT)
            await client.create_logstore(PROJECT, "groups", ttl=1, shard_count=args.shards)
            H, T = args.interval, args.timeout

            # 1. rebalance after a join
            rb = [await rebalance_trial(client, "groups", args.shards, f"rb{i}", args.consumers, H, T, rng)
                  for i in range(args.trials)]
            extra["rebalance_trials"] = rb
            rb_ok = all(r["ok"] and r["stable"] for r in rb)
            rb_double = sum(r["double_reads"] for r in rb)
            rows.append(_row(
                test=f"rebalance: {args.consumers}->{args.consumers + 1} consumers, {args.shards} shards",
                trials=len(rb), median_s=_median([r["seconds"] for r in rb]), max_s=max(r["seconds"] for r in rb),
                result=f"{max(r['intervals'] for r in rb):.2f} H, {max(r['rounds'] for r in rb)} intervals",
                double_reads=rb_double, target="<= 2 heartbeat intervals",
                **{"pass": rb_ok and max(r["rounds"] for r in rb) <= 2 and rb_double == 0},
                detail=f"H={H:g}s, {max(r['moves'] for r in rb)} shards moved, counts {rb[0]['counts']}, "
                       f"{sum(r['errors'] for r in rb)} errors" + ("" if rb_ok else ", NOT BALANCED/STABLE")))

            # 2. failover
            n_fo = args.consumers + 1
            fo = [await failover_trial(client, "groups", args.shards, f"fo{i}", n_fo, H, T, rng)
                  for i in range(args.trials)]
            extra["failover_trials"] = fo
            fo_ok = all(r["ok"] and r["stable"] for r in fo)
            fo_double = sum(r["double_reads"] for r in fo)
            rows.append(_row(
                test=f"failover: 1 of {n_fo} consumers killed, {args.shards} shards",
                trials=len(fo), median_s=_median([r["seconds"] for r in fo]), max_s=max(r["seconds"] for r in fo),
                result=f"T + {max(r['beyond_timeout_intervals'] for r in fo):.2f} H",
                double_reads=fo_double, target=f"<= T + 1 interval ({T + H:g} s)",
                **{"pass": fo_ok and max(r["seconds"] for r in fo) <= T + H and fo_double == 0},
                detail=f"T={T}s H={H:g}s, {max(r['lost'] for r in fo)} shards lost, balanced after max "
                       f"{max(r['balanced_s'] for r in fo):.2f} s, counts {fo[0]['counts']}, "
                       f"{sum(r['errors'] for r in fo)} errors" + ("" if fo_ok else ", NOT BALANCED/STABLE")))

            # 3. heartbeat cost, and the same rate of the cheapest signed request for comparison
            idle = await idle_cpu(hub.proc.pid, 1.0 if args.quick else 2.0)
            load_before = os.getloadavg()
            ld = await heartbeat_load(client, hub.proc.pid, consumers=args.load_consumers,
                                      logstores=args.load_logstores,
                                      min_shards=args.load_min_shards, max_shards=args.load_max_shards,
                                      period=args.load_period, warmup=args.load_warmup, seconds=args.load_seconds,
                                      timeout=args.load_timeout, rng=rng)
            ld |= {"hub_idle_cpu_pct": idle, "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
            extra["load"] = ld
            reached = ld["per_s"] >= 0.95 * ld["target_per_s"]
            full = args.load_consumers == 1000 and args.load_period == 1.0
            rows.append(_row(
                test=f"heartbeat cost: {args.load_consumers} consumers, {args.load_logstores} groups",
                trials=1, result=f"{ld['per_s']:.0f} hb/s, hub {ld['hub_cpu_pct']:.1f}% of a core",
                CPU_s_per_1k=ld["hub_cpu_s_per_1k"], p50_ms=ld["p50_ms"], p99_ms=ld["p99_ms"],
                double_reads=ld["double_reads"],
                target=f"{ld['target_per_s']:.0f} hb/s for < 20% core" + ("" if full else " (scaled: < 0.2 CPU-s/1k)"),
                **{"pass": ld["hub_cpu_s_per_1k"] < 0.2 and (ld["hub_cpu_pct"] < 20 or not reached)
                   and ld["errors"] == 0 and ld["double_reads"] == 0},
                detail=f"{ld['shards_total']} shards, {ld['wall_s']:.0f} s measured, rate "
                       f"{'reached' if reached else 'NOT reached'}, {ld['errors']} errors, "
                       f"{ld['groups_balanced_at_end']}/{args.load_logstores} groups balanced, hub idle {idle:.1f}%, "
                       f"generator {ld['gen_cpu_pct']:.0f}% core, loadavg {load_before[0]:.1f}/"
                       f"{ld['loadavg_after'][0]:.1f}"))
            if args.baseline:
                bl = await baseline_load(client, hub.proc.pid, clients=args.load_consumers, period=args.load_period,
                                         warmup=min(2.0, args.load_warmup), seconds=args.baseline_seconds)
                extra["baseline"] = bl
                rows.append(_row(
                    test=f"baseline: GetProject at the same rate ({args.load_consumers} clients)",
                    trials=1, result=f"{bl['per_s']:.0f} req/s, hub {bl['hub_cpu_pct']:.1f}% of a core",
                    CPU_s_per_1k=bl["hub_cpu_s_per_1k"], p50_ms=bl["p50_ms"], p99_ms=bl["p99_ms"],
                    target="reference: any signed request",
                    detail=f"{bl['wall_s']:.0f} s measured, {bl['errors']} errors, "
                           f"generator {bl['gen_cpu_pct']:.0f}% core"))
        finally:
            await client.aclose()
            hub.close()

    ld = extra["load"]
    summary = (f"rebalance max {rows[0]['max_s']:.2f} s ({rows[0]['result']}), "
               f"failover max {rows[1]['max_s']:.2f} s ({rows[1]['result']}), "
               f"{ld['per_s']:.0f} hb/s at {ld['hub_cpu_pct']:.1f}% core ({ld['hub_cpu_s_per_1k']:.3f} CPU-s/1k), "
               f"p50 {ld['p50_ms']:.2f} ms p99 {ld['p99_ms']:.2f} ms, "
               f"double reads {sum(r['double_reads'] or 0 for r in rows)}"
               + (" [quick]" if args.quick else ""))
    report("groups", rows, summary=summary, extra={**extra, "quick": args.quick})
    if any(r["pass"] is False for r in rows):
        print("\nsome targets were missed: see the pass column")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    p.add_argument("--interval", type=float, default=1.0, help="heartbeat interval H of rebalance/failover (s)")
    p.add_argument("--timeout", type=int, default=3, help="group timeout T of rebalance/failover (whole s)")
    p.add_argument("--shards", type=int, default=8, help="shards of the rebalance/failover logstore")
    p.add_argument("--consumers", type=int, default=2, help="consumers before the join (failover uses one more)")
    p.add_argument("--trials", type=int, default=5, help="rebalance and failover trials, random phases each")
    p.add_argument("--load-consumers", type=int, default=1000)
    p.add_argument("--load-logstores", type=int, default=100, help="one group per logstore")
    p.add_argument("--load-min-shards", type=int, default=4)
    p.add_argument("--load-max-shards", type=int, default=20)
    p.add_argument("--load-period", type=float, default=1.0, help="heartbeat period of each load consumer (s)")
    p.add_argument("--load-warmup", type=float, default=4.0, help="seconds before measuring (groups settle)")
    p.add_argument("--load-seconds", type=float, default=18.0, help="measured seconds")
    p.add_argument("--load-timeout", type=int, default=10, help="group timeout of the load groups (s)")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure GetProject at the same rate: the hub's cost of any signed request")
    p.add_argument("--baseline-seconds", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if args.quick:
        args.interval, args.timeout, args.trials = min(args.interval, 0.3), 1, 1
        args.load_consumers, args.load_logstores = 100, 10
        args.load_warmup, args.load_seconds, args.baseline_seconds = 1.5, 3.0, 2.0
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
