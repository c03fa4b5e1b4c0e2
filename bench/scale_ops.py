"""Hub operations at scale (#19.3, #19.5): /metrics, console pages and charts, and a consumer following many shards.

A hub subprocess (``--no-auth``, its own 127.0.0.x) is filled with ``--logstores`` logstores x 2 shards, one small
write to each (so every logstore has ingest counters); a second hub with ``--small`` logstores is the reference
for "costs the same whatever the hub holds". Then:

(a) hub CPU per request (hub process CPU over K sequential requests / K, less the idle hub's share of the time;
    also the median of the requests' own figures) and wall time, on both hubs: ``GET /metrics`` (and on the big
    hub, /metrics again with writes to 1 logstore in 100 between scrapes: what a busy hub's scrape rewrites);
    console: one logstore's page, one logstore's chart (``/console/api/rates?project&logstore``), the overview
    chart, the overview page. Targets: /metrics < 50 ms of CPU at 10,000 shards; pages and charts
    about one logstore cost the same on both hubs (O(that logstore)).
(b) request delay: a child process sends a steady heartbeat load (``--hb-rate``/s) to the big hub and records each
    latency; p50/p99/max alone, then while this process scrapes /metrics once per ``--scrape-every`` seconds and
    back to back, then likewise while it polls the console (logstore page, its chart, the overview chart, in
    turn). Target: p99 not raised by more than 20 ms. On a shared machine the "alone" p99 itself moves by tens
    of ms: compare rows of one run, and read the back-to-back rows as a stress case (a hub spending a whole
    core on scrapes).
(c) a consumer process following ``--consumer-logstores`` logstores x 2 shards of the big hub (one AsyncConsumer
    per logstore, one shared AsyncClient), idle: after all shards are held and ``--idle-settle`` seconds, over
    ``--idle-seconds``: its CPU (% of a core), the connections it holds to the hub (max of samples), the hub's open
    descriptors; with the hub's wait sessions (consumer/waiter.py) and, in the same run, with the per-shard
    long-poll path they replace. Targets: < 50 connections, < 5% of a core.

The machine may be shared: compare rows within one run. ``--quick`` runs tiny sizes (smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _harness import percentile, report  # noqa: E402

PROJECT = "scale"


def _ls(i: int) -> str:
    return f"ls-{i:05d}"


# ============================================================================================== children
async def _heartbeat_child(spec: dict[str, Any]) -> dict[str, Any]:
    """A steady heartbeat load; prints one latency list per phase when the parent says (stdin lines)."""
    from sluice.client import AsyncClient

    lat: list[float] = []
    phases: dict[str, list[float]] = {}
    period = 1.0 / spec["rate"]
    async with AsyncClient(spec["endpoint"]) as c:
        async def beat_routine() -> None:
            nxt = time.monotonic()
            while True:
                t0 = time.perf_counter()
                await c.heartbeat(PROJECT, _ls(0), "hb", "hb-consumer", [])
                lat.append((time.perf_counter() - t0) * 1000)
                nxt += period
                await asyncio.sleep(max(0.0, nxt - time.monotonic()))
        task = asyncio.create_task(beat_routine())
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print("READY", flush=True)
        while True:
            line = (await reader.readline()).decode().strip()
            if not line or line == "STOP":
                break
            kind, name = line.split(" ", 1)
            if kind == "BEGIN":
                lat.clear()
            elif kind == "END":
                phases[name] = list(lat)
            print("OK", flush=True)
        task.cancel()
    return phases


async def _consumer_child(spec: dict[str, Any]) -> dict[str, Any]:
    import psutil

    from sluice.client import AsyncClient
    from sluice.consumer import AsyncConsumer, ConsumerConfig
    from sluice.wire import errors as E

    me = psutil.Process()
    port = spec["port"]

    def connections() -> int:
        return sum(1 for x in me.net_connections(kind="tcp")
                   if x.raddr and x.raddr.port == port and x.status == psutil.CONN_ESTABLISHED)

    client = AsyncClient(spec["endpoint"])
    if not spec["waits"]:  # the per-shard path: what an endpoint without wait sessions gets
        async def refused(*args: Any, **kwargs: Any) -> Any:
            raise E.SLSError("no wait sessions", error_code="RouteNotFound", http_status=404)
        client.wait_shards = refused  # type: ignore[method-assign]

    async def handle(batch: Any) -> None:
        pass

    consumers = [AsyncConsumer(client, ConsumerConfig(PROJECT, ls, spec["group"], consumer="c1", start="end",
                                                      heartbeat_interval=spec["heartbeat_interval"]),
                               handler=handle) for ls in spec["logstores"]]
    t0 = time.perf_counter()
    await asyncio.gather(*(c.start() for c in consumers))
    want = 2 * len(consumers)
    deadline = time.monotonic() + 300
    while sum(len(c.shards) for c in consumers) < want and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    startup = time.perf_counter() - t0
    await asyncio.sleep(spec["settle"])
    print("MEASURING", flush=True)
    u0, w0 = me.cpu_times(), time.perf_counter()
    conns, fds = [], []
    end = w0 + spec["seconds"]
    while time.perf_counter() < end:
        await asyncio.sleep(1.0)
        conns.append(connections())
        fds.append(me.num_fds())
    u1, w1 = me.cpu_times(), time.perf_counter()
    print("MEASURED", flush=True)
    held = sum(len(c.shards) for c in consumers)
    cpu = (u1.user - u0.user) + (u1.system - u0.system)
    await asyncio.wait_for(asyncio.gather(*(c.stop() for c in consumers)), 120)
    await client.aclose()
    return {"startup_s": startup, "held": held, "want": want, "pct_core": 100 * cpu / (w1 - w0),
            "connections_max": max(conns), "connections_median": sorted(conns)[len(conns) // 2],
            "fds": max(fds)}


def child_main(kind: str) -> None:
    spec = json.loads(sys.stdin.readline()) if kind == "consumer" else json.loads(os.environ["SCALE_SPEC"])
    main = _consumer_child(spec) if kind == "consumer" else _heartbeat_child(spec)
    result = asyncio.run(main)
    print("RESULT " + json.dumps(result), flush=True)
    os._exit(0)


# ============================================================================================== parent side
class Hub:
    def __init__(self, root: Path, name: str) -> None:
        import psutil

        from sluice.testing import HubProcess

        self.proc = HubProcess(root / name, access_key=None, extra_args=["--no-auth"])
        self.proc.start()
        self.ps = psutil.Process(self.proc.proc.pid)  # type: ignore[union-attr]
        self.conn = http.client.HTTPConnection(self.proc.host, self.proc.port, timeout=120)

    def cpu(self) -> float:
        """CPU seconds of every thread of the hub, in nanoseconds' resolution (schedstat; cpu_times ticks are
        10 ms, coarser than one request)."""
        total = 0
        for task in Path(f"/proc/{self.ps.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that just ended
        return total / 1e9

    def get(self, path: str) -> bytes:
        self.conn.request("GET", path, headers={"Host": self.proc.host})
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")
        return body

    def close(self) -> None:
        self.conn.close()
        self.proc.close()


async def fill(hub: Hub, n: int) -> float:
    from sluice.client import AsyncClient

    t0 = time.perf_counter()
    async with AsyncClient(hub.proc.url) as c:
        await c.create_project(PROJECT)
        sem = asyncio.Semaphore(16)

        async def make(i: int) -> None:
            async with sem:
                await c.create_logstore(PROJECT, _ls(i), shard_count=2)
                await c.put_logs(PROJECT, _ls(i), [{"i": str(i)}])
        await asyncio.gather(*(make(i) for i in range(n)))
        await c.create_consumer_group(PROJECT, _ls(0), "hb", 3600)
    return time.perf_counter() - t0


OPS = {
    "/metrics": "/metrics",
    "logstore page": f"/console/p/{PROJECT}/{_ls(1)}",
    "logstore chart": f"/console/api/rates?project={PROJECT}&logstore={_ls(1)}",
    "overview chart": "/console/api/rates",
    "overview page": "/console/",
}


def background(hub: Hub, seconds: float = 1.0) -> float:
    """The hub's CPU seconds per second with no request (rate sampler, retention, the search indexer)."""
    c0, t0 = hub.cpu(), time.perf_counter()
    time.sleep(seconds)
    return (hub.cpu() - c0) / (time.perf_counter() - t0)


def per_request(hub: Hub, path: str, k: int, between: Any = None) -> tuple[float, float, int, float]:
    """(hub CPU ms per request, less the background's share of the time taken; wall ms per request; bytes;
    the median of the requests' own CPU, each less the background's share of its time: steadier than the mean
    when the hub's background work (rate samples every 5 s, the search indexer) comes in bursts).
    ``between``: called before each request, outside the measured time (e.g. writes since the last scrape)."""
    hub.get(path)  # warm
    idle = background(hub)
    size, cpu, wall, each = 0, 0.0, 0.0, []
    for _ in range(k):
        if between is not None:
            between()
        c0, t0 = hub.cpu(), time.perf_counter()
        size = len(hub.get(path))
        dw, dc = time.perf_counter() - t0, hub.cpu() - c0
        wall += dw
        cpu += dc
        each.append(max(0.0, dc - idle * dw) * 1000)
    return max(0.0, cpu - idle * wall) * 1000 / k, wall * 1000 / k, size, percentile(each, 50)


def writes_between_scrapes(hub: Hub, n: int, logstores: int, settle: float = 0.5) -> Any:
    """A PutLogs to each of ``n`` logstores (the next ones round the hub each time): what changes between two
    scrapes of a hub where 1 logstore in 100 is written. Then ``settle`` seconds, so that the work the writes
    set off in the hub (commits, the search indexer's pass) is not counted as the scrape's."""
    from sluice.client import AsyncClient

    state = {"next": 0}

    async def put() -> None:
        async with AsyncClient(hub.proc.url) as c:
            await asyncio.gather(*(c.put_logs(PROJECT, _ls((state["next"] + j) % logstores), [{"w": str(j)}])
                                   for j in range(n)))
        state["next"] += n

    def between() -> None:
        asyncio.run(put())
        time.sleep(settle)

    return between


def start_child(kind: str, spec: dict[str, Any]) -> subprocess.Popen[str]:
    env = {**os.environ, "SCALE_SPEC": json.dumps(spec)}
    proc = subprocess.Popen([sys.executable, __file__, "--child", kind], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=str(Path(__file__).parent.parent))
    if kind == "consumer":
        proc.stdin.write(json.dumps(spec) + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    return proc


def read_until(proc: subprocess.Popen[str], token: str) -> str:
    while True:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"child exited (rc {proc.poll()}) before {token!r}")
        if line.startswith(token):
            return line[len(token):].strip()


def heartbeat_phases(hub: Hub, args: argparse.Namespace) -> list[dict[str, Any]]:
    child = start_child("heartbeat", {"endpoint": hub.proc.url, "rate": args.hb_rate})
    read_until(child, "READY")

    def phase(name: str, load: Any, every: float = 0.0) -> None:
        child.stdin.write(f"BEGIN {name}\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        read_until(child, "OK")
        end = time.perf_counter() + args.seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            if load is not None:
                load()
            time.sleep(max(0.0, every - (time.perf_counter() - t0)) if load is not None else 0.05)
        child.stdin.write(f"END {name}\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        read_until(child, "OK")

    cycle = [OPS["logstore page"], OPS["logstore chart"], OPS["overview chart"]]
    state = {"i": 0}

    def console() -> None:
        hub.get(cycle[state["i"] % len(cycle)])
        state["i"] += 1

    phase("alone", None)
    phase(f"while /metrics is scraped every {args.scrape_every:g} s", lambda: hub.get("/metrics"), args.scrape_every)
    phase("while /metrics is scraped back to back", lambda: hub.get("/metrics"))
    phase(f"while the console is polled every {args.scrape_every:g} s", console, args.scrape_every)
    phase("while the console is polled back to back", console)
    child.stdin.write("STOP\n")  # type: ignore[union-attr]
    child.stdin.flush()  # type: ignore[union-attr]
    phases = json.loads(read_until(child, "RESULT"))
    child.wait(30)
    rows = []
    base = percentile(phases["alone"], 99)
    for name, lat in phases.items():
        p99 = percentile(lat, 99)
        rows.append({"test": "(b) heartbeat delay", "case": name, "n": len(lat),
                     "p50_ms": percentile(lat, 50), "p99_ms": p99, "max_ms": max(lat) if lat else float("nan"),
                     "p99_added_ms": p99 - base,
                     "check": "" if name == "alone" else ("ok" if p99 - base <= 20 else "MISSED (> 20 ms)")})
    return rows


def consumer_rows(hub: Hub, args: argparse.Namespace, n: int) -> list[dict[str, Any]]:
    rows = []
    for waits in (True, False):
        spec = {"endpoint": hub.proc.url, "port": hub.proc.port, "logstores": [_ls(i) for i in range(n)],
                "group": f"idle-{'w' if waits else 'p'}", "waits": waits, "settle": args.idle_settle,
                "seconds": args.idle_seconds, "heartbeat_interval": args.heartbeat_interval}
        child = start_child("consumer", spec)
        read_until(child, "MEASURING")
        c0, t0 = hub.cpu(), time.perf_counter()
        hub_fds = []
        while child.poll() is None:
            hub_fds.append(hub.ps.num_fds())
            line = child.stdout.readline()  # type: ignore[union-attr]
            if line.startswith("MEASURED"):
                break
        hub_pct = 100 * (hub.cpu() - c0) / (time.perf_counter() - t0)
        res = json.loads(read_until(child, "RESULT"))
        child.wait(60)
        ok = res["held"] == res["want"]
        check = []
        if waits:
            check.append("connections ok" if res["connections_max"] < 50 else "connections MISSED (>= 50)")
            check.append("cpu ok" if res["pct_core"] < 5 else "cpu MISSED (>= 5%)")
        rows.append({"test": "(c) consumer idle",
                     "case": f"{n} logstores x 2 shards, heartbeat {args.heartbeat_interval:g} s, "
                             + ("wait sessions" if waits else "per-shard long-poll (before)"),
                     "held": f"{res['held']}/{res['want']}", "startup_s": res["startup_s"],
                     "pct_core": res["pct_core"], "connections_max": res["connections_max"],
                     "consumer_fds": res["fds"], "hub_fds_max": max(hub_fds, default=hub.ps.num_fds()),
                     "hub_pct_core": hub_pct, "check": ", ".join(check) if ok else "shards not all held"})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logstores", type=int, default=5000, help="logstores x 2 shards on the big hub")
    p.add_argument("--small", type=int, default=50, help="logstores x 2 shards on the reference hub")
    p.add_argument("--consumer-logstores", type=int, default=1000)
    p.add_argument("--requests", type=int, default=20, help="(a) requests per operation")
    p.add_argument("--hb-rate", type=float, default=100.0, help="(b) heartbeats per second")
    p.add_argument("--seconds", type=float, default=10.0, help="(b) seconds per phase")
    p.add_argument("--scrape-every", type=float, default=1.0,
                   help="(b) the paced phases: one scrape or console request per this many seconds")
    p.add_argument("--heartbeat-interval", type=float, default=3.0, help="(c) the consumers' heartbeat interval")
    p.add_argument("--idle-settle", type=float, default=10.0)
    p.add_argument("--idle-seconds", type=float, default=20.0)
    p.add_argument("--no-consumer", action="store_true", help="skip (c)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child_main(args.child)
        return
    if args.quick:
        args.logstores, args.small, args.consumer_logstores, args.requests = 40, 10, 20, 3
        args.seconds, args.idle_settle, args.idle_seconds = 1.0, 1.0, 2.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the per-shard baseline holds a socket per shard
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sluice-scale-ops-") as tmp:
        hubs = {"small": Hub(Path(tmp), "small"), "big": Hub(Path(tmp), "big")}
        try:
            sizes = {"small": args.small, "big": args.logstores}
            for name, hub in hubs.items():
                took = asyncio.run(fill(hub, sizes[name]))
                print(f"{name} hub: {sizes[name]} logstores x 2 shards created and written in {took:.1f}s", flush=True)
            time.sleep(11)  # two rate samples (5 s apart), so the charts have points
            per_op: dict[str, dict[str, float]] = {}
            for op, path in OPS.items():
                for name, hub in hubs.items():
                    k = max(4, args.requests // 2) if (op == "/metrics" and name == "big") else args.requests
                    cpu_ms, wall_ms, size, median = per_request(hub, path, k)
                    per_op.setdefault(op, {})[name] = cpu_ms
                    rows.append({"test": "(a) per request", "case": f"{op}, {2 * sizes[name]} shards",
                                 "hub_cpu_ms": cpu_ms, "hub_cpu_ms_median": median, "wall_ms": wall_ms,
                                 "bytes": size})
            written = max(1, args.logstores // 100)
            cpu_ms, wall_ms, size, median = per_request(
                hubs["big"], "/metrics", max(4, args.requests // 2),
                writes_between_scrapes(hubs["big"], written, args.logstores))
            rows.append({"test": "(a) per request",
                         "case": f"/metrics, {2 * args.logstores} shards, {written} logstores written between scrapes",
                         "hub_cpu_ms": cpu_ms, "hub_cpu_ms_median": median, "wall_ms": wall_ms, "bytes": size,
                         "check": "ok" if cpu_ms < 50 else "MISSED (>= 50 ms CPU)"})
            for op, by in per_op.items():
                if op == "/metrics":
                    check = "ok" if by["big"] < 50 else "MISSED (>= 50 ms CPU)"
                elif op.startswith("logstore"):
                    check = "ok" if by["big"] <= 2 * by["small"] + 1 else "MISSED (grows with the hub)"
                else:
                    check = "O(projects): about everything"
                rows.append({"test": "(a) per request", "case": f"{op}: big / small",
                             "hub_cpu_ms": by["big"] / by["small"] if by["small"] else float("nan"), "check": check})
            rows += heartbeat_phases(hubs["big"], args)
            if not args.no_consumer:
                rows += consumer_rows(hubs["big"], args, min(args.consumer_logstores, args.logstores))
        finally:
            for hub in hubs.values():
                hub.close()
    metrics_big = next(r for r in rows if r.get("case", "").startswith(f"/metrics, {2 * args.logstores}"))
    idle = next((r for r in rows if r["test"] == "(c) consumer idle"), None)
    worst = max((r["p99_added_ms"] for r in rows if r["test"] == "(b) heartbeat delay"), default=0.0)
    metrics_written = next(r for r in rows if "written between scrapes" in r.get("case", ""))
    summary = (f"/metrics {metrics_big['hub_cpu_ms']:.1f} ms CPU at {2 * args.logstores} shards (median "
               f"{metrics_big['hub_cpu_ms_median']:.1f}; {metrics_written['hub_cpu_ms']:.1f} with 1% of logstores "
               f"written between scrapes); heartbeat p99 +{worst:.1f} ms worst")
    if idle is not None:
        summary += (f"; consumer {idle['case'].split(',')[0]}: {idle['connections_max']} conns, "
                    f"{idle['pct_core']:.1f}% core")
    summary += " (shared machine)"
    report("scale_ops", rows, summary=summary, extra={"args": vars(args)})


if __name__ == "__main__":
    main()
