"""The background indexer: follows every indexed logstore's shards like a consumer and feeds its DuckDB index.

PutLogs never waits for it: the indexer reads what the store committed (``store.read``, the path PullLogs
uses) from its own checkpoint, which lives in the index file itself, written in the same transaction as the
rows (engine.py). After a crash it resumes from there. A pass runs every :data:`POLL_INTERVAL` seconds
and soon after the store reports a commit (at most every :data:`GATHER` seconds unless it is catching up),
so a query sees new data well within 2 s. Groups the store
expired (TTL) are deleted from the index on the next pass; a deleted index or logstore removes its file.

At most ``max_open`` index files are open at once (``--max-open-indexes``, :data:`DEFAULT_MAX_OPEN`): each
open DuckDB instance holds descriptors and a buffer pool, and a hub may index hundreds of logstores.
Users take an index with :meth:`Indexer.lease` (the indexer for a logstore's pass, a query for its run); the
least recently used index nobody holds is closed to make room, and reopened on the next lease (its checkpoint
is in the file, so nothing is lost or repeated). An index being used is never closed by the bound: when every
open one is in use, a lease waits (at most :data:`LEASE_WAIT` s, then ServerBusy) for one to be returned.

Runs on one thread of its own (DuckDB writes are serialised per file anyway), so indexing competes with
neither the event loop nor PullLogs' reader threads.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...wire.errors import LogStoreNotExist, ProjectNotExist, ServerBusy
from ...wire.loggroup import split_groups
from .batch import build_from_body, build_text_c, exit_with_parent
from .engine import QUERY_TIMEOUT, IndexStore
from .index import CONFIG_KEY, IndexSpec

try:
    from ...wire._logdecode import group_logs as _group_logs
except ImportError:  # pragma: no cover
    _group_logs = None

__all__ = ["Indexer", "POLL_INTERVAL", "GATHER", "REOPEN_GATHER", "BATCH_GROUPS", "BATCH_BYTES", "DEFAULT_MAX_OPEN",
           "LEASE_WAIT"]

log = logging.getLogger("sluice.hub.indexer")

POLL_INTERVAL = 0.5
"""Seconds between indexing passes when no commit wakes the indexer earlier."""
GATHER = 0.25
"""Least seconds between the starts of two passes that are not catching up: a pass per store commit meant a
transaction per PutLogs, whose fixed cost (~5 ms) made indexing 5 MB/s cost more CPU than 20 MB/s."""
BATCH_GROUPS = 1000
"""Most LogGroups indexed per shard per transaction."""
BATCH_BYTES = 8 << 20
"""Most raw bytes indexed per shard per transaction."""
DEFAULT_MAX_OPEN = 64
"""Index files open at once unless the hub says otherwise (docs/query.md, "Many indexes": an open index costs
2 descriptors, no thread and ~4 MB idle, more with what queries read; reopening one ~20-35 ms)."""
REOPEN_GATHER = 1.0
"""Least seconds between passes that had to close an index to open another (more logstores written than
``max_open``): each such reopen costs ~33 ms of CPU (open, and the checkpoint of the one closed), so these
passes gather 4x longer than :data:`GATHER`; lag stays well under 2 s."""
LEASE_WAIT = QUERY_TIMEOUT + 5.0
"""Seconds a lease waits for an open index to be returned when all ``max_open`` are in use (a query holds one
for at most QUERY_TIMEOUT); then ServerBusy."""


def _name_os_thread() -> None:
    """Names the indexing thread for the OS too (``top -H``, /proc/PID/task/*/comm: bench/query.py reads its CPU
    time there); Linux only, nothing happens elsewhere."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, b"sluice-index", 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _decode(group: bytes | memoryview) -> list[dict[str, Any]]:
    if _group_logs is not None:
        return _group_logs(group)
    from .spl import _decode_logs

    return _decode_logs(group)


@dataclass
class _Job:
    """One shard's batch between its read and its insert (its text possibly being built by the helper)."""

    idx: IndexStore
    shard: Any
    result: Any
    first: int
    names: list[str]
    fut: "Future[Any] | None"
    built: "tuple[str, int] | None" = None  # the insert text, built in C in this process


class Indexer:
    """One per hub. ``store`` is the hub's store (its logstore table, ``read``); ``root`` the index directory."""

    def __init__(self, store: Any, root: Path, max_pull_bytes: int = BATCH_BYTES, helper: bool = False,
                 max_open: int = DEFAULT_MAX_OPEN) -> None:
        if max_open < 1:
            raise ValueError("max_open must be at least 1")
        self.store = store
        self.root = root
        self.max_bytes = min(max_pull_bytes, BATCH_BYTES)
        self.max_open = max_open
        # open indexes, least recently leased first; with _opening (being opened, a slot taken) and _closing
        # (evicted or dropped, close() still running) they never count more than max_open
        self._indexes: OrderedDict[tuple[str, str], IndexStore] = OrderedDict()
        self._uses: dict[int, int] = {}  # id(IndexStore) -> leases out
        self._opening: set[tuple[str, str]] = set()
        self._closing = 0
        self._closing_keys: set[tuple[str, str]] = set()  # being closed: not reopened before that ends
        # indexes the bound closed, kept (closed: a few small dicts) for IndexStore.needs_work: a pass does not
        # reopen an idle logstore's index only to find nothing to do
        self._parked: dict[tuple[str, str], IndexStore] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.opened = 0  # how many times an index file was opened (tests, bench)
        self.evicted = 0  # how many times the bound closed one to open another
        self.pass_evicted = False  # the last pass had to (its successor gathers for REOPEN_GATHER)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-index",
                                          initializer=_name_os_thread)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._swept = False
        # helper=True: decoding and building insert text run in a helper process (started on first use), so the
        # hub's interpreter lock stays with PutLogs and PullLogs; any failure of it falls back to this process
        self._helper_wanted = helper
        self._helper: ProcessPoolExecutor | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._routine())

    def notify(self, _uids: Any = None) -> None:
        """Store writer thread: something was committed; run a pass soon."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass
        self._thread.shutdown(wait=True, cancel_futures=True)
        if self._helper is not None:
            self._helper.shutdown(wait=False, cancel_futures=True)
            self._helper = None
        with self._lock:
            for idx in self._indexes.values():
                idx.close()
            self._indexes.clear()
            self._uses.clear()

    async def _routine(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                more = await loop.run_in_executor(self._thread, self.run_pass)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the indexer must keep running; the next pass retries
                log.exception("indexing pass failed")
                more = False
            if more:
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL)
            except asyncio.TimeoutError:
                pass
            rest = (REOPEN_GATHER if self.pass_evicted else GATHER) - (loop.time() - started)
            if rest > 0:  # let the commits of the next moments join this one
                await asyncio.sleep(rest)

    # ------------------------------------------------------------------ indexes
    def path_for(self, project: str, logstore: str) -> Path:
        return self.root / project / f"{logstore}.duckdb"

    @contextmanager
    def lease(self, project: str, logstore: str, wait: float = LEASE_WAIT) -> Iterator[IndexStore]:
        """The logstore's index, open (reopened if the bound closed it) and not closed by the bound until the
        block ends. Blocks (a worker thread, never the event loop) while all ``max_open`` indexes are in use."""
        idx = self._acquire((project, logstore), wait)
        try:
            yield idx
        finally:
            with self._cond:
                n = self._uses.get(id(idx), 0) - 1
                if n > 0:
                    self._uses[id(idx)] = n
                else:
                    self._uses.pop(id(idx), None)
                self._cond.notify_all()

    def index_for(self, project: str, logstore: str) -> IndexStore:
        """The logstore's index, opened if need be, without a lease (tests, tools): the bound may close it at
        the next lease of another index. The hub's own users take :meth:`lease`."""
        with self.lease(project, logstore) as idx:
            return idx

    def open_count(self) -> int:
        """Index files open now (being opened or closed included): never more than ``max_open``."""
        with self._lock:
            return len(self._indexes) + len(self._opening) + self._closing

    def _acquire(self, key: tuple[str, str], wait: float) -> IndexStore:
        deadline = time.monotonic() + wait
        victim: IndexStore | None = None
        old: tuple[str, str] | None = None
        with self._cond:
            while True:
                idx = self._indexes.get(key)
                if idx is not None and not idx.closed:
                    self._indexes.move_to_end(key)
                    self._uses[id(idx)] = self._uses.get(id(idx), 0) + 1
                    return idx
                if idx is not None:  # closed behind our back (drop raced it): forget it
                    del self._indexes[key]
                    self._uses.pop(id(idx), None)
                if key not in self._opening and key not in self._closing_keys:
                    if len(self._indexes) + len(self._opening) + self._closing < self.max_open:
                        break
                    old = next((k for k, o in self._indexes.items() if not self._uses.get(id(o))), None)
                    if old is not None:  # the least recently used one nobody holds: its slot becomes ours
                        victim = self._indexes.pop(old)
                        self._closing_keys.add(old)
                        self.evicted += 1
                        break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServerBusy(f"all {self.max_open} open search indexes are in use; retry later")
                self._cond.wait(min(left, 1.0))
            self._opening.add(key)
            self._parked.pop(key, None)
        try:
            if victim is not None and old is not None:
                try:
                    victim.close()
                finally:
                    with self._cond:
                        self._closing_keys.discard(old)
                        self._parked[old] = victim
                        self._cond.notify_all()
            idx = IndexStore(self.path_for(*key))
        except BaseException:
            with self._cond:
                self._opening.discard(key)
                self._cond.notify_all()
            raise
        with self._cond:
            self._opening.discard(key)
            self._indexes[key] = idx
            self._uses[id(idx)] = 1
            self.opened += 1
            self._cond.notify_all()
        return idx

    def drop(self, project: str, logstore: str) -> None:
        """Close and delete a logstore's index (index or logstore deleted)."""
        with self._cond:
            self._parked.pop((project, logstore), None)
            idx = self._indexes.pop((project, logstore), None)
            if idx is not None:
                self._uses.pop(id(idx), None)
                self._closing += 1
                self._closing_keys.add((project, logstore))
        if idx is not None:
            try:
                idx.close()
            finally:
                with self._cond:
                    self._closing -= 1
                    self._closing_keys.discard((project, logstore))
                    self._cond.notify_all()
        path = self.path_for(project, logstore)
        for p in (path, Path(str(path) + ".wal")):
            p.unlink(missing_ok=True)
        shutil.rmtree(path.with_name(path.name + ".tmp"), ignore_errors=True)  # DuckDB's spill directory
        shutil.rmtree(path.with_name(path.name + ".scratch"), ignore_errors=True)  # left by earlier builds

    def _indexed_logstores(self) -> list[tuple[str, str, IndexSpec, list[Any]]]:
        configured = getattr(self.store, "configured", None)
        if configured is not None:  # copies only the indexed logstores (snapshot() copied the whole hub's)
            return [(project, name, spec, shards) for project, name, config, shards in configured(CONFIG_KEY)
                    if (spec := IndexSpec.from_config(config)) is not None]
        out = []
        for meta in self.store.snapshot():  # copies: nothing here holds the store's lock
            spec = IndexSpec.from_config(meta.config.get(CONFIG_KEY))
            if spec is not None:
                out.append((meta.project, meta.name, spec, list(meta.shards.values())))
        return out

    def run_pass(self) -> bool:
        """Index what is new on every shard (one batch each); True when some shard has more waiting."""
        work = self._indexed_logstores()
        live = {(p, n) for p, n, _, _ in work}
        with self._lock:
            gone = [k for k in [*self._indexes, *self._parked] if k not in live]
        if not self._swept:  # files of logstores (or index configs) deleted while the hub was down
            self._swept = True
            gone += [(f.parent.name, f.name[:-len(".duckdb")]) for f in self.root.glob("*/*.duckdb")
                     if (f.parent.name, f.name[:-len(".duckdb")]) not in live]
        for key in gone:
            self.drop(*key)
        more = False
        evicted = self.evicted
        # one logstore at a time, under its lease: the indexer holds at most one index, so with the bound a
        # pass over hundreds of logstores reopens the closed ones in turn and never waits on itself
        for project, name, spec, shards in work:
            with self._lock:
                parked = self._parked.get((project, name))
            if parked is not None and not parked.needs_work(spec, shards):
                continue  # closed by the bound and nothing new: left closed
            try:
                with self.lease(project, name) as idx:
                    more |= self._index_logstore(idx, spec, shards)
            except ServerBusy:  # every open index is held by a query: this logstore waits for the next pass
                log.warning("indexing of %s/%s postponed: all %d open indexes are in use", project, name,
                            self.max_open)
                more = True
        self.pass_evicted = self.evicted != evicted
        return more

    def _index_logstore(self, idx: IndexStore, spec: IndexSpec, shards: list[Any]) -> bool:
        """One logstore's part of a pass (its index leased by the caller): keys, forgotten and expired shards,
        then a batch per shard with new data. True when some shard has more waiting."""
        tasks: list[tuple[IndexStore, Any, int]] = []
        idx.ensure_keys(spec)
        progress = idx.progress()
        if any(uid not in {s.uid for s in shards} for uid in progress):
            idx.forget_shards({s.uid for s in shards})
        for shard in shards:
            done = progress.get(shard.uid, 0)
            if shard.begin_seq > 0:
                idx.expire(shard.uid, shard.shard_id, shard.begin_seq)
            if max(done, shard.begin_seq) < shard.end_seq:
                tasks.append((idx, shard, done))
        more = False
        if self._helper_wanted:
            # Two batches in flight: the helper builds the next one while this thread inserts the current one.
            pending: deque[_Job] = deque()
            for idx, shard, done in tasks:
                job = self._start(idx, shard, done)
                if job is None:
                    continue
                pending.append(job)
                if len(pending) >= 2:
                    more |= self._finish(pending.popleft())
            while pending:
                more |= self._finish(pending.popleft())
            return more
        # In this process: the batches of a logstore's shards built in C go in one transaction (up to
        # BATCH_BYTES of raw data each); a batch the C builder declined goes the Python path on its own.
        together: list[_Job] = []
        size = 0
        for idx, shard, done in tasks:
            if together and (idx is not together[0].idx or size >= BATCH_BYTES):
                more |= self._finish_together(together)
                together, size = [], 0
            job = self._start(idx, shard, done)
            if job is None:
                continue
            if job.built is None:
                more |= self._finish(job)
                continue
            together.append(job)
            size += len(job.result.body)
        if together:
            more |= self._finish_together(together)
        return more

    def _start(self, idx: IndexStore, shard: Any, done: int) -> "_Job | None":
        result = self.store.read(shard, done, BATCH_GROUPS, self.max_bytes)
        if not result.count:
            if result.next_seq > done:
                idx.ingest(shard.uid, shard.shard_id, [], result.next_seq)
            return None
        first = result.next_seq - result.count
        names = idx.key_names()
        fut: Future[Any] | None = None
        if self._helper_wanted:
            try:
                if self._helper is None:
                    self._helper = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                       initializer=exit_with_parent, initargs=(os.getpid(),))
                fut = self._helper.submit(build_from_body, bytes(result.body), first, names)
            except Exception:  # noqa: BLE001 - no helper: index in this process
                self._helper_failed()
        job = _Job(idx, shard, result, first, names, fut)
        if fut is None and build_text_c is not None:  # the common case, built in C from the stored bytes
            job.built = build_text_c(result.body, first, names)
        return job

    def _finish_together(self, jobs: "list[_Job]") -> bool:
        idx = jobs[0].idx
        if idx.ingest_texts([(j.shard.uid, j.shard.shard_id, j.built, j.result.next_seq) for j in jobs
                             if j.built is not None], jobs[0].names):
            return any(j.result.next_seq < j.shard.end_seq for j in jobs)
        more = False  # the index keys changed since the texts were built: the Python path, shard by shard
        for job in jobs:
            job.built = None
            more |= self._finish(job)
        return more

    def _finish(self, job: "_Job") -> bool:
        idx, shard, result = job.idx, job.shard, job.result
        if job.fut is not None:
            try:
                built = job.fut.result(timeout=120)
            except Exception:  # noqa: BLE001 - a dead or stuck helper: index in this process from now on
                self._helper_failed()
                built = None
            if built is not None and idx.ingest_text(shard.uid, shard.shard_id, built, job.names, result.next_seq):
                return result.next_seq < shard.end_seq
        elif job.built is not None:
            if idx.ingest_text(shard.uid, shard.shard_id, job.built, job.names, result.next_seq):
                return result.next_seq < shard.end_seq
        groups: list[tuple[int, list[dict[str, Any]]]] = []
        for k, group in enumerate(split_groups(result.body)):
            try:
                groups.append((job.first + k, _decode(group)))
            except ValueError:
                log.warning("skipping an undecodable group at seq %d of shard uid %d", job.first + k, shard.uid)
        idx.ingest_groups(shard.uid, shard.shard_id, groups, result.next_seq)
        return result.next_seq < shard.end_seq

    def _helper_failed(self) -> None:
        if self._helper_wanted:
            log.exception("the indexer's helper process failed; indexing in the hub process")
        self._helper_wanted = False
        if self._helper is not None:
            self._helper.shutdown(wait=False, cancel_futures=True)
            self._helper = None

    def caught_up(self, project: str, logstore: str) -> bool:
        """Whether the logstore's index holds everything committed (for --check and tests)."""
        try:
            shards = self.store.shards_of(project, logstore)
        except (LogStoreNotExist, ProjectNotExist):  # gone: nothing to catch up on
            shards = []
        with self.lease(project, logstore) as idx:
            progress = idx.progress()
        return all(max(progress.get(s.uid, 0), s.begin_seq) >= s.end_seq for s in shards)
