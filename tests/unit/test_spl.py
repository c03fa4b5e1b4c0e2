"""SPL parsing and evaluation (hub/query/spl.py), without a hub."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.hub.query.spl import apply_to_groups, compile_spl, evaluate_rows
from sluice.wire import errors as E
from sluice.wire.loggroup import LogGroup, LogGroupList, frame_groups

ROWS = [
    {"status": "500", "method": "POST", "ms": "12.5", "msg": "disk full on /var", "__time__": 10},
    {"status": "200", "method": "GET", "ms": "3", "msg": "ok", "__time__": 11},
    {"status": "404", "method": "GET", "msg": "no such page", "__time__": 12},
    {"status": "abc", "method": "DELETE", "__time__": 13},
]


def ids(rows: list[dict]) -> list[str]:
    return [r["status"] for r in rows]


@pytest.mark.parametrize("spl, expected", [
    ("* | where status = '500'", ["500"]),
    ("* | where status != '500'", ["200", "404", "abc"]),
    ("* | where method = 'GET' and status = '404'", ["404"]),
    ("* | where method = 'POST' or status = '200'", ["500", "200"]),
    ("* | where not method = 'GET'", ["500", "abc"]),
    ("* | where status > 300", ["500", "404"]),  # text vs number: numeric where the text is a number
    ("* | where cast(status as bigint) between 200 and 404", ["200", "404"]),
    ("* | where cast(ms as double) > 5", ["500"]),
    ("* | where ms is null", ["404", "abc"]),
    ("* | where ms is not null", ["500", "200"]),
    ("* | where msg like '%full%'", ["500"]),
    ("* | where msg like 'no_such%'", ["404"]),
    ("* | where msg not like '%o%'", []),
    ("* | where regexp_like(msg, '^(ok|no)')", ["200", "404"]),
    ("* | where status in ('200', '404')", ["200", "404"]),
    ("* | where status not in ('200', '404')", ["500", "abc"]),
    ("* | where try_cast(status as bigint) is null", ["abc"]),
    ("* | where length(method) = 3 | where status = '200'", ["200"]),
    ("* | WHERE lower(method) = 'delete'", ["abc"]),
    ("*|where \"method\"='GET'", ["200", "404"]),
])
def test_where(spl: str, expected: list[str]) -> None:
    assert ids(evaluate_rows(spl, ROWS)) == expected


def test_extend_project_rename_away() -> None:
    out = evaluate_rows("* | extend code = cast(status as bigint) + 1, m = concat(method, '!') "
                        "| project-rename verb = method | project code, verb, m", ROWS[:2])
    assert out == [{"__time__": 10, "code": "501", "verb": "POST", "m": "POST!"},
                   {"__time__": 11, "code": "201", "verb": "GET", "m": "GET!"}]
    away = evaluate_rows("* | project-away msg, ms", ROWS[:1])
    assert away == [{"status": "500", "method": "POST", "__time__": 10}]


def test_extend_null_removes_the_field() -> None:
    out = evaluate_rows("* | extend ms = try_cast(status as bigint)", ROWS[3:])
    assert "ms" not in out[0]


def test_parse_commands() -> None:
    rows = [{"line": '1.2.3.4 - "GET /x" 200', "j": '{"a": 1, "b": {"c": true}, "n": null}',
             "csv": 'x|"y|z"|w', "__time__": 1}]
    out = evaluate_rows("* | parse-regexp line, '^(\\S+) - \"(\\w+) (\\S+)\" (\\d+)' as ip, verb, path, code", rows)[0]
    assert (out["ip"], out["verb"], out["path"], out["code"]) == ("1.2.3.4", "GET", "/x", "200")
    named = evaluate_rows("* | parse-regexp line, '(?P<first>\\d+)\\.'", rows)[0]
    assert named["first"] == "1"
    js = evaluate_rows("* | parse-json -prefix='j_' j", rows)[0]
    assert (js["j_a"], js["j_b"]) == ("1", '{"c":true}') and "j_n" not in js
    cs = evaluate_rows("* | parse-csv -delim='|' csv as p, q, r", rows)[0]
    assert (cs["p"], cs["q"], cs["r"]) == ("x", "y|z", "w")


def test_parse_regexp_without_a_match_leaves_the_row() -> None:
    out = evaluate_rows("* | parse-regexp msg, '(\\d+)' as num", ROWS[:2])
    assert len(out) == 2 and "num" not in out[1]


@pytest.mark.parametrize("spl", [
    "", "status = 1", "* | where", "* | where status = = '1'", "* | nope x", "* | where nofunc(status)",
    "* | where regexp_like(msg, '(')", "* | where status = 'unterminated", "* | parse-regexp msg, '(a)(b)' as x",
    "* | where lower(a, b)", "* | parse-csv -delim='ab' msg as x", "* " + "| where a = '1' " * 17,
    "* | where a = '" + "x" * 11000 + "'",
])
def test_invalid_statements_are_sls_errors(spl: str) -> None:
    with pytest.raises(E.ParameterInvalid) as info:
        compile_spl(spl)
    assert str(info.value).startswith("invalid query")


def test_a_statement_nested_too_deeply_is_an_sls_error() -> None:
    assert compile_spl("* | where " + "not " * 300 + "a = 'x'").native_where is not None
    with pytest.raises(E.ParameterInvalid, match="invalid query: the statement nests too deeply"):
        compile_spl("* | where " + "not " * 2000 + "a = 'x'")  # 8 kB: within the size limit


def test_needles_come_from_the_first_where_only() -> None:
    assert compile_spl("* | where a = 'x' and b like '%yy%'").needles == (b"x", b"yy")
    assert compile_spl("* | where a = 'x' or b = 'y'").needles == ()
    assert compile_spl("* | extend a = 'x' | where a = 'x'").needles == ()


def _group(topic: str, logs: list[dict[str, str]], t: int = 100) -> bytes:
    g = LogGroup(Topic=topic, Source="src")
    g.LogTags.add(Key="host", Value="h1")
    for row in logs:
        log = g.Logs.add(Time=t)
        for k, v in row.items():
            log.Contents.add(Key=k, Value=v)
    return g.SerializeToString()


def test_apply_to_groups_filters_rewrites_and_keeps_group_fields() -> None:
    a = _group("t1", [{"s": "500", "x": "1"}, {"s": "200", "x": "2"}])
    b = _group("t2", [{"s": "200"}])
    c = _group("t3", [{"s": "500"}])
    body = frame_groups([a, b, c])
    out, n = apply_to_groups(compile_spl("* | where s = '500'"), body)
    lst = LogGroupList()
    lst.ParseFromString(out)
    assert n == 2 and [g.Topic for g in lst.LogGroups] == ["t1", "t3"]
    assert [[(c.Key, c.Value) for c in log.Contents] for log in lst.LogGroups[0].Logs] == [[("s", "500"), ("x", "1")]]
    assert lst.LogGroups[0].LogTags[0].Value == "h1" and lst.LogGroups[0].Source == "src"
    assert lst.LogGroups[1].SerializeToString() == c  # untouched group passes byte for byte
    out, n = apply_to_groups(compile_spl("* | extend y = 'new' | project y"), frame_groups([a]))
    lst = LogGroupList()
    lst.ParseFromString(out)
    assert [[(c.Key, c.Value) for c in log.Contents] for log in lst.LogGroups[0].Logs] == [[("y", "new")]] * 2
    assert [log.Time for log in lst.LogGroups[0].Logs] == [100, 100]
    assert apply_to_groups(compile_spl("* | where s = '404'"), body) == (b"", 0)


values = st.sampled_from(["a", "b", "10", "2", "", "x y"])
rows_st = st.lists(st.fixed_dictionaries({}, optional={"f": values, "g": values}), max_size=12)
conds = st.sampled_from([
    ("f = 'a'", lambda r: r.get("f") == "a"),
    ("f != 'a'", lambda r: r.get("f") is not None and r.get("f") != "a"),
    ("g is null", lambda r: r.get("g") is None),
    ("f like '%y%'", lambda r: r.get("f") is not None and "y" in r["f"]),
    ("cast(f as bigint) > 5", lambda r: r.get("f") in ("10",)),
])


@settings(max_examples=150, deadline=None)
@given(rows_st, conds, conds, st.sampled_from(["and", "or"]))
def test_where_equals_brute_force(rows: list[dict], c1, c2, op: str) -> None:  # type: ignore[no-untyped-def]
    spl = f"* | where ({c1[0]}) {op} ({c2[0]})"
    expect = [r for r in rows if (c1[1](r) and c2[1](r) if op == "and" else c1[1](r) or c2[1](r))]
    assert evaluate_rows(spl, rows) == expect


_SPL_PIECES = ["*", "|", "where", "extend", "project", "project-away", "project-rename", "parse-regexp",
               "parse-json", "parse-csv", "status", "msg", "=", "==", "!=", ">", "'500'", "500", "1.5", "and", "or",
               "not", "like", "'%a%'", "in", "(", ")", ",", "as", "cast(status as bigint)", "is", "null", "x",
               "regexp_like(msg, 'a+')", "'(\\S+)'", "-delim=','", "-prefix='p'", "+", "/", "0", "between",
               "json_extract_scalar(msg, '$.a')", "substr(msg, 2)", "lower", "'", '"msg"', "true", "coalesce(x, '1')"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_SPL_PIECES), max_size=14))
def test_any_statement_compiles_or_is_an_sls_error_and_evaluation_never_raises(pieces: list[str]) -> None:
    text = " ".join(pieces)
    try:
        program = compile_spl(text)
    except E.SLSError as exc:
        assert exc.error_code == "ParameterInvalid" and str(exc).startswith("invalid query")
        return
    try:
        program.run([dict(r) for r in ROWS] + [{"msg": '{"a": 1}', "x": "7", "__time__": 1}])
    except E.SLSError as exc:  # e.g. regexp_extract naming a group the pattern lacks
        assert exc.error_code == "ParameterInvalid"


# ---------------------------------------------------------------- the C where (hub/query/_splscan.c)
# The C scanner must give the same bytes as the Python path (closures over decoded rows) for every statement,
# and the logs both keep must be the ones a brute-force evaluation of the where's meaning keeps.

import math  # noqa: E402

from sluice.hub.query import spl as spl_module  # noqa: E402
from sluice.wire.loggroup import encode_varint, split_groups  # noqa: E402


def test_the_c_scanner_is_built() -> None:
    assert spl_module._splscan is not None, "sluice.hub.query._splscan was not built; pip install -e . compiles it"


@pytest.mark.parametrize("spl, native", [
    ("* | where status = '500' and method = 'POST'", True),
    ("* | where cast(status as bigint) >= 500 or ms is null", True),
    ("* | where msg like '%full%' and not status in ('200', 404)", True),
    ("* | where try_cast(ms as double) between 1 and 20.5", True),
    ("* | where __time__ > 10 and __topic__ != 't' | where status <> '200'", True),
    ("* | where status = '500' | extend x = '1'", True),
    ("* | where msg like 'no_such%'", True),  # '_': the closure, called per distinct value of msg
    ("* | where regexp_like(msg, 'a+')", True),  # RE2's search, called by the scanner per distinct value
    ("* | where regexp_like(msg, status)", False),  # two fields
    ("* | where lower(method) = 'get' and length(path) > 3", True),
    ("* | where method = path", False),
    ("* | where length(__topic__) > 1", False),
    ("* | where lower(method)", False),
    ("* | where \"__tag__:host\" = 'h1'", True),
    ("* | where status", False),
    ("* | extend x = '1' | where x = '1'", False),
])
def test_which_wheres_run_in_c(spl: str, native: bool) -> None:
    assert (compile_spl(spl).native_where is not None) is native


def _raw_group(logs: list[list[tuple[bytes, bytes]]], topic: bytes = b"t", times: list[int] | None = None,
               tags: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """A LogGroup written by hand, so keys/values may be any bytes (invalid UTF-8, duplicate keys)."""
    def ld(field: int, payload: bytes) -> bytes:
        return bytes([field << 3 | 2]) + encode_varint(len(payload)) + payload
    out = []
    for i, log in enumerate(logs):
        body = b"\x08" + encode_varint((times or [])[i] if times else 100 + i)
        body += b"".join(ld(2, ld(1, k) + ld(2, v)) for k, v in log)
        out.append(ld(1, body))
    out.append(ld(3, topic) + ld(4, b"src"))
    for k, v in [(b"host", b"h1")] if tags is None else tags:
        out.append(ld(6, ld(1, k) + ld(2, v)))
    return b"".join(out)


def _both_paths(spl: str, body: bytes) -> tuple[bytes, int]:
    """The C and the Python path agree: the same bytes, or the same failure (a statement can fail the pull at run
    time, e.g. a field's value used as a regular expression that RE2 refuses; _outcome is below)."""
    native = _outcome(spl, body, True)
    assert native == _outcome(spl, body, False), spl
    return native  # type: ignore[return-value]


def _kept_rows(out: bytes) -> list[dict]:
    rows = []
    for g in split_groups(out):
        rows.extend(spl_module._decode_logs(bytes(g)))
    return rows


VALUES = ["500", "50", "5.0", "-3", "1e3", " 7", "1_0", "abc", "", "x%y", "POST", "pöst", "\u0663", "1.5", ".5",
          "inf", "nan", "-0", "12abc", "99999999999999999999", "9007199254740993", "5.", "+5", "a\x1fb", "\ufffd"]
BAD_UTF8 = [b"\xff", b"5\xc3", b"ab\xed\xa0\x80"]
FIELD_NAMES = ["a", "b", "n"]
TAGS = st.lists(st.tuples(st.sampled_from([b"host", b"zone", b"\xff"]), st.sampled_from([b"h1", b"500", b"\xfe"])),
                max_size=3)


def _sql_lit(v: object) -> str:
    return "'" + str(v).replace("'", "''") + "'" if isinstance(v, str) else str(v)


LITS = st.one_of(st.sampled_from(VALUES).map(_sql_lit),
                 st.sampled_from(["5", "500", "1.5", "0", "1e3", "99999999999999999999", "1e999", ".5"]))
OPERANDS = st.one_of(st.sampled_from(FIELD_NAMES + ["__time__", "__topic__", "__tag__:host", "__tag__:zone"]),
                     st.builds(lambda f, t: f"cast({f} as {t})", st.sampled_from(FIELD_NAMES),
                               st.sampled_from(["bigint", "double", "varchar"])))
PATTERNS = st.sampled_from(["%0", "5%", "%b%", "x%y", "%", "", "p%st", "%5%0%", "a_c", "abc", "%ö%"])


def _atom() -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", OPERANDS, st.sampled_from(["=", "!=", "<>", "<", "<=", ">", ">="]),
                  LITS),
        st.builds(lambda b, op, a: f"{b} {op} {a}", LITS, st.sampled_from(["=", "<", ">="]), OPERANDS),
        st.builds(lambda f, neg, p: f"{f} {neg}like {_sql_lit(p)}", st.sampled_from(FIELD_NAMES + ["__topic__"]),
                  st.sampled_from(["", "not "]), PATTERNS),
        st.builds(lambda f, neg: f"{f} is {neg}null", OPERANDS, st.sampled_from(["", "not "])),
        st.builds(lambda f, neg, xs: f"{f} {neg}in ({', '.join(xs)})", OPERANDS, st.sampled_from(["", "not "]),
                  st.lists(LITS, min_size=1, max_size=3)),
        st.builds(lambda f, lo, hi: f"{f} between {lo} and {hi}", OPERANDS, LITS, LITS),
        st.builds(lambda f, p: f"regexp_like({f}, {_sql_lit(p)})", st.sampled_from(FIELD_NAMES + ["__tag__:host"]),
                  st.sampled_from(["^5", "ö", "\ufffd", "^$", "x|y"])),
        st.sampled_from(["lower(a) = 'abc'", "length(a) > 2", "a like '_0%'", "coalesce(a, 'z') = 'z'",
                         "json_extract_scalar(b, '$.x') is null", "cast(n as bigint) + 1 > 6",
                         "substr(n, 1, 1) = '5'", "not lower(b) like 'p%'"]),  # the closure, per distinct value
        st.sampled_from(["regexp_like(b, a)", "a = b", "lower(a)"]),  # not C: the whole where runs in Python
    )


WHERES = st.recursive(_atom(), lambda inner: st.one_of(
    st.builds(lambda x, op, y: f"({x}) {op} ({y})", inner, st.sampled_from(["and", "or"]), inner),
    st.builds(lambda x: f"not ({x})", inner)), max_leaves=4)
LOG_VALUES = st.one_of(st.sampled_from(VALUES).map(str.encode), st.sampled_from(BAD_UTF8))
LOGS = st.lists(st.lists(st.tuples(st.sampled_from([n.encode() for n in FIELD_NAMES] +
                                                   [b"__topic__", b"\xff", b"__tag__:zone", b"__tag__:host"]),
                                   LOG_VALUES), max_size=4), min_size=1, max_size=6)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(LOGS, st.sampled_from([b"t", b"500", b"p\xc3\xb6st"]), TAGS), min_size=1, max_size=3),
       WHERES, st.sampled_from(["", " | where a is not null", " | extend z = 'q'"]))
def test_c_where_equals_python_path(groups, where: str, tail: str) -> None:  # type: ignore[no-untyped-def]
    """Random groups (duplicate keys, missing fields, numbers in every spelling, invalid UTF-8) and random
    where clauses: the C scanner's output is byte for byte the Python path's."""
    body = frame_groups([_raw_group(logs, topic, tags=tags) for logs, topic, tags in groups])
    _both_paths(f"* | where {where}{tail}", body)


def _num(v: object) -> float | int | None:
    """Brute force: text is a number when Python's int() or float() reads a finite one from it."""
    if v is None:
        return None
    if isinstance(v, int):
        return v
    t = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    for conv in (int, float):
        try:
            x = conv(t)
        except ValueError:
            continue
        return x if math.isfinite(x) else None
    return None


def _text(v: str | bytes) -> str:
    """Text as SPL sees it: a value that is not valid UTF-8 is read with replacement characters."""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def _brute(cond: tuple, row: dict) -> bool | None:  # type: ignore[type-arg]
    """The meaning of a few where forms, written out per row (three-valued)."""
    kind = cond[0]
    if kind == "eq":  # field = 'text'
        v = row.get(cond[1])
        return None if v is None else v == cond[2]
    if kind == "num":  # field > number
        x = _num(row.get(cond[1]))
        return None if x is None else x > cond[2]
    if kind == "like":  # field like 'pre%'
        v = row.get(cond[1])
        return None if v is None else _text(v).startswith(cond[2])
    if kind == "null":
        return row.get(cond[1]) is None
    a, b = _brute(cond[1], row), _brute(cond[2], row)
    if kind == "and":
        return False if a is False or b is False else None if a is None or b is None else True
    return True if a is True or b is True else None if a is None or b is None else False


def _text_of(cond: tuple) -> str:  # type: ignore[type-arg]
    kind = cond[0]
    if kind == "eq":
        return f"{cond[1]} = {_sql_lit(cond[2])}"
    if kind == "num":
        return f"{cond[1]} > {cond[2]}"
    if kind == "like":
        return f"{cond[1]} like {_sql_lit(cond[2] + '%')}"
    if kind == "null":
        return f"{cond[1]} is null"
    return f"({_text_of(cond[1])}) {kind} ({_text_of(cond[2])})"


SIMPLE = st.recursive(st.one_of(
    st.tuples(st.just("eq"), st.sampled_from(FIELD_NAMES), st.sampled_from(["500", "POST", "", "pöst"])),
    st.tuples(st.just("num"), st.sampled_from(FIELD_NAMES), st.sampled_from([0, 5, 100, -3])),
    st.tuples(st.just("like"), st.sampled_from(FIELD_NAMES), st.sampled_from(["5", "p", ""])),
    st.tuples(st.just("null"), st.sampled_from(FIELD_NAMES))),
    lambda inner: st.tuples(st.sampled_from(["and", "or"]), inner, inner), max_leaves=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(LOGS, min_size=1, max_size=3), SIMPLE)
def test_c_where_equals_brute_force(groups, cond) -> None:  # type: ignore[no-untyped-def]
    body = frame_groups([_raw_group(logs) for logs in groups])
    assert compile_spl(f"* | where {_text_of(cond)}").native_where is not None
    out, n = _both_paths(f"* | where {_text_of(cond)}", body)
    every = [r for g in groups for r in spl_module._decode_logs(_raw_group(g))]
    assert _kept_rows(out) == [r for r in every if _brute(cond, r) is True]


def test_c_where_keeps_stored_bytes_and_group_fields() -> None:
    a = _raw_group([[(b"s", b"500"), (b"x", b"1")], [(b"s", b"200")], [(b"s", b"500")]], topic=b"t1")
    b = _raw_group([[(b"s", b"200")]], topic=b"t2")
    c = _raw_group([[(b"s", b"500")]], topic=b"t3")
    out, n = _both_paths("* | where s = '500'", frame_groups([a, b, c]))
    groups = [bytes(g) for g in split_groups(out)]
    assert n == 2 and groups[1] == c  # a group whose logs all pass: byte for byte
    assert groups[0] == _raw_group([[(b"s", b"500"), (b"x", b"1")], [(b"s", b"500")]], topic=b"t1",
                                   times=[100, 102])  # the dropped log's bytes are gone, nothing else moved
    assert _both_paths("* | where s = '404'", frame_groups([a, b, c])) == (b"", 0)
    out, n = _both_paths("* | where s = '500' | extend y = s || '!' | project y", frame_groups([a, c]))
    assert [r["y"] for r in _kept_rows(out)] == ["500!", "500!", "500!"]


def test_c_where_hands_python_what_only_python_judges() -> None:
    """Values whose reading needs Python (whitespace or '_' in a number, non-ASCII digits, invalid UTF-8 in
    a text comparison) and malformed groups go to the Python evaluator for their group; the answer is its."""
    odd = _raw_group([[(b"n", b" 7")], [(b"n", b"1_0")], [(b"n", "\u0663".encode())], [(b"n", b"4")]])
    out, _ = _both_paths("* | where n > 3", frame_groups([odd]))
    assert [r["n"] for r in _kept_rows(out)] == [" 7", "1_0", "4"]
    bad = _raw_group([[(b"n", b"\xff")], [(b"n", b"a")]])
    out, _ = _both_paths("* | where n < 'b'", frame_groups([bad]))
    assert [r["n"] for r in _kept_rows(out)] == ["a"]  # b'\xff' reads as '\ufffd', which is > 'b'
    out, _ = _both_paths("* | where n > 'b'", frame_groups([bad]))
    assert [r["n"] for r in _kept_rows(out)] == [b"\xff"]
    out, _ = _both_paths("* | where cast(n as varchar) = '\ufffd'", frame_groups([bad]))  # text, not `==`
    assert [r["n"] for r in _kept_rows(out)] == [b"\xff"]
    assert _both_paths("* | where n = '\ufffd'", frame_groups([bad])) == (b"", 0)  # bytes never == a str
    broken = b"\x0a\x05\x08\x01\x12\x05\x0a"  # a Logs field whose Content runs past the log
    good = _raw_group([[(b"n", b"9")]])
    assert _both_paths("* | where n > 3", frame_groups([broken, good]))[1] == 1


def _outcome(spl: str, body: bytes, native: bool) -> object:
    try:
        return apply_to_groups(compile_spl(spl), body, native=native)
    except Exception as exc:  # noqa: BLE001 - the same failure on both paths is what is checked
        return type(exc).__name__


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6), st.integers(0, 10_000),
       st.sampled_from(["* | where n > 3 and a != 'x'", "* | where a like '%5%' or __topic__ = 't'",
                        "* | where cast(n as double) between 1 and 9 | extend q = '1'"]))
def test_c_where_on_damaged_bytes_answers_as_python(flips, cut: int, spl: str) -> None:  # type: ignore[no-untyped-def]
    """Flipped bytes and truncation anywhere in a body: the C scanner reads nothing past its buffer and ends
    as the Python path does (same output, or the same error for a body whose framing is broken)."""
    body = bytearray(frame_groups([_raw_group([[(b"n", b"5"), (b"a", b"x5")], [(b"n", b"12"), (b"a", b"y")]]),
                                   _raw_group([[(b"a", b"500")]] * 3, topic=b"u")]))
    for at, value in flips:
        body[at % len(body)] = value
    data = bytes(body[:len(body) - cut % 8])
    assert _outcome(spl, data, True) == _outcome(spl, data, False)


def test_c_where_from_several_threads_at_once() -> None:
    """Groups of 16 KiB and more are scanned with the GIL released (the hub's reader threads and event loop
    run meanwhile): concurrent scans give the one-thread answer."""
    from concurrent.futures import ThreadPoolExecutor

    logs = [[(b"n", str(i % 13).encode()), (b"a", b"x" * (i % 50))] for i in range(2000)]
    body = frame_groups([_raw_group(logs[k:k + 500], topic=b"t%d" % k) for k in range(0, 2000, 500)])
    assert all(len(g) >= 16384 for g in split_groups(body))
    program = compile_spl("* | where n > 6 and a like '%xx%'")
    expect = apply_to_groups(program, body, native=False)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: apply_to_groups(program, body), range(32)))
    assert expect[1] == 4 and all(r == expect for r in results)


def test_c_where_on_tags() -> None:
    """`__tag__:<key>` is the group's last tag of that key (it overrides a content of that name), else the
    content of that name: as the decoder builds the row."""
    tagged = _raw_group([[(b"__tag__:zone", b"a"), (b"i", b"1")], [(b"i", b"2")]],
                        tags=[(b"zone", b"z1"), (b"zone", b"z2")])
    untagged = _raw_group([[(b"__tag__:zone", b"z2"), (b"i", b"3")], [(b"i", b"4")]], tags=[])
    body = frame_groups([tagged, untagged])
    assert compile_spl("* | where \"__tag__:zone\" = 'z2'").native_where is not None
    out, _ = _both_paths("* | where \"__tag__:zone\" = 'z2'", body)
    assert [r["i"] for r in _kept_rows(out)] == ["1", "2", "3"]
    out, _ = _both_paths("* | where \"__tag__:zone\" is null", body)
    assert [r["i"] for r in _kept_rows(out)] == ["4"]


def test_c_where_regexp_like_calls_re2_once_per_distinct_value() -> None:
    """regexp_like(field, 'literal') runs in the scanner: RE2's search is called with the field's text, once
    per distinct value in a body; an error it raises is the pull's error, not a wrong answer."""
    calls: list[str] = []

    def search(text: str) -> object:
        calls.append(text)
        return True if text.startswith("5") else None

    body = frame_groups([_raw_group([[(b"s", b"500")], [(b"s", b"200")], [(b"s", b"500")], []] * 50)])
    pred = spl_module._splscan.compile([(0, b"s")], [(spl_module._N_CALL, 0, search)])
    out, n = spl_module._splscan.where(pred, body, (), lambda g: pytest.fail("no fallback expected"))
    assert n == 1 and [r["s"] for r in _kept_rows(out)] == ["500"] * 100
    assert sorted(calls) == ["200", "500"]

    def broken(text: str) -> object:
        raise RuntimeError("boom")

    pred = spl_module._splscan.compile([(0, b"s")], [(spl_module._N_CALL, 0, broken)])
    with pytest.raises(RuntimeError, match="boom"):
        spl_module._splscan.where(pred, body, (), lambda g: None)
    out, _ = _both_paths("* | where regexp_like(s, '^5') and not regexp_like(s, '0{3}')", body)
    assert [r["s"] for r in _kept_rows(out)] == ["500"] * 100


def test_c_where_error_of_a_closure_is_the_pulls_error() -> None:
    """A predicate that fails at run time (regexp_extract naming a group its pattern lacks) fails the pull the
    same way on both paths: ParameterInvalid, never a wrong answer."""
    body = frame_groups([_raw_group([[(b"msg", b"abc")], [(b"msg", b"zzz")]])])
    spl = "* | where regexp_extract(msg, 'a', 3) = 'x'"
    assert compile_spl(spl).native_where is not None
    for native in (True, False):
        with pytest.raises(E.ParameterInvalid, match="no group 3"):
            apply_to_groups(compile_spl(spl), body, native=native)
    assert _both_paths("* | where msg = 'zzz' and regexp_extract(msg, 'a', 3) = 'x'", body) == (b"", 0)


def test_c_where_runs_its_own_tests_before_python_calls_that_cannot_fail() -> None:
    """and/or are commutative over true/false/null: a test the scanner decides alone goes before a call into
    Python that cannot raise (RE2's search); a closure, which may raise, keeps its place."""
    from sluice.hub.query.spl import _PARSER, native_spec

    _, nodes, _ = native_spec(_PARSER.parse("* | where regexp_like(path, 'a') and status = '500'"))
    assert [n[0] for n in nodes] == [spl_module._N_CMP, spl_module._N_CALL, spl_module._N_AND]
    _, nodes, _ = native_spec(_PARSER.parse("* | where lower(path) = 'a' or status = '500'"))
    assert [n[0] for n in nodes] == [spl_module._N_CALL, spl_module._N_CMP, spl_module._N_OR]
