"""Hub throughput and latency, driven from this process against a hub subprocess on loopback.

* ingest: PutLogs of ~4096 logs (~1 MB raw, lz4) per request, several in flight, for 1 and 4 shards
* pull: PullLogs of everything just written, one reader per shard, lz4 responses
* small puts: sequential PutLogs of one small log each, latency p50/p99

Figures are MB/s of raw (uncompressed) LogGroup bytes. Usage: python bench/hub.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

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


async def main_async(args: argparse.Namespace) -> None:
    raw = make_group(4096 if not args.quick else 512)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        hub = HubProcess(Path(tmp) / "data", host="127.0.0.1", port=free_port())
        hub.start()
        t = Transport(hub.url, Credentials(hub.access_key_id, hub.access_key_secret), timeout=120)
        try:
            await t.request("POST", "/", project="bench", headers={"Content-Type": "application/json"},
                            body=b'{"projectName": "bench", "description": ""}')
            for shards in (1, 4):
                ls = f"ingest{shards}"
                await t.request("POST", "/logstores", project="bench", headers={"Content-Type": "application/json"},
                                body=f'{{"logstoreName": "{ls}", "ttl": 1, "shardCount": {shards}}}'.encode())
                ing = await ingest(t, "bench", ls, raw, requests=20 if args.quick else args.requests,
                                   seconds=args.seconds, concurrency=args.concurrency)
                rows.append({"test": f"ingest {shards} shard(s)", "shards": shards, "requests": ing["requests"],
                             "raw_MB": ing["raw_mb"], "seconds": ing["seconds"], "MB_per_s": ing["mb_per_s"],
                             "target": ">= 100 MB/s"})
                pl = await pull(t, "bench", ls, shards)
                rows.append({"test": f"pull {shards} shard(s)", "shards": shards, "requests": pl["groups"],
                             "raw_MB": pl["raw_mb"], "seconds": pl["seconds"], "MB_per_s": pl["mb_per_s"],
                             "target": ">= 300 MB/s"})
            await t.request("POST", "/logstores", project="bench", headers={"Content-Type": "application/json"},
                            body=b'{"logstoreName": "small", "ttl": 1, "shardCount": 1}')
            sp = await small_puts(t, "bench", "small", 200 if args.quick else 2000)
            rows.append({"test": "small put latency", "requests": sp["requests"], "p50_ms": sp["p50_ms"],
                         "p99_ms": sp["p99_ms"], "max_ms": sp["max_ms"], "target": "p99 < 10 ms"})
        finally:
            await t.aclose()
            hub.close()
    by = {r["test"]: r for r in rows}
    summary = (f"ingest {by['ingest 1 shard(s)']['MB_per_s']:.0f}/{by['ingest 4 shard(s)']['MB_per_s']:.0f} MB/s, "
               f"pull {by['pull 1 shard(s)']['MB_per_s']:.0f}/{by['pull 4 shard(s)']['MB_per_s']:.0f} MB/s (1/4 shards), "
               f"small put p50 {by['small put latency']['p50_ms']:.2f} ms p99 {by['small put latency']['p99_ms']:.2f} ms"
               + (" [quick]" if args.quick else ""))
    report("hub", rows, summary=summary, extra={"group_raw_bytes": len(raw), "quick": args.quick})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    p.add_argument("--requests", type=int, default=600, help="max PutLogs per ingest run")
    p.add_argument("--seconds", type=float, default=8.0, help="max seconds per ingest run")
    p.add_argument("--concurrency", type=int, default=4)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
