"""Querying the hub (#21): ingest with and without an index, index lag, search/SQL latency beside grep, SPL
on PullLogs, index size. Driven from this process against a hub subprocess on loopback.

* ingest: the same nginx-like LogGroups (4096 logs, ~1 MB raw each) into a logstore without an index and one
  with an index, in alternating chunks of the same run; MB/s of raw bytes each (target: indexed >= 80%)
* index lag: PutLogs paced at --lag-rate MB/s into an indexed logstore; every 0.25 s a marker log, and the
  time until GetLogs finds it (p50/p99; target p99 < 2 s at 20 MB/s)
* search `status: 500 and method: POST` and SQL `* | select status, count(*) group by status` over all the
  indexed data (p50 of several runs; targets 500 ms / 1 s), beside `grep -c` over the same logs as JSON lines
* SPL `* | where status = '500' and method = 'POST'` on PullLogs over the whole unindexed logstore: MB/s of raw
  data per second of hub CPU (target >= 200 MB/s per core), beside the same pull without a query
* index size on disk against the raw bytes it indexes (target <= 1x)

The issue's size is 1 GB raw (~4.5 M logs): --scale 1. --scale 0.1 is ~100 MB; --quick is a few MB (CI smoke).
Usage: python bench/query.py [--quick | --scale S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
from _harness import percentile, report  # noqa: E402

from sluice.client._transport import Credentials, Transport  # noqa: E402
from sluice.testing import HubProcess, free_port  # noqa: E402
from sluice.wire.compress import compress  # noqa: E402
from sluice.wire.loggroup import LogGroup  # noqa: E402

MB = 1_000_000
LOGS_AT_SCALE_1 = 4_500_000
JSON = {"Content-Type": "application/json"}
T0 = int(time.time()) - 600
INDEX = {"line": {"token": [",", " ", "'", '"', ";", "=", "(", ")", "[", "]", "{", "}", "?", "@", "&", "<", ">",
                            "/", ":", "\n", "\t", "\r"], "caseSensitive": False},
         "keys": {"status": {"type": "long"}, "method": {"type": "text"}, "path": {"type": "text"},
                  "bytes": {"type": "long"}, "request_time": {"type": "double"}, "remote_addr": {"type": "text"}}}
FIELDS = ("remote_addr", "method", "path", "status", "bytes", "request_time", "user_agent", "request_id")


def make_logs(n: int, seed: int) -> list[tuple[int, list[tuple[str, str]]]]:
    rng = random.Random(seed)
    paths = ["/api/v1/orders", "/api/v1/users/%d", "/static/app.%d.js", "/login", "/health"]
    out = []
    for i in range(n):
        out.append((T0 + (seed * n + i) % 600, [
            ("remote_addr", f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"),
            ("method", rng.choice(["GET", "POST", "PUT"])),
            ("path", rng.choice(paths).replace("%d", str(rng.randrange(100000)))),
            ("status", rng.choice(["200", "200", "200", "304", "404", "500"])),
            ("bytes", str(rng.randrange(100, 100000))),
            ("request_time", f"{rng.random():.3f}"),
            ("user_agent", rng.choice(["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0",
                                       "curl/8.4.0", "python-requests/2.31.0"])),
            ("request_id", "%032x" % rng.getrandbits(128)),
        ]))
    return out


def encode(logs: list[tuple[int, list[tuple[str, str]]]]) -> bytes:
    g = LogGroup()
    g.Topic, g.Source = "nginx", "10.0.0.1"
    for t, fields in logs:
        lg = g.Logs.add()
        lg.Time = t
        for k, v in fields:
            c = lg.Contents.add()
            c.Key, c.Value = k, v
    return g.SerializeToString()


class Bench:
    def __init__(self, t: Transport, hub: HubProcess) -> None:
        self.t = t
        self.hub = hub
        self.proc = psutil.Process(hub.proc.pid)  # type: ignore[union-attr]

    def cpu(self) -> tuple[float, float]:
        """(hub process, its indexing thread) CPU seconds so far; the thread is found by its OS name."""
        index = 0.0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                if (task / "comm").read_text().strip() == "sluice-index":
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    index += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):
                continue
        return sum(self.proc.cpu_times()[:2]), index

    async def put(self, ls: str, raw: bytes) -> None:
        body = compress(raw, "lz4")
        await self.t.request("POST", f"/logstores/{ls}/shards/lb", project="bench", body=body, retry=False,
                             headers={"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(len(raw)),
                                      "x-log-compresstype": "lz4"})

    async def logstore(self, name: str, shards: int, index: bool) -> None:
        await self.t.request("POST", "/logstores", project="bench", headers=JSON,
                             body=json.dumps({"logstoreName": name, "ttl": 1, "shardCount": shards}).encode())
        if index:
            await self.t.request("POST", f"/logstores/{name}/index", project="bench", headers=JSON,
                                 body=json.dumps(INDEX).encode())

    async def get_logs(self, ls: str, query: str, line: int = 100) -> dict:  # type: ignore[type-arg]
        body = json.dumps({"from": T0 - 3600, "to": int(time.time()) + 3600, "query": query, "line": line,
                           "offset": 0, "reverse": False}).encode()
        resp = await self.t.request("POST", f"/logstores/{ls}/logs", project="bench", headers=JSON, body=body,
                                    timeout=300)
        return resp.json()  # type: ignore[no-any-return]

    async def count(self, ls: str) -> int:
        data = await self.get_logs(ls, "* | select count(*) as n")
        return int(data["data"][0]["n"])


async def ingest_both(b: Bench, groups: list[bytes], concurrency: int) -> dict[str, dict[str, float]]:
    """Alternating chunks into 'plain' and 'indexed'; each logstore's own wall time."""
    spent = {"plain": 0.0, "indexed": 0.0}
    raw = {"plain": 0, "indexed": 0}
    chunk = max(concurrency, 8)
    for start in range(0, len(groups), chunk):
        part = groups[start:start + chunk]
        for ls in (("plain", "indexed") if (start // chunk) % 2 == 0 else ("indexed", "plain")):
            queue = list(part)

            async def worker(ls: str = ls, queue: list[bytes] = queue) -> None:
                while queue:
                    await b.put(ls, queue.pop())

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            spent[ls] += time.perf_counter() - t0
            raw[ls] += sum(len(g) for g in part)
    return {ls: {"raw_mb": raw[ls] / MB, "seconds": spent[ls], "mb_per_s": raw[ls] / MB / spent[ls]}
            for ls in spent}


async def index_lag(b: Bench, rate_mb: float, seconds: float, ls: str = "lag") -> dict[str, float]:
    """Paced PutLogs (several in flight) plus a marker log every 0.25 s; one poller asks for every marker
    seen in the last minute every 50 ms (as a dashboard would), so the measurement itself stays light."""
    await b.t.request("POST", "/logstores", project="bench", headers=JSON,
                      body=json.dumps({"logstoreName": ls, "ttl": 1, "shardCount": 2}).encode())
    index = json.loads(json.dumps(INDEX))
    index["keys"]["marker"] = {"type": "text"}
    await b.t.request("POST", f"/logstores/{ls}/index", project="bench", headers=JSON, body=json.dumps(index).encode())
    group = encode(make_logs(1024, 99))  # ~250 kB
    interval = len(group) / MB / rate_mb
    put_at: dict[str, float] = {}
    lags: dict[str, float] = {}
    inflight = asyncio.Semaphore(8)
    tasks: list[asyncio.Task[None]] = []
    done = False

    async def put(raw: bytes) -> None:
        async with inflight:
            await b.put(ls, raw)

    async def poller() -> None:
        while not done or len(lags) < len(put_at):
            now = int(time.time())
            body = json.dumps({"from": now - 60, "to": now + 5, "query": "marker: *", "line": 100, "offset": 0,
                               "reverse": True}).encode()
            resp = await b.t.request("POST", f"/logstores/{ls}/logs", project="bench", headers=JSON, body=body)
            seen = time.perf_counter()
            for row in resp.json()["data"]:
                m = row.get("marker")
                if m in put_at and m not in lags:
                    lags[m] = seen - put_at[m]
            if done and any(seen - t > 60 for m, t in put_at.items() if m not in lags):
                break
            await asyncio.sleep(0.05)

    cpu0 = b.cpu()
    poll = asyncio.create_task(poller())
    t_start = time.perf_counter()
    stop = t_start + seconds
    sent = 0
    next_marker = t_start
    i = 0
    while time.perf_counter() < stop:
        due = t_start + sent * interval
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        tasks.append(asyncio.create_task(put(group)))
        sent += 1
        if time.perf_counter() >= next_marker:
            g = LogGroup()
            lg = g.Logs.add()
            lg.Time = int(time.time())
            c = lg.Contents.add()
            c.Key, c.Value = "marker", f"m{i}"
            put_at[f"m{i}"] = time.perf_counter()
            tasks.append(asyncio.create_task(put(g.SerializeToString())))
            i += 1
            next_marker += 0.25
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t_start
    done = True
    await poll
    cpu1 = b.cpu()
    values = [lags.get(m, float("inf")) for m in put_at]
    mb = sent * len(group) / MB
    return {"achieved_mb_per_s": mb / elapsed, "markers": len(values),
            "p50_s": percentile(values, 50), "p99_s": percentile(values, 99), "max_s": max(values),
            "hub_cpu_ms_per_mb": (cpu1[0] - cpu0[0]) / mb * 1000,
            "index_cpu_ms_per_mb": (cpu1[1] - cpu0[1]) / mb * 1000}


async def lag_rows(b: Bench, args: argparse.Namespace, rows: list[dict[str, object]]) -> dict[str, float]:
    rates = [2.0] if args.quick else [float(r) for r in str(args.lag_rate).split(",")]
    lag: dict[str, float] = {}
    for k, rate in enumerate(rates):
        lag = await index_lag(b, rate, args.lag_seconds if not args.quick else 2, f"lag{k}")
        rows.append({"test": f"index lag at {lag['achieved_mb_per_s']:.1f} MB/s", "markers": lag["markers"],
                     "p50_s": lag["p50_s"], "p99_s": lag["p99_s"], "max_s": lag["max_s"],
                     "hub_cpu_ms_per_MB": lag["hub_cpu_ms_per_mb"], "index_cpu_ms_per_MB": lag["index_cpu_ms_per_mb"],
                     "helper": os.environ.get("SLUICE_INDEX_HELPER", "0") == "1", "target": "p99 < 2 s at 20 MB/s"})
    return lag


async def timed(fn, runs: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, last = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        last = await fn()
        times.append((time.perf_counter() - t0) * 1000)
    return percentile(times, 50), last


async def pull_all(b: Bench, ls: str, shards: int, query: str | None) -> dict[str, float]:
    raw = out = 0
    cpu0 = sum(b.proc.cpu_times()[:2])
    t0 = time.perf_counter()
    for shard in range(shards):
        resp = await b.t.request("GET", f"/logstores/{ls}/shards/{shard}", project="bench",
                                 params=[("type", "cursor"), ("from", "begin")])
        cursor = resp.json()["cursor"]
        while True:
            params = [("type", "log"), ("cursor", cursor), ("count", "100")]
            if query:
                params += [("pullMode", "scan_on_stream"), ("query", query)]
            resp = await b.t.request("GET", f"/logstores/{ls}/shards/{shard}", project="bench", params=params,
                                     headers={"Accept-Encoding": "lz4", "Accept": "application/x-protobuf"},
                                     timeout=300)
            nxt = resp.headers["x-log-cursor"]
            size = int(resp.headers.get("x-log-rawdatasize") or resp.headers["x-log-bodyrawsize"])
            raw += size
            out += int(resp.headers["x-log-bodyrawsize"])
            if nxt == cursor:
                break
            cursor = nxt
    cpu = sum(b.proc.cpu_times()[:2]) - cpu0
    wall = time.perf_counter() - t0
    return {"raw_mb": raw / MB, "out_mb": out / MB, "hub_cpu_s": cpu, "seconds": wall,
            "mb_per_cpu_s": raw / MB / cpu if cpu else 0.0}


async def lag_only(args: argparse.Namespace) -> None:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-query-") as tmp:
        hub = HubProcess(Path(tmp) / "data", host="127.0.0.1", port=free_port())
        hub.start()
        t = Transport(hub.url, Credentials(hub.access_key_id, hub.access_key_secret), timeout=300)
        try:
            await t.request("POST", "/", project="bench", headers=JSON,
                            body=b'{"projectName": "bench", "description": ""}')
            await lag_rows(Bench(t, hub), args, rows)
        finally:
            await t.aclose()
            hub.close()
    helper = "on" if os.environ.get("SLUICE_INDEX_HELPER", "0") == "1" else "off"
    report("query", rows, summary="index lag only (helper " + helper + "): " + ", ".join(
        f"p99 {r['p99_s']:.2f} s at {str(r['test']).split(' at ')[1]}" for r in rows), extra={"lag_only": True})


SPL_WHERE = "* | where status = '500' and method = 'POST'"


async def spl_only(args: argparse.Namespace) -> None:
    """The SPL target alone (#21): the same data as the full run into one unindexed logstore, then PullLogs
    without a query and with SPL_WHERE, alternated --spl-rounds times; medians of hub MB per CPU second."""
    n_logs = 20_000 if args.quick else int(LOGS_AT_SCALE_1 * args.scale)
    per_group = 4096 if not args.quick else 1024
    distinct = min(64, max(1, n_logs // per_group))
    base = [encode(make_logs(per_group, s)) for s in range(distinct)]
    groups = [base[i % distinct] for i in range(max(1, n_logs // per_group))]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-query-") as tmp:
        hub = HubProcess(Path(tmp) / "data", host="127.0.0.1", port=free_port())
        hub.start()
        t = Transport(hub.url, Credentials(hub.access_key_id, hub.access_key_secret), timeout=300)
        b = Bench(t, hub)
        try:
            await t.request("POST", "/", project="bench", headers=JSON,
                            body=b'{"projectName": "bench", "description": ""}')
            await b.logstore("plain", 2, False)
            queue = list(groups)

            async def worker() -> None:
                while queue:
                    await b.put("plain", queue.pop())
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            runs: dict[str, list[dict[str, float]]] = {"plain": [], "spl": []}
            for _ in range(args.spl_rounds):
                runs["plain"].append(await pull_all(b, "plain", 2, None))
                runs["spl"].append(await pull_all(b, "plain", 2, SPL_WHERE))
        finally:
            await t.aclose()
            hub.close()
    med = {k: sorted(v, key=lambda r: r["mb_per_cpu_s"])[len(v) // 2] for k, v in runs.items()}
    rows.append({"test": "PullLogs, no query", "raw_MB": med["plain"]["raw_mb"], "hub_cpu_s": med["plain"]["hub_cpu_s"],
                 "MB_per_cpu_s": med["plain"]["mb_per_cpu_s"],
                 "all_runs": [round(r["mb_per_cpu_s"], 1) for r in runs["plain"]], "target": "(reference)"})
    rows.append({"test": "PullLogs, SPL where", "raw_MB": med["spl"]["raw_mb"], "out_MB": med["spl"]["out_mb"],
                 "hub_cpu_s": med["spl"]["hub_cpu_s"], "MB_per_cpu_s": med["spl"]["mb_per_cpu_s"],
                 "all_runs": [round(r["mb_per_cpu_s"], 1) for r in runs["spl"]], "target": ">= 200 MB/s per core"})
    report("query", rows, summary=f"SPL only: where {med['spl']['mb_per_cpu_s']:.0f} MB/s per hub CPU-s, plain pull "
           f"{med['plain']['mb_per_cpu_s']:.0f} (medians of {args.spl_rounds})"
           + (" [quick]" if args.quick else f" [scale {args.scale}]"),
           extra={"spl_only": True, "spl": SPL_WHERE, "logs": len(groups) * per_group, "scale": args.scale})


def index_cpu(rate_mb: float, total_mb: float) -> dict[str, float]:
    """The indexer alone, in this process over a real store (no HTTP, no hub): RATE MB/s of the lag test's
    groups arrive in 2 shards, a pass every GATHER seconds as the hub's indexer runs them; the CPU time of the
    indexing thread per MB indexed, which other processes' load disturbs far less than wall-clock lag."""
    from sluice.hub.query.index import CONFIG_KEY, validate
    from sluice.hub.query.indexer import GATHER, Indexer
    from sluice.hub.store.sqlite import SQLiteStore

    index = json.loads(json.dumps(INDEX))
    index["keys"]["marker"] = {"type": "text"}
    groups = [encode(make_logs(1024, 99 + k)) for k in range(16)]
    with tempfile.TemporaryDirectory(prefix="sluice-bench-index-") as tmp:
        store = SQLiteStore(Path(tmp) / "data")
        try:
            store.create_project("bench", "", {}).result()
            store.create_logstore("bench", "cpu", 1, 2, {CONFIG_KEY: validate(index)}).result()
            indexer = Indexer(store, Path(tmp) / "index")
            raw = cpu = worst = due = 0.0
            i = 0
            while raw < total_mb * MB:
                due += rate_mb * MB * GATHER
                while due >= len(groups[0]):
                    g = groups[i % len(groups)]
                    store.append(store.get_shard("bench", "cpu", i % 2), g, 1024).result()
                    raw, due, i = raw + len(g), due - len(g), i + 1
                t0 = time.thread_time()
                while indexer.run_pass():
                    pass
                spent = time.thread_time() - t0
                cpu, worst = cpu + spent, max(worst, spent)
            size = sum(f.stat().st_size for f in (Path(tmp) / "index").rglob("*") if f.is_file())
        finally:
            store.close()
    return {"raw_mb": raw / MB, "cpu_ms_per_mb": cpu / (raw / MB) * 1000, "worst_pass_ms": worst * 1000,
            "index_over_raw": size / raw}


async def index_only(args: argparse.Namespace) -> None:
    rows: list[dict[str, object]] = []
    for rate in [float(r) for r in str(args.lag_rate).split(",")]:
        r = index_cpu(rate, 10 if args.quick else args.index_mb)
        rows.append({"test": f"indexer alone at {rate:g} MB/s (pass every 0.25 s)", "raw_MB": r["raw_mb"],
                     "index_cpu_ms_per_MB": r["cpu_ms_per_mb"], "worst_pass_ms": r["worst_pass_ms"],
                     "index_over_raw": r["index_over_raw"],
                     "target": "(informational; one core = 50 ms/MB at 20 MB/s)"})
    report("query", rows, summary="indexer alone: " + ", ".join(
        f"{r['index_cpu_ms_per_MB']:.0f} ms CPU/MB at {str(r['test']).split(' at ')[1].split(' ')[0]} MB/s"
        for r in rows), extra={"index_only": True})


async def main_async(args: argparse.Namespace) -> None:
    if args.index_only:
        await index_only(args)
        return
    if args.lag_only:
        await lag_only(args)
        return
    if args.spl_only:
        await spl_only(args)
        return
    n_logs = 20_000 if args.quick else int(LOGS_AT_SCALE_1 * args.scale)
    per_group = 4096 if not args.quick else 1024
    distinct = min(64, max(1, n_logs // per_group))
    print(f"generating {n_logs} logs ({distinct} distinct groups of {per_group}) ...", flush=True)
    base_logs = [make_logs(per_group, s) for s in range(distinct)]
    base = [encode(lg) for lg in base_logs]
    groups = [base[i % distinct] for i in range(max(1, n_logs // per_group))]
    total_logs = len(groups) * per_group
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-query-") as tmp:
        jsonl = Path(tmp) / "logs.jsonl"
        with open(jsonl, "w") as f:
            for i in range(len(groups)):
                for t, fields in base_logs[i % distinct]:
                    f.write(json.dumps({"__time__": t, **dict(fields)}, separators=(",", ":")) + "\n")
        hub = HubProcess(Path(tmp) / "data", host="127.0.0.1", port=free_port())
        hub.start()
        t = Transport(hub.url, Credentials(hub.access_key_id, hub.access_key_secret), timeout=300)
        b = Bench(t, hub)
        try:
            await t.request("POST", "/", project="bench", headers=JSON,
                            body=b'{"projectName": "bench", "description": ""}')
            await b.logstore("plain", 2, False)
            await b.logstore("indexed", 2, True)
            print(f"ingesting {len(groups)} groups into each logstore ...", flush=True)
            ing = await ingest_both(b, groups, args.concurrency)
            ratio = ing["indexed"]["mb_per_s"] / ing["plain"]["mb_per_s"]
            for ls in ("plain", "indexed"):
                rows.append({"test": f"ingest, {'no index' if ls == 'plain' else 'with index'}",
                             "raw_MB": ing[ls]["raw_mb"], "seconds": ing[ls]["seconds"],
                             "MB_per_s": ing[ls]["mb_per_s"],
                             "target": "" if ls == "plain" else f">= 80% of no index (got {ratio:.0%})"})
            t0 = time.perf_counter()
            while await b.count("indexed") < total_logs:
                await asyncio.sleep(0.25)
            catch_up = time.perf_counter() - t0
            rows.append({"test": "index catch-up after ingest", "seconds": catch_up, "logs": total_logs,
                         "target": "(informational)"})
            search_ms, res = await timed(lambda: b.get_logs("indexed", "status: 500 and method: POST"), args.runs)
            counted = await b.get_logs("indexed", "status: 500 and method: POST | select count(*) as n")
            matched = int(counted["data"][0]["n"])
            sql_ms, res2 = await timed(lambda: b.get_logs(
                "indexed", "* | select status, count(*) as c group by status"), args.runs)
            grep_times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                g = subprocess.run(["grep", "-c", '"method":"POST",.*"status":"500"', str(jsonl)],
                                   capture_output=True, text=True)
                grep_times.append((time.perf_counter() - t0) * 1000)
            grep_count = int(g.stdout.strip() or 0)
            rows.append({"test": "search status: 500 and method: POST", "p50_ms": search_ms, "matched": matched,
                         "target": "p50 < 500 ms"})
            rows.append({"test": "SQL select status, count(*) group by status", "p50_ms": sql_ms,
                         "groups": len(res2["data"]), "target": "p50 < 1000 ms"})  # type: ignore[index]
            rows.append({"test": "grep -c over the same logs as JSON lines", "p50_ms": percentile(grep_times, 50),
                         "matched": grep_count, "target": f"(reference; {jsonl.stat().st_size / MB:.0f} MB)"})
            scan_ms, _ = await timed(lambda: b.get_logs("plain", "status: 500 and method: POST"), 1)
            rows.append({"test": "same search, no index (scan)", "p50_ms": scan_ms, "target": "(informational)"})
            base_pull = await pull_all(b, "plain", 2, None)
            spl = await pull_all(b, "plain", 2, SPL_WHERE)
            rows.append({"test": "PullLogs, no query", "raw_MB": base_pull["raw_mb"], "hub_cpu_s": base_pull["hub_cpu_s"],
                         "MB_per_cpu_s": base_pull["mb_per_cpu_s"], "target": "(reference)"})
            rows.append({"test": "PullLogs, SPL where", "raw_MB": spl["raw_mb"], "out_MB": spl["out_mb"],
                         "hub_cpu_s": spl["hub_cpu_s"], "MB_per_cpu_s": spl["mb_per_cpu_s"],
                         "target": ">= 200 MB/s per core"})
            lag = await lag_rows(b, args, rows)
            index_bytes = sum(p.stat().st_size for p in (Path(tmp) / "data" / "index" / "bench").glob("indexed.duckdb*")
                              if p.is_file())  # the file and its WAL (the scratch dir holds one batch at most)
            rows.append({"test": "index size / raw size", "raw_MB": ing["indexed"]["raw_mb"],
                         "index_MB": index_bytes / MB, "ratio": index_bytes / MB / ing["indexed"]["raw_mb"],
                         "target": "<= 1.0"})
        except BaseException:
            print(f"--- hub log ---\n{hub.log_tail(80)}", file=sys.stderr)
            raise
        finally:
            await t.aclose()
            hub.close()
    by = {r["test"]: r for r in rows}
    summary = (f"{total_logs} logs: ingest with index {ratio:.0%} of without; search p50 {search_ms:.0f} ms, "
               f"SQL p50 {sql_ms:.0f} ms, grep {by['grep -c over the same logs as JSON lines']['p50_ms']:.0f} ms; "
               f"SPL {spl['mb_per_cpu_s']:.0f} MB/s/core; lag p99 {lag['p99_s']:.2f} s at "
               f"{lag['achieved_mb_per_s']:.1f} MB/s; index/raw {index_bytes / MB / ing['indexed']['raw_mb']:.2f}"
               + (" [quick]" if args.quick else f" [scale {args.scale}]"))
    report("query", rows, summary=summary, extra={"logs": total_logs, "quick": args.quick, "scale": args.scale,
                                                  "cpus": os.cpu_count()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the issue's 1 GB / 4.5 M logs")
    p.add_argument("--runs", type=int, default=5, help="repetitions of each search/SQL/grep")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--lag-rate", default="5,10,20", help="MB/s of raw PutLogs during the lag test (comma list)")
    p.add_argument("--lag-seconds", type=float, default=10.0)
    p.add_argument("--lag-only", action="store_true", help="only the index lag test (SLUICE_INDEX_HELPER=1 to "
                                                             "decode in a helper process)")
    p.add_argument("--index-only", action="store_true", help="only the indexer's CPU per MB, in this process over a "
                                                               "real store at each --lag-rate (no hub, no HTTP)")
    p.add_argument("--index-mb", type=float, default=150.0, help="MB indexed per rate in --index-only")
    p.add_argument("--spl-only", action="store_true", help="only the SPL where on PullLogs against a plain pull")
    p.add_argument("--spl-rounds", type=int, default=3, help="alternated plain/SPL pulls in --spl-only (median)")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
