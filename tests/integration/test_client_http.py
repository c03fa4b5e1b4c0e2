"""The client's HTTP/1.1 layer (client/_http.py) against real sockets: scripted servers on loopback that
answer the way real servers and broken networks do (chunked bodies, silent closes of idle connections,
``Connection: close``, bodies ended by EOF, garbage, early answers, silence), and the SLS client on top of it.

Each scripted server is a plain asyncio server on 127.0.0.1 and a free port, run in the test's own loop.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import pytest

from sluice.client import AsyncClient
from sluice.client._http import ConnectionPool, HTTPError
from sluice.client._transport import RetryPolicy
from sluice.wire.errors import ConfigError, TransportError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Log-RequestId: r1\r\n\r\nok"


class Server:
    """A loopback TCP server whose every connection runs ``handler``; counts connections and requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = asyncio.Event()
        self.client_closes = 0
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> "Server":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """One request: its head, then as many body bytes as its Content-Length says; b"" at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.client_closes += 1
            self.closed_by_client.set()
            return b""
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length) if length else b""
        self.requests.append(head + body)
        return head + body


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
    while await server.read_request(reader):
        writer.write(OK)


def request(method: str = "GET", path: str = "/", body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"{method} {path} HTTP/1.1\r\nHost: test\r\n{length}\r\n".encode() + body


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


def test_keep_alive_connection_is_reused_and_concurrent_requests_get_their_own() -> None:
    async def main() -> None:
        async with Server(keep_alive) as srv:
            pool = ConnectionPool()
            for _ in range(5):
                resp = await pool.request("127.0.0.1", srv.port, request())
                assert (resp.status, resp.body, resp.headers["x-log-requestid"]) == (200, b"ok", "r1")
            assert srv.connections == 1
            answers = await asyncio.gather(*(pool.request("127.0.0.1", srv.port, request()) for _ in range(4)))
            assert [a.body for a in answers] == [b"ok"] * 4
            assert srv.connections == 4  # no pool limit: none waited for another
            pool.close()
    run(main())


def test_connections_left_unused_after_a_burst_are_closed() -> None:
    """A burst opens several connections; steady traffic afterwards reuses only the newest. The others are
    closed by the client once idle past ``idle_timeout`` (not left open until the server gives up)."""
    async def main() -> None:
        async with Server(keep_alive) as srv:
            pool = ConnectionPool(idle_timeout=0.2)
            await asyncio.gather(*(pool.request("127.0.0.1", srv.port, request()) for _ in range(5)))
            assert srv.connections == 5
            for _ in range(10):
                await pool.request("127.0.0.1", srv.port, request())
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)
            assert srv.connections == 5 and srv.client_closes == 4
            pool.close()
    run(main())


def test_chunked_body_and_large_request_body() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while req := await server.read_request(reader):
            body = req.split(b"\r\n\r\n", 1)[1]
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(body), 70000):
                part = body[i:i + 70000]
                writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            writer.write(b"0\r\n\r\n")

    async def main() -> None:
        async with Server(chunked) as srv:
            pool = ConnectionPool()
            payload = bytes(range(256)) * 4096  # 1 MB, sent as a separate write after the head
            resp = await pool.request("127.0.0.1", srv.port, request("POST", body=b"")[:-2]
                                      + f"Content-Length: {len(payload)}\r\n\r\n".encode(), payload)
            assert resp.body == payload
            resp = await pool.request("127.0.0.1", srv.port, request("POST", body=b"small"))
            assert resp.body == b"small"
            assert srv.connections == 1
            pool.close()
    run(main())


def test_idle_connection_closed_by_the_server_is_replaced_without_an_error() -> None:
    """A server whose keep-alive timer fires as the next request arrives: it closes the connection without
    answering. The request goes out again on a new connection, once, at once, with no error."""
    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        if await server.read_request(reader):
            writer.write(OK)
            await writer.drain()
        await server.read_request(reader)  # the next request on this connection: closed, unanswered

    async def main() -> None:
        async with Server(one_answer) as srv:
            pool = ConnectionPool()
            for _ in range(3):
                assert (await pool.request("127.0.0.1", srv.port, request())).body == b"ok"
            assert srv.connections == 3 and len(srv.requests) == 5  # two met a closing connection
            pool.close()
    run(main())


def test_connection_close_and_body_until_eof() -> None:
    """``Connection: close`` is honoured (not reused); a body with no length ends at the server's close."""
    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        if await server.read_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of ")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"this body")

    async def main() -> None:
        async with Server(until_eof) as srv:
            pool = ConnectionPool()
            for _ in range(2):
                resp = await pool.request("127.0.0.1", srv.port, request())
                assert resp.body == b"all of this body"
            assert srv.connections == 2
            pool.close()
    run(main())


@pytest.mark.parametrize("answer", [b"SSH-2.0-OpenSSH_9.2\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"])
def test_garbage_or_a_cut_response_is_an_error_and_the_connection_is_dropped(answer: bytes) -> None:
    async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await server.read_request(reader):
            writer.write(answer if len(server.requests) == 1 else OK)
            if len(server.requests) == 1:
                await writer.drain()
                return  # and close

    async def main() -> None:
        async with Server(bad) as srv:
            pool = ConnectionPool()
            with pytest.raises(HTTPError):
                await pool.request("127.0.0.1", srv.port, request())
            assert (await pool.request("127.0.0.1", srv.port, request())).body == b"ok"
            assert srv.connections == 2
            pool.close()
    run(main())


def test_an_extra_response_puts_the_connection_out_of_use() -> None:
    """Two answers to one request: the first is the answer, the connection is not trusted again."""
    async def doubled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await server.read_request(reader):
            writer.write(OK + OK)

    async def main() -> None:
        async with Server(doubled) as srv:
            pool = ConnectionPool()
            for _ in range(2):
                assert (await pool.request("127.0.0.1", srv.port, request())).body == b"ok"
                await asyncio.sleep(0.05)
            assert srv.connections == 2
            pool.close()
    run(main())


def test_response_larger_than_the_limit_is_refused() -> None:
    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await server.read_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000)

    async def main() -> None:
        async with Server(big) as srv:
            pool = ConnectionPool(max_body=50000)
            with pytest.raises(HTTPError, match="larger than 50000"):
                await pool.request("127.0.0.1", srv.port, request())
            pool.close()
    run(main())


def test_early_answer_before_the_body_is_read_is_not_reused() -> None:
    """A server that answers (413) before reading a large body: the answer is returned, and the connection,
    now out of step, is not put back."""
    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await reader.readuntil(b"\r\n\r\n")
        server.requests.append(b"early")
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async def main() -> None:
        async with Server(early) as srv:
            pool = ConnectionPool()
            payload = b"y" * (32 << 20)
            head = f"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            resp = await pool.request("127.0.0.1", srv.port, head, payload)
            assert resp.status == 413
            assert not any(pool._idle.values())
            pool.close()
    run(main())


def test_timeout_and_cancellation_close_the_connection() -> None:
    """A request that times out (or whose task is cancelled) closes its connection, which the server sees;
    the next request works on a new connection."""
    async def silent_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        first = server.connections == 1
        while await server.read_request(reader):
            if first:
                continue  # never answers
            writer.write(OK)

    async def main() -> None:
        async with Server(silent_first) as srv:
            pool = ConnectionPool()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await pool.request("127.0.0.1", srv.port, request())
            await asyncio.wait_for(srv.closed_by_client.wait(), 5)
            assert (await pool.request("127.0.0.1", srv.port, request())).body == b"ok"
            assert srv.connections == 2
            pool.close()
    run(main())


def test_sls_client_timeout_line_breaks_and_refused_connections() -> None:
    """Through AsyncClient: a silent server is a TransportError naming the request and 'timed out'; a
    header value with a line break is refused before anything is sent; a closed port is a TransportError."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while await server.read_request(reader):
            pass

    async def main() -> None:
        async with Server(silent) as srv:
            client = AsyncClient(f"127.0.0.1:{srv.port}", "id", "secret", timeout=0.3,
                                 retry=RetryPolicy(attempts=1))
            with pytest.raises(TransportError, match="GET http://127.0.0.1:.*/logstores/x: timed out"):
                await client.get_logstore("proj", "x")
            await client.aclose()
            token = AsyncClient(f"127.0.0.1:{srv.port}", "id", "secret", security_token="a\r\nX-Evil: 1",
                                retry=RetryPolicy(attempts=1))
            before = len(srv.requests)
            with pytest.raises(ConfigError, match="line break"):
                await token.list_projects()
            assert len(srv.requests) == before
            await token.aclose()
            port = srv.port
        refused = AsyncClient(f"127.0.0.1:{port}", "id", "secret", retry=RetryPolicy(attempts=1))
        with pytest.raises(TransportError, match="cannot connect"):
            await refused.list_projects()
        await refused.aclose()
    run(main())
