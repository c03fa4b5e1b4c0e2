"""A blocking HTTP/1.1 keep-alive connection, for the compat ``LogClient``'s calls made from plain threads.

Why: an SDK program calls ``LogClient.put_log_raw`` from its processor's thread, once per group, and waits for
the answer (seed 004 forwards every pulled group this way). Running each call as a coroutine on the thread's
own event loop (task, timeout handle, selector round, futures) cost ~150-200 us of CPU per call more than the
request itself: ~15% of a forwarding consumer's CPU (bench/consumer.py (a)). This sends the bytes
``Transport.prepare`` made on a socket the thread keeps, and parses the answer with httptools, as ``_http.py``
does for the event loop.

It is only ever a first attempt: the caller (``LogClient._request``) hands anything but a complete response
to the regular path (``Transport.request``: retries, credential refresh, error mapping), which sends the
request again. A connection that failed in any way is closed, never reused.
"""

from __future__ import annotations

import socket
import ssl as _ssl
from typing import Any

import httptools
from multidict import CIMultiDict

from ._http import MAX_RESPONSE_BODY

__all__ = ["BlockingConnection", "ExchangeFailed"]


class ExchangeFailed(Exception):
    """No complete response: connect/send/receive failed, timed out, or the server closed the connection."""


class BlockingConnection:
    """One connection to ``host:port`` (TLS with ``ssl``), used by one thread at a time."""

    def __init__(self, host: str, port: int, ssl: _ssl.SSLContext | None, timeout: float) -> None:
        self.key = (host, port)
        self._ssl = ssl
        self._timeout = timeout
        self._sock: Any = None
        # the response being read (httptools callbacks)
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._done = False
        self._parser: Any = None
        self._status = 0
        self._keep_alive = False
        self._messages = 0

    def __del__(self) -> None:  # its thread ended (the connection lives in the thread's local)
        self.close()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _connect(self) -> None:
        host, port = self.key
        try:
            sock = socket.create_connection((host, port), timeout=self._timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=host)
        except (OSError, _ssl.SSLError) as exc:
            raise ExchangeFailed(f"cannot connect to {host}:{port}: {exc}") from exc
        self._sock = sock

    def exchange(self, head: bytes, body: bytes) -> tuple[int, CIMultiDict[str], bytes]:
        """Send ``head`` then ``body``; return (status, headers, body) of the response. A connection the
        server had closed while idle is replaced once (the request never reached it)."""
        if self._sock is not None:
            try:
                return self._exchange(head, body, reused=True)
            except _ClosedWhileIdle:
                self.close()
        self._connect()
        try:
            return self._exchange(head, body, reused=False)
        except _ClosedWhileIdle as exc:
            raise ExchangeFailed(str(exc)) from None

    def _exchange(self, head: bytes, body: bytes, reused: bool) -> tuple[int, CIMultiDict[str], bytes]:
        sock = self._sock
        parser = self._parser = httptools.HttpResponseParser(self)
        self._headers, self._body, self._size, self._done, self._messages = [], [], 0, False, 0
        started = False
        try:
            if body and not isinstance(sock, _ssl.SSLSocket):  # head and body in one call: one segment less
                sent = sock.sendmsg((head, body))
                if sent < len(head):
                    sock.sendall(head[sent:])
                    sock.sendall(body)
                elif sent < len(head) + len(body):
                    sock.sendall(memoryview(body)[sent - len(head):])
            else:
                sock.sendall(head)
                if body:
                    sock.sendall(body)
            while not self._done:
                chunk = sock.recv(262144)
                if not chunk:
                    if not started and reused:
                        raise _ClosedWhileIdle("the server closed the idle connection")
                    raise ExchangeFailed("the server closed the connection before a complete response")
                started = True
                parser.feed_data(chunk)
                if self._size > MAX_RESPONSE_BODY:
                    raise ExchangeFailed(f"response body larger than {MAX_RESPONSE_BODY} bytes")
        except (BrokenPipeError, ConnectionResetError) as exc:
            self.close()
            if not started and reused:
                raise _ClosedWhileIdle(str(exc)) from None
            raise ExchangeFailed(str(exc)) from exc
        except (OSError, httptools.HttpParserError) as exc:  # timeouts are OSErrors too
            self.close()
            raise ExchangeFailed(str(exc)) from exc
        except BaseException:
            self.close()
            raise
        if 100 <= self._status < 200:  # an interim answer (never asked for): not this module's case
            self.close()
            raise ExchangeFailed(f"interim response {self._status}")
        framed = any(name.lower() in ("content-length", "transfer-encoding") for name, _ in self._headers)
        if not self._keep_alive or not framed or self._messages > 1:  # > 1: bytes nobody asked for followed
            self.close()
        data = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        return self._status, CIMultiDict(self._headers), data

    # ---------------------------------------------------------------- httptools callbacks
    def on_message_begin(self) -> None:
        self._messages += 1

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        self._body.append(body)

    def on_message_complete(self) -> None:
        # read here: once feed_data returns, the parser is ready for the next message and forgets these
        self._status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()
        self._done = True


class _ClosedWhileIdle(ExchangeFailed):
    pass
