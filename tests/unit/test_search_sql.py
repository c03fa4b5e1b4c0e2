"""SQL after '|' (hub/query/sql.py), index configs (index.py) and the DuckDB index (engine.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.hub.query.engine import IndexStore
from sluice.hub.query.index import IndexSpec, validate
from sluice.hub.query.search import parse_search
from sluice.hub.query.sql import to_duckdb
from sluice.wire import errors as E


def test_presto_flavoured_sql_maps_to_duckdb() -> None:
    assert to_duckdb("select status, count(*) as c group by status") == \
        "SELECT status, COUNT(*) AS c FROM log GROUP BY status"
    assert "APPROX_QUANTILE(ms, 0.99)" in to_duckdb("select approx_percentile(ms, 0.99)")
    assert "DATE_TRUNC('MINUTE', TO_TIMESTAMP(__time__))" in to_duckdb(
        "select date_trunc('minute', __time__) as t, count(*) group by t")
    assert "TO_TIMESTAMP(__time__)" in to_duckdb("select from_unixtime(__time__)")


@pytest.mark.parametrize("sql", [
    "select * from read_csv('/etc/passwd')", "select * from other", "drop table logs", "select 1; select 2",
    "select * from main.logs", "select (select count(*) from logs)", "attach 'x.db'", "copy log to '/tmp/x'",
])
def test_sql_that_reaches_beyond_the_logstore_is_refused(sql: str) -> None:
    with pytest.raises(E.ParameterInvalid, match="invalid query"):
        to_duckdb(sql)


def test_index_config_validation() -> None:
    body = validate({"line": {"token": [",", " "]}, "keys": {"status": {"type": "long"}, "msg": {}}})
    assert body["keys"]["msg"]["type"] == "text" and body["keys"]["msg"]["caseSensitive"] is False
    spec = IndexSpec.from_config(body)
    assert spec is not None and spec.line and spec.keys["status"].type == "long"
    for bad in ([], {}, {"keys": {"a": {"type": "blob"}}}, {"line": {"token": ["ab"]}}, {"keys": []}):
        with pytest.raises(E.SLSError) as info:
            validate(bad)
        assert info.value.error_code == "IndexInfoInvalid"


@pytest.fixture
def idx(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = IndexStore(tmp_path / "p" / "ls.duckdb")
    yield store
    store.close()


def test_index_search_sql_histogram_expire_and_reopen(idx: IndexStore, tmp_path: Path) -> None:
    spec = IndexSpec.from_config(validate({"line": {}, "keys": {"status": {"type": "long"}, "ms": {"type": "double"},
                                                                "method": {}}}))
    assert spec is not None
    idx.ensure_keys(spec)
    rows = [(i // 10, i % 10, {"status": "500" if i % 4 == 0 else "200", "method": "POST" if i % 2 else "GET",
                               "ms": str(i / 10), "__time__": 1000 + i, "__topic__": "web", "__source__": "s",
                               "__tag__:host": "h1"}) for i in range(100)]
    idx.ingest(7, 0, rows, 10)
    assert idx.progress() == {7: 10}
    found = idx.search(parse_search("status: 500 and method: GET"), spec, 0, 2000, None, 0, 5, True)
    assert found.processed == 25 and [r["__time__"] for r in found.rows] == ["1096", "1092", "1088", "1084", "1080"]
    assert found.rows[0]["__tag__:host"] == "h1" and found.rows[0]["__topic__"] == "web"
    agg = idx.analyze(parse_search("*"), spec, 0, 2000, None, "select status, count(*) as c group by status "
                                                             "order by status")
    assert agg.rows == [{"status": "200", "c": "75"}, {"status": "500", "c": "25"}] and agg.keys == ["status", "c"]
    assert idx.histogram(parse_search("*"), spec, 1000, 1100, None, 50) == {0: 50, 1: 50}
    assert idx.search(parse_search("*"), spec, 1000, 1010, "other", 0, 100, False).processed == 0
    with pytest.raises(E.ParameterInvalid):
        idx.analyze(parse_search("*"), spec, 0, 2000, None, "select nosuchkey")
    assert idx.expire(7, 0, 5) == 50  # groups 0..4 expired in the store: their rows go
    idx.close()
    again = IndexStore(tmp_path / "p" / "ls.duckdb")  # reopened (a restart): rows and progress kept
    try:
        assert again.progress() == {7: 10} and again.stats()[0] == 50
    finally:
        again.close()


def test_odd_values_take_the_robust_path_and_keys_are_never_values(idx: IndexStore) -> None:
    spec = IndexSpec.from_config(validate({"line": {}, "keys": {"n": {"type": "long"}}}))
    assert spec is not None
    idx.ensure_keys(spec)
    idx.ingest(1, 0, [(0, 0, {"a": "status", "b": "x", "__time__": 5}),
                      (0, 1, {"status": "200", "__time__": 6, "__tag__:host": "h"})], 1)
    assert idx.search(parse_search("status: *"), spec, 0, 10, None, 0, 10, False).processed == 1
    assert idx.search(parse_search("b: x"), spec, 0, 10, None, 0, 10, False).processed == 1
    assert idx.search(parse_search("__tag__:host: h"), spec, 0, 10, None, 0, 10, False).processed == 1
    # separators and NUL inside values: the batch goes the list path; NUL becomes U+FFFD, the rest is kept
    idx.ingest(2, 1, [(0, 0, {"m": "rec\x1esep\x1fx", "n": "7", "__time__": 7}),
                      (0, 1, {"m": "nul\x00inside", "__time__": 8})], 1)
    rows = idx.search(parse_search("*"), spec, 7, 9, None, 0, 10, False).rows
    assert [r["m"] for r in rows] == ["rec\x1esep\x1fx", "nul\ufffdinside"]
    assert idx.search(parse_search("n >= 7"), spec, 0, 10, None, 0, 10, False).processed == 1


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PIECES = ["*", "|", "select", "count(*)", "status", "method", ":", "500", "'x'", '"a b"', "and", "or", "not",
           "(", ")", ">", "=", "group by", "order by", "limit", "1", "from", "log", "where", ",", "avg(ms)",
           "cast(status as varchar)", "date_trunc('minute', __time__)", "__time__", "in", "[", "]", "?", "x*",
           "regexp_like(method, '(')", "json_extract(method, '$.a')", "1/0", "'", '"', "-", ";", "union", "all"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(_PIECES), max_size=12))
def test_any_query_is_an_answer_or_an_sls_error(idx: IndexStore, pieces: list[str]) -> None:
    """Fuzz: whatever the query text, the engine answers or raises an SLS error (never another exception)."""
    from sluice.hub.query.search import split_query

    spec = IndexSpec.from_config(validate({"line": {}, "keys": {"status": {"type": "long"}, "ms": {"type": "double"},
                                                                "method": {}}}))
    assert spec is not None
    idx.ensure_keys(spec)
    if not idx.progress():
        idx.ingest(1, 0, [(0, i, {"status": str(200 + i), "method": "GET", "ms": "1.5", "__time__": 10 + i})
                          for i in range(5)], 1)
    query = " ".join(pieces)
    try:
        search_text, sql = split_query(query)
        node = parse_search(search_text)
        if sql is None:
            idx.search(node, spec, 0, 100, None, 0, 10, False)
        else:
            idx.analyze(node, spec, 0, 100, None, sql)
    except E.SLSError as exc:
        assert exc.http_status == 400, exc


def test_pages_with_ties_in_time_concatenate_to_the_full_order(idx: IndexStore) -> None:
    spec = IndexSpec.from_config(validate({"line": {}, "keys": {"n": {"type": "long"}}}))
    assert spec is not None
    idx.ensure_keys(spec)
    idx.ingest(1, 0, [(k // 7, k % 7, {"n": str(k), "__time__": 100 + (k * 13) % 9}) for k in range(60)], 9)
    for reverse in (False, True):
        full = idx.search(parse_search("*"), spec, 0, 1000, None, 0, 100, reverse).rows
        pages = [r for off in range(0, 60, 7) for r in idx.search(parse_search("*"), spec, 0, 1000, None, off, 7,
                                                                  reverse).rows]
        assert pages == full and len(full) == 60
        times = [int(r["__time__"]) for r in full]
        assert times == sorted(times, reverse=reverse)


def test_key_exists_reads_the_column_and_old_rows_from_line(idx: IndexStore, tmp_path: Path) -> None:
    """``key: *`` on a text key reads its column; rows indexed before the key was added (column NULL) still
    answer from ``line``, also after a reopen; a key added to an empty index is complete from the start."""
    spec1 = IndexSpec.from_config(validate({"line": {}, "keys": {"a": {}}}))
    assert spec1 is not None
    idx.ensure_keys(spec1)
    idx.ingest(1, 0, [(0, 0, {"a": "1", "b": "x", "__time__": 5}), (0, 1, {"c": "b", "__time__": 6})], 1)
    spec2 = IndexSpec.from_config(validate({"line": {}, "keys": {"a": {}, "b": {}, "c": {"type": "long"}}}))
    assert spec2 is not None
    idx.ensure_keys(spec2)  # b and c added over existing rows
    idx.ingest(1, 0, [(1, 0, {"b": "y", "c": "7", "__time__": 7}), (1, 1, {"a": "2", "__time__": 8})], 2)

    def times(query: str, store: IndexStore = idx) -> list[str]:
        rows = store.search(parse_search(query), spec2, 0, 100, None, 0, 10, False).rows
        return [r["__time__"] for r in rows]

    assert idx.raw_of("a") == idx.column_of("a")[0]  # complete: the column alone
    assert "COALESCE" in idx.raw_of("b") and idx.raw_of("c") != idx.column_of("c")[0]  # long: its text from line
    assert times("a: *") == ["5", "8"] and times("b: *") == ["5", "7"] and times("c: *") == ["6", "7"]
    assert times("b: x") == [] and times("b: y") == ["7"]  # a key's value search: data indexed since it was added
    idx.close()
    again = IndexStore(tmp_path / "p" / "ls.duckdb")
    try:
        assert times("a: *", again) == ["5", "8"] and times("b: *", again) == ["5", "7"]
        assert "COALESCE" in again.raw_of("b") and again.raw_of("a") == again.column_of("a")[0]
    finally:
        again.close()


def test_a_search_does_not_wait_for_the_writer(idx: IndexStore) -> None:
    """Queries take their cursors from a reader connection: a batch being written (the writer's lock held)
    does not hold them up."""
    spec = IndexSpec.from_config(validate({"line": {}}))
    assert spec is not None
    idx.ingest(1, 0, [(0, 0, {"a": "1", "__time__": 5})], 1)
    with idx._lock:
        assert idx.search(parse_search("a: 1"), spec, 0, 100, None, 0, 10, False).processed == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "ab", "", "b a", "é"]),
                                st.sampled_from(["a", "b", "", "ab", "x", "é"]), max_size=4), min_size=1, max_size=6),
       st.sampled_from(["a", "b", "ab", "", "b a", "é", "x", "a\x00b", "'"]))
def test_a_key_looked_up_in_line_is_the_logs_own_value(idx: IndexStore, logs: list[dict[str, str]], key: str) -> None:
    """The lookup of an unindexed key in ``line`` (search, ``key: *``) gives exactly the log's value for that key,
    never a value that happens to equal the key, and NULL when the log lacks it."""
    from sluice.hub.query.engine import _pair_value

    idx.ingest(9, 0, [(i, 0, {**d, "__time__": 1}) for i, d in enumerate(logs)], len(logs))
    cur = idx._cursor()
    try:
        got = [r[0] for r in cur.execute(f"SELECT {_pair_value('line', key)} FROM logs WHERE shard = 0 "
                                         "AND seq < ? ORDER BY seq", [len(logs)]).fetchall()[-len(logs):]]
    finally:
        cur.close()
        with idx._lock:
            idx._con.execute("DELETE FROM logs")
    assert got == [d.get(key) for d in logs]


def test_the_kept_progress_is_the_tables(idx: IndexStore, tmp_path: Path) -> None:
    """progress() answers from memory: after ingests (one and several shards), a failed transaction, expiry,
    forgotten shards and a reopen it equals the table the crash-resume reads."""
    def table(store: IndexStore) -> dict[int, int]:
        with store._lock:
            return dict(store._con.execute("SELECT uid, seq FROM progress").fetchall())

    idx.ingest(1, 0, [(0, 0, {"a": "1", "__time__": 5})], 1)
    assert idx.ingest_texts([(1, 0, ("", 0), 4), (2, 1, ("", 0), 3)], idx.key_names())
    with pytest.raises(Exception):  # noqa: B017,PT011 - any DuckDB error: nothing of the transaction stays
        idx.ingest_texts([(3, 2, ("", 0), 9), (1, 0, ("x\x1fy", 1), 7)], idx.key_names())
    assert idx.progress() == table(idx) == {1: 4, 2: 3}
    idx.expire(1, 0, 2)
    assert idx.forget_shards({1}) == 1 and idx.progress() == table(idx) == {1: 4}
    idx.close()
    again = IndexStore(tmp_path / "p" / "ls.duckdb")
    try:
        assert again.progress() == table(again) == {1: 4} and again.expire(1, 0, 2) == 0
    finally:
        again.close()
