"""``sluice hub --check``, the search indexes' part: every index file opens, and agrees with the data.

An index may lag the data (the indexer catches up at the next start: not a problem), but it must never be
ahead of it (its checkpoint past a shard's committed end) nor hold rows past its own checkpoint (rows and
checkpoint are one transaction). Registered in ``store.check.CHECKS``; runs with the hub stopped, opening
each index read-only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["check_indexes"]

_SEQ_BITS = 40


def check_indexes(ctx: Any) -> Iterable[str]:
    import duckdb

    root = ctx.data_dir / "index"
    if not root.is_dir():
        return
    shards = {uid: (project, logstore, shard_id) for uid, project, logstore, shard_id in ctx.conn.execute(
        "SELECT uid, project, logstore, shard_id FROM shards").fetchall()}
    for path in sorted(root.glob("*/*.duckdb")):
        project, logstore = path.parent.name, path.name[:-len(".duckdb")]
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as exc:
            yield f"search index {path}: cannot be opened: {str(exc).splitlines()[0]} (delete it to rebuild)"
            continue
        try:
            progress = con.execute("SELECT uid, shard, seq FROM progress").fetchall()
            ahead_rows = dict(con.execute(
                "SELECT p.uid, max(l.seq) FROM logs l JOIN progress p ON l.shard = p.shard "
                "WHERE l.seq >= p.seq GROUP BY p.uid").fetchall())
        except duckdb.Error as exc:
            yield f"search index {path}: cannot be read: {str(exc).splitlines()[0]} (delete it to rebuild)"
            continue
        finally:
            con.close()
        for uid, shard_id, seq in progress:
            owner = shards.get(uid)
            if owner is None or owner[:2] != (project, logstore):
                continue  # a shard deleted since: the indexer forgets it
            lo = uid << _SEQ_BITS
            row = ctx.conn.execute("SELECT max(id) FROM log WHERE id >= ? AND id < ?",
                                   (lo, lo + (1 << _SEQ_BITS))).fetchone()
            end = (row[0] - lo + 1) if row and row[0] is not None else None
            if end is not None and seq > end:
                yield (f"search index of {project}/{logstore}: shard {shard_id} indexed up to {seq}, past the data's "
                       f"end {end} (delete {path} to rebuild)")
            if uid in ahead_rows:
                yield (f"search index of {project}/{logstore}: shard {shard_id} holds rows at seq {ahead_rows[uid]} "
                       f"past its checkpoint {seq} (delete {path} to rebuild)")
