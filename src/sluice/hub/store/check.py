"""Does the index agree with the data files? Used at every start (recovery) and by ``sluice hub --check``.

Recovery may change only what it can *prove* harmless: bytes of a transaction that never committed, files
whose groups all expired. Anything else (an index older than the data, a truncated or missing segment,
committed records the index does not list) stops the hub with ``StorageDamaged``, naming the files and
what to do, and changes nothing: erasing data to make the index "consistent" is what must never happen.

How an index older than the data is noticed: every transaction stores its number in hub.db (table
``meta``), and after it commits the number is also written to ``hub.txn``. If hub.db-wal is lost or
damaged after a crash, SQLite silently opens an older state; its transaction number is then behind
``hub.txn``'s.

``sluice hub --check`` runs the same plan read-only, plus a deep pass that reads every indexed record
(checksum, decompression). Other parts of the store add their own checks to ``CHECKS`` (a function from
``CheckContext`` to problem strings), e.g. a query index verifying itself against the log index.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .segments import (V1_SUFFIX, V2_SUFFIX, SegmentDamaged, ShardPlan, _segment_files, plan_shard,
                       read_run)

__all__ = ["StorageDamaged", "RecoveryPlan", "CheckContext", "CHECKS", "plan_recovery", "check_data_dir",
           "repair_data_dir", "TxnFile", "SEQ_BITS"]

SEQ_BITS = 40
_SEQ_MASK = (1 << SEQ_BITS) - 1
_TXN = struct.Struct("<8sQ")
_TXN_MAGIC = b"sluicetx"
_HOW_TO = ("Nothing was changed. If hub.db, hub.db-wal and hub.db-shm were copied or restored separately, put "
           "back the set that belongs together and start again. `sluice hub --check --data-dir DIR` lists every "
           "problem without changing anything; `sluice hub --repair --data-dir DIR` (hub stopped) keeps the index "
           "as it is and moves every byte it does not account for into DIR/set-aside/, deleting nothing, so the "
           "hub starts with what the index holds.")


class StorageDamaged(Exception):
    """The data directory is damaged in a way recovery cannot prove harmless; the hub does not start."""

    def __init__(self, problems: list[str], data_dir: Path | str) -> None:
        shown = problems[:20]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"the data directory {data_dir} is damaged:\n  " + "\n  ".join(shown) + more
                         + "\n" + _HOW_TO)
        self.problems = problems


class TxnFile:
    """``hub.txn``: the number of the last committed transaction, rewritten in place after each commit (one
    pwrite; kill -9 keeps it in the page cache like the commit itself)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def read(self) -> int | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if len(data) < _TXN.size:
            return None
        magic, txn = _TXN.unpack_from(data)
        return txn if magic == _TXN_MAGIC else None

    def write(self, txn: int) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.pwrite(self._fd, _TXN.pack(_TXN_MAGIC, txn), 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class RecoveryPlan:
    txn_db: int
    txn_file: int | None
    legacy: bool
    shards: list[ShardPlan] = field(default_factory=list)
    remove_dirs: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def db_txn(conn: sqlite3.Connection, uids: Iterable[int] = ()) -> int | None:
    """The last committed transaction the index records: in meta (operations other than appends) or in the
    newest index row of a shard (appends carry it in their rows, which costs no extra page per commit)."""
    found: list[int] = []
    try:
        row = conn.execute("SELECT v FROM meta WHERE k='txn'").fetchone()
        if row is not None:
            found.append(int(row[0]))
    except sqlite3.OperationalError:  # no meta table: written before transaction numbers existed
        pass
    for uid in uids:
        lo = uid << SEQ_BITS
        try:
            row = conn.execute("SELECT txn FROM log WHERE id >= ? AND id < ? ORDER BY id DESC LIMIT 1",
                               (lo, lo + _SEQ_MASK + 1)).fetchone()
        except sqlite3.OperationalError:  # no txn column: rows from before transaction numbers
            break
        if row is not None and row[0] is not None:
            found.append(int(row[0]))
    return max(found) if found else None


def shard_live(conn: sqlite3.Connection, uid: int) -> dict[int, int]:
    lo = uid << SEQ_BITS
    return dict(conn.execute("SELECT seg, MAX(off + len) FROM log WHERE id >= ? AND id < ? GROUP BY seg",
                             (lo, lo + _SEQ_MASK + 1)).fetchall())


def plan_recovery(conn: sqlite3.Connection, data_dir: Path, shards: dict[int, int]) -> RecoveryPlan:
    """``shards``: {uid: persisted begin seq} of every shard the index lists."""
    txn_db = db_txn(conn, shards)
    txn_file = TxnFile(data_dir / "hub.txn").read()
    plan = RecoveryPlan(txn_db or 0, txn_file, legacy=txn_db is None and txn_file is None)
    if txn_file is None and txn_db is not None:
        plan.problems.append(
            f"{data_dir / 'hub.txn'}: missing, while the index records transactions (up to {txn_db}): there is no "
            f"way to tell whether the index lost acknowledged data. Put the file back (it is written at every "
            f"start and commit), or run --repair")
        return plan
    if txn_file is not None and (txn_db or 0) < txn_file:
        plan.problems.append(
            f"{data_dir / 'hub.db'}: the index is at transaction {txn_db or 0} but transaction {txn_file} had "
            f"committed (hub.txn): hub.db-wal was lost or damaged after a crash, and the index is missing "
            f"acknowledged data")
        return plan  # every file would look wrong against an older index: stop here, touch nothing
    root = data_dir / "segments"
    for uid, begin_seq in shards.items():
        lo = uid << SEQ_BITS
        first = conn.execute("SELECT id FROM log WHERE id >= ? AND id < ? ORDER BY id LIMIT 1",
                             (lo, lo + _SEQ_MASK + 1)).fetchone()
        begin = max(begin_seq, first[0] & _SEQ_MASK) if first else begin_seq
        sp = plan_shard(root, uid, shard_live(conn, uid), begin, plan.txn_db, plan.legacy)
        plan.shards.append(sp)
        plan.notes.extend(sp.notes)
        plan.problems.extend(sp.problems)
    # Shard directories the index does not list: uids are never reused (AUTOINCREMENT), so a uid up to the
    # highest ever assigned is a deleted shard whose files outlived the commit; a higher one is a shard the
    # index lost.
    try:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='shards'").fetchone()
    except sqlite3.OperationalError:
        row = None
    highest = int(row[0]) if row else 0
    if root.is_dir():
        for d in root.iterdir():
            if not (d.is_dir() and d.name.isdigit()) or int(d.name) in shards:
                continue
            uid = int(d.name)
            has_data = any(f.suffix in (V1_SUFFIX, V2_SUFFIX) and f.stat().st_size for f in d.iterdir())
            has_v2 = any(f.suffix == V2_SUFFIX and f.stat().st_size for f in d.iterdir())
            if uid <= highest or not has_data or (plan.legacy and not has_v2):
                plan.remove_dirs.append(uid)
                plan.notes.append(f"{d}: files of a deleted shard")
            else:
                plan.problems.append(f"{d}: data of shard uid {uid}, which the index does not know (highest "
                                     f"uid ever assigned: {highest})")
    return plan


@dataclass
class CheckContext:
    data_dir: Path
    conn: sqlite3.Connection  # read-only
    plan: RecoveryPlan


def _check_records(ctx: CheckContext) -> Iterable[str]:
    """Every indexed group reads back: its record is there, its checksum matches, it decompresses."""
    root = ctx.data_dir / "segments"
    for sp in ctx.plan.shards:
        lo = sp.uid << SEQ_BITS
        for rid, seg, off, length in ctx.conn.execute(
                "SELECT id, seg, off, len FROM log WHERE id >= ? AND id < ? ORDER BY id", (lo, lo + _SEQ_MASK + 1)):
            try:
                read_run(root, sp.uid, seg, off, length)
            except SegmentDamaged as exc:
                yield f"group {rid & _SEQ_MASK} of shard uid {sp.uid}: {exc}"
            except FileNotFoundError:
                yield f"group {rid & _SEQ_MASK} of shard uid {sp.uid}: segment {seg} is missing"


CHECKS: list[Callable[[CheckContext], Iterable[str]]] = [_check_records]
"""Deep checks run by ``sluice hub --check`` after the recovery plan; append yours."""

from ..query.check import check_indexes  # noqa: E402 - #21: search index files open and agree with the data

CHECKS.append(check_indexes)


def check_data_dir(data_dir: Path, *, deep: bool = True) -> tuple[list[str], list[str]]:
    """(problems, notes) of a data directory, changing nothing (SQLite opened read-only). Run it with the
    hub stopped: a running hub's in-flight appends would show as uncommitted tails (notes, not problems)."""
    db = data_dir / "hub.db"
    if not db.exists():
        return [f"{db}: no such file (not a hub data directory?)"], []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            shards = dict(conn.execute("SELECT uid, begin_seq FROM shards").fetchall())
        except sqlite3.OperationalError:  # no tables yet (never checkpointed, or emptied): an empty index
            shards = {}
        plan = plan_recovery(conn, data_dir, shards)
        problems = list(plan.problems)
        if deep and not problems:
            ctx = CheckContext(data_dir, conn, plan)
            for fn in CHECKS:
                problems.extend(fn(ctx))
        conn.close()
    except sqlite3.DatabaseError as exc:
        return [f"{db}: cannot be read: {exc}"], []
    return problems, plan.notes


def repair_data_dir(data_dir: Path) -> list[str]:
    """``sluice hub --repair``: make a damaged data directory start again, on the operator's word, deleting
    nothing. The index is kept as it is; what it does not account for is moved (or copied, then cut) into
    ``<data-dir>/set-aside/<time>/``: bytes past a segment's last indexed group, segments and shard
    directories it does not know. Index rows whose bytes are gone (truncated or missing segments) or damaged
    (checksum, decompression) are dropped, so reads skip those groups instead of failing on them. The
    database files and hub.txn are copied there first. Returns what was done, one line each. Run it with the
    hub stopped."""
    if not (data_dir / "hub.db").exists():
        return [f"{data_dir / 'hub.db'}: no such file (not a hub data directory?): nothing done"]
    aside = data_dir / "set-aside" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside.mkdir(parents=True, exist_ok=True)
    for name in ("hub.db", "hub.db-wal", "hub.db-shm", "hub.txn"):
        if (data_dir / name).exists():
            shutil.copy2(data_dir / name, aside / name)
    done: list[str] = [f"{aside}: copies of hub.db, hub.db-wal, hub.db-shm and hub.txn as they were"]
    root = data_dir / "segments"
    conn = sqlite3.connect(data_dir / "hub.db", isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INT NOT NULL)")
        try:
            shards = dict(conn.execute("SELECT uid, begin_seq FROM shards").fetchall())
        except sqlite3.OperationalError:  # an empty database: the store creates the tables
            shards = {}
        conn.execute("BEGIN IMMEDIATE")
        for uid in shards:
            lo = uid << SEQ_BITS
            bad = []
            for rid, seg, off, length in conn.execute(
                    "SELECT id, seg, off, len FROM log WHERE id >= ? AND id < ? ORDER BY id", (lo, lo + _SEQ_MASK + 1)):
                try:
                    read_run(root, uid, seg, off, length)
                except (SegmentDamaged, FileNotFoundError) as exc:
                    bad.append(rid)
                    done.append(f"group {rid & _SEQ_MASK} of shard uid {uid} dropped from the index: "
                                f"{exc if isinstance(exc, SegmentDamaged) else f'segment {seg} is missing'}")
            conn.executemany("DELETE FROM log WHERE id=?", [(rid,) for rid in bad])
            live = shard_live(conn, uid)
            for base, path, _v2 in _segment_files(root / str(uid)):
                size = path.stat().st_size
                end = live.get(base)
                target = aside / "segments" / str(uid)
                if end is None:
                    if size:
                        target.mkdir(parents=True, exist_ok=True)
                        shutil.move(str(path), target / path.name)
                        done.append(f"{path}: not in the index, moved to {target / path.name}")
                    else:
                        path.unlink()
                elif size > end:
                    target.mkdir(parents=True, exist_ok=True)
                    with open(path, "rb") as src, open(target / f"{path.name}.from-{end}", "wb") as dst:
                        src.seek(end)
                        shutil.copyfileobj(src, dst)
                    with open(path, "r+b") as fh:
                        fh.truncate(end)
                    done.append(f"{path}: {size - end} bytes past the last indexed group copied to "
                                f"{target / f'{path.name}.from-{end}'} and cut")
        if root.is_dir():
            for d in sorted(root.iterdir()):
                if d.is_dir() and d.name.isdigit() and int(d.name) not in shards and any(d.iterdir()):
                    target = aside / "segments" / d.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(d), target)
                    done.append(f"{d}: a shard the index does not know, moved to {target}")
        txn = max(db_txn(conn, shards) or 0, TxnFile(data_dir / "hub.txn").read() or 0)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('txn', ?)", (txn,))
        conn.execute("COMMIT")
    finally:
        conn.close()
    tf = TxnFile(data_dir / "hub.txn")
    tf.write(txn)
    tf.close()
    return done
