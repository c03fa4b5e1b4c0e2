"""Retention: every ``interval`` seconds, delete the LogGroups older than their logstore's TTL.

What one pass deletes is the store's business (``Store.expire``); this module only decides when to run and
which shards are due, from a snapshot of the store's metadata.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor

from .store.base import Store

__all__ = ["Retention"]

log = logging.getLogger("sluice.hub")

KEEP_FOREVER_DAYS = 3650
"""A TTL of this many days (SLS's maximum) keeps data forever: no pass looks at the logstore."""


class Retention:
    def __init__(self, store: Store, interval: float, executor: Executor) -> None:
        self.store = store
        self.interval = interval
        self.executor = executor
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._retention_routine())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _retention_routine(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.expire_now()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - retention must keep running
                log.exception("retention pass failed")

    async def expire_now(self, now: float | None = None) -> int:
        """Run one pass; returns the number of LogGroups deleted."""
        now = time.time() if now is None else now
        work = [(s, int((now - ls.ttl * 86400) * 1000)) for ls in self.store.snapshot()
                if ls.ttl < KEEP_FOREVER_DAYS for s in ls.shards.values()]
        deleted = 0
        for i, (shard, cutoff) in enumerate(work):
            if shard.begin_seq >= shard.end_seq:
                continue
            # Store.expire never blocks (nothing due: a dict lookup; due groups: writer transactions of a
            # bounded size), so no worker-thread hop per shard; yield now and then on a hub of many shards
            pending = self.store.expire(shard, cutoff)
            if pending.done():
                deleted += int(pending.result() or 0)
            else:
                deleted += int(await asyncio.wrap_future(pending) or 0)
            if i % 1000 == 999:
                await asyncio.sleep(0)
        return deleted
