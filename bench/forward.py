"""Forward end to end: `sluice run` (a forward job) as its own process, from a hub into a SIEM-like sink.

* splunk_hec: the local HEC-protocol receiver (tests/_hec_receiver.py, its own process: token check,
  gzip, JSON parsing of every event), batched, gzip level 1, no indexer acks.
* syslog over TCP: a real rsyslogd (tests/_rsyslog.py) with imtcp, RFC 5424, octet counting, writing one
  byte per message to a file (so the count is cheap to read).

The logs are written to the hub first (nginx-like, ~250 bytes of fields, 8 fields each), then the job
starts from the beginning. Figures per core are the forwarding process's own CPU time (user + system),
from its first delivered event to the last (so interpreter start-up and the group join are not counted;
the totals are reported too). The sink's CPU over the same run is reported beside it.

Usage: python bench/forward.py [--quick] [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import report  # noqa: E402
from hub import make_group  # noqa: E402

from sluice.client import AsyncClient  # noqa: E402
from sluice.testing import HubProcess, free_port  # noqa: E402
from tests._rsyslog import Rsyslog  # noqa: E402

MB = 1_000_000
TOKEN = "bench-token-0000"
LOGS_PER_GROUP = 4096


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


async def _load(client: AsyncClient, logstore: str, events: int) -> tuple[int, int]:
    """Write ``events`` logs (whole groups of 4096); returns (logs, raw bytes)."""
    await client.create_logstore("bench", logstore, shard_count=2)
    group = make_group(LOGS_PER_GROUP)
    n = max(1, events // LOGS_PER_GROUP)
    sem = asyncio.Semaphore(4)

    async def put(i: int) -> None:
        async with sem:
            await client.put_log_group("bench", logstore, group)
    await asyncio.gather(*(put(i) for i in range(n)))
    return n * LOGS_PER_GROUP, n * len(group)


def _job(tmp: Path, hub: HubProcess, logstore: str, forward: str) -> Path:
    p = tmp / f"{logstore}.yaml"
    p.write_text(f"sources:\n  - endpoint: {hub.url}\n    access_key_id: ${{AK}}\n    access_key_secret: ${{SK}}\n"
                 f"    project: bench\n    logstores: [{logstore}]\ngroup: bench-{logstore}\nstart: begin\n"
                 f"heartbeat_interval: 1\nforward:\n{forward}")
    return p


def _measure(job: Path, env: dict[str, str], sink: psutil.Process, delivered: Callable[[], int], total: int,
             raw: int) -> dict[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sluice", "run", str(job), "--quiet"], env=env)
    ps = psutil.Process(proc.pid)
    first: tuple[float, float, int, float] | None = None  # (cpu, wall, delivered, sink cpu) at the first event
    try:
        while True:
            cpu = _cpu(ps)
            done = delivered()
            if done and first is None:
                first = (cpu, time.perf_counter(), done, _cpu(sink))
            if done >= total:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"sluice run exited with {proc.returncode}")
            if time.perf_counter() - t0 > 900:
                raise RuntimeError(f"forwarding did not finish: {done}/{total}")
            time.sleep(0.05)
        wall_end = time.perf_counter()
        sink_cpu = _cpu(sink)
    finally:
        proc.terminate()
        proc.wait(60)
    assert first is not None
    steady_events = total - first[2]
    steady_cpu = cpu - first[0]
    steady_wall = wall_end - first[1]
    frac = steady_events / total
    return {"events": total, "raw_MB": raw / MB, "seconds": wall_end - t0, "cpu_s": cpu,
            "events_per_s": steady_events / steady_wall if steady_wall > 0 else float("nan"),
            "events_per_core_s": steady_events / steady_cpu if steady_cpu > 0 else float("nan"),
            "MB_per_core_s": raw * frac / MB / steady_cpu if steady_cpu > 0 else float("nan"),
            "events_per_core_s_incl_startup": total / cpu,
            "sink_cpu_s": sink_cpu - first[3], "sink_core_pct": 100 * (sink_cpu - first[3]) / steady_wall}


async def hec(hub: HubProcess, client: AsyncClient, tmp: Path, events: int, env: dict[str, str]) -> dict[str, float]:
    total, raw = await _load(client, "to-hec", events)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, str(ROOT / "tests" / "_hec_receiver.py"), "--port", str(port),
                                 "--token", TOKEN])
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url + "/_stats", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

        def delivered() -> int:
            return int(json.loads(urllib.request.urlopen(url + "/_stats", timeout=10).read())["events"])
        job = _job(tmp, hub, "to-hec", f"  splunk_hec:\n    url: {url}\n    token: {TOKEN}\n    gzip: true\n")
        return await asyncio.to_thread(_measure, job, env, psutil.Process(receiver.pid), delivered, total, raw)
    finally:
        receiver.terminate()
        receiver.wait(30)


async def syslog_tcp(hub: HubProcess, client: AsyncClient, tmp: Path, events: int,
                     env: dict[str, str]) -> dict[str, float]:
    total, raw = await _load(client, "to-syslog", events)
    with Rsyslog(tmp / "rsyslog", tcp=True, count_only=True) as rsyslog:
        assert rsyslog.proc is not None and rsyslog.tcp_port is not None
        job = _job(tmp, hub, "to-syslog", f"  syslog:\n    host: 127.0.0.1\n    port: {rsyslog.tcp_port}\n"
                   "    protocol: tcp\n    format: rfc5424\n    framing: octet-counting\n")
        return await asyncio.to_thread(_measure, job, env, psutil.Process(rsyslog.proc.pid), rsyslog.count, total,
                                       raw)


async def main_async(args: argparse.Namespace) -> None:
    events = 20_000 if args.quick else args.events
    rows = []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-fwd-") as tmp_s:
        tmp = Path(tmp_s)
        hub = HubProcess(tmp / "data", host="127.0.0.1", port=free_port())
        hub.start()
        env = {**os.environ, "AK": hub.access_key_id, "SK": hub.access_key_secret, "SLUICE_LOG_LEVEL": "warning"}
        client = AsyncClient(hub.url, hub.access_key_id, hub.access_key_secret)
        try:
            await client.create_project("bench")
            for name, fn, target in (("splunk_hec (batched, gzip)", hec, ">= 100,000 events/s per core"),
                                     ("syslog tcp rfc5424 octet-counting (rsyslog)", syslog_tcp,
                                      ">= 100,000 messages/s per core")):
                r = await fn(hub, client, tmp, events, env)
                rows.append({"sink": name, **r, "target": target})
        finally:
            await client.aclose()
            hub.close()
    summary = (f"{events} events: HEC {rows[0]['events_per_core_s']:,.0f} events/s per core "
               f"({rows[0]['MB_per_core_s']:.0f} MB/s raw per core), rsyslog TCP {rows[1]['events_per_core_s']:,.0f} "
               f"msgs/s per core ({rows[1]['MB_per_core_s']:.0f} MB/s)" + (" [quick]" if args.quick else ""))
    report("forward", rows, summary=summary, extra={"quick": args.quick})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--events", type=int, default=1_000_000, help="logs per sink")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
