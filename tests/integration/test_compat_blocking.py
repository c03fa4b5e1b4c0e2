"""Issue #20: the compat ``LogClient``'s calls from a thread that runs no event loop (an SDK processor's) go first
over that thread's own blocking connection (client/_blocking.py), and anything but a complete answer goes to
the regular path (retries, credential refresh, errors). Against the real hub: data lands, one connection is
reused, a connection the server closed while idle is replaced. Against scripted loopback servers: a server
error is retried, a broken answer is retried, a definite error is raised once (no second send), and a
``Connection: close`` answer is honoured."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
from typing import Any, Iterator

import pytest

import sluice.compat as ours
from sluice.client import AsyncClient
from sluice.client import _blocking
from sluice.testing import HubProcess

from ..conftest import unique


def _in_thread(fn: Any) -> Any:
    """Run ``fn()`` on a new plain thread (no event loop there, as in an SDK processor) and return its result."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    if "error" in out:
        raise out["error"]
    return out.get("value")


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every blocking connection opened during the test."""
    seen: list[tuple[str, int]] = []
    real = _blocking.BlockingConnection._connect

    def counting(self: _blocking.BlockingConnection) -> None:
        seen.append(self.key)
        real(self)

    monkeypatch.setattr(_blocking.BlockingConnection, "_connect", counting)
    return seen


def _count_logs(hub: HubProcess, project: str, logstore: str) -> int:
    async def go() -> int:
        async with AsyncClient(hub.endpoint, hub.access_key_id, hub.access_key_secret) as c:
            total = 0
            for shard in (0, 1):
                cursor = await c.get_cursor(project, logstore, shard, "begin")
                res = await c.pull_logs(project, logstore, shard, cursor)
                total += sum(len(g) for g in res.log_groups())
            return total
    return asyncio.run(go())


def test_writes_from_a_thread_reuse_one_connection_and_survive_an_idle_close(
        hub: HubProcess, project: str, connects: list[tuple[str, int]]) -> None:
    lc = ours.LogClient(hub.endpoint, hub.access_key_id, hub.access_key_secret)
    ls = unique("blk")
    lc.create_logstore(project, ls, 1, 2)  # from this thread: its own connection
    assert len(connects) == 1

    def write(n: int) -> None:
        for i in range(n):
            lc.put_logs(ours.PutLogsRequest(project, ls, "t", "", [ours.LogItem(1700000000 + i, [("i", str(i))])]))

    _in_thread(lambda: write(10))
    assert len(connects) == 2  # the thread's first call connects; the other nine reuse it
    conn = lc._local.conn  # this (the test's) thread's connection
    conn._sock.shutdown(socket.SHUT_RDWR)  # as if the server had closed it while idle
    write(5)
    assert len(connects) == 3  # replaced once, at once
    assert _count_logs(hub, project, ls) == 15
    gc.collect()
    assert len(lc._conns) == 1  # the ended thread's connection went with it; this thread's is open
    lc.close()
    assert len(lc._conns) == 0 and conn._sock is None


def test_a_call_inside_a_running_loop_takes_the_regular_path(hub: HubProcess, project: str,
                                                             connects: list[tuple[str, int]]) -> None:
    lc = ours.LogClient(hub.endpoint, hub.access_key_id, hub.access_key_secret)

    async def inside() -> Any:
        return lc.list_logstore(project)

    assert asyncio.run(inside()).get_logstores() is not None
    assert connects == []
    lc.close()


class Scripted:
    """A loopback HTTP server answering each request with the next scripted reply (bytes, or None: close the
    connection without answering; a reply cut short inside its head is followed by a close); counts
    connections and requests."""

    def __init__(self, replies: list[bytes | None]) -> None:
        self.replies = list(replies)
        self.requests = 0
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen()
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                self.requests += 1
                reply = self.replies.pop(0) if self.replies else OK
                if reply is None:
                    return
                conn.sendall(reply)
                if b"Connection: close" in reply or b"\r\n\r\n" not in reply:  # or a head cut short
                    return

    def close(self) -> None:
        self._sock.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-log-requestid: ok1\r\n\r\n"


def _error(status: int, code: str) -> bytes:
    body = ('{"errorCode": "%s", "errorMessage": "scripted"}' % code).encode()
    return (b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\nx-log-requestid: e1\r\n\r\n"
            % (status, len(body)) + body)


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[Scripted] = []

    def make(replies: list[bytes | None]) -> tuple[Scripted, ours.LogClient]:
        s = Scripted(replies)
        servers.append(s)
        return s, ours.LogClient(f"127.0.0.1:{s.port}", "id", "secret")

    yield make
    for s in servers:
        s.close()


def _put(lc: ours.LogClient) -> Any:
    return _in_thread(lambda: lc.put_logs(ours.PutLogsRequest("p", "l", "", "", [ours.LogItem(1, [("a", "1")])])))


def test_server_error_and_broken_answers_go_to_the_regular_path(scripted: Any) -> None:
    server, lc = scripted([_error(503, "ServerBusy"), OK])
    assert _put(lc).get_request_id() == "ok1"
    assert server.requests == 2  # the blocking attempt, then the regular path's (which retries 5xx)
    server, lc = scripted([None, OK])  # the connection closed before any answer
    assert _put(lc).get_request_id() == "ok1" and server.requests == 2
    server, lc = scripted([b"HTTP/1.1 200 OK\r\nContent-Len", None, OK])  # closed in the middle of the answer
    assert _put(lc).get_request_id() == "ok1" and server.requests == 3


def test_a_definite_error_is_raised_after_one_request(scripted: Any) -> None:
    server, lc = scripted([_error(404, "LogStoreNotExist")])
    with pytest.raises(ours.LogException) as err:
        _put(lc)
    assert (err.value.get_error_code(), err.value.get_request_id()) == ("LogStoreNotExist", "e1")
    assert server.requests == 1


def test_connection_close_is_honoured(scripted: Any, connects: list[tuple[str, int]]) -> None:
    close_ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\nx-log-requestid: c1\r\n\r\n"
    server, lc = scripted([close_ok, OK, OK])

    def three() -> list[str]:
        return [lc.put_logs(ours.PutLogsRequest("p", "l", "", "", [ours.LogItem(1, [("a", "1")])])).get_request_id()
                for _ in range(3)]

    assert _in_thread(three) == ["c1", "ok1", "ok1"]
    assert server.requests == 3 and server.connections == 2 and len(connects) == 2


def test_an_answer_followed_by_bytes_nobody_asked_for_is_not_reused(scripted: Any,
                                                                     connects: list[tuple[str, int]]) -> None:
    server, lc = scripted([OK + OK, OK])  # a second response nobody asked for: the stream is out of step

    def two() -> list[str]:  # on one thread, so one blocking connection unless it is dropped
        return [lc.put_logs(ours.PutLogsRequest("p", "l", "", "", [ours.LogItem(1, [("a", "1")])])).get_request_id()
                for _ in range(2)]

    assert _in_thread(two) == ["ok1", "ok1"]
    assert server.requests == 2 and server.connections == 2 and len(connects) == 2  # the second on a new one


@pytest.mark.parametrize("first", [0, 5, 40, 45, 60])
def test_a_partial_send_is_completed_in_order(first: int) -> None:
    """sendmsg may take only part of head+body (a socket with a timeout): the rest follows, in order."""

    class FakeSock:
        def __init__(self) -> None:
            self.out = b""

        def sendmsg(self, buffers: Any) -> int:
            data = b"".join(bytes(b) for b in buffers)[:first]
            self.out += data
            return len(data)

        def sendall(self, data: Any) -> None:
            self.out += bytes(data)

        def recv(self, n: int) -> bytes:
            return OK

        def close(self) -> None:
            pass

    conn = _blocking.BlockingConnection("127.0.0.1", 1, None, 5.0)
    conn._sock = fake = FakeSock()
    head, body = b"H" * 40, bytes(range(20))
    status, headers, data = conn.exchange(head, body)
    assert (status, headers["x-log-requestid"], data) == (200, "ok1", b"")
    assert fake.out == head + body


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubProcess, str, str]]:
    """An https hub on 127.0.0.1 with a throwaway CA's certificate; also another CA's PEM."""
    import trustme

    from sluice.testing import free_port

    d = tmp_path_factory.mktemp("blk-tls")
    ca, other = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    other.cert_pem.write_to_path(str(d / "other.pem"))
    leaf.private_key_pem.write_to_path(str(d / "hub.key"))
    leaf.cert_chain_pems[0].write_to_path(str(d / "hub.crt"))
    hub = HubProcess(d / "data", host="127.0.0.1", port=free_port(), tls=(d / "hub.crt", d / "hub.key"))
    hub.start()
    yield hub, str(d / "ca.pem"), str(d / "other.pem")
    hub.close()


def test_blocking_calls_over_tls_verify_the_certificate(tls_hub: tuple[HubProcess, str, str],
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        connects: list[tuple[str, int]]) -> None:
    hub, ca, other = tls_hub
    monkeypatch.setenv("SSL_CERT_FILE", ca)
    lc = ours.LogClient(hub.url, hub.access_key_id, hub.access_key_secret)

    def work() -> int:
        lc.create_project("blk-tls", "")
        lc.create_logstore("blk-tls", "logs", 1, 1)
        for i in range(3):
            lc.put_logs(ours.PutLogsRequest("blk-tls", "logs", "", "", [ours.LogItem(1700000000, [("i", str(i))])]))
        return len(lc.list_logstore("blk-tls").get_logstores())

    assert _in_thread(work) == 1
    assert len(connects) == 1  # every call over the thread's one TLS connection
    lc.close()
    monkeypatch.setenv("SSL_CERT_FILE", other)  # a certificate that does not verify: the regular path's error
    bad = ours.LogClient(hub.url, hub.access_key_id, hub.access_key_secret)
    with pytest.raises(ours.LogException, match="certificate"):
        _in_thread(lambda: bad.list_logstore("blk-tls"))
    bad.close()
