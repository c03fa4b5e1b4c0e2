"""Long-polls of PullLogs (sluice's own consumer sends ``x-sluice-wait``; SDK clients never do): a request at
the end of a shard waits until the store commits data there, the wait is over, or the hub stops.

The store calls :meth:`LongPolls.on_commit` on its writer thread after each commit that appended data; the
waiters are woken on the event loop.
"""

from __future__ import annotations

import asyncio

from .store.base import ShardMeta

__all__ = ["LongPolls"]


class LongPolls:
    def __init__(self) -> None:
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def close(self) -> None:
        """Stopping: answer every long-poll now (empty), so graceful shutdown does not wait them out."""
        self._closing = True
        for waiters in self._waiters.values():
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def wait(self, shard: ShardMeta, seq: int, wait: float) -> None:
        """Return when ``shard`` has data at ``seq``, stops being writable, or ``wait`` seconds passed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(shard.uid, []).append(fut)
        try:
            if shard.end_seq > seq or not shard.is_writable or self._closing:
                return
            await asyncio.wait_for(asyncio.shield(fut), wait)
        except asyncio.TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(shard.uid)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[shard.uid]

    def on_commit(self, uids: set[int]) -> None:
        """Store writer thread: new data committed on these shards; wake their long-polls."""
        loop = self._loop
        if loop is not None and self._waiters:
            loop.call_soon_threadsafe(self._wake, uids)

    def _wake(self, uids: set[int]) -> None:
        for uid in uids:
            for fut in self._waiters.pop(uid, ()):
                if not fut.done():
                    fut.set_result(None)
