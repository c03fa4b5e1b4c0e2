"""The client's HTTP/1.1 layer: a keep-alive connection pool over asyncio protocols, responses parsed by
httptools (llhttp, the parser Node.js and uvicorn use).

Why not aiohttp's ClientSession, which the client used first: an SLS consumer sends many small requests
(a heartbeat per group every few seconds, long-polls, checkpoints) and a dispatcher many large ones, and
ClientSession's per-request machinery (tracing hooks, cookie jar, redirects, proxies, URL handling, its
stream reader) cost more CPU than the rest of a request together. Measured on one loopback hub, one
signed heartbeat after another: 263-277 us of client CPU per request with ClientSession, 110-115 us with
this module (docs/consumer.md). SLS needs none of those features: one host per endpoint, no cookies, no
redirects, bodies with a Content-Length.

What it does: one request per connection at a time, connections reused while the server keeps them alive
(most recently used first, so idle ones age out on the server's timer), no limit on their number (a
consumer holds one long-poll per shard and its heartbeats must not queue behind them). A reused connection
the server had already closed is retried once on a new one, at once. Any failure, timeout or cancellation
closes the connection it happened on: a connection is put back only after a complete response.
"""

from __future__ import annotations

import asyncio
import functools
import ssl as _ssl
import time
from collections import deque
from dataclasses import dataclass

import httptools
from multidict import CIMultiDict

__all__ = ["ConnectionPool", "HTTPResponse", "HTTPError", "ConnectionClosed", "CertificateError"]

MAX_RESPONSE_BODY = 512 << 20
_FRAMING = (b"content-length", b"transfer-encoding")  # without either, a response body ends at the close


class HTTPError(Exception):
    """The exchange failed below HTTP semantics: connect, send, or a response that is not HTTP."""


class ConnectionClosed(HTTPError):
    """The server closed the connection before any byte of the response."""


class CertificateError(HTTPError):
    """The server's TLS certificate did not verify; ``reason`` is OpenSSL's word for why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class HTTPResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: sends a request, parses its response, says whether it may be reused."""

    def __init__(self, max_body: int = MAX_RESPONSE_BODY) -> None:
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[HTTPResponse] | None = None
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._started = False  # a byte of the current response has arrived
        self._headers_done = False
        self._framed = False  # the response has Content-Length or Transfer-Encoding

    # ---------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the stream is out of step, never reuse it
            self.close()
            return
        self._started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HTTPError(f"malformed HTTP response: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and not self._framed:  # an HTTP/1.0-style body ends at the close
            self._complete()
        elif not self._started:
            self._fail(ConnectionClosed("the server closed the connection before answering"))
        else:
            self._fail(HTTPError(f"the connection closed in the middle of the response ({exc or 'EOF'})"))

    # ---------------------------------------------------------------- httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = []
        self._body = []
        self._body_size = 0
        self._headers_done = False
        self._framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in _FRAMING:
            self._framed = True
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.max_body:
            self._fail(HTTPError(f"response body larger than {self.max_body} bytes"))
            self.close()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._parser.get_status_code() < 200:  # an interim answer; the real one follows
            return
        self._complete()

    # ---------------------------------------------------------------- the exchange
    def _complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None:  # a second response to one request: the stream is out of step
            self.close()
            return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        response = HTTPResponse(self._parser.get_status_code(), CIMultiDict(self._headers), body)
        self._body = []
        if not self._parser.should_keep_alive() or not self._framed:
            self.close()
        if not waiter.done():
            waiter.set_result(response)

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    async def exchange(self, data: bytes, body: bytes) -> HTTPResponse:
        """Send one request (``data`` is its head, or head and a small body) and wait for its response."""
        assert self.transport is not None and self._waiter is None
        self._started = False
        self._waiter = asyncio.get_running_loop().create_future()
        waiter = self._waiter
        if body:
            self.transport.writelines((data, body))
        else:
            self.transport.write(data)
        response = await waiter
        if not self.closed and self.transport.get_write_buffer_size():
            self.close()  # the server answered before reading all of the body (e.g. 413): out of step
        return response

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self._fail(HTTPError("the connection was closed by the client"))
        if self.transport is not None:
            self.transport.abort()


class ConnectionPool:
    """Keep-alive connections to one or more servers (keyed by host, port and TLS server name).

    ``ssl`` is the TLS context for https, or None for plain http. Connections idle longer than
    ``idle_timeout`` are closed when next looked at rather than reused (servers close theirs on a timer,
    and a request sent as the server closes is lost in flight)."""

    def __init__(self, ssl: _ssl.SSLContext | None = None, *, idle_timeout: float = 30.0,
                 max_body: int = MAX_RESPONSE_BODY) -> None:
        self.ssl = ssl
        self.idle_timeout = idle_timeout
        self._factory = functools.partial(_Connection, max_body)
        self._idle: dict[tuple[str, int, str | None], deque[_Connection]] = {}
        self._busy: set[_Connection] = set()

    async def request(self, host: str, port: int, data: bytes, body: bytes = b"", *,
                      server_hostname: str | None = None) -> HTTPResponse:
        """Send ``data`` (the request head, or head and a small body) then ``body``; return the response.

        Raises ``HTTPError`` (``CertificateError`` for a certificate that does not verify) and lets
        ``TimeoutError``/``CancelledError`` through, having closed the connection. Time limits are the
        caller's (``asyncio.timeout`` around this call)."""
        key = (host, port, server_hostname)
        conn = self._take(key)
        if conn is not None:
            try:
                return await self._exchange(key, conn, data, body)
            except ConnectionClosed:
                pass  # closed by the server while idle: the request never reached it; once more on a new one
        conn = await self._connect(key)
        return await self._exchange(key, conn, data, body)

    def _take(self, key: tuple[str, int, str | None]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest_allowed = time.monotonic() - self.idle_timeout
        while idle:
            conn = idle.pop()  # most recently used first
            if not conn.closed and conn.idle_since >= oldest_allowed:
                return conn
            conn.close()
        return None

    async def _connect(self, key: tuple[str, int, str | None]) -> _Connection:
        host, port, server_hostname = key
        loop = asyncio.get_running_loop()
        try:
            if self.ssl is not None:
                _, conn = await loop.create_connection(self._factory, host, port, ssl=self.ssl,
                                                       server_hostname=server_hostname or host)
            else:
                _, conn = await loop.create_connection(self._factory, host, port)
        except _ssl.SSLCertVerificationError as exc:
            raise CertificateError(f"connect to {host}:{port}: {exc}", exc.verify_message or str(exc)) from exc
        except (OSError, _ssl.SSLError) as exc:
            raise HTTPError(f"cannot connect to {host}:{port}: {exc}") from exc
        return conn

    async def _exchange(self, key: tuple[str, int, str | None], conn: _Connection, data: bytes,
                        body: bytes) -> HTTPResponse:
        self._busy.add(conn)
        try:
            response = await conn.exchange(data, body)
        except BaseException:
            conn.abort()
            raise
        finally:
            self._busy.discard(conn)
        if not conn.closed:
            now = conn.idle_since = time.monotonic()
            idle = self._idle.setdefault(key, deque())
            idle.append(conn)
            # Reuse takes the newest, so unused connections settle at the bottom: close those the server
            # closed or that idled past the limit, so a burst's connections do not stay open for good.
            while idle[0].closed or idle[0].idle_since < now - self.idle_timeout:
                idle.popleft().close()
        return response

    def close(self) -> None:
        """Close every connection, idle or busy (a busy request fails with ``HTTPError``). Aborted rather
        than closed: a TLS close would wait on the server's reply, possibly after the loop has stopped."""
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()
        for conn in list(self._busy):
            conn.abort()
