"""SLS search syntax (hub/query/search.py): parsing, and both evaluation paths (scan over rows, SQL over the
DuckDB index of engine.py) against a brute-force filter written here independently."""

from __future__ import annotations

import itertools
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.hub.query.engine import IndexStore
from sluice.hub.query.index import IndexSpec, validate
from sluice.hub.query.search import (And, Compare, Exists, Not, Or, Phrase, Range, Term, parse_search, row_matcher,
                                     split_query)
from sluice.wire import errors as E


@pytest.mark.parametrize("text, node", [
    ("error", Term("error")),
    ("status: 500 and method: POST", And(Term("500", "status"), Term("POST", "method"))),
    ("status:500 method:POST", And(Term("500", "status"), Term("POST", "method"))),
    ("a OR b and not c", Or(Term("a"), And(Term("b"), Not(Term("c"))))),
    ("a not b", And(Term("a"), Not(Term("b")))),
    ('msg: "disk full"', Phrase("disk full", "msg")),
    ("latency >= 100", Compare("latency", ">=", 100.0)),
    ("latency in [1 5)", Range("latency", 1.0, 5.0, True, False)),
    ("__tag__:host: web-1", Term("web-1", "__tag__:host")),
    ("user: *", Exists("user")),
    ("android", Term("android")),
])
def test_parse(text: str, node: object) -> None:
    assert parse_search(text) == node


@pytest.mark.parametrize("text", ["a:", "status >", "(a", "a or", '"open', "x > abc", "x in [1]"])
def test_invalid_search_is_an_sls_error(text: str) -> None:
    with pytest.raises(E.ParameterInvalid, match="invalid query"):
        parse_search(text)


def test_split_query() -> None:
    assert split_query("a and b | select count(*)") == ("a and b", "select count(*)")
    assert split_query('msg: "x | y" | select 1') == ('msg: "x | y"', "select 1")
    assert split_query("* ") == ("*", None)


def test_token_semantics() -> None:
    m = row_matcher(parse_search('"disk full"'))
    assert m({"msg": "the Disk full, again"}) and not m({"msg": "disk fuller"}) and not m({"msg": "full disk"})
    m = row_matcher(parse_search("path: /api/v1*"))
    assert m({"path": "/api/v1/users"}) and m({"path": "/api/v12"}) and not m({"path": "/xapi/v1"})
    m = row_matcher(parse_search("err?r"))
    assert m({"m": "an ERROR"}) and not m({"m": "errors"})


WORDS = ["apple", "Banana", "cherry", "10", "25", "7.5"]
VALUES = WORDS + ["apple pie", "banana,cherry"]
KEYS = ["f", "g"]


def tokens(value: str) -> list[str]:
    return [t.lower() for t in re.split(r"[ ,]", value) if t]


def num(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# A tiny query language of our own (text, brute-force predicate), rendered as SLS search syntax.
atoms = st.one_of(
    st.sampled_from(WORDS).map(lambda w: (w, lambda r, w=w: any(w.lower() in tokens(v) for v in r.values()))),
    st.tuples(st.sampled_from(KEYS), st.sampled_from(WORDS)).map(
        lambda kw: (f"{kw[0]}: {kw[1]}", lambda r, kw=kw: kw[1].lower() in tokens(r.get(kw[0], "")))),
    st.tuples(st.sampled_from(KEYS), st.sampled_from([">", ">=", "<", "<="]), st.sampled_from([7, 10, 20])).map(
        lambda t: (f"{t[0]} {t[1]} {t[2]}", lambda r, t=t: (v := num(r.get(t[0]))) is not None
                   and eval(f"{v} {t[1]} {t[2]}"))),  # noqa: S307 - our own operators and numbers
    st.sampled_from(KEYS).map(lambda k: (f"{k}: *", lambda r, k=k: k in r)),
    st.just(('"apple pie"', lambda r: any("apple pie" in v.lower() for v in r.values()))),
)


def combine(children):  # type: ignore[no-untyped-def]
    return st.one_of(
        st.tuples(children, children).map(lambda ab: (f"({ab[0][0]}) and ({ab[1][0]})",
                                                      lambda r, ab=ab: ab[0][1](r) and ab[1][1](r))),
        st.tuples(children, children).map(lambda ab: (f"({ab[0][0]}) or ({ab[1][0]})",
                                                      lambda r, ab=ab: ab[0][1](r) or ab[1][1](r))),
        children.map(lambda a: (f"not ({a[0]})", lambda r, a=a: not a[1](r))),
    )


queries = st.recursive(atoms, combine, max_leaves=4)
rows_st = st.lists(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES)), max_size=15)
_counter = itertools.count()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows_st, queries)
def test_search_equals_brute_force(rows: list[dict[str, str]], query) -> None:  # type: ignore[no-untyped-def]
    text, predicate = query
    expected = [i for i, r in enumerate(rows) if predicate(r)]
    # 1. scanning (logstores without an index)
    matcher = row_matcher(parse_search(text))
    assert [i for i, r in enumerate(rows) if matcher({**r, "__time__": 100 + i})] == expected
    # 2. the DuckDB index (logstores with one): f typed as double, g as text
    spec = IndexSpec.from_config(validate({"line": {}, "keys": {"f": {"type": "double"}, "g": {"type": "text"}}}))
    assert spec is not None
    with tempfile.TemporaryDirectory() as tmp:
        idx = IndexStore(Path(tmp) / f"ls{next(_counter)}.duckdb")
        try:
            idx.ensure_keys(spec)
            idx.ingest(1, 0, [(i, 0, {**r, "__time__": 100 + i, "__topic__": "", "__source__": ""})
                              for i, r in enumerate(rows)], len(rows))
            found = idx.search(parse_search(text), spec, 0, 10**9, None, 0, 100, False)
        finally:
            idx.close()
    typed_expected = [i for i, r in enumerate(rows) if predicate_typed(text, r, predicate)]
    assert sorted(int(r["__time__"]) - 100 for r in found.rows) == typed_expected
    assert found.processed == len(typed_expected)


def predicate_typed(text: str, row: dict[str, str], predicate) -> bool:  # type: ignore[no-untyped-def]
    """With f indexed as double, 'f: word' compares numbers: 'f: apple' matches nothing, 'f: 10' matches
    10 exactly. The brute force above treats f as text; re-evaluate such atoms the typed way."""
    if "f:" not in text or "f: *" in text:
        return bool(predicate(row))
    typed_row = dict(row)
    return bool(_typed_eval(text, typed_row))


def _typed_eval(text: str, row: dict[str, str]) -> bool:
    # rebuild the predicate with typed semantics for f by parsing the text with the production parser and
    # evaluating its AST with our own rules
    node = parse_search(text)
    return _ev(node, row)


def _ev(n, row):  # type: ignore[no-untyped-def]
    if isinstance(n, And):
        return _ev(n.a, row) and _ev(n.b, row)
    if isinstance(n, Or):
        return _ev(n.a, row) or _ev(n.b, row)
    if isinstance(n, Not):
        return not _ev(n.a, row)
    if isinstance(n, Exists):
        return n.key in row
    if isinstance(n, Compare):
        v = num(row.get(n.key))
        return v is not None and eval(f"{v} {n.op.replace('=', '==') if n.op == '=' else n.op} {n.value}")  # noqa: S307
    if isinstance(n, Phrase):
        return any("apple pie" in v.lower() for v in row.values())
    if isinstance(n, Term) and n.key is None:
        return any(n.text.lower() in tokens(v) for v in row.values())
    if isinstance(n, Term) and n.key == "f":
        want, have = num(n.text), num(row.get("f"))
        return want is not None and have is not None and want == have
    if isinstance(n, Term):
        return n.text.lower() in tokens(row.get(n.key, ""))
    raise AssertionError(n)
