"""One connection for every idle shard of a process: the client side of the hub's wait sessions.

Why: with one long-poll PullLogs per idle shard, a process following 1,000 logstores x 2 shards holds 2,000
connections (and the hub as many descriptors). Against a hub, every consumer of this process that reads a
project through one ``AsyncClient`` shares one ``ShardWaiter``: a shard that caught up calls ``wait(logstore,
shard, cursor)``, which joins the process's wait session on the hub (``POST /sluice/wait``, hub/waits.py) and
returns once the hub says the shard has data; the consumer then pulls with a short PullLogs. One request is
parked per session; joins made in the same loop iteration go out together as one small request that
supersedes the parked one (the hub answers the older one at once), so the set itself is sent only on reset.

SLS has no such route: ``available()`` probes it once per waiter (a reset with no wait) and any SLS error
means "not a hub"; consumers then keep their per-shard path (long-poll on old hubs, adaptive polling on SLS).

Lost answers: a poll whose answer does not arrive may have taken ready shards out of the session, so after
any failure the next poll sends the whole set again with ``reset`` (and the wait request is never retried
by the transport). Spurious wake-ups are harmless (the shard pulls, finds nothing, waits again); a lost one
is not, which is why a cancelled wait does not send a removal (a removal racing a re-join on another
connection could drop the re-join): the hub forgets a shard it answers, and ``reset`` clears the rest.

``beats_for(client, project)``: a process's consumers beat on one clock grid (worker.py), so 1,000 consumers
send 1,000 heartbeats in one loop iteration. Against a hub they go out as one ``POST /sluice/heartbeats``
(``HeartbeatBatcher``; hub/api/heartbeats.py), each consumer still getting its own answer or error; against
SLS (probed once, like the waits) each consumer sends its own Heartbeat.

``gate_for(client)``: unbounded, those 1,000 Heartbeats (or 1,000 consumers starting) would open a connection
each. Short requests of the consumers on one client pass this semaphore (``DEFAULT_MAX_REQUESTS`` at a time);
parked waits do not.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from typing import TYPE_CHECKING

from ..wire import errors as E

if TYPE_CHECKING:
    from ..client import AsyncClient

__all__ = ["DEFAULT_MAX_REQUESTS", "HeartbeatBatcher", "ShardWaiter", "beats_for", "gate_for", "waiter_for"]

log = logging.getLogger("sluice.consumer")

DEFAULT_MAX_REQUESTS = 24  # short requests in flight per client from its consumers (connections it opens)
_Key = tuple[str, int]

_waiters: "weakref.WeakKeyDictionary[AsyncClient, dict[str, ShardWaiter]]" = weakref.WeakKeyDictionary()
_gates: "weakref.WeakKeyDictionary[AsyncClient, asyncio.Semaphore]" = weakref.WeakKeyDictionary()
_batchers: "weakref.WeakKeyDictionary[AsyncClient, dict[str, HeartbeatBatcher]]" = weakref.WeakKeyDictionary()
MAX_BATCH = 2000  # beats per request (the hub takes up to 5,000)


def waiter_for(client: "AsyncClient", project: str, poll_wait: float) -> "ShardWaiter":
    """The process's waiter for ``project`` through ``client`` (created on first use)."""
    by_project = _waiters.setdefault(client, {})
    waiter = by_project.get(project)
    if waiter is None:
        waiter = by_project[project] = ShardWaiter(client, project, poll_wait)
    return waiter


def beats_for(client: "AsyncClient", project: str) -> "HeartbeatBatcher":
    """The process's heartbeat batcher for ``project`` through ``client`` (created on first use)."""
    by_project = _batchers.setdefault(client, {})
    batcher = by_project.get(project)
    if batcher is None:
        batcher = by_project[project] = HeartbeatBatcher(client, project)
    return batcher


def gate_for(client: "AsyncClient") -> asyncio.Semaphore:
    gate = _gates.get(client)
    if gate is None:
        gate = _gates[client] = asyncio.Semaphore(DEFAULT_MAX_REQUESTS)
    return gate


class _ProbedOnce:
    """A hub-only API (wait sessions, batched heartbeats) that SLS does not serve: whether the endpoint takes it
    is probed once, concurrent callers share the probe, and a transport failure decides nothing (the next
    caller probes again). Subclasses say how to probe in ``_do_probe`` and set ``supported`` there."""

    def __init__(self) -> None:
        self.supported: bool | None = None  # None until probed
        self._probe: asyncio.Future[bool] | None = None

    async def available(self) -> bool:
        if self.supported is not None:
            return self.supported
        if self._probe is None:
            self._probe = asyncio.ensure_future(self._do_probe())
        try:
            return await asyncio.shield(self._probe)
        finally:
            if self._probe.done() and self._probe.exception() is not None:
                self._probe = None

    async def _do_probe(self) -> bool:
        raise NotImplementedError


class ShardWaiter(_ProbedOnce):
    """The wait session of one (client, project) on a hub. Event loop only."""

    def __init__(self, client: "AsyncClient", project: str, poll_wait: float) -> None:
        self.client = client
        self.project = project
        self.poll_wait = poll_wait
        self.session = uuid.uuid4().hex
        super().__init__()
        self._entries: dict[_Key, tuple[str, asyncio.Future[None]]] = {}  # waiting shards: cursor, waiter
        self._added: dict[_Key, str] = {}  # joined since the last poll went out
        self._reset = True  # the next poll sends the whole set
        self._resetting = False  # a reset is in flight: nothing else is sent until it is answered
        self._gen = 0  # number of the latest poll sent
        self._kick_handle: asyncio.Handle | None = None
        self._polls: set[asyncio.Task[None]] = set()
        self._delay = 0.0  # back-off after failed polls
        self.stats = {"polls": 0, "failures": 0, "wakeups": 0}

    # ------------------------------------------------------------------ capability
    async def _do_probe(self) -> bool:
        """Whether the endpoint serves wait sessions: an empty reset of this process's session."""
        try:
            await self.client.wait_shards(self.project, self.session, reset=True, wait=0)
        except E.SLSError as exc:
            log.info("%s: no wait sessions at this endpoint (%s: %s); each shard polls on its own",
                     self.project, exc.error_code, exc)
            self.supported = False
            return False
        self.supported = True
        self._reset = False  # the probe made the session, empty
        return True

    # ------------------------------------------------------------------ waiting
    async def wait(self, logstore: str, shard: int, cursor: str) -> None:
        """Return when the hub reports data past ``cursor`` on the shard (or something a PullLogs must see:
        read-only, gone, bad cursor). Cancelling it (a released shard) just stops waiting."""
        key = (logstore, shard)
        previous = self._entries.get(key)
        if previous is not None and not previous[1].done():
            previous[1].set_result(None)  # one waiter per shard; a stale one returns and pulls
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._entries[key] = (cursor, fut)
        self._added[key] = cursor
        self._kick()
        try:
            await fut
        finally:
            if self._entries.get(key, (None, None))[1] is fut:
                del self._entries[key]
                self._added.pop(key, None)

    def _kick(self) -> None:
        """Send the pending joins with the next loop iteration: joins of one iteration share one request."""
        if self._kick_handle is None:
            self._kick_handle = asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        """Send the joins (or, after a failure, the whole set as a reset) and park the next poll.

        A reset goes alone, answered at once (wait 0), and nothing else is sent until its answer: requests
        travel on different connections, and a join sent after a reset but applied before it would be wiped
        by it (a lost wake-up). Joins and polls without a reset may arrive in any order (adds only)."""
        self._kick_handle = None
        if self._resetting:
            return  # the reset's answer kicks again
        if not self._entries:
            self._added.clear()
            return  # nothing to wait for; a parked poll ends on its own
        if self._reset:
            add = [(ls, shard, cursor) for (ls, shard), (cursor, _) in self._entries.items()]
            reset, self._reset, self._resetting = True, False, True
        else:
            add = [(ls, shard, cursor) for (ls, shard), cursor in self._added.items()]
            reset = False
        self._added.clear()
        self._gen += 1
        task = asyncio.create_task(self._poll(self._gen, add, reset), name="sluice-wait")
        self._polls.add(task)
        task.add_done_callback(self._polls.discard)

    async def _poll(self, gen: int, add: list[tuple[str, int, str]], reset: bool) -> None:
        self.stats["polls"] += 1
        try:
            ready = await self.client.wait_shards(self.project, self.session, add=add, reset=reset,
                                                  wait=0.0 if reset else self.poll_wait)
        except asyncio.CancelledError:
            if reset:
                self._resetting, self._reset = False, True
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: resend the whole set, after a back-off
            self.stats["failures"] += 1
            self._reset = True
            if reset:
                self._resetting = False
            if not (isinstance(exc, E.SLSError) and exc.error_code == "WaitSessionNotExist"):
                self._delay = min(max(self._delay * 2, 0.2), 5.0)
                log.warning("%s: wait on the hub failed (%s); resending the set in %.1fs", self.project, exc,
                            self._delay)
                await asyncio.sleep(self._delay)
            self._kick()
            return
        self._delay = 0.0
        if reset:
            self._resetting = False
            self._kick()  # joins held back meanwhile, and the poll to park
        for key in ready:
            entry = self._entries.get(key)
            if entry is not None and not entry[1].done():
                self.stats["wakeups"] += 1
                entry[1].set_result(None)
        if gen == self._gen and self._entries:
            self._kick()  # the latest poll ended: park the next one

    async def maybe_close(self) -> None:
        """A consumer stopped: when no shard of the process waits any more, end the parked poll (it would
        otherwise outlive its consumers by up to ``poll_wait``)."""
        if not self._entries:
            await self.aclose()

    async def aclose(self) -> None:
        if self._kick_handle is not None:
            self._kick_handle.cancel()
            self._kick_handle = None
        self._reset, self._resetting = True, False  # the hub may keep the session; the next use starts over
        for task in list(self._polls):
            task.cancel()
        for task in list(self._polls):
            try:
                await task
            except BaseException:  # noqa: BLE001 - closing
                pass


class HeartbeatBatcher(_ProbedOnce):
    """Heartbeats of the consumers of one (client, project) made in one loop iteration, sent as one request.
    Event loop only."""

    def __init__(self, client: "AsyncClient", project: str) -> None:
        self.client = client
        self.project = project
        super().__init__()
        self._pending: list[tuple[dict[str, object], asyncio.Future[list[int]]]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self.stats = {"requests": 0, "beats": 0}

    async def _do_probe(self) -> bool:
        """Whether the endpoint takes batched heartbeats: an empty batch."""
        try:
            await self.client.heartbeats(self.project, [])
        except E.SLSError as exc:
            log.info("%s: no batched heartbeats at this endpoint (%s); one Heartbeat per consumer",
                     self.project, exc.error_code)
            self.supported = False
            return False
        self.supported = True
        return True

    async def beat(self, logstore: str, group: str, consumer: str, held: list[int], leave: bool = False) -> list[int]:
        """One consumer's heartbeat, sent with the others of this loop iteration: the shards to hold, or the
        beat's own error raised."""
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append(({"logstore": logstore, "group": group, "consumer": consumer, "held": held,
                               "leave": leave}, fut))
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._flush_handle = None
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_BATCH):
            task = asyncio.create_task(self._send(pending[start:start + MAX_BATCH]), name="sluice-heartbeats")
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _send(self, batch: list[tuple[dict[str, object], "asyncio.Future[list[int]]"]]) -> None:
        self.stats["requests"] += 1
        self.stats["beats"] += len(batch)
        try:
            results = await self.client.heartbeats(self.project, [item for item, _ in batch])
            if len(results) != len(batch):
                raise E.WireError(f"{len(results)} heartbeat results for {len(batch)} beats")
        except Exception as exc:  # noqa: BLE001 - every beat of the request gets the failure
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), result in zip(batch, results):
            if fut.done():
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)
