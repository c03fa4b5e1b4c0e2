"""Clients that send PullLogs and never read the answer (issue #17 item 6).

Before: 40 such connections held +315 MB of the hub's memory (each response copied whole into its socket's
buffer and waited on without a limit), still open long after ``--idle-timeout``. Now a large response is
written in slices as the client takes them (hub/limits.py ``bounded_writes``), so each connection holds at most
its one response plus a slice, and a client that takes none of its queued bytes for the idle timeout gets the
connection aborted (the write timeout).
The hub keeps answering others meanwhile. Latency and RSS during the attack are reported by ``bench/attack.py``.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from sluice.client import Client
from sluice.testing import HubProcess
from sluice.wire.cursor import encode_cursor

CLIENTS = 40
IDLE_TIMEOUT = 3


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fill_incompressible(c: Client, project: str, logstore: str, mib: int = 4) -> None:
    """About ``mib`` MiB of random hex in shard 0 (lz4 cannot shrink it), so one PullLogs answer is that big."""
    for _ in range(mib):
        c.put_logs(project, logstore, [{"v": os.urandom(512).hex()} for _ in range(1024)], compress_type="lz4")


def pull_request(host: str, project: str, logstore: str) -> bytes:
    return (f"GET /logstores/{logstore}/shards/0?type=log&cursor={encode_cursor(0)}&count=1000 HTTP/1.1\r\n"
            f"Host: {project}.{host}\r\nx-log-apiversion: 0.6.0\r\nAccept-Encoding: lz4\r\n"
            f"x-log-bodyrawsize: 0\r\n\r\n").encode()


def open_slow_readers(host: str, port: int, request: bytes, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # take as little as the kernel allows
        s.connect((host, port))
        s.sendall(request)
        socks.append(s)
    return socks


def closed_by_peer(s: socket.socket, timeout: float) -> bool:
    """Drain what is buffered; True once the hub has closed or reset the connection."""
    s.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = s.recv(1 << 20)
        except socket.timeout:
            continue
        except OSError:
            return True
        if not data:
            return True
    return False


def test_attack_clients_that_never_read_are_bounded_and_cut_off(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data", access_key=None, extra_args=["--idle-timeout", str(IDLE_TIMEOUT)])
    hub.start()
    socks: list[socket.socket] = []
    try:
        with Client(hub.url, timeout=30) as c:
            c.create_project("slow")
            c.create_logstore("slow", "app", shard_count=1)
            fill_incompressible(c, "slow", "app")
            assert hub.proc is not None
            idle = _rss_kib(hub.proc.pid)
            socks = open_slow_readers(hub.host, hub.port, pull_request(hub.host, "slow", "app"), CLIENTS)
            time.sleep(1.5)  # every response is queued by now
            peak = _rss_kib(hub.proc.pid) - idle
            assert c.list_projects()  # others are answered meanwhile
            # Each holds its ~4 MiB response and at most a slice more (before: about 7.8 MB each).
            assert peak < CLIENTS * (5 << 10), f"{CLIENTS} slow readers pinned {peak} KiB"
            started = time.monotonic()
            # Without reading a byte: past the timeout the hub has aborted them and freed what they held.
            time.sleep(IDLE_TIMEOUT + 2)  # the sweep runs every IDLE_TIMEOUT/4 s
            after = _rss_kib(hub.proc.pid) - idle
            assert after < max(peak // 2, 20 << 10), f"still {after} KiB above idle after the timeout (peak {peak})"
            cut = sum(closed_by_peer(s, 5) for s in socks)
            assert cut == CLIENTS, f"only {cut} of {CLIENTS} slow readers were disconnected " \
                                   f"{time.monotonic() - started:.0f}s after the idle timeout"
            assert c.list_projects()
    finally:
        for s in socks:
            s.close()
        hub.close()
