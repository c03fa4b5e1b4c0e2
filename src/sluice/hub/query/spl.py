"""SPL (SLS Processing Language) for rule-based consumption: PullLogs with ``query=`` (#21).

A statement is ``* | cmd | cmd ...``; the hub evaluates it over each pulled batch, so cursors stay over the
raw data. Supported commands: ``where``, ``extend``, ``project``, ``project-away``, ``project-rename``,
``parse-regexp``, ``parse-json``, ``parse-csv``. Expressions: comparisons, ``and/or/not``, ``like``,
``regexp_like`` (RE2: linear time), ``in``, ``between``, ``is [not] null``, ``cast``/``try_cast``,
arithmetic and a small set of scalar functions (:data:`FUNCTIONS`).

Types follow SPL's loosely: every field is text (varchar) or null when absent; literals are text, numbers
or booleans. Comparing text with a number compares numerically when the text is a number and is null
otherwise (SLS would refuse the statement; a consumer would rather drop the row); a failing ``cast`` is null.
Output values are text again; a null removes the field.

The statement is parsed with a lark LALR grammar (:data:`GRAMMAR`) and compiled once into Python closures
(cached per statement: a consumer sends the same one with every pull). A statement that does not parse or
names an unknown function raises ``ParameterInvalid`` with ``invalid query: ...``, as SLS answers.
No I/O here: the hub's PullLogs handler calls :func:`apply_to_groups` on a reader thread.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedInput, VisitError

from ...wire import errors as E
from ...wire.loggroup import encode_varint, frame_groups, parse_group, read_varint, split_groups
from .patterns import compile_pattern, like_to_regex

try:  # the C decoder (src/sluice/wire/_logdecode.c); the protobuf fallback gives the same dicts
    from ...wire._logdecode import group_logs as _group_logs
    from ...wire._logdecode import logs_span as _logs_span
except ImportError:  # pragma: no cover - where the extension is not built
    _group_logs = _logs_span = None
try:  # the C where (src/sluice/hub/query/_splscan.c); the Python path gives the same bytes
    from . import _splscan
except ImportError:  # pragma: no cover - where the extension is not built
    _splscan = None  # type: ignore[assignment]

__all__ = ["Program", "compile_spl", "apply_to_groups", "MAX_SPL_BYTES", "MAX_SPL_STAGES", "FUNCTIONS"]

MAX_SPL_BYTES = 10 * 1024
"""Longest SPL statement accepted (SLS's limit for rule-based consumption: 10 KB)."""
MAX_SPL_STAGES = 16
"""Most pipeline stages (``|``-separated commands) in one statement, as SLS allows."""

Row = dict[str, Any]
Expr = Callable[[Row], Any]

GRAMMAR = r"""
?start: pipeline
pipeline: source ("|" command)*
source: "*"                                                -> star

command: "where"i expr                                     -> where
       | "extend"i assign ("," assign)*                    -> extend
       | "project-away"i fields                            -> project_away
       | "project-rename"i rename ("," rename)*            -> project_rename
       | "project"i fields                                 -> project
       | "parse-regexp"i option* expr "," STRING ("as"i fields)?  -> parse_regexp
       | "parse-json"i option* expr                        -> parse_json
       | "parse-csv"i option* expr "as"i fields            -> parse_csv

option: "-" NAME "=" (STRING | SIGNED_NUMBER | NAME)
assign: fieldname "=" expr
rename: fieldname "=" fieldname
fields: fieldname ("," fieldname)*
fieldname: NAME | QUOTED

?expr: or_expr
?or_expr: and_expr | or_expr "or"i and_expr                -> or_
?and_expr: not_expr | and_expr "and"i not_expr             -> and_
?not_expr: predicate | "not"i not_expr                     -> not_
?predicate: sum
    | sum COMP sum                                         -> compare
    | sum "=" sum                                          -> compare_eq
    | sum "like"i sum                                      -> like
    | sum "not"i "like"i sum                               -> not_like
    | sum "is"i "null"i                                    -> is_null
    | sum "is"i "not"i "null"i                             -> is_not_null
    | sum "in"i "(" expr ("," expr)* ")"                   -> in_
    | sum "not"i "in"i "(" expr ("," expr)* ")"            -> not_in
    | sum "between"i sum "and"i sum                        -> between
?sum: product
    | sum "+" product                                      -> add
    | sum "-" product                                      -> sub
    | sum "||" product                                     -> concat_op
?product: unary
    | product "*" unary                                    -> mul
    | product "/" unary                                    -> div
    | product "%" unary                                    -> mod
?unary: atom | "-" unary                                   -> neg
?atom: STRING                                              -> string
    | NUMBER                                               -> number
    | "true"i                                              -> true
    | "false"i                                             -> false
    | "null"i                                              -> null
    | "cast"i "(" expr "as"i TYPE ")"                      -> cast
    | "try_cast"i "(" expr "as"i TYPE ")"                  -> cast
    | NAME "(" [expr ("," expr)*] ")"                      -> call
    | fieldname                                            -> ref
    | "(" expr ")"

COMP: "==" | "!=" | "<>" | "<=" | ">=" | "<" | ">"
TYPE.2: /(?i:bigint|integer|int|double|real|varchar|boolean|json)\b/
NAME: /[A-Za-z_][A-Za-z0-9_.@]*(:[A-Za-z0-9_.@]+)?/
QUOTED: /"(?:[^"]|"")*"/
STRING: /'(?:[^']|'')*'/
NUMBER: /\d+(\.\d*)?([eE][+-]?\d+)?/ | /\.\d+([eE][+-]?\d+)?/
SIGNED_NUMBER: /[+-]?\d+(\.\d*)?/
%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)

META_KEYS = ("__time__", "__topic__", "__source__")


# ------------------------------------------------------------------ values


def _num(v: Any) -> int | float | None:
    """A value as a number for arithmetic and numeric comparison; None when it is not one."""
    if v is None or isinstance(v, bool):
        return None if v is None else int(v)
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    try:
        return int(v)
    except (TypeError, ValueError):
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return f if math.isfinite(f) else None


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if not v.is_integer() or abs(v) >= 1e16 else f"{v:.1f}"
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return str(v)


def _truth(v: Any) -> bool | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    t = _text(v)
    if t is None:
        return None
    low = t.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    return None


def _cast(v: Any, type_name: str) -> Any:
    t = type_name.lower()
    if v is None:
        return None
    if t in ("bigint", "integer", "int"):
        n = _num(v)
        if n is None:
            return None
        if isinstance(n, float):
            return int(n) if n == int(n) else None if isinstance(v, str) else int(n)
        return n
    if t in ("double", "real"):
        n = _num(v)
        return None if n is None else float(n)
    if t == "boolean":
        return _truth(v)
    if t == "json":
        try:
            return json.loads(_text(v) or "")
        except ValueError:
            return None
    return _text(v)


def _compare(op: str, a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        x, y = _num(a), _num(b)
        if x is None or y is None:
            return None
        a, b = x, y
    else:
        a, b = _text(a), _text(b)
    if op in ("=", "=="):
        return a == b
    if op in ("!=", "<>"):
        return a != b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _and(a: Any, b: Any) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


# ------------------------------------------------------------------ functions


def _f_regexp_like(s: Any, p: Any) -> Any:
    t = _text(s)
    return None if t is None else compile_pattern(_text(p) or "").search(t) is not None


def _f_regexp_extract(s: Any, p: Any, group: Any = 0) -> Any:
    t = _text(s)
    if t is None:
        return None
    m = compile_pattern(_text(p) or "").search(t)
    if m is None:
        return None
    try:
        return m.group(int(_num(group) or 0))
    except (IndexError, ValueError):
        raise E.ParameterInvalid(f"invalid query: regexp_extract has no group {group}") from None


def _f_regexp_replace(s: Any, p: Any, r: Any = "") -> Any:
    t = _text(s)
    return None if t is None else compile_pattern(_text(p) or "").sub(_text(r) or "", t)


def _f_json_extract(s: Any, path: Any, scalar: bool) -> Any:
    t = _text(s)
    if t is None:
        return None
    try:
        v = json.loads(t)
    except ValueError:
        return None
    p = _text(path) or "$"
    if not p.startswith("$"):
        return None
    for part in p[1:].replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("[") and part.endswith("]"):
            key: Any = part[1:-1].strip("'\"")
            if isinstance(v, list):
                try:
                    key = int(key)
                except ValueError:
                    return None
        else:
            key = part
        try:
            v = v[key]
        except (KeyError, IndexError, TypeError):
            return None
    if scalar and isinstance(v, (dict, list)):
        return None
    if v is None:
        return None
    return _text(v) if scalar else json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _f_substr(s: Any, start: Any, length: Any = None) -> Any:
    t = _text(s)
    i = _num(start)
    if t is None or i is None:
        return None
    i = int(i)
    begin = i - 1 if i > 0 else len(t) + i if i < 0 else 0
    if length is None:
        return t[begin:]
    n = _num(length)
    return None if n is None else t[begin:begin + max(0, int(n))]


def _nullsafe(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        if any(a is None for a in args):
            return None
        return fn(*args)
    return call


FUNCTIONS: dict[str, tuple[int, int, Callable[..., Any]]] = {
    # name: (min args, max args, implementation)
    "regexp_like": (2, 2, _f_regexp_like),
    "regexp_extract": (2, 3, _f_regexp_extract),
    "regexp_replace": (2, 3, _f_regexp_replace),
    "lower": (1, 1, _nullsafe(lambda s: _text(s).lower())),  # type: ignore[union-attr]
    "upper": (1, 1, _nullsafe(lambda s: _text(s).upper())),  # type: ignore[union-attr]
    "length": (1, 1, _nullsafe(lambda s: len(_text(s) or ""))),
    "trim": (1, 1, _nullsafe(lambda s: (_text(s) or "").strip())),
    "concat": (1, 64, _nullsafe(lambda *a: "".join(_text(x) or "" for x in a))),
    "coalesce": (1, 64, lambda *a: next((x for x in a if x is not None), None)),
    "strpos": (2, 2, _nullsafe(lambda s, sub: (_text(s) or "").find(_text(sub) or "") + 1)),
    "substr": (2, 3, _f_substr),
    "json_extract_scalar": (2, 2, lambda s, p: _f_json_extract(s, p, True)),
    "json_extract": (2, 2, lambda s, p: _f_json_extract(s, p, False)),
    "abs": (1, 1, _nullsafe(lambda x: None if _num(x) is None else abs(_num(x)))),  # type: ignore[arg-type]
    "round": (1, 1, _nullsafe(lambda x: None if _num(x) is None else round(_num(x)))),  # type: ignore[arg-type]
    "to_unixtime": (1, 1, _nullsafe(lambda x: _num(x))),
}


# ------------------------------------------------------------------ compiling


@dataclass
class Program:
    """A compiled statement: ``run(rows)`` maps a list of rows (dicts) to the output rows."""

    text: str
    stages: list[Callable[[list[Row]], list[Row]]]
    needles: tuple[bytes, ...] = ()
    """Byte strings every matching log's group must contain (from the first ``where``): a group without
    them is skipped undecoded."""
    eq_filter: tuple[tuple[str, str], ...] | None = None
    """When the first ``where`` is nothing but ``key = 'literal'`` tests joined by ``and``: those pairs, run
    as one list comprehension instead of the closure tree (the common consumer filter, several times
    faster)."""
    rewrites: bool = False
    """True when a stage changes rows (anything but ``where``): output is re-encoded from the rows."""
    names: list[str] = field(default_factory=list)
    lead_wheres: int = 0
    """How many ``where`` stages open the statement (the part :data:`native_where` evaluates)."""
    native_where: Any = None
    """Those leading ``where`` stages compiled for the C scanner (``_splscan``), when every one of them is a
    form it evaluates exactly as the closures do; None otherwise (or without the extension)."""
    rest: "Program | None" = None
    """The stages after the leading ``where``s (None when there are none): run in Python on what C kept."""

    def run(self, rows: list[Row]) -> list[Row]:
        for stage in self.stages:
            if not rows:
                break
            rows = stage(rows)
        return rows


def _unquote(tok: str, quote: str) -> str:
    return tok[1:-1].replace(quote * 2, quote)


class _Compiler(Transformer):  # type: ignore[type-arg]
    """lark tree -> closures. Expressions become ``(fn, const, needle)``: ``const`` marks literals (so a
    comparison with a literal can be specialised), ``needle`` the text a matching log must contain."""

    # --- leaves
    def fieldname(self, items: list[Token]) -> str:
        tok = items[0]
        return _unquote(tok, '"') if tok.type == "QUOTED" else str(tok)

    def fields(self, items: list[str]) -> list[str]:
        return list(items)

    def string(self, items: list[Token]) -> tuple[Expr, bool, Any]:
        value = _unquote(items[0], "'")
        return (lambda row, v=value: v), True, value

    def number(self, items: list[Token]) -> tuple[Expr, bool, Any]:
        text = str(items[0])
        value: int | float = float(text) if any(c in text for c in ".eE") else int(text)
        return (lambda row, v=value: v), True, value

    def true(self, _: list[Any]) -> tuple[Expr, bool, Any]:
        return (lambda row: True), True, True

    def false(self, _: list[Any]) -> tuple[Expr, bool, Any]:
        return (lambda row: False), True, False

    def null(self, _: list[Any]) -> tuple[Expr, bool, Any]:
        return (lambda row: None), True, None

    def ref(self, items: list[str]) -> tuple[Expr, bool, Any]:
        name = items[0]
        getter: Expr = lambda row, k=name: row.get(k)  # noqa: E731
        return getter, False, ("ref", name)

    # --- operators
    def compare(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        (fa, ca, va), op, (fb, cb, vb) = items[0], str(items[1]), items[2]
        needle = None
        if op in ("=", "==") and isinstance(va, tuple) and cb and isinstance(vb, str) and vb:
            needle = vb
        elif op in ("=", "==") and isinstance(vb, tuple) and ca and isinstance(va, str) and va:
            needle = va
        if isinstance(va, tuple) and cb and isinstance(vb, str) and op in ("=", "==", "!=", "<>"):
            name, lit, eq = va[1], vb, op in ("=", "==")
            if eq:
                return ((lambda row: None if (x := row.get(name)) is None else x == lit), False,
                        ("needle", needle, (name, lit), True))
            return (lambda row: None if (x := row.get(name)) is None else x != lit), False, None
        return (lambda row: _compare(op, fa(row), fb(row))), False, ("needle", needle) if needle else None

    def compare_eq(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        return self.compare([items[0], Token("COMP", "="), items[1]])

    def like(self, items: list[Any], negate: bool = False) -> tuple[Expr, bool, Any]:
        (fa, _, va), (fb, cb, vb) = items
        needle = None
        if cb and isinstance(vb, str):
            pat = compile_pattern(like_to_regex(vb))
            core = max((p for p in vb.replace("_", "%").split("%")), key=len, default="")
            needle = core or None

            def fn(row: Row) -> Any:
                t = _text(fa(row))
                return None if t is None else (pat.search(t) is not None) != negate
        else:
            def fn(row: Row) -> Any:
                t, p = _text(fa(row)), _text(fb(row))
                if t is None or p is None:
                    return None
                return (compile_pattern(like_to_regex(p)).search(t) is not None) != negate
        return fn, False, ("needle", needle) if needle and not negate else None

    def not_like(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        return self.like(items, negate=True)

    def is_null(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        f = items[0][0]
        return (lambda row: f(row) is None), False, None

    def is_not_null(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        f = items[0][0]
        return (lambda row: f(row) is not None), False, None

    def in_(self, items: list[Any], negate: bool = False) -> tuple[Expr, bool, Any]:
        f = items[0][0]
        options = [i[0] for i in items[1:]]

        def fn(row: Row) -> Any:
            v = f(row)
            if v is None:
                return None
            hit = any(_compare("=", v, o(row)) for o in options)
            return hit != negate
        return fn, False, None

    def not_in(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        return self.in_(items, negate=True)

    def between(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        f, lo, hi = items[0][0], items[1][0], items[2][0]
        return (lambda row: _and(_compare(">=", v := f(row), lo(row)), _compare("<=", v, hi(row)))), False, None

    def and_(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        (fa, _, na), (fb, _, nb) = items
        needles = [n for n in (na, nb) if n and n[0] in ("needle", "all")]
        flat: list[str] = []
        exact: list[tuple[str, str]] = []
        for n in needles:
            flat.extend([n[1]] if n[0] == "needle" else n[1])
            if n[0] == "needle" and len(n) > 2:
                exact.append(n[2])
            elif n[0] == "all":
                exact.extend(n[2])
        pure = all(n is not None and len(n) > 3 and n[3] for n in (na, nb))

        def fn(row: Row) -> Any:  # short-circuits: most rows fail the first test of a where
            a = fa(row)
            if a is False:
                return False
            b = fb(row)
            if b is False:
                return False
            return None if a is None or b is None else True
        return fn, False, ("all", [x for x in flat if x], exact, pure)

    def or_(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        (fa, _, _), (fb, _, _) = items

        def fn(row: Row) -> Any:
            a = fa(row)
            if a is True:
                return True
            b = fb(row)
            if b is True:
                return True
            return None if a is None or b is None else False
        return fn, False, None

    def not_(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        f = items[0][0]
        return (lambda row: None if (v := _truth(f(row))) is None else not v), False, None

    def _arith(self, items: list[Any], op: Callable[[Any, Any], Any]) -> tuple[Expr, bool, Any]:
        fa, fb = items[0][0], items[1][0]

        def fn(row: Row) -> Any:
            a, b = _num(fa(row)), _num(fb(row))
            if a is None or b is None:
                return None
            try:
                return op(a, b)
            except (ZeroDivisionError, OverflowError):
                return None
        return fn, False, None

    def add(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        return self._arith(items, lambda a, b: a + b)

    def sub(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        return self._arith(items, lambda a, b: a - b)

    def mul(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        return self._arith(items, lambda a, b: a * b)

    def div(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        return self._arith(items, lambda a, b: a // b if isinstance(a, int) and isinstance(b, int) else a / b)

    def mod(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        return self._arith(items, lambda a, b: a % b)

    def neg(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        f = items[0][0]
        return (lambda row: None if (v := _num(f(row))) is None else -v), False, None

    def concat_op(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        fa, fb = items[0][0], items[1][0]
        return (lambda row: None if (a := _text(fa(row))) is None or (b := _text(fb(row))) is None
                else a + b), False, None

    def cast(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        f, type_name = items[0][0], str(items[1])
        return (lambda row: _cast(f(row), type_name)), False, None

    def call(self, items: list[Any]) -> tuple[Expr, bool, Any]:
        name = str(items[0]).lower()
        args = [i for i in items[1:] if i is not None]
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise E.ParameterInvalid(f"invalid query: function {name} is not registered (supported: "
                                     f"{', '.join(sorted(FUNCTIONS))})")
        lo, hi, impl = spec
        if not lo <= len(args) <= hi:
            raise E.ParameterInvalid(f"invalid query: {name} takes {lo}..{hi} arguments, got {len(args)}")
        if name in ("regexp_like", "regexp_extract", "regexp_replace") and args[1][1]:
            compile_pattern(_text(args[1][2]) or "")  # a bad literal pattern is a parse-time error
        fns = [a[0] for a in args]
        needle = None
        if name == "regexp_like" and args[1][1]:
            needle = None  # a regex literal gives no safe substring cheaply; the group is decoded
        return (lambda row: impl(*[f(row) for f in fns])), False, needle

    # --- commands: each returns a stage (list[Row] -> list[Row]) plus its needles
    def option(self, items: list[Token]) -> tuple[str, str]:
        name, value = str(items[0]).lower(), items[1]
        text = _unquote(value, "'") if value.type == "STRING" else str(value)
        return name, text

    def assign(self, items: list[Any]) -> tuple[str, Expr]:
        return items[0], items[1][0]

    def rename(self, items: list[str]) -> tuple[str, str]:
        return items[0], items[1]

    def where(self, items: list[Any]) -> tuple[str, Any, list[str]]:
        f, _, needle = items[0]
        needles: list[str] = []
        exact: list[tuple[str, str]] = []
        pure = False
        if needle and needle[0] == "needle" and needle[1]:
            needles = [needle[1]]
            exact = [needle[2]] if len(needle) > 2 else []
            pure = len(needle) > 3 and bool(needle[3])
        elif needle and needle[0] == "all":
            needles, exact, pure = list(needle[1]), list(needle[2]), bool(needle[3])

        def stage(rows: list[Row]) -> list[Row]:
            return [r for r in rows if (v := f(r)) is True or (v is not False and v is not None and _truth(v) is True)]
        return "where", stage, (needles, [e for e in exact if not e[0].startswith("__")],
                                pure and all(not e[0].startswith("__") for e in exact))

    def extend(self, items: list[tuple[str, Expr]]) -> tuple[str, Any, list[str]]:
        pairs = list(items)

        def stage(rows: list[Row]) -> list[Row]:
            for r in rows:
                values = [(k, f(r)) for k, f in pairs]  # all computed on the input row, as SQL does
                for k, v in values:
                    if v is None:
                        r.pop(k, None)
                    else:
                        r[k] = _text(v) if k != "__time__" else v
            return rows
        return "extend", stage, []

    def project(self, items: list[list[str]]) -> tuple[str, Any, list[str]]:
        keep = set(items[0])

        def stage(rows: list[Row]) -> list[Row]:
            return [{k: v for k, v in r.items() if k in keep or _is_meta(k)} for r in rows]
        return "project", stage, []

    def project_away(self, items: list[list[str]]) -> tuple[str, Any, list[str]]:
        drop = set(items[0])

        def stage(rows: list[Row]) -> list[Row]:
            for r in rows:
                for k in drop:
                    r.pop(k, None)
            return rows
        return "project-away", stage, []

    def project_rename(self, items: list[tuple[str, str]]) -> tuple[str, Any, list[str]]:
        pairs = list(items)

        def stage(rows: list[Row]) -> list[Row]:
            for r in rows:
                for new, old in pairs:
                    if old in r:
                        r[new] = r.pop(old)
            return rows
        return "project-rename", stage, []

    def parse_regexp(self, items: list[Any]) -> tuple[str, Any, list[str]]:
        opts = dict(i for i in items if isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str))
        rest = [i for i in items if not (isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str))]
        src, pattern_tok = rest[0][0], rest[1]
        names: list[str] = rest[2] if len(rest) > 2 else []
        pat = compile_pattern(_unquote(pattern_tok, "'"), ignore_case="i" in opts.get("flags", ""))
        if names:
            if pat.groups < 1:
                raise E.ParameterInvalid("invalid query: parse-regexp needs a capturing group per name")
            if len(names) != pat.groups:
                raise E.ParameterInvalid(f"invalid query: parse-regexp names {len(names)} fields but the pattern "
                                         f"has {pat.groups} groups")
            targets = [(n, i + 1) for i, n in enumerate(names)]
        else:
            targets = sorted(((n, i) for n, i in pat.groupindex.items()), key=lambda t: t[1])
            if not targets:
                raise E.ParameterInvalid("invalid query: parse-regexp needs 'as <fields>' or named groups")

        def stage(rows: list[Row]) -> list[Row]:
            for r in rows:
                t = _text(src(r))
                m = pat.search(t) if t is not None else None
                if m is None:
                    continue
                for name, idx in targets:
                    v = m.group(idx)
                    if v is None:
                        r.pop(name, None)
                    else:
                        r[name] = v
            return rows
        return "parse-regexp", stage, []

    def parse_json(self, items: list[Any]) -> tuple[str, Any, list[str]]:
        opts = dict(i for i in items[:-1])
        src = items[-1][0]
        prefix = opts.get("prefix", "")
        path = opts.get("path")

        def stage(rows: list[Row]) -> list[Row]:
            for r in rows:
                t = _text(src(r))
                if t is None:
                    continue
                if path:
                    t = _f_json_extract(t, path, False)
                    if t is None:
                        continue
                try:
                    obj = json.loads(t)
                except (ValueError, RecursionError):
                    continue
                if not isinstance(obj, dict):
                    continue
                for k, v in obj.items():
                    if v is None:
                        r.pop(prefix + k, None)
                    else:
                        r[prefix + k] = _text(v)
            return rows
        return "parse-json", stage, []

    def parse_csv(self, items: list[Any]) -> tuple[str, Any, list[str]]:
        opts = dict(i for i in items[:-2])
        src, names = items[-2][0], items[-1]
        delim = opts.get("delim", ",")
        quote = opts.get("quote", '"')
        if len(delim) != 1 or len(quote) != 1:
            raise E.ParameterInvalid("invalid query: parse-csv -delim and -quote must be one character each")

        def stage(rows: list[Row]) -> list[Row]:
            for r in rows:
                t = _text(src(r))
                if t is None:
                    continue
                try:
                    values = next(csv.reader([t], delimiter=delim, quotechar=quote), [])
                except csv.Error:
                    continue
                for name, v in zip(names, values):
                    r[name] = v
            return rows
        return "parse-csv", stage, []

    def star(self, _: list[Any]) -> str:
        return "*"

    def pipeline(self, items: list[Any]) -> Program:
        commands = items[1:]
        if len(commands) > MAX_SPL_STAGES:
            raise E.ParameterInvalid(f"invalid query: {len(commands)} pipeline stages exceed {MAX_SPL_STAGES}")
        needles: list[str] = []
        exact: list[tuple[str, str]] = []
        pure = False
        if commands and commands[0][0] == "where":
            needles, exact, pure = commands[0][2]
        rewrites = any(c[0] != "where" for c in commands)
        return Program(text="", stages=[c[1] for c in commands],
                       needles=tuple(n.encode() for n in needles if n), rewrites=rewrites,
                       eq_filter=tuple(dict.fromkeys(exact)) if pure and exact else None,
                       names=[c[0] for c in commands])


# ------------------------------------------------------------------ the C scanner's form of a where

# node and mode numbers of _splscan.c
_N_AND, _N_OR, _N_NOT, _N_CONST, _N_CMP, _N_NULL, _N_LIKE, _N_IN, _N_CALL = range(9)
_M_STRICT, _M_TEXT, _M_NUM, _M_BIGINT, _M_DOUBLE = range(5)
_OPS = {"=": 0, "==": 0, "!=": 1, "<>": 1, "<": 2, "<=": 3, ">": 4, ">=": 5}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
_KINDS = {"__time__": 1, "__topic__": 2, "__source__": 3}
_NULL = 2  # R_NULL
_INT64 = 1 << 63


class _NotNative(Exception):
    """The where uses something the C scanner does not evaluate; the closures do it."""


class _NativeWhere(Transformer):  # type: ignore[type-arg]
    """lark tree of a where's expression -> the node form of _splscan.c, for the forms whose semantics it
    reproduces exactly (comparisons of a field, or a cast of one, with a literal; like with '%' only;
    is [not] null; [not] in; between; regexp_like(field, 'literal'); and/or/not). Anything else raises
    :class:`_NotNative`.

    Operands are ("field", (kind, name)), ("text", (kind, name)) (a cast to varchar), ("cast", (castmode,
    (kind, name))) or ("lit", value); predicates ("pred", nested spec)."""

    def __default__(self, data: Any, children: Any, meta: Any) -> Any:
        raise _NotNative(str(data))

    def fieldname(self, items: list[Token]) -> str:
        return _Compiler.fieldname(self, items)  # type: ignore[arg-type]

    def ref(self, items: list[str]) -> tuple[str, Any]:
        name = items[0]
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise _NotNative("name") from None
        return "field", (4 if name.startswith("__tag__:") else _KINDS.get(name, 0), name)  # 4: K_TAG

    def string(self, items: list[Token]) -> tuple[str, Any]:
        value = _unquote(items[0], "'")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _NotNative("literal") from None
        return "lit", value

    def number(self, items: list[Token]) -> tuple[str, Any]:
        return "lit", _Compiler.number(self, items)[2]  # type: ignore[arg-type]

    def neg(self, items: list[Any]) -> tuple[str, Any]:
        kind, value = items[0]
        num = _num(value) if kind == "lit" and not isinstance(value, bool) else None
        if num is None:
            raise _NotNative("neg")
        return "lit", -num  # the closures' -_num(literal): a number

    def cast(self, items: list[Any]) -> tuple[str, Any]:
        (kind, key), type_name = items[0], str(items[1]).lower()
        if kind not in ("field", "text"):
            raise _NotNative("cast")
        if type_name in ("bigint", "integer", "int"):
            return "cast", (_M_BIGINT, key)
        if type_name in ("double", "real"):
            return "cast", (_M_DOUBLE, key)
        if type_name == "varchar" and key[0] != 1:  # the text of a str is itself (compared as text, not `==`)
            return "text", key
        raise _NotNative("cast")

    @staticmethod
    def _operand(x: Any) -> tuple[tuple[int, str], int]:
        """(field key, castmode) of a field or cast operand."""
        if x[0] in ("field", "text"):
            return x[1], _M_NUM
        if x[0] == "cast":
            return x[1][1], x[1][0]
        raise _NotNative("operand")

    @staticmethod
    def _pred(x: Any) -> Any:
        if x[0] != "pred":
            raise _NotNative("not a predicate")
        return x[1]

    @classmethod
    def _generic(cls, op: str, a: Any, b: Any) -> Any:
        """spl.py's _compare(op, operand, literal) as a node (either side may be the literal)."""
        if a[0] == "lit" and b[0] != "lit":
            a, b, op = b, a, _FLIP.get(op, op)
        if b[0] != "lit" or a[0] == "lit":
            raise _NotNative("compare")
        key, castmode = cls._operand(a)
        lit = b[1]
        if isinstance(lit, bool) or lit is None:
            raise _NotNative("literal")
        if castmode != _M_NUM or key[0] == 1 or isinstance(lit, (int, float)):  # numeric comparison
            num = _num(lit)
            if num is None:
                return (_N_CONST, _NULL)
            if isinstance(num, int) and not -_INT64 <= num < _INT64:
                raise _NotNative("integer literal")
            return (_N_CMP, key, castmode, _OPS[op], num)
        return (_N_CMP, key, _M_TEXT, _OPS[op], lit.encode())

    def compare(self, items: list[Any]) -> tuple[str, Any]:
        a, op, b = items[0], str(items[1]), items[2]
        if a[0] == "field" and b[0] == "lit" and isinstance(b[1], str) and op in ("=", "==", "!=", "<>"):
            if a[1][0] == 1:
                raise _NotNative("__time__ = text")  # an int never equals a str there: not worth a form
            return "pred", (_N_CMP, a[1], _M_STRICT, _OPS[op], b[1].encode())  # the closures' `x == lit`
        return "pred", self._generic(op, a, b)

    def compare_eq(self, items: list[Any]) -> tuple[str, Any]:
        return self.compare([items[0], "=", items[1]])

    def like(self, items: list[Any], negate: bool = False) -> tuple[str, Any]:
        a, b = items
        if a[0] not in ("field", "text") or a[1][0] == 1 or b[0] != "lit" or not isinstance(b[1], str) or "_" in b[1]:
            raise _NotNative("like")
        return "pred", (_N_LIKE, a[1], int(negate), tuple(p.encode() for p in b[1].split("%")))

    def not_like(self, items: list[Any]) -> tuple[str, Any]:
        return self.like(items, negate=True)

    def call(self, items: list[Any]) -> tuple[str, Any]:
        """``regexp_like(field, 'literal')``: the scanner hands the field's text to the compiled RE2 pattern
        (one call per log instead of a dict per log); other functions are Python's."""
        name, args = str(items[0]).lower(), [i for i in items[1:] if i is not None]
        if name != "regexp_like" or len(args) != 2:
            raise _NotNative(name)
        (kind, key), (lkind, pattern) = args
        if kind not in ("field", "text") or key[0] == 1 or lkind != "lit" or not isinstance(pattern, str):
            raise _NotNative("regexp_like")
        return "pred", (_N_CALL, key, compile_pattern(pattern).search)  # the closures' _f_regexp_like

    def is_null(self, items: list[Any], negate: bool = False) -> tuple[str, Any]:
        key, castmode = self._operand(items[0])
        return "pred", (_N_NULL, key, castmode, int(negate))

    def is_not_null(self, items: list[Any]) -> tuple[str, Any]:
        return self.is_null(items, negate=True)

    def in_(self, items: list[Any], negate: bool = False) -> tuple[str, Any]:
        key, castmode = self._operand(items[0])
        options = []
        for o in items[1:]:
            node = self._generic("=", items[0], o)
            if node[0] == _N_CMP:
                options.append((node[2], node[4]))  # a literal that is no number never equals: left out
        return "pred", (_N_IN, key, castmode, int(negate), tuple(options))

    def not_in(self, items: list[Any]) -> tuple[str, Any]:
        return self.in_(items, negate=True)

    def between(self, items: list[Any]) -> tuple[str, Any]:
        return "pred", (_N_AND, self._generic(">=", items[0], items[1]), self._generic("<=", items[0], items[2]))

    def and_(self, items: list[Any]) -> tuple[str, Any]:
        return "pred", (_N_AND, self._pred(items[0]), self._pred(items[1]))

    def or_(self, items: list[Any]) -> tuple[str, Any]:
        return "pred", (_N_OR, self._pred(items[0]), self._pred(items[1]))

    def not_(self, items: list[Any]) -> tuple[str, Any]:
        return "pred", (_N_NOT, self._pred(items[0]))


def _native_pred(tree: Any) -> Any:
    """A where's expression as a node: and/or/not as nodes; each other predicate in its native form, or else,
    when it reads one content field only, as a call of its closure with that field's value (mode 1: the
    scanner remembers the answer per distinct value); :class:`_NotNative` otherwise."""
    data = getattr(tree, "data", None)
    if data in ("and_", "or_"):
        return (_N_AND if data == "and_" else _N_OR, _native_pred(tree.children[0]), _native_pred(tree.children[1]))
    if data == "not_":
        return (_N_NOT, _native_pred(tree.children[0]))
    try:
        kind, spec = _NativeWhere().transform(tree)
        if kind == "pred":
            return spec
    except _NotNative:  # from __default__ (lark does not wrap it)
        pass
    except VisitError as exc:
        if not isinstance(exc.orig_exc, (_NotNative, E.SLSError, ValueError)):
            raise
    return _closure_pred(tree)


_PREDICATES = {"compare", "compare_eq", "like", "not_like", "is_null", "is_not_null", "in_", "not_in", "between"}


def _closure_pred(tree: Any) -> Any:
    """A predicate of one content field (``lower(method) = 'get'``, ``like 'a_c'``, ``length(path) > 5``) as a
    call of the statement's own closure over a row holding only that field."""
    if getattr(tree, "data", None) not in _PREDICATES and not (
            getattr(tree, "data", None) == "call" and str(tree.children[0]).lower() == "regexp_like"):
        raise _NotNative("not a predicate")  # a value (a bare field, a function): its truth is Python's
    names = {_Compiler.fieldname(None, ref.children[0].children)  # type: ignore[arg-type]
             for ref in tree.iter_subtrees() if ref.data == "ref"}
    if len(names) != 1:
        raise _NotNative("not one field")
    name = names.pop()
    if name in META_KEYS or name.startswith("__tag__:"):
        raise _NotNative("meta field")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise _NotNative("name") from None
    fn = _Compiler().transform(tree)[0]

    def call(value: Any, fn: Expr = fn, key: str = name) -> Any:
        return fn({key: value} if value is not None else {})
    return (_N_CALL, (0, name), call, 1)


def _calls(node: tuple[Any, ...]) -> bool:
    """Whether evaluating the node may call into Python (regexp_like or a closure)."""
    if node[0] in (_N_AND, _N_OR):
        return _calls(node[1]) or _calls(node[2])
    if node[0] == _N_NOT:
        return _calls(node[1])
    return node[0] == _N_CALL


def _may_raise(node: tuple[Any, ...]) -> bool:
    """Whether the node may raise (a closure: e.g. regexp_extract naming a missing group). Such a node keeps its
    place in and/or, so that it is evaluated for exactly the logs the closures evaluate it for; the others
    can trade places (and/or are commutative over true/false/null)."""
    if node[0] in (_N_AND, _N_OR):
        return _may_raise(node[1]) or _may_raise(node[2])
    if node[0] == _N_NOT:
        return _may_raise(node[1])
    return node[0] == _N_CALL and len(node) > 3 and node[3] == 1


def native_spec(tree: Any) -> tuple[list[tuple[int, bytes]], list[tuple[Any, ...]], int] | None:
    """The leading ``where`` commands of a parsed statement as _splscan.compile's arguments (fields, nodes in
    post-order) and how many wheres that is; None when there is none or one is not a native form."""
    commands = tree.children[1:]
    spec = None
    count = 0
    for cmd in commands:
        if getattr(cmd, "data", None) != "where":
            break
        try:
            one = _native_pred(cmd.children[0])
        except _NotNative:
            return None
        spec = one if spec is None else (_N_AND, spec, one)
        count += 1
    if spec is None:
        return None
    fields: dict[tuple[int, str], int] = {}
    nodes: list[tuple[Any, ...]] = []

    def emit(node: tuple[Any, ...]) -> int:
        t = node[0]
        if t in (_N_AND, _N_OR):
            first, second = node[1], node[2]
            if _calls(first) and not _calls(second) and not _may_raise(first):
                first, second = second, first  # the C test first: it often decides without the Python call
            a, b = emit(first), emit(second)
            nodes.append((t, a, b))
        elif t == _N_NOT:
            a = emit(node[1])
            nodes.append((t, a))
        elif t == _N_CONST:
            nodes.append(node)
        else:
            f = fields.setdefault(node[1], len(fields))
            nodes.append((t, f) + tuple(node[2:]))
        return len(nodes) - 1

    emit(spec)
    return [(k, name.encode()) for (k, name) in fields], nodes, count


def _attach_native(program: Program, tree: Any) -> None:
    """Fills the program's lead_wheres, rest and (where the C scanner can run them) native_where."""
    names = program.names
    lead = 0
    while lead < len(names) and names[lead] == "where":
        lead += 1
    program.lead_wheres = lead
    if lead and lead < len(names):
        program.rest = Program(text=program.text, stages=program.stages[lead:], rewrites=True, names=names[lead:])
    if _splscan is None or not lead:
        return
    try:
        spec = native_spec(tree)
    except RecursionError:  # a deeply nested where: the closures manage it, the scanner need not
        return
    if spec is None or spec[2] != lead:
        return
    fields, nodes, _ = spec
    if len(fields) > 64 or len(nodes) > 4096:
        return
    try:
        program.native_where = _splscan.compile(fields, nodes)
    except (ValueError, TypeError, OverflowError):
        program.native_where = None


def _is_meta(key: str | bytes) -> bool:
    return key in META_KEYS or (isinstance(key, str) and key.startswith("__tag__:"))


@lru_cache(maxsize=256)
def compile_spl(text: str) -> Program:
    """Parse and compile an SPL statement; ``ParameterInvalid`` ("invalid query: ...") when it is not one
    the hub can evaluate."""
    if len(text.encode()) > MAX_SPL_BYTES:
        raise E.ParameterInvalid(f"invalid query: the statement is longer than {MAX_SPL_BYTES} bytes")
    try:
        tree = _PARSER.parse(text)
        program = _Compiler().transform(tree)
    except UnexpectedInput as exc:
        line, col = getattr(exc, "line", 1), getattr(exc, "column", 0)
        token = getattr(exc, "token", None)
        what = f"mismatched input {str(token)!r}" if token is not None else "unexpected input"
        raise E.ParameterInvalid(f"invalid query: line {line}:{col} {what}") from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, E.SLSError):
            raise exc.orig_exc from None
        raise E.ParameterInvalid(f"invalid query: {exc.orig_exc}") from None
    except LarkError as exc:
        raise E.ParameterInvalid(f"invalid query: {exc}") from None
    except RecursionError:  # e.g. a thousand nested `not`s: an answer, not a server error
        raise E.ParameterInvalid("invalid query: the statement nests too deeply") from None
    if not isinstance(program, Program):
        raise E.ParameterInvalid("invalid query: expected '* | <command> ...'")
    program.text = text
    _attach_native(program, tree)
    return program


# ------------------------------------------------------------------ applying to stored groups


def _decode_logs(group: bytes | memoryview) -> list[Row]:
    if _group_logs is not None:
        return _group_logs(group)
    g = parse_group(bytes(group), raw=False)
    base: Row = {"__topic__": g.Topic, "__source__": g.Source}
    for t in g.LogTags:
        base[f"__tag__:{t.Key}"] = t.Value
    out = []
    for log in g.Logs:
        d: Row = {c.Key: c.Value for c in log.Contents}
        d["__time__"] = log.Time
        d.update(base)
        out.append(d)
    return out


_VARINTS = [encode_varint(n) for n in range(1 << 14)]
_KEY_HEADS: dict[str, bytes] = {}  # key -> b"\x0a" + len + key bytes (keys repeat in every log)
_PAIRS: dict[tuple[str, str], bytes] = {}  # (key, short value) -> its encoded Contents field (values repeat too)


def _varint(n: int) -> bytes:
    return _VARINTS[n] if n < 16384 else encode_varint(n)


def _encode_log(row: Row) -> bytes:
    """One Log message from a row: its ``__time__`` and every non-meta field (text) as Contents."""
    t = _num(row.get("__time__")) or 0
    parts = [b"\x08", encode_varint(max(0, int(t)) & 0xFFFFFFFF)]
    for k, v in row.items():
        if v is None or k in META_KEYS or (isinstance(k, str) and k.startswith("__tag__:")):
            continue
        head = _KEY_HEADS.get(k)
        if head is None:  # a key that is not valid UTF-8 is bytes (as the decoder gives it): written as it came
            kb = k.encode("utf-8", "surrogatepass") if isinstance(k, str) else bytes(k)
            head = b"\x0a" + _varint(len(kb)) + kb
            if len(_KEY_HEADS) < 4096:
                _KEY_HEADS[k] = head
        pair = _PAIRS.get((k, v)) if isinstance(v, str) else None
        if pair is None:
            vb = v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v if isinstance(v, bytes) else \
                (_text(v) or "").encode("utf-8", "surrogatepass")
            lv = _varint(len(vb))
            pair = b"".join((b"\x12", _varint(len(head) + 1 + len(lv) + len(vb)), head, b"\x12", lv, vb))
            if isinstance(v, str) and len(vb) <= 64:
                if len(_PAIRS) >= 8192:
                    _PAIRS.clear()
                _PAIRS[(k, v)] = pair
        parts.append(pair)
    body = b"".join(parts)
    return b"\x0a" + _varint(len(body)) + body


def _rebuild_group(group: bytes | memoryview, rows: list[Row]) -> bytes:
    """The group with its Logs replaced by ``rows`` and everything else (topic, source, tags) as stored."""
    logs = b"".join(_encode_log(r) for r in rows)
    span = _logs_span(group) if _logs_span is not None else None
    raw = bytes(group)
    if span is not None:
        start, end, _ = span
        return raw[:start] + logs + raw[end:]
    msg = parse_group(raw)
    del msg.Logs[:]
    return msg.SerializeToString() + logs  # protobuf merges repeated fields in any order


def apply_to_groups(program: Program, body: bytes, native: bool = True) -> tuple[bytes, int]:
    """Run ``program`` over a LogGroupList body (stored groups, framed); returns the output LogGroupList
    and its number of groups. Groups left with no logs are dropped; a group whose logs all pass an
    unchanging statement (only ``where``) is passed on byte for byte, one whose logs pass in part is passed
    without the others' bytes. With the C scanner (``native``, when the statement's leading ``where``s allow
    it) those wheres run without decoding a log; the rest of the statement runs in Python on what they kept.
    Both paths give the same bytes (tests/unit/test_spl.py)."""
    if native and program.native_where is not None and _splscan is not None:
        res = _splscan.where(program.native_where, body, program.needles,
                             lambda group: _where_group(program, group))
        if res is not None:
            out, n = res
            if program.rest is None or not n:
                return out, n
            return _apply_python(program.rest, out)
    return _apply_python(program, body)


def _where_group(program: Program, group: bytes) -> bytes | None:
    """The leading ``where`` stages over one group in Python: a group the C scanner leaves to Python (a value
    only Python can judge, or a malformed group). The group, the group without the dropped logs, or None."""
    try:
        rows = _decode_logs(group)
    except ValueError:
        return None  # as _apply_python: a damaged stored group is skipped
    kept = rows
    for stage in program.stages[:program.lead_wheres]:
        if not kept:
            break
        kept = stage(kept)
    if not kept:
        return None
    return group if len(kept) == len(rows) else _select_logs(group, rows, kept)


def _apply_python(program: Program, body: bytes) -> tuple[bytes, int]:
    out: list[bytes] = []
    for view in split_groups(body):
        group = bytes(view)
        if program.needles and any(n not in group for n in program.needles):
            continue  # no log of this group can pass the first where: not decoded at all
        try:
            rows = _decode_logs(group)
        except ValueError:
            continue  # stored groups were validated at PutLogs; a damaged one is not SPL's to report
        n = len(rows)
        if program.eq_filter is not None:  # the first where is only key = 'literal' tests: one comprehension
            kept = _eq_filter(rows, program.eq_filter)
            for stage in program.stages[1:]:
                if not kept:
                    break
                kept = stage(kept)
            if not kept:
                continue
            if program.rewrites:
                out.append(_rebuild_group(group, kept))
            else:
                out.append(group if len(kept) == n else _select_logs(group, rows, kept))
            continue
        kept = program.run(rows)
        if not kept:
            continue
        if not program.rewrites and len(kept) == n:
            out.append(group)
        elif not program.rewrites:
            out.append(_select_logs(group, rows, kept))
        else:
            out.append(_rebuild_group(group, kept))
    return frame_groups(out), len(out)


def _eq_filter(rows: list[Row], pairs: tuple[tuple[str, str], ...]) -> list[Row]:
    if len(pairs) == 1:
        (k, v), = pairs
        return [r for r in rows if r.get(k) == v]
    if len(pairs) == 2:
        (k1, v1), (k2, v2) = pairs
        return [r for r in rows if r.get(k1) == v1 and r.get(k2) == v2]
    return [r for r in rows if all(r.get(k) == v for k, v in pairs)]


def _log_fields(group: bytes) -> list[tuple[int, int]] | None:
    """(start, end) of each Logs field (key, length and message) of a group, in order; None when the group's
    top level cannot be walked (then the group is re-encoded)."""
    spans: list[tuple[int, int]] = []
    pos, end = 0, len(group)
    try:
        while pos < end:
            start = pos
            key, pos = read_varint(group, pos)
            wire = key & 7
            if wire == 2:
                length, pos = read_varint(group, pos)
                pos += length
            elif wire == 0:
                _, pos = read_varint(group, pos)
            elif wire == 5:
                pos += 4
            elif wire == 1:
                pos += 8
            else:
                return None
            if key == 0x0A:
                spans.append((start, pos))
    except E.WireError:  # a truncated or oversized varint
        return None
    return spans if pos == end else None


def _select_logs(group: bytes, rows: list[Row], kept: list[Row]) -> bytes:
    """The group without the Logs fields of the logs ``where`` dropped, everything else (the kept logs' bytes,
    topic, source, tags, their order) as stored: nothing to re-encode, fields such as Time_ns survive, and
    the C scanner writes the same bytes."""
    spans = _log_fields(group)
    if spans is None or len(spans) != len(rows):
        return _rebuild_group(group, kept)
    ids = {id(r) for r in kept}
    parts: list[bytes] = []
    at = 0
    for (a, b), r in zip(spans, rows):
        if id(r) not in ids:
            parts.append(group[at:a])
            at = b
    parts.append(group[at:])
    return b"".join(parts)


def evaluate_rows(text: str, rows: Iterable[Row]) -> list[Row]:
    """Run a statement over dict rows (tests, the console): copies, so the input is untouched."""
    return compile_spl(text).run([dict(r) for r in rows])
