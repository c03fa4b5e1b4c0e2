"""Bounds on what clients can make the hub hold: request-body bytes in flight and time to send a body.

Why: aiohttp reads a whole body into memory and has no timeout for reading it, so without these a flood of
large PutLogs from many connections could exhaust the hub's memory, and a client that sends headers and
then trickles (or stops sending) the body would hold a connection and its buffer for ever.

* ``ByteSemaphore``: the bytes of request bodies the hub holds at once, across all connections. A request
  reserves its declared body size (plus its declared decompressed size) *before* its body is read, and
  frees it when its response has been sent. Without room it waits, in arrival order, at most
  ``inflight_wait`` seconds, then gets 503 ``ServerBusy`` (which the SDK and sluice's client retry).
  Per connection, HTTP/1.1 handles one request at a time, so a connection holds at most one body
  (``--max-put-bytes``, checked against Content-Length before anything is read) plus aiohttp's paused read
  buffer.
* ``read_body``: the body must arrive within ``body_timeout`` seconds of the handler asking for it,
  else 400 ``RequestTimeout`` and the connection is closed. A client that closes the connection mid-body gets
  a 400 nobody reads, never an unhandled error (which would write a traceback per request to the log).

Idle connections (and a client that never finishes its headers) are closed by aiohttp's keep-alive timer,
set from ``idle_timeout`` in ``server.py``.

* ``bounded_writes`` (a middleware, installed by ``server.py``): responses larger than ``ONE_WRITE`` are written
  in slices of ``WRITE_SLICE``, each handed to the socket only once the previous one has drained, so a client
  that does not read pins at most its one response plus ``ONE_WRITE`` (aiohttp copies headers and body into one
  buffer and waits for it to drain without any limit: 40 clients that sent PullLogs and never read held
  +315 MB, for ever).
* ``StalledWrites`` (started by ``server.py``): the write timeout. A connection whose client has taken none of
  the bytes queued for it for ``write_timeout`` seconds (the hub's ``idle_timeout``) is aborted, which frees
  everything it held, whatever the response (large, small, or many pipelined ones). Like nginx's
  ``send_timeout``, the time runs between two successful writes, not over the whole response, so a slow but
  steady client is never cut off, and what a stalled one holds is bounded by the slices above.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from ..wire import errors as E
from .config import HubConfig

log = logging.getLogger("sluice.hub")

__all__ = ["ByteSemaphore", "RequestLimits", "MAX_JSON_BODY", "ONE_WRITE", "WRITE_SLICE", "Slots", "StalledWrites",
           "bounded_writes"]

WRITE_SLICE = 1 << 20
"""Slice size of a large response. Measured (hub CPU per MB pulled, one shard, ~1 MB lz4 answers): 256 KiB slices
cost ~45% more hub CPU than one write (~300 vs ~535 MB per CPU-second), 1 MiB ~6% (~500)."""
ONE_WRITE = 2 << 20
"""Responses up to this size are handed to aiohttp in one write. Since lz4 PullLogs answers are made without
compressing (store/_lz4stitch.c) the slices were the largest cost of a pull: a 1-shard pull of ~1.3 MB answers
took 900-970 MB per hub CPU-second in 1 MiB slices and 1,380-1,530 in one write (750-800 vs 510-575 MB/s);
a stalled client holds its response plus at most this."""
MAX_JSON_BODY = 4 << 20
"""JSON request bodies are refused over this before they are parsed: parsing up to --max-put-bytes of JSON held the
event loop for a second and a few hundred MB (#17 item 2's class). Projects, logstores, groups and checkpoints
send a few hundred bytes; the largest legitimate body is a wait request of 20,000 shards (about 2 MB)."""


class ByteSemaphore:
    """A counting semaphore over bytes, first come first served (a large request is not starved by a
    stream of small ones). Event-loop only: no locks. (Not the consumer's ``ByteBudget``, a soft limit on
    fetched-but-unprocessed bytes: this one is a hard capacity that refuses after a wait.)"""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, n: int, wait: float) -> bool:
        """Reserve ``n`` bytes (at most the capacity), waiting up to ``wait`` seconds; False if no room."""
        n = min(n, self.capacity)
        if not self._waiters and self.used + n <= self.capacity:
            self.used += n
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(fut), wait)
            return True
        except asyncio.TimeoutError:
            if fut.done():  # granted at the last moment: keep it
                return True
            return False
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release(n)  # granted, but the request is gone
            raise
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
                self._grant()  # a large waiter leaving may let smaller ones through

    def release(self, n: int) -> None:
        self.used -= min(n, self.capacity)
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            n, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if self.used + n > self.capacity:
                return
            self._waiters.popleft()
            self.used += n
            fut.set_result(None)


class RequestLimits:
    """Reads request bodies within the byte budget and the body timeout (one per hub)."""

    def __init__(self, config: HubConfig) -> None:
        self.max_body = config.max_put_bytes
        self.budget = ByteSemaphore(config.max_inflight_bytes)
        self.wait = config.inflight_wait
        self.body_timeout = config.body_timeout

    def reservation(self, raw: web.Request) -> int:
        """Bytes a request will hold: its body as sent plus, if compressed, its declared decompressed size
        (the hub decompresses at most --max-put-bytes). Unknown sizes count as the maximum."""
        length = raw.content_length
        size = self.max_body if length is None else length
        if (raw.headers.get("x-log-compresstype") or "").strip():
            try:
                raw_size = int(raw.headers.get("x-log-bodyrawsize", ""))
            except ValueError:
                raw_size = self.max_body
            size += min(max(raw_size, 0), self.max_body)
        return size

    @contextlib.asynccontextmanager
    async def held(self, n: int, what: str) -> AsyncIterator[None]:
        """Hold ``n`` bytes of the same in-flight budget as request bodies while work other than a body runs (a
        console tail poll), so that work and the API's bodies share one bound; ServerBusy if no room comes
        within ``inflight_wait``."""
        if not await self.budget.acquire(n, self.wait):
            raise E.ServerBusy(f"the hub is holding {self.budget.used} bytes of in-flight work (limit "
                               f"{self.budget.capacity}); {what} can retry later")
        try:
            yield
        finally:
            self.budget.release(n)

    async def read_body(self, raw: web.Request) -> bytes:
        """The request's body, read within the limits; raises PostBodyTooLarge, ServerBusy or RequestTimeout
        (the caller closes the connection when the body was not read to its end). The reservation is freed
        when the request's task ends, that is after its response has been written."""
        length = raw.content_length
        if length is not None and length > self.max_body:
            raise E.PostBodyTooLarge(f"request body of {length} bytes exceeds the limit of {self.max_body} bytes")
        if not raw.body_exists:
            return b""
        need = self.reservation(raw)
        if not await self.budget.acquire(need, self.wait):
            raise E.ServerBusy(f"the hub is holding {self.budget.used} bytes of request bodies (limit "
                               f"{self.budget.capacity}); retry later")
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(lambda _: self.budget.release(need))
        else:  # pragma: no cover - aiohttp always runs handlers in a task
            self.budget.release(need)
        try:
            async with asyncio.timeout(self.body_timeout):
                return await raw.read()
        except TimeoutError:
            raise E.RequestTimeout(f"the request body did not arrive within {self.body_timeout:g}s") from None
        except web.HTTPRequestEntityTooLarge:
            raise E.PostBodyTooLarge(f"request body exceeds the limit of {self.max_body} bytes") from None
        except ConnectionError:  # the client went away mid-body: a 4xx nobody reads, not a traceback in the log
            raise E.PostBodyInvalid("the connection closed before the request body arrived") from None


def bounded_writes() -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware described in the module docstring: bounded bytes queued per connection."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        resp = await handler(request)
        body = resp.body if type(resp) is web.Response else None
        if not isinstance(body, bytes) or len(body) <= ONE_WRITE:
            return resp  # small: aiohttp writes it in one go; an idle connection is closed by the keep-alive timer
        stream = web.StreamResponse(status=resp.status, reason=resp.reason, headers=resp.headers)
        stream.content_length = len(body)
        view = memoryview(body)
        try:
            await stream.prepare(request)
            for start in range(0, len(body), WRITE_SLICE):
                await stream.write(view[start:start + WRITE_SLICE])  # waits while the socket's buffer is full
            await stream.write_eof()
        except ConnectionError:
            pass  # the client went away, or StalledWrites aborted it: aiohttp closes the connection quietly
        return stream

    return middleware


class Slots:
    """At most ``n`` holders at once (work that occupies one of the hub's reader threads for a while, like a
    console tail scan, so such work never takes every thread from PullLogs); a caller waits up to ``wait``
    seconds for a slot, then gets 503 ServerBusy. Event-loop only."""

    def __init__(self, n: int, wait: float) -> None:
        self.n = n
        self.wait = wait
        self._sem = asyncio.Semaphore(n)

    @contextlib.asynccontextmanager
    async def hold(self, what: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.wait):
                await self._sem.acquire()
        except TimeoutError:
            raise E.ServerBusy(f"{self.n} {what} requests are running already; retry later") from None
        try:
            yield
        finally:
            self._sem.release()


class StalledWrites:
    """The write timeout (module docstring): every ``interval`` seconds, abort the connections whose queued
    output has not shrunk for ``write_timeout`` seconds. ``connections`` returns aiohttp's live request
    handlers (``runner.server.connections``). Event-loop only."""

    def __init__(self, connections: Callable[[], Iterable[Any]], write_timeout: float,
                 interval: float | None = None) -> None:
        self.connections = connections
        self.write_timeout = write_timeout
        self.interval = interval if interval is not None else min(1.0, write_timeout / 4)
        self._progress: dict[Any, tuple[int, float]] = {}  # handler -> (queued bytes, when they last shrank)
        self._task: asyncio.Task[None] | None = None
        self.aborted = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sluice-stalled-writes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sweep(time.monotonic())
            except Exception:  # noqa: BLE001 - the sweep must keep running
                log.exception("stalled-writes sweep failed")

    def sweep(self, now: float) -> None:
        progress: dict[Any, tuple[int, float]] = {}
        for handler in self.connections():
            transport = getattr(handler, "transport", None)
            if transport is None or transport.is_closing():
                continue
            queued = transport.get_write_buffer_size()
            if not queued:
                continue
            before = self._progress.get(handler)
            since = now if before is None or queued < before[0] else before[1]
            if now - since > self.write_timeout:
                transport.abort()  # frees what it queued; the handler's pending write sees a reset
                self.aborted += 1
                log.info("aborted a connection that took none of its %d queued bytes in %gs", queued,
                         self.write_timeout)
                continue
            progress[handler] = (queued, since)
        self._progress = progress
