"""What every forward sink shares: a bounded buffer of encoded events waiting for acknowledgement.

A processor hands a sink *pieces* (encoded events, ready to send) and goes on with the next batch; the
sink's own task sends them and calls each piece's ``on_ack`` once the receiver has acknowledged it (HEC:
the 200 answer, or the indexer ack when asked; TCP/TLS: the bytes were accepted by the peer's TCP). The
checkpoint is moved by those callbacks only, so a crash or a SIEM outage can lose nothing that was
checkpointed.

Memory is bounded: ``put`` waits while the sink holds ``max_buffer_bytes`` of unacknowledged pieces,
which stops the processor and therefore the consumer's fetching (back-pressure, not an unbounded queue).
A sink that meets a permanent error (a bad HEC token) *fails*: every waiter is woken with ``SinkFailed``
and the job stops with that message instead of retrying forever.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ...wire.batch import Batch
from ...wire.errors import SluiceError

__all__ = ["Piece", "Sink", "SinkFailed", "SinkHalted", "SinkStats"]

log = logging.getLogger("sluice.pipelines.forward")


class SinkFailed(SluiceError):
    """The sink met an error retrying cannot fix (e.g. the SIEM refused the token); the job stops."""


class SinkHalted(SluiceError):
    """The job is stopping: no new events are taken (what is held is still sent and acknowledged)."""


class Piece:
    """Encoded events of one batch for one sink: ``data`` is what goes on the wire (one HEC body part, a
    run of framed syslog messages), or ``datagrams`` for UDP."""

    __slots__ = ("data", "datagrams", "events", "size", "on_ack", "queued_at", "end")

    def __init__(self, data: bytes, events: int, datagrams: list[bytes] | None = None) -> None:
        self.data = data
        self.datagrams = datagrams
        self.events = events
        self.size = len(data) if datagrams is None else sum(map(len, datagrams))
        self.on_ack: Callable[[], None] | None = None
        self.queued_at = 0.0
        self.end = 0  # stream sinks: the byte offset (on the current connection) just after this piece


@dataclass
class SinkStats:
    """Counters a sink keeps for the job's metrics; ``latencies`` is drained by the metrics observer."""

    events: int = 0
    bytes: int = 0
    requests: int = 0
    retries: int = 0
    errors: int = 0
    latency_observer: Callable[[float], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Sink:
    """Base class: the bounded buffer, acknowledgement bookkeeping and failure. Subclasses implement
    ``encode`` (pure: a batch -> pieces), ``_sender_routine`` and optionally ``preflight``."""

    kind = "sink"

    def __init__(self, name: str, max_buffer_bytes: int) -> None:
        self.name = name
        self.max_buffer_bytes = max_buffer_bytes
        self.buffered = 0  # bytes of pieces put and not yet acknowledged (queued + in flight)
        self.queue: collections.deque[Piece] = collections.deque()
        self.failure: str | None = None
        self.halted = False
        self.stats = SinkStats()
        self.on_failure: Callable[[str], None] | None = None
        self._ready = asyncio.Event()  # the queue is not empty
        self._space = asyncio.Event()  # below the buffer limit
        self._space.set()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ the processor's side
    def encode(self, batch: Batch) -> list[Piece]:
        raise NotImplementedError

    async def put(self, pieces: list[Piece]) -> None:
        """Queue pieces; waits while the buffer is full (one piece always fits into an empty buffer)."""
        for p in pieces:
            while self.buffered and self.buffered + p.size > self.max_buffer_bytes and self.failure is None:
                if self.halted:  # stopping, and this would wait for the SIEM: give the batch back
                    raise SinkHalted(f"{self.name}: stopping")
                self._space.clear()
                await self._space.wait()
            if self.failure is not None:
                raise SinkFailed(self.failure)
            p.queued_at = time.monotonic()
            self.buffered += p.size
            self.queue.append(p)
            self._ready.set()

    # ------------------------------------------------------------------ the sender's side
    def _take(self, max_bytes: int) -> list[Piece]:
        """Pieces from the head of the queue, at least one, up to ``max_bytes`` together."""
        out: list[Piece] = []
        size = 0
        while self.queue and (not out or size + self.queue[0].size <= max_bytes):
            p = self.queue.popleft()
            out.append(p)
            size += p.size
        if not self.queue:
            self._ready.clear()
        return out

    def _acknowledge(self, pieces: list[Piece]) -> None:
        now = time.monotonic()
        observe = self.stats.latency_observer
        for p in pieces:
            self.buffered -= p.size
            self.stats.events += p.events
            self.stats.bytes += p.size
            if observe is not None:
                observe(now - p.queued_at)
            if p.on_ack is not None:
                p.on_ack()
        if self.buffered < self.max_buffer_bytes:
            self._space.set()

    def _fail(self, message: str) -> None:
        if self.failure is not None:
            return
        self.failure = message
        log.error("%s: %s; stopping (nothing after the last acknowledged event is checkpointed)", self.name, message)
        self._space.set()
        self._ready.set()
        if self.on_failure is not None:
            self.on_failure(f"{self.name}: {message}")

    # ------------------------------------------------------------------ lifecycle
    def halt(self) -> None:
        """The job is stopping: a processor that would wait for buffer space returns at once instead (its
        batch not checkpointed), so a full buffer and a SIEM that is down do not hold the stop for
        ``shutdown_grace``; what fits is still taken, and everything held is still sent and drained."""
        self.halted = True
        self._space.set()

    async def preflight(self) -> None:
        """Check what can be checked before consuming (credentials); raise ConfigError on a definite no."""

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._sender_routine(), name=f"sluice-forward-{self.kind}"))

    async def _sender_routine(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the routine logged its own failure
                pass
        self._tasks.clear()
