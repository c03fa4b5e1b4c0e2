"""Hub throughput and latency, driven from this process against a hub subprocess on loopback.

* ingest: PutLogs of ~4096 logs (~1 MB raw, lz4) per request, several in flight, for 1 and 4 shards
* pull: PullLogs of everything just written, one reader per shard, lz4 responses
* small puts: sequential PutLogs of one small log each, latency p50/p99
* disk: the data directory's bytes (apparent size, SQLite's index and WAL included) per raw byte written, and
  the segment files' alone

Figures are MB/s of raw (uncompressed) LogGroup bytes, and MB per CPU-second of the hub process (every thread,
from /proc/PID/task/*/schedstat) beside them: wall-clock MB/s swing by +-40% from run to run even on a quiet
machine, and more on a shared one, while CPU per MB moves far less. Each pass starts a fresh hub; ``--repeat``
passes, medians reported. ``--baseline-src DIR`` runs a second tree's hub (DIR is its ``src``, put first on the
hub's PYTHONPATH; the client side is this tree's either way) in the same run, passes alternated (A B B A ...),
and prints the medians of both and their ratio. A baseline tree at an older commit:

    git worktree add -f /tmp/wt0 d8acb00      # then build or copy its C extension(s) into /tmp/wt0/src
    python bench/hub.py --baseline-src /tmp/wt0/src

Usage: python bench/hub.py [--quick] [--repeat N] [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import percentile, report  # noqa: E402

from sluice.client._transport import Credentials, Transport  # noqa: E402
from sluice.wire.compress import compress  # noqa: E402
from sluice.wire.loggroup import LogGroup  # noqa: E402
from sluice.testing import HubProcess, free_port  # noqa: E402

MB = 1_000_000


def make_group(n_logs: int = 4096, seed: int = 7) -> bytes:
    """An nginx-like LogGroup: ~250 bytes of fields per log."""
    rng = random.Random(seed)
    g = LogGroup()
    g.Topic, g.Source = "nginx", "10.0.0.1"
    paths = ["/api/v1/orders", "/api/v1/users/%d", "/static/app.%d.js", "/login", "/health"]
    for i in range(n_logs):
        lg = g.Logs.add()
        lg.Time = 1700000000 + i
        for k, v in (
            ("remote_addr", f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"),
            ("method", rng.choice(["GET", "POST", "PUT"])),
            ("path", rng.choice(paths).replace("%d", str(rng.randrange(100000)))),
            ("status", rng.choice(["200", "200", "200", "304", "404", "500"])),
            ("bytes", str(rng.randrange(100, 100000))),
            ("request_time", f"{rng.random():.3f}"),
            ("user_agent", rng.choice(["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0",
                                       "curl/8.4.0", "python-requests/2.31.0"])),
            ("request_id", "%032x" % rng.getrandbits(128)),
        ):
            c = lg.Contents.add()
            c.Key, c.Value = k, v
    return g.SerializeToString()


async def ingest(t: Transport, project: str, ls: str, raw: bytes, *, requests: int, seconds: float,
                 concurrency: int) -> dict[str, float]:
    body = compress(raw, "lz4")
    headers = {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(len(raw)),
               "x-log-compresstype": "lz4"}
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal sent
        while sent < requests and time.perf_counter() < deadline:
            sent += 1
            await t.request("POST", f"/logstores/{ls}/shards/lb", project=project, headers=headers, body=body,
                            retry=False)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"requests": sent, "raw_mb": sent * len(raw) / MB, "seconds": elapsed,
            "mb_per_s": sent * len(raw) / MB / elapsed, "wire_ratio": len(body) / len(raw)}


async def pull(t: Transport, project: str, ls: str, shards: int) -> dict[str, float]:
    from sluice.wire.compress import decompress

    total = 0
    groups = 0

    async def fetch(shard: int, cursor: str):  # type: ignore[no-untyped-def]
        return await t.request("GET", f"/logstores/{ls}/shards/{shard}", project=project,
                               params=[("type", "log"), ("cursor", cursor), ("count", "1000")],
                               headers={"Accept-Encoding": "lz4", "Accept": "application/x-protobuf"})

    async def reader(shard: int) -> None:
        """A pipelined reader, as a consumer should be: the next PullLogs is in flight while the current
        body is decompressed (lz4 releases the GIL, so that runs on a thread)."""
        nonlocal total, groups
        resp = await t.request("GET", f"/logstores/{ls}/shards/{shard}", project=project,
                               params=[("type", "cursor"), ("from", "begin")])
        resp = await fetch(shard, resp.json()["cursor"])
        while int(resp.headers["x-log-count"]):
            nxt = asyncio.ensure_future(fetch(shard, resp.headers["x-log-cursor"]))
            raw_size = int(resp.headers["x-log-bodyrawsize"])
            await asyncio.to_thread(decompress, resp.body, resp.headers.get("x-log-compresstype"), raw_size,
                                    limit=1 << 30)
            total += raw_size
            groups += int(resp.headers["x-log-count"])
            resp = await nxt

    t0 = time.perf_counter()
    await asyncio.gather(*(reader(s) for s in range(shards)))
    elapsed = time.perf_counter() - t0
    return {"raw_mb": total / MB, "groups": groups, "seconds": elapsed, "mb_per_s": total / MB / elapsed}


async def small_puts(t: Transport, project: str, ls: str, n: int) -> dict[str, float]:
    g = LogGroup()
    lg = g.Logs.add()
    lg.Time = int(time.time())
    c = lg.Contents.add()
    c.Key, c.Value = "msg", "a small log line of about fifty bytes, typical"
    raw = g.SerializeToString()
    body = compress(raw, "lz4")
    headers = {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(len(raw)),
               "x-log-compresstype": "lz4"}
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        await t.request("POST", f"/logstores/{ls}/shards/lb", project=project, headers=headers, body=body,
                        retry=False)
        lat.append((time.perf_counter() - t0) * 1000)
    return {"requests": n, "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
            "max_ms": max(lat)}


def hub_cpu(pid: int) -> float:
    """CPU seconds of every thread of a process (schedstat: nanoseconds, not 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just ended
    return total / 1e9


def client_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def tree_name(src: str | None) -> str:
    """``HEAD <sha>`` for this tree, ``base <sha>`` for a baseline ``src`` directory."""
    where = Path(src).parent if src else Path(__file__).resolve().parent
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=where,
                         check=False).stdout.strip()
    return f"{'base' if src else 'HEAD'} {sha}".strip()


def start_hub(root: Path, src: str | None) -> HubProcess:
    """A hub of this tree, or of the tree whose ``src`` is given (first on its PYTHONPATH)."""
    hub = HubProcess(root / "data", host="127.0.0.1", port=free_port())
    saved = os.environ.get("PYTHONPATH")
    if src:
        os.environ["PYTHONPATH"] = src + (os.pathsep + saved if saved else "")
    try:
        hub.start()
    finally:
        if src:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    return hub


async def one_pass(args: argparse.Namespace, raw: bytes, src: str | None, tree: str, n: int) -> list[dict[str, Any]]:
    """A fresh hub of one tree: ingest then pull at 1 and 4 shards, small puts; rows with CPU beside MB/s."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        hub = start_hub(Path(tmp), src)
        assert hub.proc is not None
        pid = hub.proc.pid
        t = Transport(hub.url, Credentials(hub.access_key_id, hub.access_key_secret), timeout=120)
        try:
            await t.request("POST", "/", project="bench", headers={"Content-Type": "application/json"},
                            body=b'{"projectName": "bench", "description": ""}')
            for shards in (1, 4):
                ls = f"ingest{shards}"
                await t.request("POST", "/logstores", project="bench", headers={"Content-Type": "application/json"},
                                body=f'{{"logstoreName": "{ls}", "ttl": 1, "shardCount": {shards}}}'.encode())
                d0, h0, c0 = disk_bytes(Path(tmp) / "data"), hub_cpu(pid), client_cpu()
                s0 = disk_bytes(Path(tmp) / "data" / "segments")
                ing = await ingest(t, "bench", ls, raw, requests=20 if args.quick else args.requests,
                                   seconds=args.seconds, concurrency=args.concurrency)
                await asyncio.sleep(0.2)  # the hub's last fsyncs and checkpoints land in this phase's CPU
                d1, h1, c1 = disk_bytes(Path(tmp) / "data"), hub_cpu(pid), client_cpu()
                s1 = disk_bytes(Path(tmp) / "data" / "segments")
                rows.append({"tree": tree, "pass": n, "test": f"ingest {shards} shard(s)", "raw_MB": ing["raw_mb"],
                             "seconds": ing["seconds"], "MB_per_s": ing["mb_per_s"], "hub_cpu_s": h1 - h0,
                             "MB_per_hub_cpu_s": ing["raw_mb"] / max(h1 - h0, 1e-9),
                             "MB_per_client_cpu_s": ing["raw_mb"] / max(c1 - c0, 1e-9),
                             "disk_per_raw": (d1 - d0) / (ing["raw_mb"] * MB),
                             "segments_per_raw": (s1 - s0) / (ing["raw_mb"] * MB)})
                pl = await pull(t, "bench", ls, shards)
                h2, c2 = hub_cpu(pid), client_cpu()
                rows.append({"tree": tree, "pass": n, "test": f"pull {shards} shard(s)", "raw_MB": pl["raw_mb"],
                             "seconds": pl["seconds"], "MB_per_s": pl["mb_per_s"], "hub_cpu_s": h2 - h1,
                             "MB_per_hub_cpu_s": pl["raw_mb"] / max(h2 - h1, 1e-9),
                             "MB_per_client_cpu_s": pl["raw_mb"] / max(c2 - c1, 1e-9)})
            await t.request("POST", "/logstores", project="bench", headers={"Content-Type": "application/json"},
                            body=b'{"logstoreName": "small", "ttl": 1, "shardCount": 1}')
            sp = await small_puts(t, "bench", "small", 200 if args.quick else args.small_puts)
            rows.append({"tree": tree, "pass": n, "test": "small put latency", "p50_ms": sp["p50_ms"],
                         "p99_ms": sp["p99_ms"], "max_ms": sp["max_ms"]})
        finally:
            await t.aclose()
            hub.close()
    return rows


MEDIAN_OF = ("MB_per_s", "MB_per_hub_cpu_s", "MB_per_client_cpu_s", "disk_per_raw", "segments_per_raw", "p50_ms",
             "p99_ms")
TESTS = ("ingest 1 shard(s)", "pull 1 shard(s)", "ingest 4 shard(s)", "pull 4 shard(s)", "small put latency")
TARGET = {"ingest 1 shard(s)": ">= 200 MB/s", "ingest 4 shard(s)": ">= 200 MB/s", "pull 1 shard(s)": ">= 300 MB/s",
          "pull 4 shard(s)": ">= 300 MB/s", "small put latency": "p99 < 10 ms"}


def medians(rows: list[dict[str, Any]], tree: str) -> dict[str, dict[str, Any]]:
    out = {}
    for test in TESTS:
        mine = [r for r in rows if r["tree"] == tree and r["test"] == test]
        row: dict[str, Any] = {"tree": tree, "pass": f"median of {len(mine)}", "test": test}
        for col in MEDIAN_OF:
            values = [r[col] for r in mine if col in r]
            if values:
                row[col] = statistics.median(values)
        row["target"] = TARGET[test] + (", disk <= 0.45x raw" if test.startswith("ingest") else "")
        out[test] = row
    return out


async def main_async(args: argparse.Namespace) -> None:
    raw = make_group(4096 if not args.quick else 512)
    trees = [(None, tree_name(None))] + ([(args.baseline_src, tree_name(args.baseline_src))]
                                         if args.baseline_src else [])
    repeat = 1 if args.quick else args.repeat
    rows: list[dict[str, Any]] = []
    for n in range(repeat):
        order = trees if n % 2 == 0 else trees[::-1]  # A B, B A, A B ...: drift of the machine hits both alike
        for src, tree in order:
            rows += await one_pass(args, raw, src, tree, n + 1)
            last = {r["test"]: r for r in rows[-5:]}
            print(f"  pass {n + 1} {tree}: ingest {last['ingest 1 shard(s)']['MB_per_s']:.0f}/"
                  f"{last['ingest 4 shard(s)']['MB_per_s']:.0f} MB/s, pull {last['pull 1 shard(s)']['MB_per_s']:.0f}/"
                  f"{last['pull 4 shard(s)']['MB_per_s']:.0f} MB/s", flush=True)
    summary_rows = []
    med = {tree: medians(rows, tree) for _, tree in trees}
    for _, tree in trees:
        summary_rows += med[tree].values()
    if len(trees) == 2:
        a, b = trees[0][1], trees[1][1]
        for test in TESTS:
            ratio: dict[str, Any] = {"tree": f"{a.split()[0]} / {b.split()[0]}", "pass": "ratio of medians",
                                     "test": test}
            for col in MEDIAN_OF:
                x, y = med[a][test].get(col), med[b][test].get(col)
                if x is not None and y:
                    ratio[col] = x / y
            summary_rows.append(ratio)
    h = med[trees[0][1]]

    def fig(test: str, col: str = "MB_per_s") -> str:
        return f"{h[test][col]:.0f}"

    summary = (f"{trees[0][1]}: ingest {fig('ingest 1 shard(s)')}/{fig('ingest 4 shard(s)')} MB/s, "
               f"pull {fig('pull 1 shard(s)')}/{fig('pull 4 shard(s)')} MB/s (1/4 shards); per hub CPU-s ingest "
               f"{fig('ingest 1 shard(s)', 'MB_per_hub_cpu_s')}/{fig('ingest 4 shard(s)', 'MB_per_hub_cpu_s')}, pull "
               f"{fig('pull 1 shard(s)', 'MB_per_hub_cpu_s')}/{fig('pull 4 shard(s)', 'MB_per_hub_cpu_s')} MB; "
               f"disk {h['ingest 4 shard(s)']['disk_per_raw']:.2f}x raw; small put p99 "
               f"{h['small put latency']['p99_ms']:.2f} ms; medians of {repeat}")
    if len(trees) == 2:
        b = med[trees[1][1]]
        summary += (f" | {trees[1][1]}: ingest {b['ingest 1 shard(s)']['MB_per_s']:.0f}/"
                    f"{b['ingest 4 shard(s)']['MB_per_s']:.0f}, pull {b['pull 1 shard(s)']['MB_per_s']:.0f}/"
                    f"{b['pull 4 shard(s)']['MB_per_s']:.0f} MB/s; per hub CPU-s ingest "
                    f"{b['ingest 1 shard(s)']['MB_per_hub_cpu_s']:.0f}/{b['ingest 4 shard(s)']['MB_per_hub_cpu_s']:.0f}"
                    f", pull {b['pull 1 shard(s)']['MB_per_hub_cpu_s']:.0f}/"
                    f"{b['pull 4 shard(s)']['MB_per_hub_cpu_s']:.0f} MB; "
                    f"disk {b['ingest 4 shard(s)']['disk_per_raw']:.2f}x (alternated)")
    summary += " [quick]" if args.quick else ""
    report("hub", rows + summary_rows, summary=summary,
           extra={"group_raw_bytes": len(raw), "quick": args.quick, "repeat": repeat,
                  "trees": [t for _, t in trees], "baseline_src": args.baseline_src})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    p.add_argument("--requests", type=int, default=600, help="max PutLogs per ingest run")
    p.add_argument("--seconds", type=float, default=8.0, help="max seconds per ingest run")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--small-puts", type=int, default=2000, help="sequential small PutLogs per pass")
    p.add_argument("--repeat", type=int, default=3, help="passes per tree (medians reported)")
    p.add_argument("--baseline-src", help="a second tree's src directory, run alternated with this one")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
