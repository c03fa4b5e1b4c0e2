"""The forward job's per-shard processor and its checkpoint rule.

``process`` encodes a batch for every sink, hands the pieces over (waiting only when a sink's buffer is
full) and returns, so the consumer fetches the next batch while the sinks are still sending. The batch is
*not* checkpointed then: ``AckTracker`` remembers it, and only when every piece of it has been
acknowledged by every sink, and every earlier batch of the shard too, does the checkpoint move to its
next cursor. Acknowledgements may arrive out of order (several HEC POSTs in flight); the checkpoint only
ever advances over the contiguous acknowledged prefix, so a crash re-reads exactly what no sink
confirmed (at-least-once, duplicates only within that window).

On release (rebalance, stop) ``shutdown`` waits up to ``drain_timeout`` for the shard's outstanding
batches to be acknowledged, so a graceful stop leaves no duplicates for the next owner when the SIEM is
up; when it is down the checkpoint stays where the acknowledgements stopped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Callable

from ...consumer import Processor, ShardContext
from ...wire.batch import Batch
from ..config import Forward
from .events import FieldSelection
from .sink import Sink, SinkFailed, SinkHalted

__all__ = ["AckTracker", "ForwardProcessor", "build_sinks"]

log = logging.getLogger("sluice.pipelines.forward")


class AckTracker:
    """Pure bookkeeping for one shard: batches in order, each waiting for ``needed`` acknowledgements."""

    def __init__(self, advance: Callable[[str, int], None]) -> None:
        self._advance = advance  # (next cursor, log groups) of the newest batch fully acknowledged in order
        self._pending: collections.deque[list[object]] = collections.deque()  # [cursor, remaining, groups]
        self.closed = False
        self.empty = asyncio.Event()
        self.empty.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, cursor: str, needed: int, groups: int = 0) -> Callable[[], None]:
        """Register a batch; returns the callback each of its ``needed`` acknowledgements calls once."""
        entry: list[object] = [cursor, needed, groups]
        self._pending.append(entry)
        self.empty.clear()

        def done() -> None:
            entry[1] = int(entry[1]) - 1  # type: ignore[call-overload]
            self._settle()

        if needed <= 0:
            self._settle()
        return done

    def _settle(self) -> None:
        last: str | None = None
        groups = 0
        while self._pending and int(self._pending[0][1]) <= 0:  # type: ignore[call-overload]
            cursor, _, n = self._pending.popleft()
            last = str(cursor)
            groups += int(n)  # type: ignore[call-overload]
        if last is not None and not self.closed:
            self._advance(last, groups)
        if not self._pending:
            self.empty.set()


class ForwardProcessor(Processor):
    def __init__(self, sinks: list[Sink], counters: dict[str, int], drain_timeout: float) -> None:
        self.sinks = sinks
        self.counters = counters
        self.drain_timeout = drain_timeout
        self.tracker: AckTracker | None = None

    async def initialize(self, ctx: ShardContext) -> None:
        counters = self.counters

        def advance(cursor: str, groups: int) -> None:
            ctx.checkpoint(cursor)
            counters["groups_out"] = counters.get("groups_out", 0) + groups

        self.tracker = AckTracker(advance)

    def _failed(self) -> bool:
        return any(s.failure is not None for s in self.sinks)

    async def process(self, batch: Batch, ctx: ShardContext) -> str | None:
        assert self.tracker is not None
        if self._failed():
            await asyncio.sleep(0.2)  # the job is stopping; keep the batch unconfirmed, read it again later
            return batch.cursor
        encoded = [(sink, sink.encode(batch)) for sink in self.sinks]
        events = sum(p.events for p in encoded[0][1]) if encoded else 0
        done = self.tracker.add(batch.next_cursor, sum(len(pieces) for _, pieces in encoded), batch.count)
        for _, pieces in encoded:
            for p in pieces:
                p.on_ack = done
        self.counters["groups_in"] = self.counters.get("groups_in", 0) + batch.count
        self.counters["bytes_in"] = self.counters.get("bytes_in", 0) + len(batch.raw)
        self.counters["logs_in"] = self.counters.get("logs_in", 0) + events
        try:
            for sink, pieces in encoded:
                await sink.put(pieces)
        except (SinkFailed, SinkHalted):
            return batch.cursor  # not checkpointed: read again by whoever holds the shard next
        return None

    async def shutdown(self, ctx: ShardContext) -> None:
        tracker = self.tracker
        if tracker is None or not tracker.pending:
            return
        waiter = asyncio.ensure_future(tracker.empty.wait())
        try:
            deadline = asyncio.get_running_loop().time() + self.drain_timeout
            while not waiter.done() and not self._failed():
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                await asyncio.wait({waiter}, timeout=min(left, 0.2))
        finally:
            waiter.cancel()
        if tracker.pending:
            log.warning("shard %d: %d batches not acknowledged by the sink(s) on release; the checkpoint stays "
                        "before them (they will be read again)", ctx.shard, tracker.pending)
        tracker.closed = True


def build_sinks(config: Forward) -> list[Sink]:
    """The job's sinks, shared by every shard and logstore of the job (one HEC session, one connection)."""
    from .hec import HecSink
    from .syslog import SyslogSink

    selection = FieldSelection(config.fields, config.exclude_fields)
    sinks: list[Sink] = []
    if config.splunk_hec is not None:
        sinks.append(HecSink(config.splunk_hec, selection))
    if config.syslog is not None:
        sinks.append(SyslogSink(config.syslog, selection))
    return sinks
