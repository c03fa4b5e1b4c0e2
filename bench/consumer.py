"""The official SDK's ConsumerWorker against sluice's consumer, in the same run, same hub, same data.

A hub subprocess (port 80 on a fresh 127.0.0.x, so the SDK connects with ``endpoint=<ip>``) holds one source
logstore of 4 shards: nginx-like LogGroups (``make_group`` from bench/hub.py, ``--group-logs`` logs each) under
three topics (ngnix / sql_audit / click, round robin), ``--mb`` MB of raw LogGroup bytes in all. Every consumer
reads all of it from the beginning in its own consumer group, in its own subprocess, one consumer at a time,
so the consumer process's CPU (user+sys from getrusage in the child, from just before the worker is built until
its handler has seen every group) and its peak RSS (ru_maxrss) belong to that consumer alone. The hub's CPU
over the same run is shown apart (``hub_cpu_s``).

Handlers, each run by:

* ``sdk``: ``aliyun.log.consumer`` unchanged. ``data_fetch_interval`` is the SDK's main-loop period and thus
  the interval between PullLogs of a shard: run with its default (2 s) and tuned to 0.1 s (full run), only
  tuned in ``--quick``. Other options are the seeds' (heartbeat 20 s default, 2 pool threads).
* ``sluice compat``: the same seed code with only its imports switched: ``aliyun.log.consumer`` to
  ``sluice.consumer`` and ``aliyun.log`` (``LogClient``) to ``sluice.compat``.
* ``sluice native``: ``AsyncConsumer`` with a handler function, on uvloop, after ``tune_allocator()`` (as
  docs/consumer.md advises for a busy consumer and ``sluice run`` does; the SDK and compat children run
  with the allocator as it is).

(a) dispatch by topic into three other logstores (seed 004): SDK and compat use ``ConsumerProcessorAdaptor`` and
    ``LogClient.put_log_raw`` (the seed's code; the SDK's LogClient, or sluice.compat's); native groups a batch's LogGroups by target and
    awaits ``AsyncClient.put_log_groups`` for each target at once: the received bytes are forwarded without
    parsing the logs, consecutive groups with the same header packed into one PutLogs (wire/pack.py).
    Each run has its own three target logstores, read back afterwards: they must hold exactly the source's
    logs (counted, since packing makes fewer, larger groups).
(b) build a dict per log and count fields (seed 002's ``process``: iterate ``log_group.Logs``, a dict of
    ``Contents`` each); native twice: ``batch.logs()`` (the whole batch at once) and ``group.logs()`` per group,
    both in a sync handler (sluice runs it on a worker thread, as its docs advise for CPU-bound code).

Figures: raw MB processed, wall seconds from start until every group was handled (and until the first batch was
handled), wall MB/s, consumer CPU seconds (and the system part), CPU ms per raw MB, raw MB per CPU second ("per
consumer core"), peak RSS, and CPU/MB of the best SDK configuration of that handler (the lowest CPU/MB, the conservative
reference) divided by the row's: "x less CPU than the SDK".

Each consumer of (a) and (b) runs ``--repeat`` times (3; 1 in ``--quick``), the repetitions interleaved (every
consumer once, then every consumer again), because this kind of machine moves a run's CPU by 10-20% from one
minute to the next and a single run per consumer made the ratio a coin toss near a target. A row is the
consumer's median run by CPU (a real run, all its figures from it); ``cpu_s_each_run`` lists every run, and
``x_each_run`` the ratio within each repetition. Targets are judged on the medians.

(c) latency: a producer in this process puts small batches (``ts`` field = time.time()) at a steady rate into a
    2-shard logstore while one sluice native consumer (its own process) reads; latency = handler time - ts.
(e) start-up: a consumer process from exec until its processor handled the first (small) batch, the SDK's and
    the compat consumer's (seed 002's options), ``--repeat`` times each, interleaved: the whole process's CPU
    (interpreter, imports, set-up, the first fetch; the first two the same for both). Target: compat <= SDK.
(d) idle: one process and one event loop following ``--idle-logstores`` logstores x 2 shards, one AsyncConsumer
    each (default settings), first with one shared AsyncClient, then (full run) with an AsyncClient per consumer
    and, as a reference for the knob, the shared client with ``heartbeat_interval=5``.
    After all shards are held and ``--idle-settle`` seconds: % of a core (getrusage) and RSS over
    ``--idle-seconds``, the client's CPU per request, and from the hub's /metrics the heartbeats and PullLogs it
    received meanwhile. A row is ok only if every shard stayed held and >= 80% of the heartbeats due arrived.
    A process's heartbeats fall on a grid (every interval, all at once), so a 25 s window holds 8 or 9 rounds
    of a 3 s interval: the rate reads 64/s or 72/s for 67/s due, depending on the phase.

Targets: (a) native >= 300 MB/s of raw logs per consumer core and >= 4.5x less CPU/MB than the SDK, compat (the
seed with only its imports changed) >= 3x (goal 4x); (b) native >= 3.5x, compat (seed 002's handler) >= 2.5x
(goal 3x); (c) p99 < 300 ms; (d) < 3% of a core and < 200 MB RSS.

Usage: python bench/consumer.py [--quick] [--mb 200] [--group-logs 1024] [--skip-sdk-default] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MB = 1_000_000
PROJECT = "bench"
SOURCE = "src"
SHARDS = 4
TOPICS = ("ngnix", "sql_audit", "click")  # seed 004's spelling
KEY_SPACE = 1 << 128
METRICS_TOKEN = "bench-consumer"
SEED_START_TIME = "2018-12-26 0:0:0"  # seed 004's cursor_start_time (before any data: reads from the beginning)


# ============================================================================================== child side
def _usage() -> tuple[float, float, int, int]:
    """(user s, system s, peak RSS bytes, minor page faults) of this process, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_maxrss * 1024, r.ru_minflt


def _rss_now() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process, bytes."""
    rss = hwm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return rss, hwm


def _emit(tag: str, payload: Any = None) -> None:
    sys.stdout.write(f"{tag} {json.dumps(payload)}\n")
    sys.stdout.flush()


class Progress:
    """What the handlers saw; thread-safe (the SDK and compat run processors on pool threads)."""

    def __init__(self, total_groups: int) -> None:
        self.total_groups = total_groups
        self.groups = self.logs = self.fields = self.forwarded = 0
        self.first: float | None = None
        self.done_at: float | None = None
        self.done = threading.Event()
        self.on_done: Any = None  # called once (from the handler's thread) when every group was seen
        self._lock = threading.Lock()

    def add(self, groups: int, logs: int = 0, fields: int = 0, forwarded: int = 0) -> None:
        with self._lock:
            if self.first is None:
                self.first = time.perf_counter()
            self.groups += groups
            self.logs += logs
            self.fields += fields
            self.forwarded += forwarded
            if self.groups >= self.total_groups and not self.done.is_set():
                self.done_at = time.perf_counter()
                self.done.set()
                if self.on_done is not None:
                    self.on_done()


def _measure_done(spec: dict[str, Any], progress: Progress, t0: float, u0: tuple[float, float, int, int],
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    u1 = _usage()
    end = progress.done_at or time.perf_counter()
    return {"ok": progress.done.is_set(), "groups": progress.groups, "logs": progress.logs, "fields": progress.fields,
            "forwarded": progress.forwarded, "wall_s": end - t0,
            "first_batch_s": (progress.first - t0) if progress.first else None,
            "user_s": u1[0] - u0[0], "sys_s": u1[1] - u0[1], "peak_rss": u1[2], "minflt": u1[3] - u0[3],
            **(extra or {})}


def _seed_processor(base: type, progress: Progress) -> type:
    """Seed 002's SampleConsumer, minus the print and the ever-growing results list (the dicts are built and
    their fields counted, then dropped), with the seed's checkpoint logic."""

    class SampleConsumer(base):  # type: ignore[misc, valid-type]
        shard_id = -1
        last_check_time = 0.0

        def initialize(self, shard: int) -> None:
            self.shard_id = shard

        def process(self, log_groups: Any, check_point_tracker: Any) -> None:
            n_groups = n_logs = n_fields = 0
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
                n_groups += 1
                n_logs += len(items)
                n_fields += sum(len(i) for i in items)
            progress.add(n_groups, n_logs, n_fields)
            current_time = time.time()
            if current_time - self.last_check_time > 3:
                self.last_check_time = current_time
                check_point_tracker.save_check_point(True)
            else:
                check_point_tracker.save_check_point(False)
            return None

        def shutdown(self, check_point_tracker: Any) -> None:
            check_point_tracker.save_check_point(True)

    return SampleConsumer


def _run_seed(spec: dict[str, Any]) -> dict[str, Any]:
    """The SDK, or sluice's drop-in: the seed code, only the consumer import differs."""
    from functools import partial

    if spec["impl"] == "sdk":
        from aliyun.log import LogClient
        from aliyun.log.consumer import (ConsumerProcessorAdaptor, ConsumerProcessorBase, ConsumerWorker,
                                         CursorPosition, LogHubConfig)
    else:  # the seed with its imports switched: aliyun.log -> sluice.compat, aliyun.log.consumer -> sluice.consumer
        from sluice.compat import LogClient  # type: ignore[assignment]
        from sluice.consumer import (ConsumerProcessorAdaptor, ConsumerProcessorBase,  # type: ignore[assignment]
                                     ConsumerWorker, CursorPosition, LogHubConfig)
    import logging
    logging.basicConfig(level=logging.ERROR)
    progress = Progress(spec["total_groups"])
    endpoint, key_id, key = spec["endpoint"], spec["key_id"], spec["key_secret"]
    t0, u0 = time.perf_counter(), _usage()
    option = LogHubConfig(endpoint, key_id, key, spec["project"], spec["logstore"], spec["group"],
                          f"{spec['group']}-{os.getpid()}", cursor_position=CursorPosition.SPECIAL_TIMER_CURSOR,
                          cursor_start_time=SEED_START_TIME, data_fetch_interval=spec.get("fetch_interval"))
    if spec["handler"] == "dispatch":
        # seed 004: bind put_log_raw per target logstore, route each group by its topic
        to_client = LogClient(endpoint, key_id, key)
        put_methods = {topic: partial(to_client.put_log_raw, project=spec["project"], logstore=ls)
                       for topic, ls in spec["targets"].items()}

        def copy_data(shard_id: int, log_groups: Any) -> None:
            n = forwarded = 0
            for log_group in log_groups.LogGroups:
                n += 1
                if log_group.Topic in put_methods:
                    put_methods[log_group.Topic](log_group=log_group)
                    forwarded += 1
            progress.add(n, forwarded=forwarded)

        worker = ConsumerWorker(ConsumerProcessorAdaptor, option, args=(copy_data,))
    else:
        worker = ConsumerWorker(_seed_processor(ConsumerProcessorBase, progress), consumer_option=option)
    worker.start()
    progress.done.wait(spec["timeout"])
    return _measure_done(spec, progress, t0, u0)
    # no shutdown: not measured, and the SDK's takes seconds; the process exits right after reporting


def _run_startup(spec: dict[str, Any]) -> dict[str, Any]:
    """(e): a consumer process from exec until its processor has handled the first (small) batch: the whole
    process's CPU (interpreter, imports, setting up, the first fetch), the SDK's or the compat consumer's, with
    seed 002's options. This child has imported only the bench module so far (the same for both)."""
    u_start = _usage()
    t0 = time.perf_counter()
    if spec["impl"] == "sdk":
        from aliyun.log.consumer import ConsumerProcessorBase, ConsumerWorker, CursorPosition, LogHubConfig
    else:
        from sluice.consumer import (ConsumerProcessorBase, ConsumerWorker,  # type: ignore[assignment]
                                     CursorPosition, LogHubConfig)
    u_imported = _usage()
    got = threading.Event()

    class First(ConsumerProcessorBase):  # type: ignore[misc, valid-type]
        def process(self, log_groups: Any, check_point_tracker: Any) -> None:
            for g in log_groups.LogGroups:
                for log in g.Logs:
                    _ = [(c.Key, c.Value) for c in log.Contents]
            got.set()

    option = LogHubConfig(spec["endpoint"], spec["key_id"], spec["key_secret"], spec["project"], spec["logstore"],
                          spec["group"], f"{spec['group']}-{os.getpid()}",
                          cursor_position=CursorPosition.BEGIN_CURSOR, heartbeat_interval=6, data_fetch_interval=1)
    worker = ConsumerWorker(First, consumer_option=option)
    worker.start()
    got.wait(spec["timeout"])
    u_end = _usage()
    return {"ok": got.is_set(), "wall_s": time.perf_counter() - t0,
            "before_import_cpu_s": u_start[0] + u_start[1], "import_cpu_s": sum(u_imported[:2]) - sum(u_start[:2]),
            "start_cpu_s": sum(u_end[:2]) - sum(u_imported[:2]), "total_cpu_s": u_end[0] + u_end[1]}


async def _startup(args: argparse.Namespace, client: Any, runner: "Runner", rows: list[dict[str, Any]]) -> None:
    """(e): start-up cost, SDK and compat interleaved, ``--repeat`` times each; a row is the median by total CPU."""
    from hub import make_group

    ls = "startup"
    await client.create_logstore(PROJECT, ls, ttl=1, shard_count=2)
    await client.put_log_group(PROJECT, ls, make_group(16, seed=3))
    runs: dict[str, list[dict[str, Any]]] = {"sdk": [], "sluice compat": []}
    for rep in range(1 if args.quick else args.repeat):
        for i, name in enumerate(runs):
            res = await runner.child({"kind": "startup", "impl": "sdk" if name == "sdk" else "sluice",
                                      "name": f"startup-{name}", "logstore": ls, "group": f"g_e{i}r{rep}",
                                      "timeout": 60})
            runs[name].append(res)
            print(f"  (e) start-up  {name:27s} run {rep + 1}: {res['total_cpu_s']:.2f} CPU s in all "
                  f"(imports {res['import_cpu_s']:.2f}, start to first batch {res['start_cpu_s']:.2f}), "
                  f"first batch after {res['wall_s']:.1f} s", flush=True)
    med = {n: sorted(rs, key=lambda r: r["total_cpu_s"])[len(rs) // 2] for n, rs in runs.items()}
    for name, r in med.items():
        row = {"test": "(e) start-up", "consumer": name, "ok": "yes" if all(x["ok"] for x in runs[name]) else "NO",
               "wall_s": r["wall_s"], "cpu_s": r["total_cpu_s"], "import_cpu_s": r["import_cpu_s"],
               "start_cpu_s": r["start_cpu_s"],
               "cpu_s_each_run": " ".join(f"{x['total_cpu_s']:.2f}" for x in runs[name])}
        if name != "sdk":
            row["target"] = "<= the SDK's CPU (exec to first batch)"
            row["met"] = "yes" if r["total_cpu_s"] <= med["sdk"]["total_cpu_s"] and row["ok"] == "yes" else "NO"
        rows.append(row)


async def _run_native(spec: dict[str, Any]) -> dict[str, Any]:
    from sluice.client import AsyncClient
    from sluice.consumer import AsyncConsumer, ConsumerConfig, tune_allocator

    tune_allocator()  # as docs/consumer.md advises for a busy consumer process (and sluice run does)

    progress = Progress(spec["total_groups"])
    t0, u0 = time.perf_counter(), _usage()
    client = AsyncClient(spec["endpoint"], spec["key_id"], spec["key_secret"])
    project = spec["project"]
    if spec["handler"] == "dispatch":
        targets = spec["targets"]

        async def handle(batch: Any) -> None:
            by_target: dict[str, list[Any]] = {}
            for group in batch:
                ls = targets.get(group.topic)
                if ls is not None:
                    by_target.setdefault(ls, []).append(group)
            await asyncio.gather(*(client.put_log_groups(project, ls, groups) for ls, groups in by_target.items()))
            progress.add(batch.count, forwarded=sum(len(gs) for gs in by_target.values()))
    else:
        if spec.get("mode") == "group":
            def handle(batch: Any) -> None:  # type: ignore[misc]  # sync: runs on a worker thread
                n_logs = n_fields = 0
                for group in batch:
                    logs = group.logs()
                    n_logs += len(logs)
                    n_fields += sum(len(d) for d in logs)
                progress.add(batch.count, n_logs, n_fields)
        else:
            def handle(batch: Any) -> None:  # type: ignore[misc]  # sync: runs on a worker thread
                logs = batch.logs()
                progress.add(batch.count, len(logs), sum(len(d) for d in logs))

    consumer = AsyncConsumer(client, ConsumerConfig(project=project, logstore=spec["logstore"], group=spec["group"],
                                                    start="begin"), handler=handle)
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    progress.on_done = lambda: loop.call_soon_threadsafe(finished.set)
    await consumer.start()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(finished.wait(), spec["timeout"])
    result = _measure_done(spec, progress, t0, u0)
    await asyncio.wait_for(consumer.stop(), 30)
    await client.aclose()
    return result


async def _run_latency(spec: dict[str, Any]) -> dict[str, Any]:
    from sluice.client import AsyncClient
    from sluice.consumer import AsyncConsumer, ConsumerConfig

    client = AsyncClient(spec["endpoint"], spec["key_id"], spec["key_secret"])
    lat: list[float] = []
    done = asyncio.Event()

    async def handle(batch: Any) -> None:
        now = time.time()
        for d in batch.logs():
            lat.append((now - float(d["ts"])) * 1000)
        if len(lat) >= spec["expected"]:
            done.set()

    consumer = AsyncConsumer(client, ConsumerConfig(project=spec["project"], logstore=spec["logstore"],
                                                    group=spec["group"], start="begin"), handler=handle)
    await consumer.start()
    deadline = time.monotonic() + 30
    while len(consumer.shards) < spec["shards"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the shard routines read their checkpoints and start long-polling
    _emit("READY")
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(done.wait(), spec["timeout"])
    await asyncio.wait_for(consumer.stop(), 30)
    await client.aclose()
    return {"ok": len(lat) >= spec["expected"], "latencies_ms": lat}


async def _run_idle(spec: dict[str, Any]) -> dict[str, Any]:
    from sluice.client import AsyncClient
    from sluice.consumer import AsyncConsumer, ConsumerConfig

    n = len(spec["logstores"])
    if spec["shared_client"]:
        clients = [AsyncClient(spec["endpoint"], spec["key_id"], spec["key_secret"])] * n
    else:
        clients = [AsyncClient(spec["endpoint"], spec["key_id"], spec["key_secret"]) for _ in range(n)]
    handled = [0]

    async def handle(batch: Any) -> None:
        handled[0] += batch.count

    knobs = {"heartbeat_interval": spec["heartbeat_interval"]} if spec.get("heartbeat_interval") else {}
    consumers = [AsyncConsumer(client, ConsumerConfig(project=spec["project"], logstore=ls, group=spec["group"],
                                                      start="begin", **knobs), handler=handle)
                 for client, ls in zip(clients, spec["logstores"])]
    t_start = time.perf_counter()
    await asyncio.gather(*(c.start() for c in consumers))
    want = spec["shards"] * len(consumers)
    deadline = time.monotonic() + 120
    while sum(len(c.shards) for c in consumers) < want and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    held_at_start = sum(len(c.shards) for c in consumers)
    startup_s = time.perf_counter() - t_start
    await asyncio.sleep(spec["settle"])
    _emit("MEASURING")
    t0, u0 = time.perf_counter(), _usage()
    held_min = held_at_start
    end = t0 + spec["seconds"]
    while time.perf_counter() < end:  # a cheap check twice a second: is any shard lost meanwhile?
        await asyncio.sleep(0.5)
        held_min = min(held_min, sum(len(c.shards) for c in consumers))
    t1, u1 = time.perf_counter(), _usage()
    rss, hwm = _rss_now()
    _emit("MEASURED")
    result = {"ok": held_at_start == want and held_min == want, "startup_s": startup_s, "held_at_start": held_at_start,
              "held_min": held_min, "want": want, "seconds": t1 - t0, "cpu_s": (u1[0] - u0[0]) + (u1[1] - u0[1]),
              "rss": rss, "peak_rss": hwm, "handled": handled[0]}
    await asyncio.wait_for(asyncio.gather(*(c.stop() for c in consumers)), 60)
    for client in set(clients):
        await client.aclose()
    return result


def _run_loop(main: Any) -> Any:
    """sluice's own consumers run on uvloop, as ``sluice run`` does and docs/consumer.md advises
    (SLUICE_BENCH_LOOP=asyncio measures the default loop instead)."""
    if os.environ.get("SLUICE_BENCH_LOOP", "uvloop") == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def child_main(spec: dict[str, Any]) -> None:
    kind = spec["kind"]
    if kind == "seed":
        result = _run_seed(spec)
    elif kind == "startup":
        result = _run_startup(spec)
    elif kind == "native":
        result = _run_loop(_run_native(spec))
    elif kind == "latency":
        result = _run_loop(_run_latency(spec))
    elif kind == "idle":
        result = _run_loop(_run_idle(spec))
    else:
        raise SystemExit(f"unknown child kind {kind!r}")
    _emit("RESULT", result)
    sys.stderr.flush()
    os._exit(0)  # do not wait for SDK threads (their shutdown is not measured)


# ============================================================================================== parent side
def _hash_key(shard: int, shards: int) -> str:
    return f"{(2 * shard + 1) * KEY_SPACE // (2 * shards):032x}"


class Runner:
    def __init__(self, args: argparse.Namespace, hub: Any, tmp: Path) -> None:
        import psutil

        self.args = args
        self.hub = hub
        self.tmp = tmp
        self.hub_ps = psutil.Process(hub.proc.pid)
        self.base = {"endpoint": hub.endpoint, "key_id": hub.access_key_id, "key_secret": hub.access_key_secret,
                     "project": PROJECT}
        self.n = 0

    def hub_cpu(self) -> float:
        t = self.hub_ps.cpu_times()
        return float(t.user + t.system)

    async def child(self, spec: dict[str, Any], on_line: Any = None, timeout: float = 900) -> dict[str, Any]:
        """Run one child; ``on_line(tag)`` is awaited for each READY/MEASURING line. Returns its RESULT."""
        self.n += 1
        err_path = self.tmp / f"child-{self.n}-{spec.get('name', spec['kind'])}.err".replace(" ", "_")
        with open(err_path, "wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).resolve()), "--child", json.dumps({**self.base, **spec}),
                stdout=asyncio.subprocess.PIPE, stderr=err, cwd=str(Path(__file__).resolve().parent.parent))
        assert proc.stdout is not None
        result: dict[str, Any] | None = None
        try:
            async def read() -> None:
                nonlocal result
                assert proc.stdout is not None
                while True:
                    line = (await proc.stdout.readline()).decode()
                    if not line:
                        return
                    tag, _, payload = line.strip().partition(" ")
                    if tag == "RESULT":
                        result = json.loads(payload)
                    elif tag in ("READY", "MEASURING", "MEASURED") and on_line is not None:
                        await on_line(tag)
            await asyncio.wait_for(read(), timeout)
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        tail = err_path.read_text(errors="replace")[-3000:]
        if result is None:
            raise RuntimeError(f"child {spec.get('name')} gave no result (exit {proc.returncode}):\n{tail}")
        if not result.get("ok"):
            print(f"child {spec.get('name')} did not finish its work; its stderr ends with:\n{tail}", flush=True)
        return result


async def write_source(client: Any, raw_groups: list[bytes], total_bytes: int) -> tuple[int, int, int]:
    """Write groups round robin over topics and shards until ``total_bytes``; returns (groups, logs, bytes)."""
    from sluice.wire.loggroup import LogGroup

    variants = []  # (serialized group with its topic set, logs in it)
    for i, raw in enumerate(raw_groups):
        g = LogGroup()
        g.ParseFromString(raw)
        g.Topic = TOPICS[i % len(TOPICS)]
        variants.append((g.SerializeToString(), len(g.Logs)))
    plan = []
    written = 0
    while written < total_bytes:
        raw, n_logs = variants[len(plan) % len(variants)]
        plan.append((raw, n_logs, len(plan) % SHARDS))
        written += len(raw)
    queue = list(reversed(plan))

    async def worker() -> None:
        while queue:
            raw, _, shard = queue.pop()
            await client.put_log_group(PROJECT, SOURCE, raw, hash_key=_hash_key(shard, SHARDS))

    await asyncio.gather(*(worker() for _ in range(4)))
    return len(plan), sum(p[1] for p in plan), written


async def count_logs(client: Any, logstore: str, shards: int) -> int:
    """Logs stored in a target logstore (read back; packed PutLogs make fewer, larger groups than the source)."""
    total = 0
    for s in range(shards):
        cursor = await client.get_cursor(PROJECT, logstore, s, "begin")
        while True:
            res = await client.pull_logs(PROJECT, logstore, s, cursor)
            if not res.count:
                break
            total += sum(len(g) for g in res.log_groups())
            cursor = res.next_cursor
    return total


def hub_requests(hub: Any) -> dict[str, float]:
    """Requests served so far by API (the hub's /metrics), e.g. {"Heartbeat": 1234.0, "PullLogs": ...}."""
    import urllib.request

    req = urllib.request.Request(hub.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    out: dict[str, float] = {}
    with urllib.request.urlopen(req, timeout=30) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("sluice_hub_requests_total{"):
                labels, _, value = line.rpartition(" ")
                api = labels.split('api="', 1)[1].split('"', 1)[0]
                out[api] = out.get(api, 0.0) + float(value)
    return out


def _row_for(test: str, consumer: str, res: dict[str, Any], raw_mb: float, hub_cpu: float) -> dict[str, Any]:
    cpu = res["user_s"] + res["sys_s"]
    return {"test": test, "consumer": consumer, "ok": "yes" if res["ok"] else "NO", "raw_MB": raw_mb,
            "wall_s": res["wall_s"], "first_batch_s": res["first_batch_s"], "MB_per_s": raw_mb / res["wall_s"],
            "cpu_s": cpu, "sys_s": res["sys_s"], "cpu_ms_per_MB": 1000 * cpu / raw_mb,
            "MB_per_cpu_s": raw_mb / cpu if cpu else None, "peak_RSS_MB": res["peak_rss"] / MB, "hub_cpu_s": hub_cpu}


async def main_async(args: argparse.Namespace) -> None:
    from _harness import report
    from hub import make_group

    from sluice.client import AsyncClient
    from sluice.testing import HubProcess

    quick = args.quick
    total_bytes = int((args.mb if args.mb else (10 if quick else 200)) * MB)
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"quick": quick, "group_logs": args.group_logs, "only": args.only}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-consumer-") as tmp_name:
        tmp = Path(tmp_name)
        hub = HubProcess(tmp / "data", extra_args=["--metrics-token", METRICS_TOKEN])
        hub.start()
        print(f"hub at {hub.url} (SDK endpoint {hub.endpoint!r}), pid {hub.proc.pid if hub.proc else '?'}")
        client = AsyncClient(hub.endpoint, hub.access_key_id, hub.access_key_secret, timeout=120)
        try:
            runner = Runner(args, hub, tmp)
            await client.create_project(PROJECT)
            await client.create_logstore(PROJECT, SOURCE, ttl=1, shard_count=SHARDS)
            n_groups = n_logs = n_bytes = 0
            if "a" in args.only or "b" in args.only:
                t = time.perf_counter()
                groups = [make_group(args.group_logs, seed=7 + i) for i in range(6)]
                n_groups, n_logs, n_bytes = await write_source(client, groups, total_bytes)
                print(f"source: {n_groups} groups, {n_logs} logs, {n_bytes / MB:.1f} MB raw over {SHARDS} shards "
                      f"({n_bytes / n_groups / 1000:.0f} kB/group), written in {time.perf_counter() - t:.1f} s")
                extra.update(source_groups=n_groups, source_logs=n_logs, source_raw_bytes=n_bytes)
            raw_mb = n_bytes / MB

            sdk_runs: list[tuple[str, float | None]] = [("sdk (fetch 0.1 s)", 0.1)]
            if not quick and not args.skip_sdk_default:
                sdk_runs.insert(0, ("sdk (defaults, fetch 2 s)", None))
            variants: list[tuple[str, dict[str, Any]]] = [
                (name, {"kind": "seed", "impl": "sdk", "fetch_interval": fi}) for name, fi in sdk_runs]
            variants += [("sluice compat (seed code)", {"kind": "seed", "impl": "sluice"})]
            repeat = 1 if quick else args.repeat
            extra["repeat"] = repeat
            for handler in [h for h, t in (("dispatch", "a"), ("dicts", "b")) if t in args.only]:
                test = "(a) dispatch" if handler == "dispatch" else "(b) dicts"
                natives: list[tuple[str, dict[str, Any]]] = [("sluice native", {"kind": "native"})]
                if handler == "dicts":
                    natives = [("sluice native (batch.logs())", {"kind": "native", "mode": "batch"}),
                               ("sluice native (group.logs())", {"kind": "native", "mode": "group"})]
                entries = variants + natives
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in entries}
                for rep in range(repeat):  # interleaved, so a slow spell of the machine hits every consumer
                    for i, (name, v) in enumerate(entries):
                        tag = f"{'a' if handler == 'dispatch' else 'b'}{i}r{rep}"
                        row = await _run_variant(client, runner, test, handler, name, v, tag, n_groups, n_logs,
                                                 raw_mb, quick)
                        extra.setdefault("runs", []).append({"test": test, "consumer": name, "run": rep + 1,
                                                             **row.pop("_result")})
                        runs[name].append(row)
                        print(f"  {test:13s} {name:27s} run {rep + 1}/{repeat} {row['wall_s']:6.1f} s wall "
                              f"{row['MB_per_s']:7.1f} MB/s  {row['cpu_s']:6.2f} CPU s  "
                              f"{row['MB_per_cpu_s']:7.1f} MB/CPU-s  {row['peak_RSS_MB']:6.0f} MB RSS  "
                              f"hub {row['hub_cpu_s']:.1f} s  {row['check']}", flush=True)
                rows += _judge(test, handler, entries, runs)

            if "e" in args.only:
                await _startup(args, client, runner, rows)
            if "c" in args.only:
                await _latency(args, client, runner, rows)
            if "d" in args.only:
                await _idle(args, client, runner, hub, rows)
        finally:
            await client.aclose()
            hub.close()

    print()
    report("consumer", rows, summary=_summary(rows, raw_mb, quick), extra=extra)


async def _run_variant(client: Any, runner: "Runner", test: str, handler: str, name: str, variant: dict[str, Any],
                       tag: str, n_groups: int, n_logs: int, raw_mb: float, quick: bool) -> dict[str, Any]:
    """One consumer run over the whole source in its own group (and, for dispatch, its own three targets,
    read back afterwards). Returns its table row, with the child's raw result under ``_result``."""
    spec: dict[str, Any] = {**variant, "name": f"{handler}-{name}", "handler": handler, "logstore": SOURCE,
                            "group": f"g_{tag}", "total_groups": n_groups, "timeout": 120 if quick else 900}
    if handler == "dispatch":
        spec["targets"] = {topic: f"{tag}_{topic}" for topic in TOPICS}
        for ls in spec["targets"].values():
            await client.create_logstore(PROJECT, ls, ttl=1, shard_count=2)
    h0 = runner.hub_cpu()
    res = await runner.child(spec)
    row = _row_for(test, name, res, raw_mb, runner.hub_cpu() - h0)
    if handler == "dispatch":
        landed = sum([await count_logs(client, ls, 2) for ls in spec["targets"].values()])
        row["check"] = f"{landed}/{n_logs} logs landed"
        ok = landed == n_logs
    else:
        row["check"] = f"{res['logs']}/{n_logs} logs"
        ok = res["logs"] == n_logs
    if not ok:
        row["ok"] = "NO"
    row["_result"] = res
    return row


def _judge(test: str, handler: str, entries: list[tuple[str, dict[str, Any]]],
           runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per consumer: its median run by CPU (an odd number of runs, so a real run), with every run's
    CPU seconds beside it; then the ratio to the SDK and the target.

    The SDK reference is the SDK configuration with the lowest median CPU/MB (the conservative one). The
    target is judged on the medians; ``x_each_run`` shows the ratio within each repetition too."""
    rows = []
    for name, _ in entries:
        rs = runs[name]
        row = dict(sorted(rs, key=lambda r: r["cpu_s"])[len(rs) // 2])
        row["runs"] = len(rs)
        row["cpu_s_each_run"] = " ".join(f"{r['cpu_s']:.2f}" for r in rs)
        if any(r["ok"] != "yes" for r in rs):
            row["ok"] = "NO"
        rows.append(row)
    sdk_names = [r["consumer"] for r in rows if r["consumer"].startswith("sdk")]
    best_sdk = min((r for r in rows if r["consumer"] in sdk_names), key=lambda r: r["cpu_ms_per_MB"])
    n_runs = len(runs[best_sdk["consumer"]])
    sdk_each = [min(runs[n][k]["cpu_ms_per_MB"] for n in sdk_names) for k in range(n_runs)]
    for r in rows:
        x = best_sdk["cpu_ms_per_MB"] / r["cpu_ms_per_MB"]
        r["x_less_cpu_than_sdk"] = x
        if r["consumer"].startswith("sdk"):
            continue
        r["x_each_run"] = " ".join(f"{sdk_each[k] / runs[r['consumer']][k]['cpu_ms_per_MB']:.2f}"
                                   for k in range(n_runs))
        compat = r["consumer"].startswith("sluice compat")
        if handler == "dispatch" and compat:  # issue #20: seed 004 with only its imports changed
            r["target"] = ">= 3x less CPU/MB (goal 4x)"
            r["met"] = "yes" if (x >= 3 and r["ok"] == "yes") else "NO"
        elif handler == "dispatch":
            r["target"] = ">= 300 MB/CPU-s, >= 4.5x less CPU/MB"
            r["met"] = "yes" if (r["MB_per_cpu_s"] >= 300 and x >= 4.5 and r["ok"] == "yes") else "NO"
        elif compat:  # issue #20: seed 002's handler unchanged
            r["target"] = ">= 2.5x less CPU/MB (goal 3x)"
            r["met"] = "yes" if (x >= 2.5 and r["ok"] == "yes") else "NO"
        else:
            r["target"] = ">= 3.5x less CPU/MB"
            r["met"] = "yes" if (x >= 3.5 and r["ok"] == "yes") else "NO"
    return rows


async def _latency(args: argparse.Namespace, client: Any, runner: "Runner", rows: list[dict[str, Any]]) -> None:
    """(c): a steady producer here, one native consumer in a child; latency = handler time - put time."""
    from _harness import percentile

    quick = args.quick
    lat_ls = "latency"
    await client.create_logstore(PROJECT, lat_ls, ttl=1, shard_count=2)
    rate, seconds, per_put = args.latency_rate, (3.0 if quick else args.latency_seconds), 10
    n_puts = int(rate * seconds)
    put_lat: list[float] = []

    async def produce(tag: str) -> None:
        if tag != "READY":
            return
        start = time.perf_counter()
        for i in range(n_puts):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            ts = time.time()
            await client.put_logs(PROJECT, lat_ls, [{"ts": repr(ts), "seq": str(i * per_put + j)}
                                                    for j in range(per_put)])
            put_lat.append((time.time() - ts) * 1000)

    h0 = runner.hub_cpu()
    res = await runner.child({"kind": "latency", "name": "latency", "logstore": lat_ls, "group": "lat",
                              "shards": 2, "expected": n_puts * per_put, "timeout": seconds + 30},
                             on_line=produce)
    lat = res["latencies_ms"]
    p99 = percentile(lat, 99)
    rows.append({"test": "(c) put->handler latency", "consumer": "sluice native (long-poll)",
                 "ok": "yes" if res["ok"] else "NO", "logs": len(lat),
                 "rate": f"{rate:g} puts/s x {per_put} logs, {seconds:g} s",
                 "p50_ms": percentile(lat, 50), "p99_ms": p99, "max_ms": max(lat) if lat else None,
                 "put_p50_ms": percentile(put_lat, 50), "hub_cpu_s": runner.hub_cpu() - h0,
                 "target": "p99 < 300 ms", "met": "yes" if res["ok"] and p99 < 300 else "NO"})
    print(f"  (c) latency p50 {percentile(lat, 50):.1f} ms p99 {p99:.1f} ms max {max(lat):.1f} ms "
          f"over {len(lat)} logs", flush=True)



async def _idle(args: argparse.Namespace, client: Any, runner: "Runner", hub: Any, rows: list[dict[str, Any]]) -> None:
    """(d): one child process following many idle logstores; its CPU, RSS and the requests the hub saw."""
    from sluice.consumer.config import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_LONG_POLL

    quick = args.quick
    # (d) idle on many logstores: one process, one loop; one shared AsyncClient (what a user writes
    # first), and in the full run also one client per consumer (each its own connection pool), and the
    # shared client with a 5 s heartbeat (the knob docs/consumer.md names; not the target's setting)
    n_idle = args.idle_logstores if not quick else min(args.idle_logstores, 20)
    idle_lss = [f"idle{i:03d}" for i in range(n_idle)]
    for ls in idle_lss:
        await client.create_logstore(PROJECT, ls, ttl=1, shard_count=2)
    settle, idle_s = (2.0, 3.0) if quick else (args.idle_settle, args.idle_seconds)
    variants = [(True, DEFAULT_HEARTBEAT_INTERVAL)]
    if not quick:
        variants += [(False, DEFAULT_HEARTBEAT_INTERVAL), (True, 5.0)]
    for i, (shared, interval) in enumerate(variants):
        if i:  # the previous child's long-polls end at the hub up to one long-poll later
            await asyncio.sleep(DEFAULT_LONG_POLL + 1)
        window: list[tuple[float, dict[str, float]]] = []

        async def mark(tag: str) -> None:
            if tag in ("MEASURING", "MEASURED"):
                window.append((runner.hub_cpu(), await asyncio.to_thread(hub_requests, hub)))

        res = await runner.child({"kind": "idle", "name": "idle", "logstores": idle_lss, "shards": 2,
                                  "settle": settle, "seconds": idle_s, "shared_client": shared,
                                  "group": f"idle{i}", "heartbeat_interval": interval}, on_line=mark)
        core = 100 * res["cpu_s"] / res["seconds"]
        hb_rate = pulls_rate = hub_core = ms_per_req = None
        if len(window) == 2:
            (c0, r0), (c1, r1) = window
            delta = {api: r1.get(api, 0.0) - r0.get(api, 0.0) for api in r1 if api != "Unknown"}
            hub_core = 100 * (c1 - c0) / res["seconds"]
            hb_rate = delta.get("Heartbeat", 0.0) / res["seconds"]
            pulls_rate = delta.get("PullLogs", 0.0) / res["seconds"]
            if sum(delta.values()):
                ms_per_req = 1000 * res["cpu_s"] / sum(delta.values())
        hb_want = n_idle / interval
        default = interval == DEFAULT_HEARTBEAT_INTERVAL
        hb_ok = hb_rate is not None and hb_rate >= 0.8 * hb_want
        ok = res["ok"] and hb_ok
        rows.append({"test": "(d) idle",
                     "consumer": f"sluice native, {n_idle} logstores x 2 shards, "
                                 + ("one shared AsyncClient" if shared else "an AsyncClient per consumer")
                                 + ("" if default else f", heartbeat_interval={interval:g} s"),
                     "ok": "yes" if ok else "NO",
                     "check": f"{res['held_min']}/{res['want']} shards held (min), heartbeats "
                              f"{hb_rate or 0:.0f}/s of {hb_want:.0f}/s due, {pulls_rate or 0:.0f} pulls/s",
                     "startup_s": res["startup_s"], "seconds": res["seconds"], "pct_core": core,
                     "RSS_MB": res["rss"] / MB, "peak_RSS_MB": res["peak_rss"] / MB,
                     "client_cpu_ms_per_request": ms_per_req, "hub_pct_core": hub_core,
                     "target": "< 3% core, < 200 MB RSS" if default else "(a knob, not the target's setting)",
                     "met": ("yes" if ok and core < 3 and res["rss"] < 200 * MB else "NO") if default else ""})
        print(f"  (d) idle {n_idle}x2 {'shared client' if shared else 'client each'}, heartbeat {interval:g} s: "
              f"{core:.2f}% of a core, "
              f"RSS {res['rss'] / MB:.0f} MB, {rows[-1]['check']}", flush=True)


def _summary(rows: list[dict[str, Any]], raw_mb: float, quick: bool) -> str:
    """One line of the figures that were run (``--only`` may skip some)."""
    by = {(r["test"], r["consumer"]): r for r in rows}
    parts = [f"{raw_mb:.0f} MB"]
    nat_a = by.get(("(a) dispatch", "sluice native"))
    com_a = by.get(("(a) dispatch", "sluice compat (seed code)"))
    if nat_a and com_a:
        parts.append(f"dispatch native {nat_a['MB_per_cpu_s']:.0f} MB/CPU-s ({nat_a['x_less_cpu_than_sdk']:.1f}x less "
                     f"CPU than SDK), compat {com_a['x_less_cpu_than_sdk']:.1f}x")
    nat_b = by.get(("(b) dicts", "sluice native (batch.logs())"))
    com_b = by.get(("(b) dicts", "sluice compat (seed code)"))
    if nat_b:
        parts.append(f"dicts native {nat_b['x_less_cpu_than_sdk']:.1f}x"
                     + (f", compat {com_b['x_less_cpu_than_sdk']:.1f}x" if com_b else ""))
    lat_row = next((r for r in rows if r["test"].startswith("(c)")), None)
    if lat_row:
        parts.append(f"latency p99 {lat_row['p99_ms']:.0f} ms")
    idle_row = next((r for r in rows if r["test"].startswith("(d)")), None)
    if idle_row:
        parts.append(f"idle {idle_row['consumer'].split(',')[1].strip()} {idle_row['pct_core']:.1f}% core "
                     f"{idle_row['RSS_MB']:.0f} MB ({idle_row['check'].split(', ')[1]})")
    return "; ".join(parts) + (" [quick]" if quick else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke run: ~10 MB, SDK tuned only, short (c) and (d)")
    p.add_argument("--mb", type=float, default=0, help="raw MB in the source logstore (default 200, quick 10)")
    p.add_argument("--group-logs", type=int, default=1024, help="logs per LogGroup (~250 bytes each)")
    p.add_argument("--skip-sdk-default", action="store_true", help="do not run the SDK with its 2 s fetch interval")
    p.add_argument("--latency-rate", type=float, default=20.0, help="(c) puts per second")
    p.add_argument("--latency-seconds", type=float, default=15.0)
    p.add_argument("--idle-logstores", type=int, default=200)
    p.add_argument("--idle-settle", type=float, default=10.0, help="(d) seconds after all shards are held")
    p.add_argument("--idle-seconds", type=float, default=25.0,
                   help="(d) measuring window; one long-poll period (25 s), so every shard's poll is counted once")
    p.add_argument("--repeat", type=int, default=3,
                   help="(a) and (b): runs of each consumer, interleaved; the row is the median run (odd; quick: 1)")
    p.add_argument("--only", default="abcde", help="run only these tests, e.g. 'a' or 'cd' (default: abcde)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.repeat < 1 or args.repeat % 2 == 0:
        p.error("--repeat must be odd (the reported run is the median)")
    if args.child:
        child_main(json.loads(args.child))
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
