"""A logstore's index: one DuckDB file the indexer fills and GetLogs/GetHistograms read.

Table ``logs``: one row per log (shard, seq of its group, position in the group, ``__time__``, topic,
source, tags and fields as JSON, the full-text line of :func:`search.full_text`) plus one typed column per
key of the index config (``long`` -> BIGINT, ``double`` -> DOUBLE, else VARCHAR), added as keys are added
(like SLS, a new key applies to data indexed from then on). Table ``progress``: per shard, the sequence
number indexed up to. Rows and progress are written in one transaction, so after a crash the indexer
resumes exactly where the file says, with no duplicate and no gap.

DuckDB is given 1 thread per query, a memory limit, no external access (user SQL cannot read files) and a
locked configuration. No HTTP, no store: the indexer hands rows in, handlers ask questions.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import duckdb

from ...wire import errors as E
from .index import IndexSpec
from .search import Node, full_text, to_sql
from .sql import to_duckdb

__all__ = ["IndexStore", "QueryResult", "MAX_RESULT_ROWS", "QUERY_TIMEOUT", "MEMORY_LIMIT"]

MAX_RESULT_ROWS = 100_000
"""Most rows one SQL query may return (SLS: 100 by default, up to 1,000,000 with LIMIT); more -> error."""
QUERY_TIMEOUT = 30.0
"""Seconds a query may run before it is interrupted (ParameterInvalid 'query timed out')."""
MEMORY_LIMIT = "512MB"
"""DuckDB's memory limit per logstore index."""

_META = ("__time__", "__topic__", "__source__")
_TYPES = {"long": "BIGINT", "double": "DOUBLE"}


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
        self.scratch = path.with_name(path.name + ".scratch")  # the one place DuckDB may read a file from
        self.scratch.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._con = duckdb.connect(str(path), config={"threads": 1, "memory_limit": MEMORY_LIMIT})
        self._con.execute("SET allowed_directories = [" + _sql_str(str(self.scratch) + "/") + "]")
        self._con.execute("SET enable_external_access = false")
        self._con.execute("SET lock_configuration = true")
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS logs(shard INTEGER, seq BIGINT, i INTEGER, t BIGINT, topic VARCHAR, "
            "source VARCHAR, tags VARCHAR, f VARCHAR, line VARCHAR)")
        self._con.execute("CREATE TABLE IF NOT EXISTS progress(uid BIGINT PRIMARY KEY, shard INTEGER, seq BIGINT, "
                          "begin_seq BIGINT)")
        self._con.execute("CREATE TABLE IF NOT EXISTS keycols(name VARCHAR PRIMARY KEY, col VARCHAR, type VARCHAR)")
        self._keycols: dict[str, tuple[str, str]] = {
            n: (c, t) for n, c, t in self._con.execute("SELECT name, col, type FROM keycols").fetchall()}
        self.closed = False

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._con.close()

    # ------------------------------------------------------------------ schema
    def ensure_keys(self, spec: IndexSpec) -> None:
        """A column per index key (type from the config); a key whose type changed gets a new column."""
        with self._lock:
            for name, key in spec.keys.items():
                kind = "long" if key.type == "long" else "double" if key.type == "double" else "text"
                have = self._keycols.get(name)
                if have is not None and have[1] == kind:
                    continue
                col = f"k{len(self._keycols)}_{kind}"
                self._con.execute(f"ALTER TABLE logs ADD COLUMN IF NOT EXISTS {col} {_TYPES.get(kind, 'VARCHAR')}")
                self._con.execute("INSERT OR REPLACE INTO keycols VALUES (?, ?, ?)", [name, col, kind])
                self._keycols[name] = (col, kind)

    def column_of(self, key: str) -> tuple[str, str]:
        """(SQL expression, type) of a key for search: its typed column, a meta column, or the JSON field."""
        if key == "__time__":
            return "t", "long"
        if key == "__topic__":
            return "topic", "text"
        if key == "__source__":
            return "source", "text"
        if key.startswith("__tag__:"):
            return f"json_extract_string(tags, {_json_path(key[8:])})", "text"
        have = self._keycols.get(key)
        if have is not None:
            return have[0], have[1]
        return f"json_extract_string(f, {_json_path(key)})", "text"

    def raw_of(self, key: str) -> str:
        """SQL expression of a key's text as logged (typed keys included)."""
        if key in _META or key.startswith("__tag__:"):
            return self.column_of(key)[0]
        return f"json_extract_string(f, {_json_path(key)})"

    # ------------------------------------------------------------------ writing
    def progress(self) -> dict[int, int]:
        with self._lock:
            return {uid: seq for uid, seq in self._con.execute("SELECT uid, seq FROM progress").fetchall()}

    def ingest(self, uid: int, shard_id: int, rows: list[tuple[int, int, dict[str, Any]]], next_seq: int) -> None:
        """Append ``rows`` ((seq, i, log dict)) of one shard and move its progress to ``next_seq``, atomically."""
        with self._lock:
            if self.closed:
                return
            con = self._con
            con.execute("BEGIN")
            try:
                if rows:
                    self._insert(rows, shard_id, self.scratch / "batch.json")
                con.execute("INSERT OR REPLACE INTO progress VALUES (?, ?, ?, COALESCE((SELECT begin_seq FROM "
                            "progress WHERE uid = ?), 0))", [uid, shard_id, next_seq, uid])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _insert(self, rows: list[tuple[int, int, dict[str, Any]]], shard_id: int, scratch: Path) -> None:
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        lines = []
        for seq, i, log in rows:
            fields, tags = {}, {}
            for k, v in log.items():
                if isinstance(v, bytes):
                    v = v.decode("utf-8", "replace")
                if k in _META:
                    continue
                if k.startswith("__tag__:"):
                    tags[k[8:]] = v
                else:
                    fields[k] = v
            lines.append(dumps({"q": seq, "i": i, "t": log.get("__time__", 0), "o": log.get("__topic__", ""),
                                "r": log.get("__source__", ""), "g": dumps(tags), "f": dumps(fields),
                                "l": full_text(fields)}))
        scratch.write_text("\n".join(lines), encoding="utf-8")
        typed = "".join(
            f", TRY_CAST(json_extract_string(f, {_json_path(name)}) AS {_TYPES.get(kind, 'VARCHAR')}) AS {col}"
            for name, (col, kind) in self._keycols.items())
        cols = ", ".join(["shard", "seq", "i", "t", "topic", "source", "tags", "f", "line",
                          *[c for c, _ in self._keycols.values()]])
        # external access is off: read_json may read only the scratch directory (allowed_directories)
        self._con.execute(
            f"INSERT INTO logs ({cols}) SELECT {shard_id}, q, i, t, o, r, g, f, l{typed} FROM "
            f"(SELECT q, i, t, o, r, g, f, l FROM read_json(?, format='newline_delimited', "
            f"columns={{q: 'BIGINT', i: 'INTEGER', t: 'BIGINT', o: 'VARCHAR', r: 'VARCHAR', g: 'VARCHAR', "
            f"f: 'VARCHAR', l: 'VARCHAR'}}))", [str(scratch)])

    def expire(self, uid: int, shard_id: int, begin_seq: int) -> int:
        """Drop rows of groups the store no longer keeps (TTL); returns how many."""
        with self._lock:
            if self.closed:
                return 0
            row = self._con.execute("SELECT begin_seq FROM progress WHERE uid = ?", [uid]).fetchone()
            if row is None or row[0] >= begin_seq:
                return 0
            self._con.execute("BEGIN")
            n = self._con.execute("DELETE FROM logs WHERE shard = ? AND seq < ?", [shard_id, begin_seq]).fetchone()
            self._con.execute("UPDATE progress SET begin_seq = ? WHERE uid = ?", [begin_seq, uid])
            self._con.execute("COMMIT")
            return int(n[0]) if n else 0

    def forget_shard(self, uid: int, shard_id: int) -> None:
        with self._lock:
            if not self.closed:
                self._con.execute("DELETE FROM logs WHERE shard = ?", [shard_id])
                self._con.execute("DELETE FROM progress WHERE uid = ?", [uid])

    # ------------------------------------------------------------------ reading
    def _cursor(self) -> Any:
        with self._lock:
            if self.closed:
                raise E.ServerBusy("the index is being closed")
            return self._con.cursor()

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
        finally:
            timer.cancel()

    def _where(self, node: Node, spec: IndexSpec | None, start: int, end: int, topic: str | None) -> str:
        clause = f"t >= {int(start)} AND t < {int(end)} AND {to_sql(node, spec, self.column_of, self.raw_of)}"
        if topic:
            clause += " AND topic = " + "'" + topic.replace("'", "''") + "'"
        return clause

    def search(self, node: Node, spec: IndexSpec | None, start: int, end: int, topic: str | None,
               offset: int, line: int, reverse: bool) -> QueryResult:
        t0 = time.monotonic()
        where = self._where(node, spec, start, end, topic)
        order = "DESC" if reverse else "ASC"
        cur = self._cursor()
        try:
            total = self._run(cur, f"SELECT count(*) FROM logs WHERE {where}").fetchone()[0]
            data = self._run(cur, f"SELECT t, topic, source, tags, f FROM logs WHERE {where} "
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
            processed = self._run(cur, f"SELECT count(*) FROM logs WHERE {where}").fetchone()[0]
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


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _json_path(key: str) -> str:
    return "'$.\"" + key.replace("\\", "\\\\").replace('"', '\\"').replace("'", "''") + "\"'"


def _cell(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if not v.is_integer() else str(v)
    return str(v)


def _row(t: int, topic: str, source: str, tags: str, f: str) -> dict[str, str]:
    out: dict[str, str] = {"__time__": str(t), "__topic__": topic or "", "__source__": source or ""}
    for k, v in json.loads(tags or "{}").items():
        out[f"__tag__:{k}"] = v
    out.update(json.loads(f or "{}"))
    return out


def _keys(rows: Iterable[dict[str, str]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        for k in r:
            seen.setdefault(k, None)
    return list(seen)
