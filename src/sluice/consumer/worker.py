"""``AsyncConsumer``: one consumer of one consumer group on one logstore, asyncio inside.

Tasks, all on one event loop (so one process can follow hundreds of logstores on many endpoints):

* ``_heartbeat_routine``: reports the held shards every ``heartbeat_interval`` (and at once when a shard
  was released, so handoffs are quick); starts a shard routine for each newly granted shard and asks the
  routine of each revoked shard to release it.
* ``_shard_routine`` (one per held shard): fetch -> process -> checkpoint, with the next fetch already in
  flight while the current batch is processed (bounded by bytes in flight across all shards). Against the
  hub a fetch long-polls; against SLS, empty fetches back off up to ``max_poll_interval``.
* ``_checkpoint_routine``: writes marked checkpoints within ``checkpoint_interval`` of being marked.

Connections: against a hub, a shard that caught up does not park a PullLogs of its own; it joins the
process's wait session (``waiter.py``: one parked request per project and client, however many shards), and
pulls when the hub says it has data. The consumers' heartbeats of one round go to a hub as one request
(``waiter.HeartbeatBatcher``). Short requests (checkpoints, cursors, pulls, and heartbeats to SLS) of all the
consumers on one client pass one semaphore, so 1,000 consumers never open 1,000 connections.

Releasing a shard (revoked, or stopping) cancels the prefetch, lets the current batch finish, writes the
checkpoint, and only then stops reporting the shard, so the next owner starts exactly where this one
stopped (no duplicates on a planned rebalance). Stopping ends with an empty heartbeat that tells the hub we
left (an ``x-sluice-leave`` header SLS ignores), so our shards move at once instead of after the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Callable

from ..client import AsyncClient
from ..client._async import PullResult
from ..wire import errors as E
from ..wire.batch import Batch
from ..wire.cursor import decode_cursor
from .config import ConsumerConfig
from .processor import Handler, HandlerProcessor, Processor, ShardContext
from .waiter import HeartbeatBatcher, ShardWaiter, beats_for, gate_for, waiter_for

__all__ = ["AsyncConsumer", "ByteBudget"]

log = logging.getLogger("sluice.consumer")


class ByteBudget:
    """Bytes of fetched-but-unprocessed batches, shared by every shard (and consumer) that uses it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = asyncio.Condition()

    async def wait_below_limit(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.used < self.limit)

    def take(self, n: int) -> None:
        self.used += n

    async def give(self, n: int) -> None:
        async with self._cond:
            self.used -= n
            self._cond.notify_all()


class _Shard:
    def __init__(self, shard: int, ctx: ShardContext) -> None:
        self.shard = shard
        self.ctx = ctx
        self.task: asyncio.Task[None] | None = None
        self.releasing = asyncio.Event()
        self.done_at_end = False
        self.flush_lock = asyncio.Lock()


class AsyncConsumer:
    """Consume a logstore as one member of a consumer group.

    ``processor`` is a factory returning a ``Processor`` per shard, or give ``handler`` (a function of a
    ``Batch``, sync or async) for the common case. ``await run()`` until ``stop()`` or, with ``end``, until
    every held shard reached it.
    """

    def __init__(self, client: AsyncClient, config: ConsumerConfig, *, handler: Handler | None = None,
                 processor: Callable[[], Processor] | None = None, budget: ByteBudget | None = None) -> None:
        if (handler is None) == (processor is None):
            raise E.ConfigError("give exactly one of handler= or processor=")
        self.client = client
        self.config = config
        self._make_processor: Callable[[], Processor] = processor or (lambda: HandlerProcessor(handler))  # type: ignore[arg-type]
        self.budget = budget or ByteBudget(config.max_in_flight_bytes)
        self._gate = gate_for(client)  # short requests of every consumer on this client
        self._beats: HeartbeatBatcher = beats_for(client, config.project)  # one request per heartbeat round
        self._waiter: ShardWaiter | None = waiter_for(client, config.project, config.long_poll) \
            if config.long_poll else None
        self.shards: dict[int, _Shard] = {}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._dirty = asyncio.Event()  # a checkpoint is marked and not yet written
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_heartbeat_ok = time.monotonic()
        self._ever_assigned = False
        self._started = False
        self._shutdown_task: asyncio.Future[None] | None = None
        self.stats = {"batches": 0, "groups": 0, "bytes": 0, "errors": 0}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        if self.config.query is not None:
            await self._check_query()
        if self.config.create_group:
            await self._ensure_group()
        self._tasks = [asyncio.create_task(self._heartbeat_routine(), name="sluice-heartbeat"),
                       asyncio.create_task(self._checkpoint_routine(), name="sluice-checkpoint")]

    async def run(self) -> None:
        """Consume until ``stop()`` (or, with ``end``, until every held shard reached it), then shut down."""
        await self.start()
        await self._stopping.wait()
        await self._shutdown()

    async def stop(self) -> None:
        """Release every shard (checkpoints written), leave the group, stop. Always returns."""
        self._stopping.set()
        self._wake.set()
        await self._shutdown()

    async def _shutdown(self) -> None:
        """Idempotent: the first caller does the work, later callers wait for it."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.ensure_future(self._do_shutdown())
        await asyncio.shield(self._shutdown_task)

    async def _do_shutdown(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await asyncio.gather(*(self._release(s) for s in list(self.shards.values())), return_exceptions=True)
        if self._started:
            with contextlib.suppress(E.SluiceError, asyncio.TimeoutError):
                await asyncio.wait_for(self._send_heartbeat([], leave=True), 10)
        if self._waiter is not None:
            await self._waiter.maybe_close()

    async def __aenter__(self) -> "AsyncConsumer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _ensure_group(self) -> None:
        async with self._gate:  # 1,000 consumers starting at once: a few dozen connections, not 1,000
            await self._create_or_update_group()

    async def _create_or_update_group(self) -> None:
        c = self.config
        try:
            await self.client.create_consumer_group(c.project, c.logstore, c.group, c.group_timeout, c.in_order)
        except E.SLSError as exc:
            if exc.error_code != "ConsumerGroupAlreadyExist":
                raise
            await self.client.update_consumer_group(c.project, c.logstore, c.group, timeout=c.group_timeout,
                                                    in_order=c.in_order)

    # ------------------------------------------------------------------ heartbeats
    async def _send_heartbeat(self, held: list[int], *, leave: bool = False) -> list[int]:
        c = self.config
        if await self._beats.available():  # a hub: this process's consumers beat in one request
            return await self._beats.beat(c.logstore, c.group, c.consumer, held, leave)
        headers = {"x-sluice-leave": "1"} if leave else None
        async with self._gate:
            return await self.client.heartbeat(c.project, c.logstore, c.group, c.consumer, held, headers=headers)

    async def _heartbeat_routine(self) -> None:
        c = self.config
        while not self._stopping.is_set():
            try:
                assigned = set(await self._send_heartbeat(sorted(self.shards)))
                self._last_heartbeat_ok = time.monotonic()
            except E.SluiceError as exc:
                log.warning("%s/%s group %s: heartbeat failed: %s", c.project, c.logstore, c.group, exc)
                if time.monotonic() - self._last_heartbeat_ok > c.group_timeout + c.heartbeat_interval:
                    log.error("%s/%s group %s: no heartbeat for too long; releasing every shard",
                              c.project, c.logstore, c.group)
                    for s in list(self.shards.values()):
                        s.releasing.set()
                assigned = None
            if assigned is not None:
                for shard in sorted(assigned - set(self.shards)):
                    self._ever_assigned = True
                    self._start_shard(shard)
                for shard in set(self.shards) - assigned:
                    self.shards[shard].releasing.set()
                if c.end is not None and self._ever_assigned and self.shards and all(
                        s.done_at_end for s in self.shards.values()):
                    log.info("%s/%s group %s: every held shard reached the end position; stopping",
                             c.project, c.logstore, c.group)
                    self._stopping.set()
            self._wake.clear()
            # The next beat falls on the interval's grid of the monotonic clock, so every consumer of the process
            # with that interval beats in the same loop iteration: one wake-up with warm caches instead of one
            # per consumer (200 idle logstores: ~12% less CPU, bench/consumer.py (d)). A point less than 5% of
            # an interval away is skipped, so a timer firing a hair early cannot beat twice in a row; gaps stay
            # within 1.05 intervals. asyncio.timeout rather than wait_for: no extra task per beat.
            delay = c.heartbeat_interval - time.monotonic() % c.heartbeat_interval
            if delay < c.heartbeat_interval / 20:
                delay += c.heartbeat_interval
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def _start_shard(self, shard: int) -> None:
        state = _Shard(shard, ShardContext(shard, lambda: self._flush(state), self._mark_dirty))
        self.shards[shard] = state
        state.task = asyncio.create_task(self._shard_routine(state), name=f"sluice-shard-{shard}")

    # ------------------------------------------------------------------ checkpoints
    async def _flush(self, state: _Shard) -> None:
        """Write the marked checkpoint. One write at a time per shard (a slow or retried write can never land
        after a newer one), and never a cursor behind the one already written, except a deliberate rollback."""
        async with state.flush_lock:
            ctx = state.ctx
            if not ctx.is_dirty:
                return
            value = ctx.pending
            c = self.config
            async with self._gate:
                await self.client.update_checkpoint(c.project, c.logstore, c.group, state.shard, value,
                                                    consumer=c.consumer, force=False)
            ctx.committed = value

    def _mark_dirty(self) -> None:
        """A checkpoint was marked (from the loop or a handler's thread): wake the checkpoint routine."""
        if self._dirty.is_set() or self._loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._dirty.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: release already wrote what it could
            self._loop.call_soon_threadsafe(self._dirty.set)

    async def _checkpoint_routine(self) -> None:
        """Writes marked checkpoints within ``checkpoint_interval`` of the mark. Sleeps while nothing is
        marked: polling every interval cost ~0.5% of a core for 200 idle logstores (bench/consumer.py (d))."""
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.config.checkpoint_interval)
            self._dirty.clear()  # marks from now on wake the next round
            for state in list(self.shards.values()):
                if not state.ctx.is_dirty:
                    continue
                try:
                    await self._flush(state)
                except E.SluiceError as exc:
                    log.warning("shard %d: checkpoint not written (%s); will retry", state.shard, exc)
                    self._dirty.set()

    # ------------------------------------------------------------------ one shard
    async def _initial_cursor(self, shard: int) -> str:
        async with self._gate:
            return await self._read_initial_cursor(shard)

    async def _read_initial_cursor(self, shard: int) -> str:
        c = self.config
        entries = await self.client.get_checkpoints(c.project, c.logstore, c.group, shard)
        saved = str(entries[0]["checkpoint"]) if entries else ""
        if not saved:
            return await self.client.get_cursor(c.project, c.logstore, shard, c.start)
        begin = await self.client.get_cursor(c.project, c.logstore, shard, "begin")
        try:
            expired = decode_cursor(saved) < decode_cursor(begin)
        except E.InvalidCursor:
            expired = False  # not a cursor we can compare; the fetch will say if it is invalid
        if expired:
            log.warning("shard %d: checkpoint %s is older than the oldest data kept (retention); resuming from "
                        "the oldest kept data at %s: the logs in between are gone", shard, saved, begin)
            return begin
        return saved

    async def _end_cursor(self, shard: int) -> str | None:
        """The cursor where a bounded consumer stops, once it can be known: an end time still in the future
        is resolved only after it has passed (until then more data may arrive before it)."""
        c = self.config
        if c.end is None:
            return None
        if c.end not in ("begin", "end"):
            wait = float(c.end) - time.time()
            if wait > 0:
                return None
        async with self._gate:
            return await self.client.get_cursor(c.project, c.logstore, shard, c.end)

    async def _fetch(self, shard: int, cursor: str, end_cursor: str | None, end_pending: bool = False,
                     idle: bool = False) -> PullResult:
        """The next batch at ``cursor``. ``idle``: the last pull found nothing, so wait for data first."""
        c = self.config
        wait = c.long_poll or None
        if wait and end_pending:  # wake up when the end time passes, to fix the end cursor
            wait = max(0.05, min(wait, float(c.end or 0) - time.time()))
        elif self._waiter is not None and await self._waiter.available():
            # a hub with wait sessions: the process's one parked request waits for this shard too
            if idle:
                await self._waiter.wait(c.logstore, shard, cursor)
            wait = None
        await self.budget.wait_below_limit()
        if wait:  # a long-poll of its own (an older hub, or an end time to wait for): outside the gate
            result = await self.client.pull_logs(c.project, c.logstore, shard, cursor, count=c.max_fetch_groups,
                                                 end_cursor=end_cursor, compress_type=c.compress_type, wait=wait,
                                                 query=c.query)
        else:
            async with self._gate:
                result = await self.client.pull_logs(c.project, c.logstore, shard, cursor,
                                                     count=c.max_fetch_groups, end_cursor=end_cursor,
                                                     compress_type=c.compress_type, query=c.query)
        if c.query is not None and result.count and result.raw_count_before_query < 0:
            # the server returned data without saying what it read before the query: it did not evaluate it
            raise E.ConfigError(f"shard {shard}: the server returned data for the SPL query {c.query!r} without "
                                f"evaluating it; refusing to deliver unfiltered logs")
        return result

    async def _check_query(self) -> None:
        """Refuse at start an SPL query the server cannot evaluate: one pull of count 1 at the first shard's
        end carries it (the server parses it before reading); an SLS error there is the server's refusal."""
        c = self.config
        shards = await self.client.list_shards(c.project, c.logstore)
        if not shards:
            return
        shard = int(shards[0]["shardID"])
        cursor = await self.client.get_cursor(c.project, c.logstore, shard, "end")
        try:
            await self.client.pull_logs(c.project, c.logstore, shard, cursor, count=1, query=c.query)
        except E.SLSError as exc:
            raise E.ConfigError(f"{c.project}/{c.logstore}: the server refused the SPL query {c.query!r}: "
                                f"{exc.error_code}: {exc}") from None

    async def _shard_routine(self, state: _Shard) -> None:
        try:
            await self._consume_shard(state)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the shard is released; the group hands it out again
            log.exception("shard %d: consumer stopped on an error; releasing the shard", state.shard)

    async def _consume_shard(self, state: _Shard) -> None:
        c = self.config
        shard, ctx = state.shard, state.ctx
        processor = self._make_processor()
        prefetch: asyncio.Task[PullResult] | None = None
        try:
            cursor = await self._retrying(lambda: self._initial_cursor(shard), state, "read the checkpoint")
            if cursor is None:
                return
            ctx.committed = ctx.pending = ""
            end_cursor = await self._retrying(lambda: self._end_cursor(shard), state, "find the end cursor")
            end_pending = c.end is not None and end_cursor is None
            await processor.initialize(ctx)
            delay = 0.05
            idle = False  # the last pull found nothing
            while not state.releasing.is_set():
                if end_pending and time.time() >= float(c.end or 0):
                    end_cursor = await self._retrying(lambda: self._end_cursor(shard), state, "find the end cursor")
                    end_pending = end_cursor is None
                    if prefetch is not None:  # it may read past the end: read again, bounded
                        prefetch.cancel()
                        prefetch = None
                if prefetch is None:
                    prefetch = asyncio.create_task(self._fetch(shard, cursor, end_cursor, end_pending, idle))
                waiter = asyncio.create_task(state.releasing.wait())
                done, _ = await asyncio.wait({prefetch, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if prefetch not in done:
                    break  # released while waiting for data
                t_fetch, prefetch = prefetch, None
                try:
                    result = t_fetch.result()
                except E.InvalidCursor:
                    async with self._gate:
                        begin = await self.client.get_cursor(c.project, c.logstore, shard, "begin")
                    log.warning("shard %d: cursor %s is no longer valid; resuming from the oldest data kept (%s)",
                                shard, cursor, begin)
                    cursor = begin
                    continue
                except (E.ShardNotExist, E.LogStoreNotExist, E.ProjectNotExist) as exc:
                    log.error("shard %d: %s; releasing it", shard, exc)
                    return
                except E.SluiceError as exc:
                    log.warning("shard %d: fetch failed (%s); retrying", shard, exc)
                    self.stats["errors"] += 1
                    await asyncio.sleep(min(delay, 5.0))
                    delay = min(delay * 2, 5.0)
                    continue
                # an SPL query that kept nothing of a real batch: more may follow at once, so neither idle nor a pause
                filtered_out = result.count == 0 and result.raw_count_before_query > 0
                idle = result.count == 0 and not filtered_out
                if result.count == 0:
                    if end_cursor is not None and _at_or_past(result.next_cursor, end_cursor):
                        state.done_at_end = True
                    if ctx.is_dirty:  # caught up: write the checkpoint now (finishes read-only shards fast)
                        with contextlib.suppress(E.SluiceError):
                            await self._flush(state)
                    if state.done_at_end:
                        self._wake.set()
                        await state.releasing.wait()
                        break
                    if not c.long_poll and not filtered_out:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, c.max_poll_interval)
                    cursor = result.next_cursor
                    continue
                delay = 0.05
                batch = result.batch(self.client.endpoint)
                self.budget.take(len(result.raw))
                try:
                    if not (end_cursor is not None and result.next_cursor == end_cursor):
                        prefetch = asyncio.create_task(self._fetch(shard, result.next_cursor, end_cursor,
                                                                   end_pending))
                    ctx.cursor = result.next_cursor
                    rollback = await self._process(processor, batch, ctx, state)
                finally:
                    await self.budget.give(len(result.raw))
                self.stats["batches"] += 1
                self.stats["groups"] += result.count
                self.stats["bytes"] += len(result.raw)
                if rollback:
                    if prefetch is not None:
                        prefetch.cancel()
                        prefetch = None
                    cursor = rollback
                else:
                    cursor = result.next_cursor
        finally:
            if prefetch is not None:
                prefetch.cancel()
                with contextlib.suppress(BaseException):
                    await prefetch
            try:
                await processor.shutdown(ctx)
            except Exception:  # noqa: BLE001 - a user shutdown hook must not keep the shard
                log.exception("shard %d: processor shutdown failed", shard)
            with contextlib.suppress(E.SluiceError):
                await self._flush(state)
            self.shards.pop(shard, None)
            self._wake.set()  # report the release at once, so the next owner gets the shard quickly

    async def _process(self, processor: Processor, batch: Batch, ctx: ShardContext, state: _Shard) -> str | None:
        """Run the processor on a batch; on an exception retry the same batch with back-off (never skip)."""
        delay = 0.5
        while True:
            try:
                return await processor.process(batch, ctx)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - user code: log, back off, retry the same batch
                self.stats["errors"] += 1
                log.exception("shard %d: handler failed on %s; retrying in %.1fs", batch.shard, batch, delay)
                if not self.config.retry_handler_errors or state.releasing.is_set():
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _retrying(self, call: Callable[[], "asyncio.Future[str] | object"], state: _Shard, what: str) -> str | None:
        delay = 0.2
        while not state.releasing.is_set():
            try:
                return await call()  # type: ignore[misc, no-any-return]
            except (E.ShardNotExist, E.LogStoreNotExist, E.ProjectNotExist, E.ConsumerGroupNotExist) as exc:
                log.error("shard %d: cannot %s: %s", state.shard, what, exc)
                return None
            except E.SluiceError as exc:
                log.warning("shard %d: cannot %s (%s); retrying", state.shard, what, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return None

    async def _release(self, state: _Shard) -> None:
        """Ask the shard routine to finish its batch and let go; after ``shutdown_grace`` seconds a handler
        that still has not returned is cancelled (its batch is not checkpointed, so it is read again)."""
        state.releasing.set()
        if state.task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(state.task), self.config.shutdown_grace)
        except asyncio.TimeoutError:
            log.error("shard %d: handler still running after %.0fs; cancelling it (its batch will be read again)",
                      state.shard, self.config.shutdown_grace)
            state.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await state.task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the routine logged its own failure
            pass


def _at_or_past(cursor: str, end_cursor: str) -> bool:
    if cursor == end_cursor:
        return True
    try:
        return decode_cursor(cursor) >= decode_cursor(end_cursor)
    except E.InvalidCursor:
        return False
