"""The monitor's state logstore: how the processes of one job act as one monitor, on the log service itself.

A logstore with one shard (default ``sluice-monitor-<group>`` in the first source's project, created by the
job if missing) carries records, one log each (``kind`` and a JSON ``body``), topic = the group:

* ``p`` partial counts of one batch of one source shard (monitor/scan.py), written by whichever process
  holds that shard, *before* it checkpoints the batch: a count is durable before its logs are passed;
* ``i`` shards whose consumer has read everything (their watermark moves to the wall clock);
* ``s`` the read-write shards of every source (the evaluator lists them);
* ``d`` alerts delivered (or given up) per alerter;
* ``S`` a snapshot of the evaluator (windows, positions, watermarks, outbox) as of a record position.

The process of the group that holds the state shard (the same consumer group, on the state logstore) is
the evaluator: it reads the records in order, keeps the windows (monitor/windows.py) and sends the
alerts (monitor/outbox.py). Every ~2 s it writes a snapshot, then checkpoints the state shard at the
position the snapshot stands for. A successor (rebalance, kill -9) reads from that checkpoint, loads the
snapshot it finds after it, re-applies the records since, and sends what is still owed: the same
decisions, the same alert ids. The same design works on the hub and on SLS: only SLS API calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ...client import AsyncClient
from ...consumer import Processor, ShardContext
from ...wire import errors as E
from ...wire.batch import Batch
from ...wire.cursor import decode_cursor
from ..config import Monitor
from .outbox import Outbox
from .windows import MAX_OPEN_KEYS, Evaluator

__all__ = ["StateWriter", "EvaluatorProcessor", "default_state_logstore", "encode_records", "read_records"]

log = logging.getLogger("sluice.pipelines.monitor")

SNAPSHOT_INTERVAL = 2.0  # seconds between evaluator snapshots (and state checkpoints) while counts arrive
IDLE_SNAPSHOT_INTERVAL = 30.0  # ... while only idle-shard watermarks arrive
FLUSH_INTERVAL = 0.2  # queued records (watermarks, idle shards, delivery marks) are written within this
IDLE_AFTER = 1.0  # a held shard not processed for this long is checked for being caught up
IDLE_RECHECK = 2.0  # ... and checked again after this long
MAX_ENTRIES_PER_RECORD = 2000
MAX_PUT_BYTES = 2 << 20  # one PutLogs of state records carries at most this much JSON
SHARD_LIST_INTERVAL = 30.0
RESTORE_TIMEOUT = 30.0  # a successor that finds no snapshot for its checkpoint starts afresh after this


def default_state_logstore(group: str) -> str:
    """``sluice-monitor-<group>``, made a valid logstore name (lowercase, digits, ``-``/``_``, <= 63)."""
    name = re.sub(r"[^a-z0-9_-]", "-", f"sluice-monitor-{group}".lower())
    return name[:63].rstrip("-_") or "sluice-monitor"


def encode_records(records: list[tuple[str, Any]]) -> list[list[dict[str, str]]]:
    """Records as logs, split into PutLogs of at most MAX_PUT_BYTES."""
    puts: list[list[dict[str, str]]] = [[]]
    size = 0
    for kind, body in records:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        if puts[-1] and size + len(text) > MAX_PUT_BYTES:
            puts.append([])
            size = 0
        puts[-1].append({"kind": kind, "body": text})
        size += len(text)
    return [p for p in puts if p]


def read_records(batch: Batch) -> list[tuple[int, str, str]]:
    """(group sequence number, kind, JSON body) of every record in a batch of the state shard."""
    start = decode_cursor(batch.cursor)
    out = []
    for off, group in enumerate(batch):
        for rec in group.logs():
            out.append((start + off, str(rec.get("kind", "")), str(rec.get("body", "{}"))))
    return out


def partial_records(src: str, shard: int, start: int, nxt: int, wm: float,
                    entries: list[list[Any]]) -> list[tuple[str, Any]]:
    """One batch's entries as ``p`` records of at most MAX_ENTRIES_PER_RECORD entries, split only between
    groups, each record's ``next`` the first group of the next one (so each group is applied once)."""
    entries.sort(key=lambda e: e[3])
    chunks: list[list[list[Any]]] = [[]]
    for e in entries:
        if len(chunks[-1]) >= MAX_ENTRIES_PER_RECORD and chunks[-1][-1][3] != e[3]:
            chunks.append([])
        chunks[-1].append(e)
    out: list[tuple[str, Any]] = []
    for i, chunk in enumerate(chunks):
        upto = start + chunks[i + 1][0][3] if i + 1 < len(chunks) else nxt
        out.append(("p", {"src": src, "shard": shard, "start": start, "next": upto,
                          "wm": wm if wm != float("-inf") else None, "e": chunk}))
    return out


@dataclass
class _Watch:
    """A held source shard, for idle detection."""

    src: str
    shard: int
    client: AsyncClient
    project: str
    logstore: str
    group: str
    start: str
    ctx: ShardContext
    busy: bool = False
    last_active: float = field(default_factory=time.monotonic)
    idle: bool = False
    checked_at: float = -math.inf  # monotonic time of the last caught-up check
    position: int | None = None  # where a shard that processed nothing yet reads from (found once)


class StateWriter:
    """Writes state records: at once (``put``: partial counts, which a checkpoint waits for) or queued and
    flushed every FLUSH_INTERVAL (watermarks, idle shards, delivery marks, shard lists)."""

    def __init__(self, client: AsyncClient, project: str, logstore: str, group: str) -> None:
        self.client = client
        self.project = project
        self.logstore = logstore
        self.group = group
        self._queued: list[tuple[str, Any]] = []
        self._wm: dict[str, dict[str, Any]] = {}
        self.watches: dict[tuple[str, int], _Watch] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.errors = 0

    async def ensure(self, ttl: int) -> None:
        """Create the state logstore (one shard) if it is missing; several processes may race to do it."""
        try:
            await self.client.get_logstore(self.project, self.logstore)
            return
        except E.LogStoreNotExist:
            pass
        try:
            await self.client.create_logstore(self.project, self.logstore, ttl=ttl, shard_count=1)
            log.info("created the monitor state logstore %s/%s", self.project, self.logstore)
        except E.SLSError as exc:
            if exc.error_code != "LogStoreAlreadyExist":
                raise

    async def put(self, records: list[tuple[str, Any]]) -> None:
        """Write records now, retrying with back-off until they are stored (or the writer is closed)."""
        delay = 0.1
        for logs in encode_records(records):
            while True:
                try:
                    await self.client.put_logs(self.project, self.logstore, logs, topic=self.group)
                    break
                except E.SluiceError as exc:
                    self.errors += 1
                    if self._closed:
                        raise
                    log.warning("monitor state %s/%s: write failed (%s); retrying in %.1fs", self.project,
                                self.logstore, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    def queue(self, kind: str, body: Any) -> None:
        self._queued.append((kind, body))

    def note_watermark(self, src: str, shard: int, start: int, nxt: int, wm: float) -> None:
        """A batch without matches: only its position and watermark, coalesced per shard."""
        sid = f"{src}|{shard}"
        prev = self._wm.get(sid)
        w = None if wm == float("-inf") else wm
        if prev is not None and prev["wm"] is not None and (w is None or prev["wm"] > w):
            w = prev["wm"]
        self._wm[sid] = {"src": src, "shard": shard, "start": start if prev is None else prev["start"],
                         "next": nxt, "wm": w, "e": []}

    async def flush(self) -> None:
        records = self._queued + [("p", b) for b in self._wm.values()]
        self._queued, self._wm = [], {}
        if records:
            await self.put(records)

    # ------------------------------------------------------------------ idle shards
    def watch(self, w: _Watch) -> None:
        self.watches[(w.src, w.shard)] = w

    def unwatch(self, src: str, shard: int) -> None:
        self.watches.pop((src, shard), None)

    async def _position(self, w: _Watch, end: int) -> int:
        """Where the consumer reads next: after its last batch, else where it started (its checkpoint, or
        the job's start; ``end`` for a job that starts at the end, as seen by the first check)."""
        if w.ctx.cursor:
            return decode_cursor(w.ctx.cursor)
        if w.position is None:
            entries = await w.client.get_checkpoints(w.project, w.logstore, w.group, w.shard)
            saved = str(entries[0].get("checkpoint", "")) if entries else ""
            if saved:
                w.position = decode_cursor(saved)
            elif w.start == "end":
                w.position = end
            else:
                w.position = decode_cursor(await w.client.get_cursor(w.project, w.logstore, w.shard, w.start))
        return w.position

    async def _idle_shards(self) -> list[list[Any]]:
        """Held shards whose consumer has read everything, each with the wall-clock time taken just before
        the shard's end was read: a log not yet read arrived after it, so its log time is (but for clock
        skew and producers' delays) no older; a shard is checked again every IDLE_RECHECK seconds."""
        idle = []
        now = time.monotonic()
        for w in list(self.watches.values()):
            if w.busy or now - w.last_active < IDLE_AFTER or now - w.checked_at < IDLE_RECHECK:
                continue
            w.checked_at = now
            t = time.time()
            try:
                end = decode_cursor(await w.client.get_cursor(w.project, w.logstore, w.shard, "end"))
                pos = await self._position(w, end)
            except (E.SluiceError, ValueError) as exc:
                log.debug("shard %d: not checked for idleness: %s", w.shard, exc)
                continue
            if w.busy or time.monotonic() - w.last_active < IDLE_AFTER:
                continue
            if pos >= end:
                idle.append([w.src, w.shard, t])
        return idle

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sluice-monitor-state")

    async def _run(self) -> None:
        next_idle = time.monotonic() + IDLE_AFTER
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                if time.monotonic() >= next_idle:
                    next_idle = time.monotonic() + IDLE_AFTER
                    idle = await self._idle_shards()
                    if idle:
                        self.queue("i", {"t": time.time(), "s": idle})
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the writer alive; what was queued is lost, not fatal
                log.exception("monitor state writer")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(E.SluiceError):
            self._closed = True
            await asyncio.wait_for(self.flush(), 5)


class EvaluatorProcessor(Processor):
    """The processor of the state shard: the evaluator and the outbox of the whole job."""

    def __init__(self, spec: Monitor, group: str, writer: StateWriter, make_outbox: Callable[[], Outbox],
                 sources: dict[str, tuple[AsyncClient, str, str]], counters: dict[str, int],
                 on_state: Callable[["EvaluatorProcessor | None"], None] | None = None) -> None:
        self.spec = spec
        self.group = group
        self.writer = writer
        self.make_outbox = make_outbox
        self.sources = sources  # src id -> (client, project, logstore)
        self.counters = counters
        self.on_state = on_state
        self.ev: Evaluator | None = None
        self.outbox: Outbox | None = None
        self._restore_at: int | None = None
        self._restore_since = 0.0
        self._buffer: list[tuple[int, str, str]] = []
        self._catch_up_to = 0
        self._next = 0
        self._changed = self._idle_changed = False
        self._last_snapshot = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._delivering = False
        self._late_logged = self._overflow_logged = 0
        self._late_at = -10.0

    async def initialize(self, ctx: ShardContext) -> None:
        self.outbox = self.make_outbox()
        w = self.writer
        self._catch_up_to = decode_cursor(await w.client.get_cursor(w.project, w.logstore, 0, "end"))
        entries = await w.client.get_checkpoints(w.project, w.logstore, self.group, 0)
        saved = str(entries[0].get("checkpoint", "")) if entries else ""
        begin = decode_cursor(await w.client.get_cursor(w.project, w.logstore, 0, "begin"))
        if saved and decode_cursor(saved) > begin:  # a predecessor's: find its snapshot, then apply what follows
            self._restore_at = decode_cursor(saved)
            self._restore_since = time.monotonic()
        else:  # the first evaluator of this group (or one reset to begin): every record from the beginning
            self.ev = Evaluator(self.spec, self.group)
        self._tasks.append(asyncio.create_task(self._list_shards(), name="sluice-monitor-shards"))
        if self.on_state is not None:
            self.on_state(self)
        log.info("monitor: evaluating the rules of group %s (state %s/%s)", self.group, w.project, w.logstore)

    async def _list_shards(self) -> None:
        known: dict[str, list[int]] | None = None
        while True:
            try:
                shards: dict[str, list[int]] = {}
                for src, (client, project, logstore) in self.sources.items():
                    shards[src] = sorted(int(s["shardID"]) for s in await client.list_shards(project, logstore)
                                         if str(s.get("status", "readwrite")).lower() == "readwrite")
                current = self.ev.shards if self.ev is not None else None
                if shards != known or (current is not None and current != shards):
                    self.writer.queue("s", {"shards": shards})
                    known = shards
            except E.SluiceError as exc:
                log.warning("monitor: cannot list the source shards: %s", exc)
            await asyncio.sleep(SHARD_LIST_INTERVAL)

    def _apply(self, seq: int, kind: str, text: str) -> None:
        ev, outbox = self.ev, self.outbox
        assert ev is not None and outbox is not None
        if kind == "S":
            return
        try:
            body = json.loads(text)
            if kind == "p":
                fired = ev.apply_partial(body)
            elif kind == "i":
                fired = ev.apply_idle(body)
            elif kind == "s":
                fired = ev.apply_shards(body)
            elif kind == "d":
                for i in body.get("ids", []):
                    outbox.mark(str(i), int(body.get("a", 0)))
                return
            else:
                return
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            # not written by sluice (or by an incompatible version): skipped, never a stuck evaluator
            log.error("monitor state: record %d (%s) is not valid: %s; skipped", seq, kind, exc)
            return
        if kind == "i":
            self._idle_changed = True  # watermarks only: a successor re-applies these cheaply
        else:
            self._changed = True
        if ev.late > self._late_logged and time.monotonic() - self._late_at >= 10:
            log.warning("monitor: %d late match(es) dropped so far (their window had closed: older than the "
                        "watermark by more than the allowed lateness of %gs)", ev.late, self.spec.lateness)
            self._late_logged, self._late_at = ev.late, time.monotonic()
        if ev.overflow > self._overflow_logged and time.monotonic() - self._late_at >= 10:
            log.warning("monitor: %d match(es) dropped so far: their rule already had %d keys (group_by values) "
                        "with open windows", ev.overflow, MAX_OPEN_KEYS)
            self._overflow_logged, self._late_at = ev.overflow, time.monotonic()
        for alert in fired:
            self.counters["alerts"] = self.counters.get("alerts", 0) + 1
            outbox.add(alert)

    async def process(self, batch: Batch, ctx: ShardContext) -> str | None:
        records = read_records(batch)
        for seq, kind, text in records:
            if self.ev is not None:
                self._apply(seq, kind, text)
                continue
            if kind == "S":
                try:
                    body = json.loads(text)
                except ValueError:
                    continue
                if isinstance(body, dict) and body.get("as_of") == self._restore_at:
                    self._restore(body)
                continue
            self._buffer.append((seq, kind, text))
        if self.ev is None and time.monotonic() - self._restore_since > RESTORE_TIMEOUT:
            log.error("monitor state: no snapshot for position %s found; starting with empty windows",
                      self._restore_at)
            self._restore({"as_of": self._restore_at, "state": {}, "outbox": []})
        self._next = decode_cursor(batch.next_cursor)
        if self.ev is None:
            return None
        if not self._delivering and self._next >= self._catch_up_to:
            self._delivering = True
            assert self.outbox is not None
            await self.outbox.start()
        since = time.monotonic() - self._last_snapshot
        if (self._changed and since >= SNAPSHOT_INTERVAL) or (self._idle_changed and since >= IDLE_SNAPSHOT_INTERVAL):
            await self._snapshot(ctx)
        return None

    def _restore(self, body: dict[str, Any]) -> None:
        assert self.outbox is not None
        self.ev = Evaluator.from_json(self.spec, self.group, body.get("state", {}))
        self.outbox.load(body.get("outbox", []))
        buffered, self._buffer = self._buffer, []
        for seq, kind, text in buffered:
            self._apply(seq, kind, text)
        log.info("monitor: state restored from the snapshot at %s (%d records since, %d alerts owed)",
                 body.get("as_of"), len(buffered), len(self.outbox.pending))

    async def _snapshot(self, ctx: ShardContext) -> None:
        """Write the snapshot of everything applied before ``_next``, then mark the state checkpoint there."""
        assert self.ev is not None and self.outbox is not None
        as_of, cursor = self._next, ctx.cursor
        await self.writer.put([("S", {"as_of": as_of, "state": self.ev.to_json(), "outbox": self.outbox.to_json()})])
        self._changed = self._idle_changed = False
        self._last_snapshot = time.monotonic()
        ctx.checkpoint(cursor)

    async def shutdown(self, ctx: ShardContext) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.outbox is not None:
            await self.outbox.aclose()
        if self.ev is not None and ctx.cursor:
            with contextlib.suppress(E.SluiceError):
                await self._snapshot(ctx)
        if self.on_state is not None:
            self.on_state(None)
