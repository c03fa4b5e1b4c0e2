"""Attacks on the hub (issue #17 kinds 1, 2, 4 and 6) and what an unrelated admin request sees meanwhile.

For each attack a fresh hub process is started on loopback; the attack runs for ``--seconds`` while an admin
client sends ListProject every 50 ms and a sampler reads the hub's RSS from /proc every 100 ms. Reported per
attack: the admin latency (p50, p99, max), the hub's RSS above its idle figure just before the attack (peak), and
what the attacker got. Targets (issue #17): admin max < 0.5 s and peak RSS < 300 MB above idle.

1. ``regex``: four read-only console sessions poll the live tail with ``(a+)+$`` over lines of 40 a's and a '!'
   (2^40 backtracking steps each with Python's re; linear with RE2).
2. ``heartbeat``: four read-only clients send heartbeats listing 1,000,000 shard ids on a 2-shard logstore, with
   a group timeout of 86400 s.
4. ``tail``: four console sessions poll the tail of a 64-shard logstore holding ~33 MB (512 KiB per shard).
6. ``slow-readers``: 40 connections send PullLogs for ~4 MiB of incompressible data and never read.

Run: ``.venv/bin/python bench/attack.py`` (``--quick`` for a smoke run, ``--only regex,tail`` for some).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import queue
import re
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import percentile, report  # noqa: E402

from sluice.client import Client  # noqa: E402
from sluice.testing import HubProcess  # noqa: E402
from sluice.wire.cursor import encode_cursor  # noqa: E402
from sluice.wire.errors import SLSError  # noqa: E402

VIEWER = ("viewer", "VIEWER-SECRET")
KEY_SPACE = 1 << 128


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def http_request(hub: Any, method: str, path: str, *, cookie: str = "", form: dict[str, str] | None = None,
                 timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=timeout)
    headers = {"Cookie": f"sluice_console={cookie}"} if cookie else {}
    body = None
    if form is not None:
        body = urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def console_cookie(hub: Any, key: tuple[str, str]) -> str:
    status, headers, _ = http_request(hub, "POST", "/console/login", form={"key_id": key[0], "secret": key[1]})
    match = re.match(r"sluice_console=([^;]+)", headers.get("set-cookie", ""))
    if status != 303 or not match:
        raise SystemExit(f"console sign-in failed: {status}")
    return match.group(1)


@dataclass(frozen=True)
class Target:
    """What an attacker process needs of the hub (a HubProcess does not cross a process boundary)."""

    host: str
    port: int
    url: str
    access_key_id: str
    access_key_secret: str


class Attack:
    """``setup`` prepares data in the bench process (not timed). ``worker(stop)`` runs in ``threads`` threads of a
    separate attacker process (so its CPU and GIL never slow the admin probe), counting outcomes."""

    name = ""
    threads = 4

    def __init__(self, hub: Target, admin: Client | None, quick: bool) -> None:
        self.hub, self.admin, self.quick = hub, admin, quick
        self.outcomes: dict[str, int] = {}
        self.lock = threading.Lock()

    def count(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def setup(self) -> None:
        pass

    def worker(self, stop: threading.Event) -> None:
        raise NotImplementedError


class RegexAttack(Attack):
    name = "regex"

    def setup(self) -> None:
        self.admin.create_project("atk-re")
        self.admin.create_logstore("atk-re", "app", shard_count=1)
        self.admin.put_logs("atk-re", "app", [{"msg": "a" * 40 + "!"} for _ in range(200)])

    def worker(self, stop: threading.Event) -> None:
        cookie = console_cookie(self.hub, VIEWER)
        qs = urlencode({"project": "atk-re", "logstore": "app", "q": "(a+)+$", "regex": "1", "back": "1000"})
        while not stop.is_set():
            try:
                status, _, _ = http_request(self.hub, "GET", f"/console/api/tail?{qs}", cookie=cookie, timeout=30)
                self.count(str(status))
            except OSError as exc:
                self.count(type(exc).__name__)


class HeartbeatAttack(Attack):
    name = "heartbeat"

    def setup(self) -> None:
        self.admin.create_project("atk-hb")
        self.admin.create_logstore("atk-hb", "app", shard_count=2)
        with Client(self.hub.url, *VIEWER, timeout=60) as viewer:
            viewer.create_consumer_group("atk-hb", "app", "flood", 86400)

    def worker(self, stop: threading.Event) -> None:
        ids = list(range(10_000 if self.quick else 1_000_000))
        n = 0
        with Client(self.hub.url, *VIEWER, timeout=60) as viewer:
            while not stop.is_set():
                n += 1
                try:
                    viewer.heartbeat("atk-hb", "app", "flood", f"c{threading.get_ident()}-{n}", ids)
                    self.count("200")
                except SLSError as exc:
                    self.count(exc.error_code)
                except OSError as exc:
                    self.count(type(exc).__name__)


class TailAttack(Attack):
    name = "tail"
    SHARDS = 64

    def setup(self) -> None:
        self.admin.create_project("atk-tail")
        self.admin.create_logstore("atk-tail", "app", shard_count=self.SHARDS)
        groups = 1 if self.quick else 8
        value = "v" * 1000
        for shard in range(self.SHARDS):
            key = f"{shard * KEY_SPACE // self.SHARDS:032x}"
            for _ in range(groups):
                self.admin.put_logs("atk-tail", "app", [{"pad": value} for _ in range(64)], hash_key=key)

    def worker(self, stop: threading.Event) -> None:
        cookie = console_cookie(self.hub, VIEWER)
        qs = urlencode({"project": "atk-tail", "logstore": "app", "q": "pad", "back": "1000"})
        while not stop.is_set():
            try:
                status, _, _ = http_request(self.hub, "GET", f"/console/api/tail?{qs}", cookie=cookie, timeout=60)
                self.count(str(status))
            except OSError as exc:
                self.count(type(exc).__name__)


class SlowReaderAttack(Attack):
    name = "slow-readers"
    threads = 1
    CLIENTS = 40

    def setup(self) -> None:
        self.admin.create_project("atk-slow")
        self.admin.create_logstore("atk-slow", "app", shard_count=1)
        for _ in range(1 if self.quick else 4):
            self.admin.put_logs("atk-slow", "app", [{"v": os.urandom(512).hex()} for _ in range(1024)])

    def worker(self, stop: threading.Event) -> None:
        request = (f"GET /logstores/app/shards/0?type=log&cursor={encode_cursor(0)}&count=1000 HTTP/1.1\r\n"
                   f"Host: atk-slow.{self.hub.host}\r\nx-log-apiversion: 0.6.0\r\nAccept-Encoding: lz4\r\n"
                   f"x-log-bodyrawsize: 0\r\n\r\n").encode()
        signed = _signed_pull(request)  # as the read-only key
        socks: list[socket.socket] = []
        for _ in range(self.CLIENTS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            try:
                s.connect((self.hub.host, self.hub.port))
                s.sendall(signed)
                socks.append(s)
            except OSError as exc:
                self.count(type(exc).__name__)
                s.close()
        self.count(f"{len(socks)} connections opened")
        stop.wait()  # they never read; the hub must cut them off
        cut = 0
        for s in socks:
            s.settimeout(0.01)
            try:
                while s.recv(1 << 20):
                    pass
                cut += 1
            except socket.timeout:
                pass
            except OSError:
                cut += 1
            s.close()
        self.count(f"{cut} cut off by the hub")


def _signed_pull(request: bytes) -> bytes:
    """The raw PullLogs request, signed (v1) for the read-only key by sluice's own signer."""
    from urllib.parse import parse_qsl

    from sluice.wire.signing import sign_request

    head = [line for line in request.decode().split("\r\n") if line]
    method, target, _ = head[0].split(" ")
    path, _, query = target.partition("?")
    headers = dict(line.split(": ", 1) for line in head[1:])
    added = sign_request(method, path, parse_qsl(query), headers, b"", VIEWER[0], VIEWER[1])
    lines = head + [f"{k}: {v}" for k, v in added.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


ATTACKS: dict[str, type[Attack]] = {a.name: a for a in (RegexAttack, HeartbeatAttack, TailAttack, SlowReaderAttack)}


def attacker_process(name: str, target: Target, quick: bool, stop: Any, results: Any) -> None:
    """The attacker: ``threads`` threads of ``worker`` until ``stop``, then its outcome counts to ``results``."""
    attack = ATTACKS[name](target, None, quick)
    flag = threading.Event()
    threads = [threading.Thread(target=attack.worker, args=(flag,), daemon=True) for _ in range(attack.threads)]
    for t in threads:
        t.start()
    stop.wait()
    flag.set()
    for t in threads:
        t.join(60)
    results.put(attack.outcomes)


def run_attack(cls: type[Attack], seconds: float, quick: bool, idle_timeout: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sluice-attack-") as tmp:
        hub = HubProcess(Path(tmp) / "data", extra_args=["--access-key", f"{VIEWER[0]}:{VIEWER[1]}::ro",
                                                         "--idle-timeout", str(idle_timeout)])
        hub.start()
        assert hub.proc is not None
        pid = hub.proc.pid
        admin = Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=30)
        target = Target(hub.host, hub.port, hub.url, hub.access_key_id, hub.access_key_secret)
        attack = cls(target, admin, quick)
        try:
            attack.setup()
            admin.list_projects()
            time.sleep(0.5)
            idle = rss_kib(pid)
            stop = threading.Event()
            peak = [idle]
            latencies: list[float] = []
            errors: list[str] = []

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], rss_kib(pid))
                    time.sleep(0.1)

            def probe() -> None:
                while not stop.is_set():
                    t = time.perf_counter()
                    try:
                        admin.list_projects()
                    except Exception as exc:  # noqa: BLE001 - reported, not raised
                        errors.append(type(exc).__name__)
                    latencies.append(time.perf_counter() - t)
                    time.sleep(0.05)

            ctx = multiprocessing.get_context("spawn")
            proc_stop, results = ctx.Event(), ctx.Queue()
            attacker = ctx.Process(target=attacker_process, args=(cls.name, target, quick, proc_stop, results))
            attacker.start()
            helpers = [threading.Thread(target=sample, daemon=True), threading.Thread(target=probe, daemon=True)]
            for t in helpers:
                t.start()
            time.sleep(seconds)
            stop.set()
            proc_stop.set()
            for t in helpers:
                t.join(10)
            try:
                attack.outcomes = results.get(timeout=90)
            except queue.Empty:
                attack.outcomes = {"attacker did not report": 1}
            attacker.join(10)
            if attacker.is_alive():
                attacker.kill()
            alive = hub.proc is not None and hub.proc.poll() is None
        finally:
            admin.close()
            hub.close()
    return {"attack": cls.name, "seconds": seconds, "admin_requests": len(latencies),
            "admin_p50_ms": percentile(latencies, 50) * 1000, "admin_p99_ms": percentile(latencies, 99) * 1000,
            "admin_max_ms": max(latencies, default=float("nan")) * 1000, "admin_errors": len(errors),
            "idle_rss_mb": idle / 1024, "peak_rss_above_idle_mb": (peak[0] - idle) / 1024,
            "hub_alive": alive, "attacker_got": json.dumps(attack.outcomes, sort_keys=True)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data, 3 s per attack (smoke run)")
    ap.add_argument("--seconds", type=float, default=None, help="attack duration (default 15, quick 3)")
    ap.add_argument("--only", default="", help="comma-separated attacks: " + ",".join(ATTACKS))
    ap.add_argument("--idle-timeout", type=int, default=5, help="the hub's --idle-timeout (slow readers' limit)")
    args = ap.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 15.0)
    names = [n for n in args.only.split(",") if n] or list(ATTACKS)
    rows = []
    for name in names:
        row = run_attack(ATTACKS[name], seconds, args.quick, args.idle_timeout)
        row["target_met"] = row["admin_max_ms"] < 500 and row["peak_rss_above_idle_mb"] < 300 and row["hub_alive"]
        rows.append(row)
        print(f"{name}: admin max {row['admin_max_ms']:.0f} ms, peak RSS +{row['peak_rss_above_idle_mb']:.0f} MB",
              flush=True)
    met = sum(r["target_met"] for r in rows)
    report("attack", rows, summary=f"{met}/{len(rows)} attacks within target (admin max < 500 ms, RSS < +300 MB); "
                                   + ", ".join(f"{r['attack']} {r['admin_max_ms']:.0f} ms/+"
                                               f"{r['peak_rss_above_idle_mb']:.0f} MB" for r in rows),
           extra={"targets": {"admin_max_ms": 500, "peak_rss_above_idle_mb": 300}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
