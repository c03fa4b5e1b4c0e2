"""The hub's durable store: SQLite in WAL mode for metadata and the per-group index, append-only segment
files (``segments.py``) for the LogGroup bytes.

Why SQLite: crash safety is proven (a committed transaction survives kill -9 in WAL mode with
``synchronous=NORMAL``; ``FULL`` adds an fsync per commit for power loss), readers never block the writer, and
the metadata is one file. Why this shape:

* **One writer thread, group commit.** Every mutation is an operation queued to the writer; consecutive data
  operations (appends, checkpoints) share one transaction, metadata operations commit alone. A caller's
  future resolves only after *its* transaction committed, so an acknowledged PutLogs is on disk.
* **Data before index.** An append writes the group's bytes to its shard's segment file, then inserts the
  index row (receive time, log count, segment, offset, length); the batch commits after all of them (and,
  with ``--sync full``, after fsyncing the segments). A failed batch cuts the files back; a crash leaves at
  most unindexed bytes at a segment's tail, which recovery truncates.
* **Index row id = shard uid << 40 | sequence number.** A shard's groups are contiguous in the b-tree: a
  PullLogs is one range scan plus one pread per run of groups.
* **Metadata lives in memory** (projects, logstores, shards, groups, checkpoints are small) and is changed only
  by the writer *after* commit; readers see only committed state. Each shard keeps two counters: ``end_seq``
  (committed, what readers see) and a reserved next sequence (writer only), reset if a transaction fails.
* Receive times (ms) are kept per group and forced monotonic per shard, so a time lookup is a binary search.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import errno
import json
import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path
from dataclasses import replace
from typing import Any, Callable, Generator, TypeVar

from ...wire.errors import (
    ConsumerGroupAlreadyExist,
    ConsumerGroupNotExist,
    ConsumerGroupQuotaExceed,
    InternalServerError,
    LogStoreAlreadyExist,
    LogStoreNotExist,
    ParameterInvalid,
    ProjectAlreadyExist,
    ProjectNotExist,
    ShardNotExist,
    ShardReadOnly,
    SLSError,
    ServerBusy,
    StorageFull,
)
from .check import StorageDamaged, TxnFile, plan_recovery
from .segments import DEFAULT_MAX_OPEN, RESOURCE_ERRNOS, SegmentDamaged, SegmentFiles, stitch_lz4
from .base import (
    Checkpoint,
    GroupMeta,
    LogstoreMeta,
    ProjectMeta,
    ReadResult,
    ShardMeta,
    initial_ranges,
)

__all__ = ["SQLiteStore", "SEQ_BITS"]

log = logging.getLogger("sluice.hub.store")

_T = TypeVar("_T")
SEQ_BITS = 40
_SEQ_MASK = (1 << SEQ_BITS) - 1
_MAX_BATCH_BYTES = 64 << 20
_CHECKPOINT_EVERY = 0.5  # seconds between looks at the WAL's size
_CHECKPOINT_BYTES = 16 << 20  # WAL growth that triggers a checkpoint (SQLite's own default: 1000 pages = 32 MiB)
_EXPIRE_BATCH = 2000  # groups deleted per retention transaction (~2 ms of writer time)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects(
    name TEXT PRIMARY KEY, description TEXT NOT NULL, create_time INT NOT NULL,
    last_modify_time INT NOT NULL, extra TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS logstores(
    project TEXT NOT NULL, name TEXT NOT NULL, ttl INT NOT NULL, config TEXT NOT NULL,
    create_time INT NOT NULL, last_modify_time INT NOT NULL, PRIMARY KEY(project, name));
CREATE TABLE IF NOT EXISTS shards(
    uid INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, logstore TEXT NOT NULL,
    shard_id INT NOT NULL, status TEXT NOT NULL, begin_key TEXT NOT NULL, end_key TEXT NOT NULL,
    create_time INT NOT NULL, parents TEXT NOT NULL, begin_seq INT NOT NULL DEFAULT 0,
    bytes_stored INT NOT NULL DEFAULT 0, UNIQUE(project, logstore, shard_id));
CREATE TABLE IF NOT EXISTS groups(
    project TEXT NOT NULL, logstore TEXT NOT NULL, name TEXT NOT NULL, timeout INT NOT NULL,
    in_order INT NOT NULL, PRIMARY KEY(project, logstore, name));
CREATE TABLE IF NOT EXISTS checkpoints(
    project TEXT NOT NULL, logstore TEXT NOT NULL, grp TEXT NOT NULL, shard INT NOT NULL,
    cursor TEXT NOT NULL, seq INT NOT NULL, consumer TEXT NOT NULL, update_time INT NOT NULL,
    PRIMARY KEY(project, logstore, grp, shard));
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INT NOT NULL);
CREATE TABLE IF NOT EXISTS log(
    id INTEGER PRIMARY KEY, recv_ms INT NOT NULL, nlogs INT NOT NULL,
    seg INT NOT NULL, off INT NOT NULL, len INT NOT NULL, raw INT, txn INT);
"""


def _is_disk_full(exc: BaseException) -> bool:
    """Out of space, whichever layer noticed: SQLite ("database or disk is full") or a segment write
    (ENOSPC, or EDQUOT on a quota). Both are answered StorageFull, which clients may retry later."""
    if isinstance(exc, sqlite3.OperationalError):
        return "full" in str(exc).lower()
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _is_out_of_resources(exc: BaseException) -> bool:
    """The OS refused descriptors or memory (EMFILE, ENFILE, ENOMEM...), whichever layer noticed: answered
    ServerBusy (503, clients retry), never a 500."""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "unable to open" in text or "out of memory" in text
    return isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS


def _busy(exc: BaseException) -> ServerBusy:
    return ServerBusy(f"the hub is short of operating-system resources ({exc}); retry later")


class _Op:
    """A queued mutation. ``fn(conn)`` validates (raising SLSError before touching SQL), executes its SQL and
    returns ``(result, post)``; ``post()`` updates memory after commit."""

    __slots__ = ("fn", "future", "batchable", "size")

    def __init__(self, fn: Callable[[sqlite3.Connection], tuple[Any, Callable[[], None] | None]],
                 batchable: bool, size: int = 0) -> None:
        self.fn = fn
        self.future: Pending[Any] = Pending()
        self.batchable = batchable
        self.size = size


class Pending(concurrent.futures.Future[_T]):
    """A mutation's outcome: resolved on the writer thread after commit. Awaitable from the event loop (the
    Store protocol's async methods return it), and ``.result()`` still blocks a plain thread (tests, tools)."""

    def __await__(self) -> Generator[Any, None, _T]:
        return asyncio.wrap_future(self).__await__()


def _now_s() -> int:
    return int(time.time())


class SQLiteStore:
    """Durable shard logs and metadata. Mutations return ``concurrent.futures.Future`` resolved after commit;
    reads are synchronous (call them from a worker thread: each thread gets its own connection)."""

    def __init__(self, data_dir: str | Path, *, sync_full: bool = False, page_size: int = 32768,
                 group_quota: int = 30, max_open_segments: int = DEFAULT_MAX_OPEN) -> None:
        self.path = Path(data_dir) / "hub.db"
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.sync_full = sync_full
        self.group_quota = group_quota
        self.expire_batch = _EXPIRE_BATCH
        self.lock = threading.RLock()
        self.projects: dict[str, ProjectMeta] = {}
        self.logstores: dict[tuple[str, str], LogstoreMeta] = {}
        self._shards_by_uid: dict[int, ShardMeta] = {}
        self._next_seq: dict[int, int] = {}
        self._last_recv: dict[int, int] = {}
        self._first_recv: dict[int, int] = {}  # receive time of each shard's oldest kept group (retention)
        self._listeners: list[Callable[[set[int]], None]] = []
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self.data_dir = Path(data_dir)
        self.segments = SegmentFiles(Path(data_dir) / "segments", max_open=max_open_segments)
        self._txn_file = TxnFile(Path(data_dir) / "hub.txn")
        try:
            self._conn = self._connect(page_size)
            self._conn.executescript(_SCHEMA)
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(log)")}
            if "raw" not in columns:
                # raw (uncompressed, framed) length of a group, so a pull is bounded in raw bytes; rows from
                # before compression leave it NULL (their stored length is their raw length)
                self._conn.execute("ALTER TABLE log ADD COLUMN raw INT")
            if "txn" not in columns:  # the transaction that wrote the row (recovery, check.py)
                self._conn.execute("ALTER TABLE log ADD COLUMN txn INT")
            self._load()
        except sqlite3.DatabaseError as exc:  # a damaged hub.db: say which file, never a bare traceback
            raise StorageDamaged([f"{self.path}: cannot be read: {exc}"], data_dir) from None
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._writer_routine, name="sluice-store-writer", daemon=True)
        self._writer.start()
        # WAL checkpoints off the writer: SQLite's automatic checkpoint runs inside the commit that crosses
        # 1000 pages and held that commit (and every PutLogs waiting on it) for 40-100 ms on this machine.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._stop_checkpoints = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_routine, name="sluice-store-checkpoint",
                                              daemon=True)
        self._checkpointer.start()

    # ------------------------------------------------------------------ connections and loading
    def _connect(self, page_size: int | None = None) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
        if page_size:
            conn.execute(f"PRAGMA page_size={int(page_size)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.sync_full else 'NORMAL'}")
        conn.execute("PRAGMA cache_size=-65536")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self.lock:
                self._readers.append(conn)
        return conn

    def _load(self) -> None:
        c = self._conn
        self.projects.clear()
        self.logstores.clear()
        self._shards_by_uid.clear()
        for name, desc, ct, lm, extra in c.execute("SELECT * FROM projects"):
            e = json.loads(extra)
            self.projects[name] = ProjectMeta(name, desc, ct, lm, e.get("resourceGroupId", ""),
                                              e.get("dataRedundancyType", ""))
        for project, name, ttl, config, ct, lm in c.execute("SELECT * FROM logstores"):
            self.logstores[(project, name)] = LogstoreMeta(project, name, ttl, json.loads(config), ct, lm)
        for row in c.execute("SELECT uid, project, logstore, shard_id, status, begin_key, end_key, create_time,"
                             " parents, begin_seq, bytes_stored FROM shards"):
            uid, project, ls, sid, status, bk, ek, ct, parents, begin_seq, nbytes = row
            shard = ShardMeta(uid, sid, status, int(bk, 16), int(ek, 16), ct, tuple(json.loads(parents)),
                              begin_seq, begin_seq, 0, nbytes)
            lo = uid << SEQ_BITS
            last = c.execute("SELECT id, recv_ms FROM log WHERE id >= ? AND id < ? ORDER BY id DESC LIMIT 1",
                             (lo, lo + _SEQ_MASK + 1)).fetchone()
            if last is not None:
                shard.end_seq = max(begin_seq, (last[0] & _SEQ_MASK) + 1)
                shard.last_write_ms = last[1]
            first = c.execute("SELECT id, recv_ms FROM log WHERE id >= ? AND id < ? ORDER BY id LIMIT 1",
                              (lo, lo + _SEQ_MASK + 1)).fetchone()
            if first is not None:
                self._first_recv[uid] = first[1]
                shard.begin_seq = max(begin_seq, first[0] & _SEQ_MASK)
            self.logstores[(project, ls)].shards[sid] = shard
            self._shards_by_uid[uid] = shard
            self._next_seq[uid] = shard.end_seq
            self._last_recv[uid] = shard.last_write_ms
        self._recover(c)
        for project, ls, name, timeout, in_order in c.execute("SELECT * FROM groups"):
            self.logstores[(project, ls)].groups[name] = GroupMeta(name, timeout, bool(in_order))
        for project, ls, grp, shard, cursor, seq, consumer, ut in c.execute("SELECT * FROM checkpoints"):
            g = self.logstores[(project, ls)].groups.get(grp)
            if g is not None:
                g.checkpoints[shard] = Checkpoint(cursor, seq, consumer, ut)

    def _recover(self, c: sqlite3.Connection) -> None:
        """Compare files with the index (``check.plan_recovery``): apply what is provably safe, log it; stop
        with ``StorageDamaged`` on anything else, before changing a single file."""
        plan = plan_recovery(c, self.data_dir, {uid: s.begin_seq for uid, s in self._shards_by_uid.items()})
        if plan.problems:
            raise StorageDamaged(plan.problems, self.data_dir)
        for note in plan.notes:
            log.warning("recovery: %s", note)
        for sp in plan.shards:
            self.segments.adopt(sp)
        for uid in plan.remove_dirs:
            self.segments.remove_dir(uid)
        self._txn = max(plan.txn_db, plan.txn_file or 0)
        if plan.legacy:  # first start of a directory from before transaction numbers: mark it as known now
            c.execute("INSERT OR REPLACE INTO meta VALUES ('txn', ?)", (self._txn,))
        self._txn_file.write(self._txn)  # exists from the first start on: its absence later is a problem

    def add_listener(self, fn: Callable[[set[int]], None]) -> None:
        """``fn(shard_uids)`` is called on the writer thread after each commit that appended data."""
        self._listeners.append(fn)

    def _checkpoint_routine(self) -> None:
        """Copy the WAL into the database (PASSIVE: never blocks the writer or readers) whenever it has grown by
        ``_CHECKPOINT_BYTES``; the writer's next transaction then starts the WAL over. Its own connection."""
        wal = Path(f"{self.path}-wal")
        conn: sqlite3.Connection | None = None
        done_at = 0
        while not self._stop_checkpoints.wait(_CHECKPOINT_EVERY):
            try:
                size = wal.stat().st_size
                if size < done_at:
                    done_at = 0  # the WAL started over
                if size - done_at < _CHECKPOINT_BYTES:
                    continue
                if conn is None:
                    conn = self._connect()
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                done_at = size
            except (OSError, sqlite3.Error) as exc:  # tried again later; the WAL only grows meanwhile
                log.warning("WAL checkpoint failed (retried in 10 s): %s", exc)
                self._stop_checkpoints.wait(10)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self._stop_checkpoints.set()
        self._checkpointer.join(timeout=30)
        self._queue.put(None)
        self._writer.join(timeout=30)
        with self.lock:
            for r in self._readers:
                try:
                    r.close()
                except sqlite3.Error:
                    pass
        self._conn.close()
        self.segments.close()
        self._txn_file.close()

    # ------------------------------------------------------------------ the writer
    def _submit(self, fn: Callable[[sqlite3.Connection], tuple[Any, Callable[[], None] | None]],
                batchable: bool = False, size: int = 0) -> concurrent.futures.Future[Any]:
        op = _Op(fn, batchable, size)
        self._queue.put(op)
        return op.future

    def _writer_routine(self) -> None:
        """Drain the queue forever: consecutive batchable ops share one transaction (group commit)."""
        carry: _Op | None = None
        while True:
            op = carry if carry is not None else self._queue.get()
            carry = None
            if op is None:
                return
            batch = [op]
            if op.batchable:
                size = op.size
                while size < _MAX_BATCH_BYTES:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None or not nxt.batchable:
                        carry = nxt
                        break
                    batch.append(nxt)
                    size += nxt.size
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Op]) -> None:
        conn = self._conn
        outcomes: list[tuple[_Op, Any, Callable[[], None] | None, BaseException | None]] = []
        mark = self.segments.mark()
        self._txn += 1  # a new number per attempt: records of a failed batch never share a committed one
        txn = self.segments.txn = self._txn
        try:
            conn.execute("BEGIN IMMEDIATE")
            with self.lock:
                for op in batch:
                    try:
                        result, post = op.fn(conn)
                        outcomes.append((op, result, post, None))
                    except SLSError as exc:  # validation failed before any SQL: only this op fails
                        outcomes.append((op, None, None, exc))
            added: dict[int, int] = {}
            for _, result, _, _ in outcomes:
                if isinstance(result, _Appended):
                    added[result.uid] = added.get(result.uid, 0) + result.size
            for uid, nbytes in added.items():
                conn.execute("UPDATE shards SET bytes_stored = bytes_stored + ? WHERE uid=?", (nbytes, uid))
            if self.sync_full and added:
                self.segments.sync(set(added))  # data on disk before the index that points at it
            # The transaction's number must be in the index for recovery (check.py): appends carry it in their
            # rows (no extra page written); other operations alone in their transaction (metadata, retention)
            # write it to meta. Batches of checkpoints only record nothing: they write no segment bytes.
            recorded = bool(added) or not batch[0].batchable
            if not batch[0].batchable:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('txn', ?)", (txn,))
            conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - any SQL failure fails the whole batch, nothing is acknowledged
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            try:
                self.segments.rollback(mark)
            except OSError:
                log.exception("could not cut back segment files; recovery at next start will")
            with self.lock:  # only shards the batch appended to reserved sequence numbers (the journal)
                for uid in mark:
                    shard = self._shards_by_uid.get(uid)
                    if shard is not None:
                        self._next_seq[uid] = shard.end_seq
                        self._last_recv[uid] = shard.last_write_ms
            full = _is_disk_full(exc)
            busy = _is_out_of_resources(exc)
            log.error("store transaction failed (%d operations not acknowledged): %s", len(batch), exc)
            for op in batch:
                err: SLSError = (StorageFull("the hub's disk is full; nothing was written") if full
                                 else _busy(exc) if busy
                                 else InternalServerError(f"the hub could not commit: {exc}"))
                op.future.set_exception(err)
            return
        try:
            if recorded:
                self._txn_file.write(txn)
        except OSError:  # only weakens the check at the next start; the commit itself stands
            log.exception("could not record transaction %d in hub.txn", txn)
        touched: set[int] = set()
        with self.lock:
            for op, result, post, error in outcomes:
                if post is not None:
                    post()
                if isinstance(result, _Appended):
                    touched.add(result.uid)
        for op, result, post, error in outcomes:
            if error is not None:
                op.future.set_exception(error)
            else:
                op.future.set_result(result.public() if isinstance(result, _Appended) else result)
        if touched:
            for fn in self._listeners:
                try:
                    fn(touched)
                except Exception:  # noqa: BLE001 - a listener must never break the writer
                    log.exception("store listener failed")

    # ------------------------------------------------------------------ lookups (memory, committed state)
    def get_project(self, project: str) -> ProjectMeta:
        p = self.projects.get(project)
        if p is None:
            raise ProjectNotExist(f"Project {project} does not exist")
        return p

    def get_logstore(self, project: str, logstore: str) -> LogstoreMeta:
        self.get_project(project)
        ls = self.logstores.get((project, logstore))
        if ls is None:
            raise LogStoreNotExist(f"logstore {logstore} does not exist")
        return ls

    def get_shard(self, project: str, logstore: str, shard_id: int) -> ShardMeta:
        ls = self.get_logstore(project, logstore)
        shard = ls.shards.get(shard_id)
        if shard is None:
            raise ShardNotExist(f"shard {shard_id} of logstore {logstore} does not exist")
        return shard

    def get_group(self, project: str, logstore: str, group: str) -> GroupMeta:
        g = self.get_logstore(project, logstore).groups.get(group)
        if g is None:
            raise ConsumerGroupNotExist(f"consumer group {group} does not exist")
        return g

    # ------------------------------------------------------------------ snapshots (the Store protocol, base.py)
    def project_names(self) -> list[str]:
        with self.lock:
            return sorted(self.projects)

    def logstore_names(self, project: str) -> list[str]:
        with self.lock:
            return sorted(n for (p, n) in self.logstores if p == project)

    def shards_of(self, project: str, logstore: str) -> list[ShardMeta]:
        meta = self.get_logstore(project, logstore)
        with self.lock:
            return sorted(meta.shards.values(), key=lambda s: s.shard_id)

    def groups_of(self, project: str, logstore: str) -> list[GroupMeta]:
        meta = self.get_logstore(project, logstore)
        with self.lock:
            return sorted(meta.groups.values(), key=lambda g: g.name)

    def group_snapshot(self, project: str, logstore: str,
                       group: str) -> tuple[GroupMeta, dict[int, ShardMeta], dict[int, Checkpoint]]:
        g = self.get_group(project, logstore, group)
        meta = self.get_logstore(project, logstore)
        with self.lock:
            return g, dict(meta.shards), dict(g.checkpoints)

    def shard_counters(self) -> dict[int, tuple[int, int]]:
        with self.lock:
            return {s.uid: (s.bytes_stored, s.end_seq) for s in self._shards_by_uid.values()}

    def group_keys(self) -> list[tuple[str, str, str]]:
        with self.lock:
            return [(p, ls, g) for (p, ls), meta in self.logstores.items() for g in meta.groups]

    def logstore_keys(self) -> list[tuple[str, str]]:
        with self.lock:
            return sorted(self.logstores)

    def shard_rows(self) -> list[tuple[str, str, int, str, int, int, int]]:
        with self.lock:  # one pass of plain tuples (/metrics at 10,000 shards: a few ms)
            return [(p, ls, s.shard_id, s.status, s.bytes_stored, s.begin_seq, s.end_seq)
                    for (p, ls), meta in self.logstores.items() for s in meta.shards.values()]

    def configured(self, key: str) -> list[tuple[str, str, Any, list[ShardMeta]]]:
        """Only the logstores whose config holds ``key``: one dict lookup per logstore under the lock, and copies
        of just those (``snapshot()`` copies every logstore's shards, groups and checkpoints)."""
        with self.lock:
            hits = [(p, n, copy.deepcopy(m.config[key]), sorted(m.shards.values(), key=lambda s: s.shard_id))
                    for (p, n), m in self.logstores.items() if key in m.config]
        return sorted(hits, key=lambda h: (h[0], h[1]))

    def snapshot(self, project: str | None = None) -> list[LogstoreMeta]:
        with self.lock:
            return [replace(m, config=dict(m.config), shards=dict(m.shards),
                            groups={n: replace(g, checkpoints=dict(g.checkpoints)) for n, g in m.groups.items()})
                    for (p, _), m in sorted(self.logstores.items()) if project in (None, p)]

    # ------------------------------------------------------------------ projects
    def create_project(self, name: str, description: str, extra: dict[str, str]) -> concurrent.futures.Future[Any]:
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None]]:
            if name in self.projects:
                raise ProjectAlreadyExist(f"Project {name} already exists")
            now = _now_s()
            conn.execute("INSERT INTO projects VALUES (?,?,?,?,?)", (name, description, now, now, json.dumps(extra)))
            meta = ProjectMeta(name, description, now, now, extra.get("resourceGroupId", ""),
                               extra.get("dataRedundancyType", ""))
            return None, lambda: self.projects.__setitem__(name, meta)
        return self._submit(fn)

    def update_project(self, name: str, description: str) -> concurrent.futures.Future[Any]:
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None]]:
            meta = self.get_project(name)
            now = _now_s()
            conn.execute("UPDATE projects SET description=?, last_modify_time=? WHERE name=?", (description, now, name))

            def post() -> None:
                meta.description, meta.last_modify_time = description, now
            return None, post
        return self._submit(fn)

    def delete_project(self, name: str) -> concurrent.futures.Future[Any]:
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None]]:
            self.get_project(name)
            stores = [ls for (p, _), ls in self.logstores.items() if p == name]
            for ls in stores:
                self._delete_logstore_sql(conn, ls)
            conn.execute("DELETE FROM projects WHERE name=?", (name,))

            def post() -> None:
                for ls in stores:
                    self._forget_logstore(ls)
                self.projects.pop(name, None)
            return None, post
        return self._submit(fn)

    # ------------------------------------------------------------------ logstores
    def create_logstore(self, project: str, name: str, ttl: int, shard_count: int,
                        config: dict[str, Any]) -> concurrent.futures.Future[Any]:
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None]]:
            self.get_project(project)
            if (project, name) in self.logstores:
                raise LogStoreAlreadyExist(f"logstore {name} already exists")
            now = _now_s()
            conn.execute("INSERT INTO logstores VALUES (?,?,?,?,?,?)",
                         (project, name, ttl, json.dumps(config), now, now))
            meta = LogstoreMeta(project, name, ttl, dict(config), now, now)
            for i, (lo, hi) in enumerate(initial_ranges(shard_count)):
                meta.shards[i] = self._insert_shard(conn, project, name, i, lo, hi, now, ())

            def post() -> None:
                self.logstores[(project, name)] = meta
                for s in meta.shards.values():
                    self._register_shard(s)
            return None, post
        return self._submit(fn)

    def update_logstore(self, project: str, name: str, ttl: int, config: dict[str, Any]) -> concurrent.futures.Future[Any]:
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None]]:
            meta = self.get_logstore(project, name)
            now = _now_s()
            conn.execute("UPDATE logstores SET ttl=?, config=?, last_modify_time=? WHERE project=? AND name=?",
                         (ttl, json.dumps(config), now, project, name))

            def post() -> None:
                meta.ttl, meta.config, meta.last_modify_time = ttl, dict(config), now
            return None, post
        return self._submit(fn)

    def delete_logstore(self, project: str, name: str) -> concurrent.futures.Future[Any]:
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None]]:
            meta = self.get_logstore(project, name)
            self._delete_logstore_sql(conn, meta)
            return None, lambda: self._forget_logstore(meta)
        return self._submit(fn)

    def _delete_logstore_sql(self, conn: sqlite3.Connection, meta: LogstoreMeta) -> None:
        key = (meta.project, meta.name)
        for s in meta.shards.values():
            conn.execute("DELETE FROM log WHERE id >= ? AND id < ?", (s.uid << SEQ_BITS, (s.uid + 1) << SEQ_BITS))
        for table in ("shards", "groups", "checkpoints"):
            conn.execute(f"DELETE FROM {table} WHERE project=? AND logstore=?", key)
        conn.execute("DELETE FROM logstores WHERE project=? AND name=?", key)

    def _forget_logstore(self, meta: LogstoreMeta) -> None:
        self.logstores.pop((meta.project, meta.name), None)
        for s in meta.shards.values():
            self.segments.drop_shard(s.uid)
            self._shards_by_uid.pop(s.uid, None)
            self._next_seq.pop(s.uid, None)
            self._last_recv.pop(s.uid, None)
            self._first_recv.pop(s.uid, None)

    def _insert_shard(self, conn: sqlite3.Connection, project: str, logstore: str, shard_id: int, lo: int, hi: int,
                      now: int, parents: tuple[int, ...]) -> ShardMeta:
        cur = conn.execute(
            "INSERT INTO shards(project, logstore, shard_id, status, begin_key, end_key, create_time, parents)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (project, logstore, shard_id, "readwrite", f"{lo:x}", f"{hi:x}", now, json.dumps(parents)))
        assert cur.lastrowid is not None
        return ShardMeta(cur.lastrowid, shard_id, "readwrite", lo, hi, now, parents)

    def _register_shard(self, s: ShardMeta) -> None:
        self._shards_by_uid[s.uid] = s
        self._next_seq[s.uid] = s.end_seq
        self._last_recv[s.uid] = s.last_write_ms

    # ------------------------------------------------------------------ split / merge
    def split_shard(self, project: str, logstore: str, shard_id: int, key: int) -> concurrent.futures.Future[Any]:
        """Parent becomes readonly; children [begin, key) and [key, end) get ids max+1 and max+2."""
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None]]:
            meta = self.get_logstore(project, logstore)
            parent = self.get_shard(project, logstore, shard_id)
            if not parent.is_writable:
                raise ShardReadOnly(f"shard {shard_id} is readonly and cannot be split")
            if not parent.begin_key < key < parent.end_key:
                raise ParameterInvalid(f"split key {key:032x} is not inside the range of shard {shard_id}")
            now = _now_s()
            base = max(meta.shards) + 1
            left = self._insert_shard(conn, project, logstore, base, parent.begin_key, key, now, (shard_id,))
            right = self._insert_shard(conn, project, logstore, base + 1, key, parent.end_key, now, (shard_id,))
            conn.execute("UPDATE shards SET status='readonly' WHERE uid=?", (parent.uid,))

            def post() -> None:
                parent.status = "readonly"
                for s in (left, right):
                    meta.shards[s.shard_id] = s
                    self._register_shard(s)
            return [parent, left, right], post
        return self._submit(fn)

    def merge_shard(self, project: str, logstore: str, shard_id: int) -> concurrent.futures.Future[Any]:
        """Merge a shard with its right neighbour into a new shard (id max+1); both parents become readonly."""
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None]]:
            meta = self.get_logstore(project, logstore)
            left = self.get_shard(project, logstore, shard_id)
            if not left.is_writable:
                raise ShardReadOnly(f"shard {shard_id} is readonly and cannot be merged")
            right = next((s for s in meta.shards.values() if s.is_writable and s.begin_key == left.end_key), None)
            if right is None:
                raise ParameterInvalid(f"shard {shard_id} has no adjacent readwrite shard to merge with")
            now = _now_s()
            merged = self._insert_shard(conn, project, logstore, max(meta.shards) + 1, left.begin_key,
                                        right.end_key, now, (left.shard_id, right.shard_id))
            conn.execute("UPDATE shards SET status='readonly' WHERE uid IN (?,?)", (left.uid, right.uid))

            def post() -> None:
                left.status = right.status = "readonly"
                meta.shards[merged.shard_id] = merged
                self._register_shard(merged)
            return [merged, left, right], post
        return self._submit(fn)

    def delete_shard(self, project: str, logstore: str, shard_id: int) -> concurrent.futures.Future[Any]:
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None]]:
            meta = self.get_logstore(project, logstore)
            shard = self.get_shard(project, logstore, shard_id)
            if shard.is_writable:
                raise ParameterInvalid(f"shard {shard_id} is readwrite; only readonly shards can be deleted")
            conn.execute("DELETE FROM log WHERE id >= ? AND id < ?",
                         (shard.uid << SEQ_BITS, (shard.uid + 1) << SEQ_BITS))
            conn.execute("DELETE FROM shards WHERE uid=?", (shard.uid,))

            def post() -> None:
                meta.shards.pop(shard_id, None)
                self._shards_by_uid.pop(shard.uid, None)
                self.segments.drop_shard(shard.uid)
            return None, post
        return self._submit(fn)

    # ------------------------------------------------------------------ data
    def append(self, picked: ShardMeta, data: bytes, nlogs: int,
               repick: Callable[[], ShardMeta] | None = None,
               packed: tuple[str, bytes] | None = None) -> concurrent.futures.Future[tuple[int, int]]:
        """Append one serialized LogGroup; resolves to (shard_id, seq) once committed.

        The shard was chosen on the event loop; a split or merge may commit before this runs. ``repick``
        (for load-balanced and hash-routed puts, which never named a shard) chooses again here, on the
        writer thread, where no split can interleave, so such a put lands in the right child instead of
        being refused. ``packed`` is the client's compressed body of exactly ``data`` (compress type, bytes):
        stored as it came, so ingest does no compression work (segments.py)."""
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None] | None]:
            shard = picked
            if repick is not None and (not shard.is_writable or shard.uid not in self._shards_by_uid):
                shard = repick()
            if shard.uid not in self._shards_by_uid:
                raise ShardNotExist(f"shard {shard.shard_id} no longer exists")
            if not shard.is_writable:
                raise ShardReadOnly(f"shard {shard.shard_id} is readonly; write to its children")
            seq = self._next_seq[shard.uid]
            self._next_seq[shard.uid] = seq + 1
            now_ms = max(int(time.time() * 1000), self._last_recv[shard.uid])
            self._last_recv[shard.uid] = now_ms
            base, offset, framed = self.segments.append(shard.uid, seq, data, packed)
            size = len(data)
            conn.execute("INSERT INTO log VALUES (?,?,?,?,?,?,?,?)",
                         ((shard.uid << SEQ_BITS) | seq, now_ms, nlogs, base, offset, framed,
                          size + 1 + max(1, (size.bit_length() + 6) // 7), self._txn))

            def post() -> None:
                self._first_recv.setdefault(shard.uid, now_ms)
                shard.end_seq = max(shard.end_seq, seq + 1)
                shard.last_write_ms = now_ms
                shard.bytes_stored += size
            return _Appended(shard, seq, size), post
        return self._submit(fn, batchable=True, size=len(data))

    def read(self, shard: ShardMeta, start: int, count: int, max_bytes: int, end: int | None = None,
             encoding: str = "") -> ReadResult:
        """Up to ``count`` groups from ``start`` (clamped to the oldest kept), at least one, stopping once
        ``max_bytes`` is reached, never past ``end`` or the committed end. The body is the serialized
        LogGroupList, exactly as PullLogs sends it before compression; with ``encoding="lz4"`` it may come
        as one lz4 block made from the stored records (``segments.stitch_lz4``; ``ReadResult.encoding``).
        The OS refusing descriptors or memory is ServerBusy; damaged data is an error naming the file, never
        garbage or zeros served."""
        try:
            return self._read(shard, start, count, max_bytes, end, encoding)
        except SLSError:
            raise
        except Exception as exc:  # noqa: BLE001 - classify; anything else stays an internal error
            if _is_out_of_resources(exc):
                raise _busy(exc) from None
            raise

    def _read(self, shard: ShardMeta, start: int, count: int, max_bytes: int, end: int | None,
              encoding: str = "") -> ReadResult:
        stop = shard.end_seq if end is None else min(end, shard.end_seq)
        start = max(start, shard.begin_seq)
        if count <= 0 or start >= stop:
            return ReadResult(b"", 0, start)
        base = shard.uid << SEQ_BITS
        rows: list[tuple[int, int, int, int]] = []
        total = 0
        cur = self._reader().execute("SELECT id, seg, off, len, raw FROM log WHERE id >= ? AND id < ? ORDER BY id "
                                     "LIMIT ?", (base | start, base | stop, count))
        for rid, seg, off, length, raw in cur:
            rows.append((rid, seg, off, length))
            total += length if raw is None else raw
            if total >= max_bytes:
                break
        cur.close()
        if encoding == "lz4" and rows:
            stitched = self._read_lz4(shard, rows)
            if stitched is not None:
                return stitched
        chunks: list[bytes] = []
        done = 0
        i = 0
        try:
            while i < len(rows):  # one pread per run of consecutive records in one segment
                j = i
                while (j + 1 < len(rows) and rows[j + 1][1] == rows[i][1]
                       and rows[j + 1][2] == rows[j][2] + rows[j][3]):
                    j += 1
                first_off = rows[i][2]
                try:
                    try:
                        chunks.extend(self.segments.read(shard.uid, rows[i][1], first_off,
                                                         rows[j][2] + rows[j][3] - first_off))
                    except SegmentDamaged:
                        if j == i:
                            raise
                        for k in range(i, j + 1):  # damage inside the run: serve the groups before it
                            chunks.extend(self.segments.read(shard.uid, rows[k][1], rows[k][2], rows[k][3]))
                            done = k + 1
                            i = k + 1
                except (FileNotFoundError, SegmentDamaged) as exc:
                    if (rows[i][0] & _SEQ_MASK) < shard.begin_seq:
                        raise FileNotFoundError from None  # retention removed it under us
                    if done:
                        break  # serve the good groups before it; the next pull reports the damage
                    log.error("shard uid %d, group %d: %s", shard.uid, rows[i][0] & _SEQ_MASK, exc)
                    raise InternalServerError(
                        f"the stored data of shard {shard.shard_id} at group {rows[i][0] & _SEQ_MASK} is damaged "
                        f"({exc}); run `sluice hub --check`") from None
                done = j + 1
                i = j + 1
        except FileNotFoundError:  # retention removed the segment under us: return what we have
            pass
        if done == 0:
            return ReadResult(b"", 0, max(start, shard.begin_seq))
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return ReadResult(body, done, (rows[done - 1][0] & _SEQ_MASK) + 1)

    def _read_lz4(self, shard: ShardMeta, rows: list[tuple[int, int, int, int]]) -> ReadResult | None:
        """The rows' groups as one lz4 block, from the stored records (one pread per run of consecutive
        records, ``segments.stitch_lz4``); None when that cannot be done (first-format segments, a zstd
        record, damage, a segment gone): ``_read`` then reads the usual way and reports what it finds."""
        runs: list[bytes] = []
        i = 0
        try:
            while i < len(rows):
                j = i
                while (j + 1 < len(rows) and rows[j + 1][1] == rows[i][1]
                       and rows[j + 1][2] == rows[j][2] + rows[j][3]):
                    j += 1
                buf = self.segments.read_stored(shard.uid, rows[i][1], rows[i][2],
                                                rows[j][2] + rows[j][3] - rows[i][2])
                if buf is None:
                    return None
                runs.append(buf)
                i = j + 1
        except FileNotFoundError:
            return None
        made = stitch_lz4(runs)
        if made is None or made[2] != len(rows):
            return None
        block, raw_size, count = made
        return ReadResult(block, count, (rows[-1][0] & _SEQ_MASK) + 1, "lz4", raw_size)

    def recv_time_ms(self, shard: ShardMeta, seq: int) -> int | None:
        try:
            row = self._reader().execute("SELECT recv_ms FROM log WHERE id=?",
                                         ((shard.uid << SEQ_BITS) | seq,)).fetchone()
        except (sqlite3.Error, OSError, MemoryError) as exc:  # a reader connection refused descriptors or memory
            if _is_out_of_resources(exc):
                raise _busy(exc) from None
            raise
        return None if row is None else int(row[0])

    def seq_at_time(self, shard: ShardMeta, t_ms: int) -> int:
        """The first retained group received at or after ``t_ms`` (the end if none): binary search, as receive
        times are monotonic per shard."""
        lo, hi = shard.begin_seq, shard.end_seq
        while lo < hi:
            mid = (lo + hi) // 2
            recv = self.recv_time_ms(shard, mid)
            if recv is None:  # expired underneath us
                lo = mid + 1
            elif recv >= t_ms:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def expire(self, shard: ShardMeta, cutoff_ms: int) -> concurrent.futures.Future[Any]:
        """Delete groups received before ``cutoff_ms``; the shard's begin moves to the oldest kept. Resolves
        to the number deleted. Never blocks: safe to call on the event loop.

        Cost follows what is deleted: a shard with nothing to expire costs a dict lookup (its oldest
        group's receive time is kept in memory), and deleting runs in writer transactions of at most
        ``expire_batch`` groups (found by a binary search inside that window), each queued behind whatever
        arrived meanwhile, so PutLogs and checkpoints never wait for a whole pass. Segments whose groups
        are all gone are deleted, the current one too once the shard is empty."""
        total: concurrent.futures.Future[Any] = concurrent.futures.Future()
        first = self._first_recv.get(shard.uid)
        if shard.begin_seq >= shard.end_seq or first is None or first >= cutoff_ms:
            total.set_result(0)
            return total
        deleted = [0]
        uid = shard.uid
        base = uid << SEQ_BITS

        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None] | None]:
            lo = shard.begin_seq
            if uid not in self._shards_by_uid:
                return 0, None
            window = min(shard.end_seq, lo + self.expire_batch)
            a, b = lo, window  # first seq in [lo, window) received at or after the cutoff (monotonic times)
            while a < b:
                mid = (a + b) // 2
                row = conn.execute("SELECT recv_ms FROM log WHERE id=?", (base | mid,)).fetchone()
                if row is not None and row[0] >= cutoff_ms:
                    b = mid
                else:
                    a = mid + 1
            hi = a
            if hi <= lo:
                return 0, None
            conn.execute("DELETE FROM log WHERE id >= ? AND id < ?", (base | lo, base | hi))
            conn.execute("UPDATE shards SET begin_seq=? WHERE uid=?", (hi, uid))
            row = conn.execute("SELECT recv_ms FROM log WHERE id=?", (base | hi,)).fetchone()

            def post() -> None:
                shard.begin_seq = max(shard.begin_seq, hi)
                if row is None:
                    self._first_recv.pop(uid, None)
                else:
                    self._first_recv[uid] = row[0]
                self.segments.drop_before(uid, hi, everything=hi >= self._next_seq.get(uid, 0))
            return hi - lo, post

        def step(fut: concurrent.futures.Future[Any]) -> None:  # runs on the writer thread
            exc = fut.exception()
            if exc is not None:
                total.set_exception(exc)
                return
            n = fut.result() or 0
            deleted[0] += n
            first = self._first_recv.get(uid)
            if n and first is not None and first < cutoff_ms and shard.begin_seq < shard.end_seq:
                self._submit(fn).add_done_callback(step)
            else:
                total.set_result(deleted[0])

        self._submit(fn).add_done_callback(step)
        return total

    # ------------------------------------------------------------------ consumer groups
    def create_group(self, project: str, logstore: str, name: str, timeout: int,
                     in_order: bool) -> concurrent.futures.Future[Any]:
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None]]:
            meta = self.get_logstore(project, logstore)
            if name in meta.groups:
                raise ConsumerGroupAlreadyExist(f"consumer group {name} already exists")
            if len(meta.groups) >= self.group_quota:
                raise ConsumerGroupQuotaExceed(
                    f"logstore {logstore} already has {len(meta.groups)} consumer groups (quota {self.group_quota})")
            conn.execute("INSERT INTO groups VALUES (?,?,?,?,?)", (project, logstore, name, timeout, int(in_order)))
            return None, lambda: meta.groups.__setitem__(name, GroupMeta(name, timeout, in_order))
        return self._submit(fn)

    def update_group(self, project: str, logstore: str, name: str, timeout: int | None,
                     in_order: bool | None) -> concurrent.futures.Future[Any]:
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None]]:
            g = self.get_group(project, logstore, name)
            new_timeout = g.timeout if timeout is None else timeout
            new_order = g.in_order if in_order is None else in_order
            conn.execute("UPDATE groups SET timeout=?, in_order=? WHERE project=? AND logstore=? AND name=?",
                         (new_timeout, int(new_order), project, logstore, name))

            def post() -> None:
                g.timeout, g.in_order = new_timeout, new_order
            return None, post
        return self._submit(fn)

    def delete_group(self, project: str, logstore: str, name: str) -> concurrent.futures.Future[Any]:
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None]]:
            meta = self.get_logstore(project, logstore)
            self.get_group(project, logstore, name)
            conn.execute("DELETE FROM groups WHERE project=? AND logstore=? AND name=?", (project, logstore, name))
            conn.execute("DELETE FROM checkpoints WHERE project=? AND logstore=? AND grp=?", (project, logstore, name))
            return None, lambda: meta.groups.pop(name, None)
        return self._submit(fn)

    def save_checkpoint(self, project: str, logstore: str, group: str, shard_id: int, cursor: str, seq: int,
                        consumer: str) -> concurrent.futures.Future[Any]:
        def fn(conn: sqlite3.Connection) -> tuple[Any, Callable[[], None]]:
            g = self.get_group(project, logstore, group)
            self.get_shard(project, logstore, shard_id)
            now_us = int(time.time() * 1_000_000)
            conn.execute("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?,?,?,?,?,?)",
                         (project, logstore, group, shard_id, cursor, seq, consumer, now_us))
            cp = Checkpoint(cursor, seq, consumer, now_us)
            return None, lambda: g.checkpoints.__setitem__(shard_id, cp)
        return self._submit(fn, batchable=True, size=64)


class _Appended:
    __slots__ = ("uid", "shard", "seq", "size")

    def __init__(self, shard: ShardMeta, seq: int, size: int) -> None:
        self.uid = shard.uid
        self.shard = shard
        self.seq = seq
        self.size = size

    def public(self) -> tuple[int, int]:
        return self.shard.shard_id, self.seq
