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
