"""The hub's memory and connection bounds (docs/security.md, hub/limits.py): request bodies in flight are
capped over all connections (503 ServerBusy beyond a bounded wait), a body that does not arrive in time is
cut off (RequestTimeout, connection closed), idle connections are closed, and after a flood of large bodies
the hub's peak memory stayed bounded and it still serves."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from sluice.client import Client
from sluice.testing import HubProcess, free_port

MAX_PUT = 8 << 20
BUDGET = 4 * MAX_PUT  # four maximal bodies at once
BODY_TIMEOUT = 3.0
IDLE_TIMEOUT = 2.0
DEADLINE = 60.0  # socket timeout: a hang fails the test instead of blocking it


@pytest.fixture(scope="module")
def limited_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("limits") / "data", host="127.0.0.1", port=free_port(),
                     extra_args=["--max-put-bytes", str(MAX_PUT), "--max-inflight-bytes", str(BUDGET),
                                 "--inflight-wait", "0.5", "--body-timeout", str(BODY_TIMEOUT),
                                 "--idle-timeout", str(IDLE_TIMEOUT)])
    hub.start()
    with Client(hub.url, hub.access_key_id, hub.access_key_secret) as c:
        c.create_project("limits", "")
        c.create_logstore("limits", "logs", ttl=1, shard_count=1)
    yield hub
    crashed = hub.proc is not None and hub.proc.poll() is not None
    hub.close()
    assert not crashed, f"the hub died:\n{hub.log_tail()}"


def _connect(hub: HubProcess) -> socket.socket:
    s = socket.create_connection((hub.host, hub.port), timeout=DEADLINE)
    s.settimeout(DEADLINE)
    return s


def _put_head(length: int) -> bytes:
    return (f"POST /logstores/logs/shards/lb HTTP/1.1\r\nHost: limits.127.0.0.1\r\n"
            f"Content-Type: application/x-protobuf\r\nx-log-apiversion: 0.6.0\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def _response(s: socket.socket) -> tuple[int, dict[str, str]]:
    resp = http.client.HTTPResponse(s)
    resp.begin()
    body = resp.read()
    return resp.status, json.loads(body) if body else {}


def _closed_by_hub(s: socket.socket) -> bool:
    """True once the hub has closed the connection (EOF or reset); waits at most DEADLINE."""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def _still_serves(hub: HubProcess) -> None:
    with Client(hub.url, hub.access_key_id, hub.access_key_secret) as c:
        c.put_logs("limits", "logs", [{"after": "flood"}])
        cursor = c.get_cursor("limits", "logs", 0, "end")
        assert c.pull_logs("limits", "logs", 0, cursor).count == 0
        assert "logs" in c.list_logstores("limits")


def test_stalled_and_trickling_bodies_are_cut_off(limited_hub: HubProcess) -> None:
    """Headers, then a body that stops or trickles a byte at a time: after --body-timeout the hub answers
    RequestTimeout (SLS error JSON) and closes the connection, instead of holding it for ever."""
    stalled, trickling = _connect(limited_hub), _connect(limited_hub)
    stalled.sendall(_put_head(1000) + b"x" * 10)
    trickling.sendall(_put_head(1000))
    stop = threading.Event()

    def trickle() -> None:
        try:
            while not stop.wait(0.2):
                trickling.sendall(b"x")
        except OSError:
            pass  # the hub closed the connection: what we are waiting for
    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        for s in (stalled, trickling):
            status, err = _response(s)
            assert (status, err["errorCode"]) == (400, "RequestTimeout"), err
            assert _closed_by_hub(s)
    finally:
        stop.set()
        t.join()
        stalled.close()
        trickling.close()
    _still_serves(limited_hub)


def test_idle_connections_are_closed(limited_hub: HubProcess) -> None:
    """A connection that sends nothing, one that never finishes its headers, and a keep-alive connection
    left idle after a request are all closed by the hub after --idle-timeout."""
    silent, half, used = _connect(limited_hub), _connect(limited_hub), _connect(limited_hub)
    try:
        half.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        used.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, err = _response(used)  # unsigned: refused, but the connection is kept alive
        assert (status, err["errorCode"]) == (401, "Unauthorized")
        assert all(_closed_by_hub(s) for s in (silent, half, used))
    finally:
        for s in (silent, half, used):
            s.close()


def test_full_budget_answers_server_busy(limited_hub: HubProcess) -> None:
    """Five maximal bodies announced at once against a budget of four: one waits --inflight-wait and gets
    503 ServerBusy (the SDK retries it), the four others hold their share until their body times out. The
    hub never reads more than the budget; afterwards the whole budget is free again."""
    socks = [_connect(limited_hub) for _ in range(5)]
    try:
        for s in socks:
            s.sendall(_put_head(MAX_PUT))
        with ThreadPoolExecutor(5) as pool:
            outcomes = sorted(err["errorCode"] for _, err in pool.map(_response, socks))
        assert outcomes == ["RequestTimeout"] * 4 + ["ServerBusy"]
        assert all(_closed_by_hub(s) for s in socks)
    finally:
        for s in socks:
            s.close()
    _still_serves(limited_hub)


def _vm_hwm(pid: int) -> int:
    """The process's peak resident set size in bytes (Linux VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def _send_big_body(hub: HubProcess, sent: threading.Semaphore | None = None,
                   go: threading.Event | None = None) -> str:
    """One maximal junk body: all but its last byte at once, then (after ``go``) the last byte. Returns the
    hub's answer, or 'closed' if it hung up mid-body. Until ``go`` the hub must hold what it has read."""
    chunk = b"\x00" * (1 << 20)
    s = _connect(hub)
    try:
        try:
            s.sendall(_put_head(MAX_PUT))
            for _ in range(MAX_PUT // len(chunk) - 1):
                s.sendall(chunk)
            s.sendall(chunk[:-1])
        finally:
            if sent is not None:
                sent.release()
        if go is not None:
            go.wait(DEADLINE)
        s.sendall(b"\x00")
        status, err = _response(s)
        return f"{status} {err['errorCode']}"
    except (ConnectionResetError, BrokenPipeError):
        return "closed"
    finally:
        s.close()


@pytest.mark.slow
def test_flood_of_large_bodies_keeps_memory_bounded(limited_hub: HubProcess) -> None:
    """48 connections each push all but the last byte of an 8 MiB body at once and hold (384 MiB offered,
    which an unbounded hub buffers in full). The hub reads at most the budget (32 MiB of bodies) and answers
    the rest ServerBusy, so its peak memory grows by a small multiple of the budget, not by the flood; then
    it still serves, with its whole budget free again."""
    assert limited_hub.proc is not None
    pid = limited_hub.proc.pid
    _still_serves(limited_hub)
    before = _vm_hwm(pid)
    sent, go = threading.Semaphore(0), threading.Event()
    with ThreadPoolExecutor(48) as pool:
        results = [pool.submit(_send_big_body, limited_hub, sent, go) for _ in range(48)]
        for _ in range(48):  # every client has pushed all it can (or was refused): the hub's peak moment
            assert sent.acquire(timeout=DEADLINE)
        go.set()
        outcomes = [r.result() for r in results]
    grown = _vm_hwm(pid) - before
    # unsigned bodies are read in full, then refused (401); beyond the budget: 503 or a hang-up mid-body
    assert set(outcomes) <= {"401 Unauthorized", "503 ServerBusy", "closed"}, outcomes
    assert "401 Unauthorized" in outcomes
    assert grown < 6 * BUDGET, f"peak RSS grew by {grown >> 20} MiB for a {BUDGET >> 20} MiB budget"
    assert _send_big_body(limited_hub) == "401 Unauthorized"  # nothing of the budget leaked
    _still_serves(limited_hub)
