"""The store at scale: per-request cost against the number of shards the hub holds, retention, disk use.

* per-request: a hub holding N shards (a 2-shard logstore measured, the rest in logstores of 250 shards;
  one small log written to every shard, so every shard has an open history), then sequential requests
  against one shard of the 2-shard logstore: small PutLogs, PullLogs, consumer heartbeat, checkpoint. Hub
  CPU per request (user+system of its pid) and client-side p50/p99. Target (#19): within 20% of the
  smallest hub's values at 20,000 shards.
* retention: a logstore holding ``--expire-groups`` small groups, aged past its TTL while the hub is
  stopped (the index's receive times are moved back), then the hub restarted with ``--ttl-interval 1``
  under a steady load of PutLogs and heartbeats: p99/max latency while the pass deletes, how long it
  took, hub CPU. Also the CPU of passes that delete nothing at N shards (ttl-interval 1 s, idle hub).
  Target: no request delayed more than 20 ms.
* ingest, pull, disk: bench/hub.py's nginx-like group written ``--disk-groups`` times (lz4 bodies, as the
  SDK sends), then pulled: raw MB/s of wall time and per CPU-second of the hub (compare the latter on a
  shared machine), and bytes on disk (segments + index) / raw bytes. Target: <= 0.45.

The machine is usually shared: compare rows of one run, not across runs. Usage:
python bench/scale.py [--quick] [--shards 2,200,2000,20000] [--only requests,idle,expire,disk]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import percentile, report  # noqa: E402
from hub import make_group  # noqa: E402

from sluice.client._transport import Credentials, Transport  # noqa: E402
from sluice.testing import HubProcess, free_port  # noqa: E402
from sluice.wire.compress import compress  # noqa: E402
from sluice.wire.cursor import decode_cursor, encode_cursor  # noqa: E402
from sluice.wire.loggroup import LogGroup  # noqa: E402

PROJECT = "scale"
PER_LOGSTORE = 250
TARGET_SHARDS = 2
PASS_AFTER = 4  # seconds from the restart to the first retention pass (--ttl-interval): a steady window first
_JSON = {"Content-Type": "application/json"}
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def hash_key(shard: int, shards: int) -> str:
    """A hash key inside shard ``shard`` of a fresh logstore of ``shards`` shards."""
    return f"{shard * (1 << 128) // shards:032x}"


def small_body(text: str = "a small log line of about fifty bytes, typical") -> tuple[bytes, dict[str, str]]:
    g = LogGroup()
    lg = g.Logs.add()
    lg.Time = int(time.time())
    c = lg.Contents.add()
    c.Key, c.Value = "msg", text
    raw = g.SerializeToString()
    return compress(raw, "lz4"), {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(len(raw)),
                                  "x-log-compresstype": "lz4"}


def start_hub(data: Path, *extra: str) -> tuple[HubProcess, Transport]:
    hub = HubProcess(data, host="127.0.0.1", port=free_port(), extra_args=list(extra))
    hub.start(timeout=300)
    return hub, Transport(hub.url, Credentials(hub.access_key_id, hub.access_key_secret), timeout=120)


async def create_shards(t: Transport, total: int, ttl: int = 30, first: int = PER_LOGSTORE) -> list[tuple[str, int]]:
    """Logstores of up to 250 shards (the first of ``first``) adding up to ``total``; returns their (name, shard
    count)."""
    await t.request("POST", "/", project=PROJECT, headers=_JSON,
                    body=json.dumps({"projectName": PROJECT, "description": ""}).encode())
    stores = []
    left, i = total, 0
    while left > 0:
        n = min(first if i == 0 else PER_LOGSTORE, left)
        name = f"ls{i}"
        await t.request("POST", "/logstores", project=PROJECT, headers=_JSON,
                        body=json.dumps({"logstoreName": name, "ttl": ttl, "shardCount": n}).encode())
        stores.append((name, n))
        left -= n
        i += 1
    return stores


async def write_every_shard(t: Transport, stores: list[tuple[str, int]], concurrency: int = 16) -> None:
    body, headers = small_body()
    jobs = [(name, shard) for name, n in stores for shard in range(n)]

    async def worker(k: int) -> None:
        for name, shard in jobs[k::concurrency]:
            await t.request("POST", f"/logstores/{name}/shards/route", project=PROJECT, headers=headers,
                            params=[("key", hash_key(shard, dict(stores)[name]))], body=body, retry=False)

    await asyncio.gather(*(worker(k) for k in range(concurrency)))


async def timed(hub: HubProcess, n: int, call) -> dict[str, float]:  # type: ignore[no-untyped-def]
    assert hub.proc is not None
    lat = []
    c0 = cpu_seconds(hub.proc.pid)
    for i in range(n):
        t0 = time.perf_counter()
        await call(i)
        lat.append((time.perf_counter() - t0) * 1000)
    cpu = cpu_seconds(hub.proc.pid) - c0
    return {"cpu_us": cpu / n * 1e6, "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99)}


async def per_request(shards: int, n: int, tmp: Path) -> list[dict[str, object]]:
    hub, t = start_hub(tmp / f"req{shards}")
    rows: list[dict[str, object]] = []
    try:
        t0 = time.perf_counter()
        # the measured logstore has TARGET_SHARDS shards whatever the total, so what grows is the hub, not the
        # request (a heartbeat's cost follows its own logstore's shards, as it should)
        stores = await create_shards(t, shards, first=TARGET_SHARDS)
        await write_every_shard(t, stores)
        setup = time.perf_counter() - t0
        ls = stores[0][0]
        body, headers = small_body()
        path = f"/logstores/{ls}/shards/0"
        route = [("key", hash_key(0, stores[0][1]))]

        async def put(i: int) -> None:
            await t.request("POST", f"/logstores/{ls}/shards/route", project=PROJECT, params=route,
                            headers=headers, body=body, retry=False)

        cursor = encode_cursor(0)

        async def pull(i: int) -> None:
            await t.request("GET", path, project=PROJECT, params=[("type", "log"), ("cursor", cursor), ("count", "100")],
                            headers={"Accept-Encoding": "lz4", "Accept": "application/x-protobuf"}, retry=False)

        await t.request("POST", f"/logstores/{ls}/consumergroups", project=PROJECT, headers=_JSON,
                        body=b'{"consumerGroup": "grp", "timeout": 60, "order": false}')
        group = f"/logstores/{ls}/consumergroups/grp"
        beat_params = [("type", "heartbeat"), ("consumer", "c1")]
        await t.request("POST", group, project=PROJECT, params=beat_params, headers=_JSON, body=b"[]")
        held = json.dumps(sorted(json.loads((await t.request(
            "POST", group, project=PROJECT, params=beat_params, headers=_JSON, body=b"[]")).body))).encode()

        async def beat(i: int) -> None:
            await t.request("POST", group, project=PROJECT, params=beat_params, headers=_JSON, body=held, retry=False)

        async def checkpoint(i: int) -> None:
            await t.request("POST", group, project=PROJECT,
                            params=[("type", "checkpoint"), ("consumer", "c1"), ("forceSuccess", "false")],
                            headers=_JSON, body=json.dumps({"shard": 0, "checkpoint": encode_cursor(1 + i % 50)}).encode(),
                            retry=False)

        for name, call in (("PutLogs", put), ("PullLogs", pull), ("heartbeat", beat), ("checkpoint", checkpoint)):
            await timed(hub, max(20, n // 10), call)  # warm up
            r = await timed(hub, n, call)
            rows.append({"test": f"{name} @ {shards} shards", "shards": shards, "requests": n, **r,
                         "setup_s": setup})
    finally:
        await t.aclose()
        hub.close()
    return rows


async def idle_retention(shards: int, seconds: float, tmp: Path) -> dict[str, object]:
    """Hub CPU while idle with a retention pass every second that deletes nothing."""
    hub, t = start_hub(tmp / f"idle{shards}", "--ttl-interval", "1")
    try:
        stores = await create_shards(t, shards, ttl=1)
        await write_every_shard(t, stores)
        await asyncio.sleep(1.5)
        assert hub.proc is not None
        c0 = cpu_seconds(hub.proc.pid)
        await asyncio.sleep(seconds)
        cpu = cpu_seconds(hub.proc.pid) - c0
    finally:
        await t.aclose()
        hub.close()
    return {"test": f"retention, nothing due @ {shards} shards", "shards": shards,
            "cpu_ms_per_pass": cpu / seconds * 1000}


async def expire_under_load(groups: int, tmp: Path) -> list[dict[str, object]]:
    """A pass deleting ``groups`` groups while PutLogs and heartbeats run: their latency during it."""
    data = tmp / "expire"
    hub, t = start_hub(data)
    try:
        stores = await create_shards(t, 2, ttl=1)
        ls = stores[0][0]
        body, headers = small_body()
        sent = 0

        async def writer() -> None:
            nonlocal sent
            while sent < groups:
                sent += 1
                await t.request("POST", f"/logstores/{ls}/shards/route", project=PROJECT, headers=headers,
                                params=[("key", hash_key(0, 2))], body=body, retry=False)

        await asyncio.gather(*(writer() for _ in range(16)))
        await t.request("POST", f"/logstores/{ls}/consumergroups", project=PROJECT, headers=_JSON,
                        body=b'{"consumerGroup": "grp", "timeout": 60, "order": false}')
    finally:
        await t.aclose()
        hub.stop()
    conn = sqlite3.connect(data / "hub.db")
    conn.execute("UPDATE log SET recv_ms = recv_ms - ?", (3 * 86400 * 1000,))
    conn.commit()
    conn.close()
    hub.extra_args = ["--ttl-interval", str(PASS_AFTER)]
    hub.start(timeout=300)
    t = Transport(hub.url, Credentials(hub.access_key_id, hub.access_key_secret), timeout=120)
    rows: list[dict[str, object]] = []
    try:
        assert hub.proc is not None
        put_lat: list[tuple[float, float]] = []
        beat_lat: list[tuple[float, float]] = []
        stop = asyncio.Event()
        group = f"/logstores/{ls}/consumergroups/grp"

        async def putter() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                await t.request("POST", f"/logstores/{ls}/shards/route", project=PROJECT, headers=headers,
                                params=[("key", hash_key(1, 2))], body=body, retry=False)
                put_lat.append((t0, (time.perf_counter() - t0) * 1000))
                await asyncio.sleep(0.005)

        async def beater() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                await t.request("POST", group, project=PROJECT, params=[("type", "heartbeat"), ("consumer", "c1")],
                                headers=_JSON, body=b"[]", retry=False)
                beat_lat.append((t0, (time.perf_counter() - t0) * 1000))
                await asyncio.sleep(0.005)

        tasks = [asyncio.ensure_future(putter()), asyncio.ensure_future(beater())]
        c0 = cpu_seconds(hub.proc.pid)
        t_start = time.perf_counter()
        done_at = None
        while time.perf_counter() - t_start < 120:
            await asyncio.sleep(0.2)
            resp = await t.request("GET", f"/logstores/{ls}/shards/0", project=PROJECT,
                                   params=[("type", "cursor"), ("from", "begin")])
            if decode_cursor(resp.json()["cursor"]) >= groups:
                done_at = time.perf_counter()
                break
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)
        cpu = cpu_seconds(hub.proc.pid) - c0
        pass_start = t_start + PASS_AFTER - 0.5  # the hub armed its timer a little before it answered
        pass_end = done_at or time.perf_counter()
        for name, lat in (("PutLogs", put_lat), ("heartbeat", beat_lat)):
            for window, lo, hi in (("steady, before the pass", t_start + 1.0, pass_start),
                                   (f"during a pass deleting {groups} groups", pass_start, pass_end + 0.2)):
                vals = [ms for at, ms in lat if lo <= at < hi]
                if not vals:
                    continue
                rows.append({"test": f"{name} {window}", "requests": len(vals), "p50_ms": percentile(vals, 50),
                             "p99_ms": percentile(vals, 99), "max_ms": max(vals),
                             "pass_s": (pass_end - pass_start) if done_at else None, "hub_cpu_s": cpu})
    finally:
        await t.aclose()
        hub.close()
    return rows


async def ingest_pull_disk(groups: int, tmp: Path) -> list[dict[str, object]]:
    """bench/hub.py's group written ``groups`` times (4 in flight, lz4 bodies as the SDK sends), then pulled
    back (lz4 responses): raw MB per second of wall time and per CPU-second of the hub (the latter is what to
    compare on a shared machine); then bytes on disk / raw bytes."""
    raw = make_group(4096)
    body = compress(raw, "lz4")
    headers = {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(len(raw)),
               "x-log-compresstype": "lz4"}
    data = tmp / "disk"
    hub, t = start_hub(data)
    rows: list[dict[str, object]] = []
    total_raw = groups * len(raw)
    try:
        assert hub.proc is not None
        await create_shards(t, 1)
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while sent < groups:
                sent += 1
                await t.request("POST", "/logstores/ls0/shards/lb", project=PROJECT, headers=headers, body=body,
                                retry=False)

        c0, w0 = cpu_seconds(hub.proc.pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(4)))
        cpu, wall = cpu_seconds(hub.proc.pid) - c0, time.perf_counter() - w0
        rows.append({"test": "ingest, bench/hub.py data", "requests": groups, "raw_MB": total_raw / 1e6,
                     "MB_per_s": total_raw / 1e6 / wall, "MB_per_hub_cpu_s": total_raw / 1e6 / max(cpu, 1e-9)})
        resp = await t.request("GET", "/logstores/ls0/shards/0", project=PROJECT,
                               params=[("type", "cursor"), ("from", "begin")])
        cursor = resp.json()["cursor"]
        pulled = 0
        c0, w0 = cpu_seconds(hub.proc.pid), time.perf_counter()
        while True:
            resp = await t.request("GET", "/logstores/ls0/shards/0", project=PROJECT,
                                   params=[("type", "log"), ("cursor", cursor), ("count", "1000")],
                                   headers={"Accept-Encoding": "lz4", "Accept": "application/x-protobuf"})
            if not int(resp.headers["x-log-count"]):
                break
            pulled += int(resp.headers["x-log-bodyrawsize"])
            cursor = resp.headers["x-log-cursor"]
        cpu, wall = cpu_seconds(hub.proc.pid) - c0, time.perf_counter() - w0
        rows.append({"test": "pull, bench/hub.py data", "requests": groups, "raw_MB": pulled / 1e6,
                     "MB_per_s": pulled / 1e6 / wall, "MB_per_hub_cpu_s": pulled / 1e6 / max(cpu, 1e-9)})
    finally:
        await t.aclose()
        hub.stop()
    seg = sum(p.stat().st_size for p in (data / "segments").rglob("*") if p.is_file())
    index = sum(p.stat().st_size for p in data.glob("hub.db*"))
    hub.close()
    rows.append({"test": "disk use, bench/hub.py data", "requests": groups, "raw_MB": total_raw / 1e6,
                 "disk_MB": (seg + index) / 1e6, "disk_ratio": (seg + index) / total_raw,
                 "wire_ratio": len(body) / len(raw), "target": "<= 0.45"})
    return rows


async def main_async(args: argparse.Namespace) -> None:
    shard_counts = [int(x) for x in args.shards.split(",")] if args.shards else (
        [2, 200] if args.quick else [2, 200, 2000, 20000])
    n = 100 if args.quick else args.requests
    parts = set(args.only.split(",")) if args.only else {"requests", "idle", "expire", "disk"}
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="sluice-scale-") as tmp_name:
        tmp = Path(tmp_name)
        if "requests" in parts:
            for shards in shard_counts:
                rows += await per_request(shards, n, tmp)
                print(f"... {shards} shards done", flush=True)
        if "idle" in parts:
            for shards in shard_counts:
                rows.append(await idle_retention(shards, 2 if args.quick else 6, tmp))
        if "expire" in parts:
            rows += await expire_under_load(1000 if args.quick else args.expire_groups, tmp)
        if "disk" in parts:
            rows += await ingest_pull_disk(10 if args.quick else args.disk_groups, tmp)
    by = {r["test"]: r for r in rows}
    lo, hi = shard_counts[0], shard_counts[-1]
    summary = []
    if "requests" in parts:
        for name in ("PutLogs", "PullLogs", "heartbeat", "checkpoint"):
            a, b = by[f"{name} @ {lo} shards"], by[f"{name} @ {hi} shards"]
            summary.append(f"{name} {a['cpu_us']:.0f}->{b['cpu_us']:.0f} us p99 {a['p99_ms']:.1f}->{b['p99_ms']:.1f} ms"
                           f" ({lo}->{hi} shards)")
    if "idle" in parts:
        summary.append(f"idle retention pass {by[f'retention, nothing due @ {hi} shards']['cpu_ms_per_pass']:.0f} ms "
                       f"CPU at {hi} shards")
    if "expire" in parts:
        expire_rows = [r for r in rows if "during a pass" in str(r["test"])]
        steady_rows = [r for r in rows if "steady, before" in str(r["test"])]
        summary.append(f"during a retention pass max {max(float(str(r['max_ms'])) for r in expire_rows):.1f} ms "
                       f"(steady max {max(float(str(r['max_ms'])) for r in steady_rows):.1f} ms)")
    if "disk" in parts:
        summary.append(f"ingest {by['ingest, bench/hub.py data']['MB_per_hub_cpu_s']:.0f} / pull "
                       f"{by['pull, bench/hub.py data']['MB_per_hub_cpu_s']:.0f} MB per hub CPU-s, "
                       f"disk {by['disk use, bench/hub.py data']['disk_ratio']:.3f}x raw")
    report("scale", rows, summary="; ".join(summary) + (" [quick]" if args.quick else ""),
           extra={"quick": args.quick})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    p.add_argument("--shards", default="", help="comma-separated shard counts (default 2,200,2000,20000)")
    p.add_argument("--only", default="", help="comma-separated parts: requests,idle,expire,disk (default all)")
    p.add_argument("--requests", type=int, default=500, help="requests per measured kind")
    p.add_argument("--expire-groups", type=int, default=100_000, help="groups one retention pass deletes")
    p.add_argument("--disk-groups", type=int, default=300, help="~0.93 MB groups written for throughput and disk")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
