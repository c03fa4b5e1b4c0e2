"""A logstore's index: one DuckDB file the indexer fills and GetLogs/GetHistograms read.

Table ``logs``: one row per log (shard, seq of its group, position in the group, ``__time__``, topic,
source, tags and the fields as ``line``: ``key NUL value NUL key NUL value ...``, which is both what GetLogs
returns (split back into a dict) and what full text searches (:func:`search.full_text`)) plus one typed column per
key of the index config (``long`` -> BIGINT, ``double`` -> DOUBLE, else VARCHAR), added as keys are added
(like SLS, a new key applies to data indexed from then on). Table ``progress``: per shard, the sequence
number indexed up to. Rows and progress are written in one transaction, so after a crash the indexer
resumes exactly where the file says, with no duplicate and no gap.

DuckDB is given 1 thread per query, a memory limit, no external access (user SQL cannot read files) and a
locked configuration. No HTTP, no store: the indexer hands rows in, handlers ask questions.

Row groups are :data:`ROW_GROUP_SIZE` rows instead of DuckDB's 122,880: its automatic checkpoints (every 16 MiB
of WAL) recompress the last, partly filled row group each time, which with the default size meant up to ~1 s
of compression inside one commit (an indexing stall, and ~30% more CPU per MB indexed); small row groups bound
each rewrite to a few MB (bench/query.py --lag-only; the file grows ~15%, still well under the raw size).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import duckdb

from ...wire import errors as E
from .batch import build_text
from .index import IndexSpec
from .search import All, Node, to_sql
from .sql import to_duckdb

__all__ = ["IndexStore", "QueryResult", "MAX_RESULT_ROWS", "QUERY_TIMEOUT", "MEMORY_LIMIT"]

MAX_RESULT_ROWS = 100_000
"""Most rows one SQL query may return (SLS: 100 by default, up to 1,000,000 with LIMIT); more -> error."""
QUERY_TIMEOUT = 30.0
"""Seconds a query may run before it is interrupted (ParameterInvalid 'query timed out')."""
MEMORY_LIMIT = "512MB"
"""DuckDB's memory limit per logstore index."""
ROW_GROUP_SIZE = 16384
"""Rows per DuckDB row group of an index (see the module doc); applies to rows appended from now on."""

_META = ("__time__", "__topic__", "__source__")
_TYPES = {"long": "BIGINT", "double": "DOUBLE"}


def _kind(type_: str) -> str:
    """The column kind of an index key type."""
    return "long" if type_ == "long" else "double" if type_ == "double" else "text"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class QueryResult:
    rows: list[dict[str, str]]
    keys: list[str]
    count: int
    processed: int
    elapsed_ms: int


class IndexStore:
    """One logstore's DuckDB index file. Thread-safe: writes hold a lock; reads use their own cursor."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        # The file is attached (not opened as the main database) because only ATTACH takes a row group size.
        self._con = _connect({"threads": 1, "memory_limit": MEMORY_LIMIT, "temp_directory": str(path) + ".tmp"})
        try:
            self._con.execute(f"ATTACH {_sql_str(str(path))} AS idx (ROW_GROUP_SIZE {int(ROW_GROUP_SIZE)})")
            self._con.execute("USE idx")
            self._con.execute("SET enable_external_access = false")
            self._con.execute("SET lock_configuration = true")
            # queries get their cursors from this connection, never from the writer's (which an ingest may be
            # using): a search does not wait for a batch to commit
            self._reader = self._con.cursor()
            self._rlock = threading.Lock()
        except BaseException:
            self._con.close()
            raise
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS logs(shard INTEGER, seq BIGINT, i INTEGER, t BIGINT, topic VARCHAR, "
            "source VARCHAR, tags VARCHAR, line VARCHAR)")
        self._con.execute("CREATE TABLE IF NOT EXISTS progress(uid BIGINT PRIMARY KEY, shard INTEGER, seq BIGINT, "
                          "begin_seq BIGINT)")
        self._con.execute("CREATE TABLE IF NOT EXISTS keycols(name VARCHAR PRIMARY KEY, col VARCHAR, type VARCHAR)")
        # complete: the column was added to an empty table, so every row that has the key has it in the column
        # (rows indexed before a key was added have it only in ``line``)
        self._con.execute("ALTER TABLE keycols ADD COLUMN IF NOT EXISTS complete BOOLEAN")
        keycols = self._con.execute("SELECT name, col, type, complete FROM keycols").fetchall()
        self._keycols: dict[str, tuple[str, str]] = {n: (c, t) for n, c, t, _ in keycols}
        self._complete = {n for n, _, _, done in keycols if done}
        # the progress table as of the last commit, kept here (this object is the file's only writer): an
        # indexing pass asks for it per logstore, expiry per shard, and a query each cost ~0.5 ms
        self._progress: dict[int, list[int]] = {
            uid: [seq, begin] for uid, seq, begin in self._con.execute("SELECT uid, seq, begin_seq FROM progress")
            .fetchall()}
        self.closed = False

    def close(self) -> None:
        with self._lock, self._rlock:
            if not self.closed:
                self.closed = True
                self._reader.close()
                self._con.close()

    # ------------------------------------------------------------------ schema
    def ensure_keys(self, spec: IndexSpec) -> None:
        """A column per index key (type from the config); a key whose type changed gets a new column."""
        with self._lock:
            for name, key in spec.keys.items():
                kind = _kind(key.type)
                have = self._keycols.get(name)
                if have is not None and have[1] == kind:
                    continue
                col = f"k{len(self._keycols)}_{kind}"
                empty = self._con.execute("SELECT NOT EXISTS (SELECT 1 FROM logs)").fetchone()[0]
                self._con.execute(f"ALTER TABLE logs ADD COLUMN IF NOT EXISTS {col} {_TYPES.get(kind, 'VARCHAR')}")
                self._con.execute("INSERT OR REPLACE INTO keycols VALUES (?, ?, ?, ?)", [name, col, kind, bool(empty)])
                self._keycols[name] = (col, kind)
                (self._complete.add if empty else self._complete.discard)(name)

    def needs_work(self, spec: IndexSpec, shards: Iterable[Any]) -> bool:
        """Whether an indexing pass would change anything (a key to add, a shard to forget, expire or index),
        from what this object knows as of its last commit: also answers once closed, so the indexer does not
        reopen an idle index that the open-index bound closed (indexer.py)."""
        for name, key in spec.keys.items():
            have = self._keycols.get(name)
            if have is None or have[1] != _kind(key.type):
                return True
        shards = list(shards)
        if any(uid not in {s.uid for s in shards} for uid in self._progress):
            return True
        for shard in shards:
            seq, begin = self._progress.get(shard.uid, (0, None))
            if begin is not None and shard.begin_seq > 0 and begin < shard.begin_seq:
                return True
            if max(seq, shard.begin_seq) < shard.end_seq:
                return True
        return False

    def column_of(self, key: str) -> tuple[str, str]:
        """(SQL expression, type) of a key for search: its typed column, a meta column, or the JSON field."""
        if key == "__time__":
            return "t", "long"
        if key == "__topic__":
            return "topic", "text"
        if key == "__source__":
            return "source", "text"
        if key.startswith("__tag__:"):
            return _pair_value("tags", key[8:]), "text"
        have = self._keycols.get(key)
        if have is not None:
            return have[0], have[1]
        return _pair_value("line", key), "text"

    def raw_of(self, key: str) -> str:
        """SQL expression of a key's text as logged (typed keys included). A text key's column holds exactly
        that text: read it instead of searching ``line`` (``key: *`` over 1 M rows: ~2 s -> a few ms), with
        ``line`` only for rows indexed before the column was added."""
        if key in _META or key.startswith("__tag__:"):
            return self.column_of(key)[0]
        have = self._keycols.get(key)
        if have is not None and have[1] == "text":
            return have[0] if key in self._complete else f"COALESCE({have[0]}, {_pair_value('line', key)})"
        return _pair_value("line", key)

    # ------------------------------------------------------------------ writing
    def progress(self) -> dict[int, int]:
        with self._lock:
            return {uid: p[0] for uid, p in self._progress.items()}

    def _committed(self, uid: int, next_seq: int) -> None:
        self._progress.setdefault(uid, [0, 0])[0] = next_seq

    def ingest(self, uid: int, shard_id: int, rows: list[tuple[int, int, dict[str, Any]]], next_seq: int) -> None:
        """Append ``rows`` ((seq, i, log dict)) of one shard and move its progress to ``next_seq``, atomically."""
        with self._lock:
            if self.closed:
                return
            con = self._con
            con.execute("BEGIN")
            try:
                if rows:
                    self._insert(rows, shard_id)
                self._set_progress(uid, shard_id, next_seq)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self._committed(uid, next_seq)

    def ingest_groups(self, uid: int, shard_id: int, groups: list[tuple[int, list[dict[str, Any]]]],
                      next_seq: int) -> None:
        """Like :meth:`ingest`, for groups as the C decoder returns them (each log's dict: its fields, then
        ``__time__``, ``__topic__``, ``__source__``, then the group's tags), which allows the fast path."""
        with self._lock:
            if self.closed:
                return
            con = self._con
            con.execute("BEGIN")
            try:
                if groups and not self._insert_fast(groups, shard_id):
                    self._insert([(seq, i, log) for seq, logs in groups for i, log in enumerate(logs)], shard_id)
                self._set_progress(uid, shard_id, next_seq)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self._committed(uid, next_seq)

    def key_names(self) -> list[str]:
        """The index keys in column order (what :func:`batch.build_text` is given)."""
        with self._lock:
            return list(self._keycols)

    def ingest_text(self, uid: int, shard_id: int, built: tuple[str, int], names: list[str], next_seq: int) -> bool:
        """Insert text built by :mod:`batch` (possibly in another process) and move the progress, atomically.
        False (nothing written) if the key columns changed since ``names`` was taken."""
        return self.ingest_texts([(uid, shard_id, built, next_seq)], names)

    def ingest_texts(self, batches: list[tuple[int, int, tuple[str, int], int]], names: list[str]) -> bool:
        """:meth:`ingest_text` for batches of several shards ((uid, shard id, text, next seq)) in ONE transaction:
        a commit costs a few ms whatever its size, and an indexing pass has a batch per shard."""
        with self._lock:
            if self.closed:
                return True
            if list(self._keycols) != names:
                return False
            con = self._con
            con.execute("BEGIN")
            try:
                for uid, shard_id, built, next_seq in batches:
                    if built[1]:
                        self._exec_text(built[0], shard_id)
                    self._set_progress(uid, shard_id, next_seq)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            for uid, _, _, next_seq in batches:
                self._committed(uid, next_seq)
            return True

    def _set_progress(self, uid: int, shard_id: int, next_seq: int) -> None:
        """The shard's checkpoint (inside the caller's transaction); an UPDATE costs a tenth of an upsert."""
        row = self._con.execute("UPDATE progress SET shard = ?, seq = ? WHERE uid = ?",
                                [shard_id, next_seq, uid]).fetchone()
        if not row or not row[0]:
            self._con.execute("INSERT INTO progress VALUES (?, ?, ?, 0)", [uid, shard_id, next_seq])

    def _insert_fast(self, groups: list[tuple[int, list[dict[str, Any]]]], shard_id: int) -> bool:
        """One INSERT per batch from :func:`batch.build_text`; False (nothing written) when the text would be
        ambiguous: the caller then takes :meth:`_insert`."""
        built = build_text(groups, list(self._keycols))
        if built is None:
            return False
        if built[1]:
            self._exec_text(built[0], shard_id)
        return True

    def _exec_text(self, text: str, shard_id: int) -> None:
        keys = list(self._keycols.items())
        typed = "".join(f", {_cast_col(f'p[{8 + j}]', kind)}" for j, (_, (_, kind)) in enumerate(keys))
        cols = ", ".join(["shard", "seq", "i", "t", "topic", "source", "tags", "line", *[c for _, (c, _) in keys]])
        self._con.execute(
            f"INSERT INTO logs ({cols}) SELECT {int(shard_id)}, CAST(p[1] AS BIGINT), CAST(p[2] AS INTEGER), "
            f"CAST(p[3] AS BIGINT), p[4], p[5], p[6], p[7]{typed} FROM (SELECT string_split(r, chr(31)) AS p "
            f"FROM (SELECT UNNEST(string_split($1, chr(30))) AS r))", [text])

    def _insert(self, rows: list[tuple[int, int, dict[str, Any]]], shard_id: int) -> None:
        """The careful path: one list per column, any dict layout; NUL in keys and values (it separates
        them in ``line``) becomes U+FFFD."""
        keys = list(self._keycols.items())
        J = "\x00".join
        clean = [{k: (_s(v).replace("\x00", "\ufffd") if isinstance(v, (str, bytes)) else v)
                  for k, v in log.items()} for _, _, log in rows]
        cols_data: list[list[Any]] = [[q for q, _, _ in rows], [i for _, i, _ in rows],
                                      [int(d.get("__time__", 0)) for d in clean],
                                      [d.get("__topic__", "") for d in clean], [d.get("__source__", "") for d in clean],
                                      [J(J((k[8:].replace("\x00", "\ufffd"), v)) for k, v in d.items()
                                         if k.startswith("__tag__:")) for d in clean],
                                      [J(J((k.replace("\x00", "\ufffd"), v)) for k, v in d.items()
                                         if k not in _META and not k.startswith("__tag__:")) for d in clean]]
        cols_data += [[d.get(name) for d in clean] for name, _ in keys]
        cols = ", ".join(["shard", "seq", "i", "t", "topic", "source", "tags", "line", *[c for _, (c, _) in keys]])
        args = ", ".join(f"UNNEST(${j + 1})" for j in range(len(cols_data)))
        typed = "".join(f", {_cast_col(f'c{8 + j}', kind, nulls=False)}" for j, (_, (_, kind)) in enumerate(keys))
        names = ", ".join(f"c{j + 1}" for j in range(len(cols_data)))
        self._con.execute(
            f"INSERT INTO logs ({cols}) SELECT {int(shard_id)}, c1, c2, c3, c4, c5, c6, c7{typed} FROM "
            f"(SELECT {args}) AS u({names})", cols_data)

    def expire(self, uid: int, shard_id: int, begin_seq: int) -> int:
        """Drop rows of groups the store no longer keeps (TTL); returns how many."""
        with self._lock:
            if self.closed:
                return 0
            have = self._progress.get(uid)
            if have is None or have[1] >= begin_seq:
                return 0
            self._con.execute("BEGIN")
            n = self._con.execute("DELETE FROM logs WHERE shard = ? AND seq < ?", [shard_id, begin_seq]).fetchone()
            self._con.execute("UPDATE progress SET begin_seq = ? WHERE uid = ?", [begin_seq, uid])
            self._con.execute("COMMIT")
            have[1] = begin_seq
            return int(n[0]) if n else 0

    def forget_shards(self, keep: set[int]) -> int:
        """Drop the rows and progress of shards not in ``keep`` (uids): DeleteShard removed their data."""
        with self._lock:
            if self.closed:
                return 0
            gone = [(uid, sid) for uid, sid in self._con.execute("SELECT uid, shard FROM progress").fetchall()
                    if uid not in keep]
            for uid, sid in gone:
                self._con.execute("BEGIN")
                self._con.execute("DELETE FROM logs WHERE shard = ?", [sid])
                self._con.execute("DELETE FROM progress WHERE uid = ?", [uid])
                self._con.execute("COMMIT")
                self._progress.pop(uid, None)
            return len(gone)

    # ------------------------------------------------------------------ reading
    def _cursor(self) -> Any:
        with self._rlock:
            if self.closed:
                raise E.ServerBusy("the index is being closed")
            cur = self._reader.cursor()
        cur.execute("USE idx")
        return cur

    def _run(self, cur: Any, sql: str, params: list[Any] | None = None) -> Any:
        timer = threading.Timer(QUERY_TIMEOUT, cur.interrupt)
        timer.start()
        try:
            return cur.execute(sql, params or [])
        except duckdb.InterruptException:
            raise E.ParameterInvalid(f"invalid query: the query ran longer than {QUERY_TIMEOUT:.0f} s") from None
        except (duckdb.BinderException, duckdb.ParserException, duckdb.ConversionException,
                duckdb.InvalidInputException, duckdb.CatalogException, duckdb.NotImplementedException,
                duckdb.OutOfRangeException) as exc:
            raise E.ParameterInvalid(f"invalid query: {str(exc).splitlines()[0][:400]}") from None
        except duckdb.OutOfMemoryException:
            raise E.ParameterInvalid("invalid query: the query needs more memory than the hub allows") from None
        except (duckdb.IOException, duckdb.InternalException, duckdb.FatalException):
            raise  # the index file or DuckDB itself: a server error, logged by the hub
        except duckdb.Error as exc:  # anything else a statement can provoke (types, permissions...): the user's
            raise E.ParameterInvalid(f"invalid query: {str(exc).splitlines()[0][:400]}") from None
        finally:
            timer.cancel()

    def _where(self, node: Node, spec: IndexSpec | None, start: int, end: int, topic: str | None) -> str:
        clause = f"t >= {int(start)} AND t < {int(end)} AND {to_sql(node, spec, self.column_of, self.raw_of)}"
        if topic:
            clause += " AND topic = " + "'" + topic.replace("'", "''") + "'"
        return clause

    def search(self, node: Node, spec: IndexSpec | None, start: int, end: int, topic: str | None,
               offset: int, line: int, reverse: bool, count_matches: bool = True) -> QueryResult:
        """A page of matching logs. ``processed`` is the number of matches, or with ``count_matches=False``
        (GetLogs: SLS's processedRows) the rows in the time range, a much cheaper scan of one column."""
        t0 = time.monotonic()
        where = self._where(node, spec, start, end, topic)
        order = "DESC" if reverse else "ASC"
        cur = self._cursor()
        try:
            counted = where if count_matches else self._where(All(), spec, start, end, topic)
            total = self._run(cur, f"SELECT count(*) FROM logs WHERE {counted}").fetchone()[0]
            page = where
            wanted = max(0, int(offset)) + max(0, int(line))
            if wanted:
                # The time of the page's last row, from the narrow columns only: the page query then reads the
                # wide ones (line, tags) for about a page of rows instead of every match (DuckDB's top-N
                # fetched them all first).
                cut = self._run(cur, f"SELECT t FROM logs WHERE {where} ORDER BY t {order} LIMIT 1 "
                                     f"OFFSET {wanted - 1}").fetchone()
                if cut is not None:
                    page = f"{where} AND t {'<=' if order == 'ASC' else '>='} {int(cut[0])}"
            data = self._run(cur, f"SELECT t, topic, source, tags, line FROM logs WHERE {page} "
                                  f"ORDER BY t {order}, shard {order}, seq {order}, i {order} "
                                  f"LIMIT {max(0, int(line))} OFFSET {max(0, int(offset))}").fetchall()
        finally:
            cur.close()
        rows = [_row(*r) for r in data]
        return QueryResult(rows, _keys(rows), len(rows), int(total), int((time.monotonic() - t0) * 1000))

    def histogram(self, node: Node, spec: IndexSpec | None, start: int, end: int, topic: str | None,
                  step: int) -> dict[int, int]:
        where = self._where(node, spec, start, end, topic)
        cur = self._cursor()
        try:
            data = self._run(cur, f"SELECT (t - {int(start)}) // {int(step)} AS b, count(*) FROM logs "
                                  f"WHERE {where} GROUP BY b").fetchall()
        finally:
            cur.close()
        return {int(b): int(c) for b, c in data}

    def analyze(self, node: Node, spec: IndexSpec | None, start: int, end: int, topic: str | None,
                statement: str) -> QueryResult:
        t0 = time.monotonic()
        sql = to_duckdb(statement)
        where = self._where(node, spec, start, end, topic)
        cols = ["t AS __time__", "topic AS __topic__", "source AS __source__"]
        cols += [f"{col} AS {_ident(name)}" for name, (col, _) in self._keycols.items() if name not in _META]
        view = f"WITH log AS (SELECT {', '.join(cols)} FROM logs WHERE {where}) "
        cur = self._cursor()
        try:
            res = self._run(cur, view + sql)
            names = [d[0] for d in res.description]
            data = res.fetchmany(MAX_RESULT_ROWS + 1)
            if len(data) > MAX_RESULT_ROWS:
                raise E.ParameterInvalid(f"invalid query: more than {MAX_RESULT_ROWS} result rows; add a LIMIT")
            in_range = self._where(All(), spec, start, end, topic)  # processedRows: the rows the query looked at
            processed = self._run(cur, f"SELECT count(*) FROM logs WHERE {in_range}").fetchone()[0]
        finally:
            cur.close()
        rows = [{n: _cell(v) for n, v in zip(names, r)} for r in data]
        return QueryResult(rows, names, len(rows), int(processed), int((time.monotonic() - t0) * 1000))

    def stats(self) -> tuple[int, int]:
        """(rows, bytes on disk)."""
        cur = self._cursor()
        try:
            n = cur.execute("SELECT count(*) FROM logs").fetchone()[0]
        finally:
            cur.close()
        try:
            size = self.path.stat().st_size + (Path(str(self.path) + ".wal").stat().st_size
                                               if Path(str(self.path) + ".wal").exists() else 0)
        except OSError:
            size = 0
        return int(n), size


_NO_ASYNC: dict[str, Any] = {"async_threads": 0}


def _connect(config: dict[str, Any]) -> Any:
    """A DuckDB instance for one index. DuckDB 2.0 starts 8 asynchronous I/O threads per instance (for Parquet
    and CSV reads, which an index never does: external access is off, its own file is read synchronously):
    ``async_threads`` 0 leaves an open index 1 thread instead of 9 (docs/query.md, "Many indexes"). Older
    DuckDB has no such setting and no such threads."""
    global _NO_ASYNC
    try:
        return duckdb.connect(":memory:", config={**config, **_NO_ASYNC})
    except duckdb.Error:
        if not _NO_ASYNC:
            raise
        _NO_ASYNC = {}
        return duckdb.connect(":memory:", config=config)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _s(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return "" if v is None else str(v)


def _cast_col(expr: str, kind: str, nulls: bool = True) -> str:
    """A typed key column from its text; the fast path marks a missing key with \\x02."""
    value = f"NULLIF({expr}, chr(2))" if nulls else expr
    if kind in _TYPES:
        return f"TRY_CAST({value} AS {_TYPES[kind]})"
    return value


def _pair_value(column: str, key: str) -> str:
    """SQL: the value of ``key`` in a ``k NUL v NUL ...`` column (NULL when absent): the column split at NUL,
    the key looked up among the odd items only (so a value that equals the key is never taken for it), the
    value after it. Rows that do not contain the key and its NUL skip the split (a substring test). About half
    the CPU of the anchored regex this replaced (which stepped over whole pairs from the start)."""
    if "\x00" in key:  # stored keys hold no NUL (it separates them): no row has this one
        return "CAST(NULL AS VARCHAR)"
    parts = f"string_split({column}, chr(0))"
    k = _sql_str(key)
    return (f"(CASE WHEN contains({column}, {k} || chr(0)) THEN "
            f"list_extract({parts}, 2 * list_position(list_slice({parts}, 1, -1, 2), {k})) END)")


def _cell(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if not v.is_integer() else str(v)
    return str(v)


def _pairs(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    parts = text.split("\x00")
    return dict(zip(parts[::2], parts[1::2]))


def _row(t: int, topic: str, source: str, tags: str, line: str) -> dict[str, str]:
    out: dict[str, str] = {"__time__": str(t), "__topic__": topic or "", "__source__": source or ""}
    for k, v in _pairs(tags).items():
        out[f"__tag__:{k}"] = v
    out.update(_pairs(line))
    return out


def _keys(rows: Iterable[dict[str, str]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        for k in r:
            seen.setdefault(k, None)
    return list(seen)
