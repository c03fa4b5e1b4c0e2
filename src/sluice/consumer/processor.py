"""What a consumer calls for each shard: the native ``Processor`` API and the per-shard ``ShardContext``.

A ``Processor`` lives as long as its shard is held: ``initialize`` when the shard is granted, ``process``
for each batch, ``shutdown`` when the shard is released (rebalance, stop). The checkpoint is the *next
cursor to read*; ``ShardContext.checkpoint()`` marks the current batch handled, ``flush=True`` writes it
to the server now, otherwise the consumer writes it within ``checkpoint_interval`` and always on release.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
from typing import Any, Awaitable, Callable, Union

from ..wire.batch import Batch

__all__ = ["Processor", "ShardContext", "Handler", "HandlerProcessor", "run_sync"]

# Sync handlers of every shard share a small pool. Python code holds the GIL, so more threads than this
# add switching cost, not throughput (bench/consumer.py, dicts handler); blocking I/O still overlaps.
_SYNC_HANDLER_THREADS = 2
_pool: "concurrent.futures.ThreadPoolExecutor | None" = None


async def run_sync(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking handler call on the shared handler pool (never on the event loop)."""
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(_SYNC_HANDLER_THREADS, thread_name_prefix="sluice-handler")
    return await asyncio.get_running_loop().run_in_executor(_pool, functools.partial(fn, *args))

Handler = Callable[[Batch], Union[Awaitable[Any], Any]]


class ShardContext:
    """The consumer's state for one held shard, as a processor sees it."""

    def __init__(self, shard: int, flush: Callable[[], Awaitable[None]],
                 on_mark: Callable[[], None] | None = None) -> None:
        self.shard = shard
        self.cursor: str = ""  # next cursor of the batch being processed
        self.committed: str = ""  # last checkpoint written to the server
        self.pending: str = ""  # checkpoint marked but not yet written
        self._flush = flush
        self._on_mark = on_mark  # tells the consumer there is something to write (any thread)

    def checkpoint(self, cursor: str | None = None) -> None:
        """Mark ``cursor`` (default: the current batch's next cursor) as the checkpoint (written soon)."""
        value = cursor or self.cursor
        if value:
            self.pending = value
            if self._on_mark is not None:
                self._on_mark()

    async def flush(self) -> None:
        """Write the marked checkpoint to the server now."""
        await self._flush()

    @property
    def is_dirty(self) -> bool:
        return bool(self.pending) and self.pending != self.committed


class Processor:
    """Subclass for per-shard state; the defaults checkpoint every processed batch."""

    async def initialize(self, ctx: ShardContext) -> None:
        return None

    async def process(self, batch: Batch, ctx: ShardContext) -> str | None:
        """Handle one batch. Return None to go on, or a cursor to re-read from (roll back). Raising makes
        the consumer retry the same batch with back-off; nothing is skipped."""
        ctx.checkpoint()
        return None

    async def shutdown(self, ctx: ShardContext) -> None:
        return None


class HandlerProcessor(Processor):
    """Wraps a plain function ``handler(batch)`` (sync or async); a sync one runs on a worker thread so it
    cannot stall heartbeats or other shards."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._is_async = inspect.iscoroutinefunction(handler)

    async def process(self, batch: Batch, ctx: ShardContext) -> str | None:
        if self._is_async:
            await self._handler(batch)
        else:
            result = await run_sync(self._handler, batch)
            if inspect.isawaitable(result):
                await result
        ctx.checkpoint()
        return None
