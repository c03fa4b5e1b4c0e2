"""SLS search syntax (the part of a GetLogs query before ``|``): a lark grammar, an AST, and two ways to run
it that agree by construction:

* :func:`row_matcher` evaluates it over decoded logs (logstores without an index are searched by scanning),
* :func:`to_sql` turns it into a DuckDB ``WHERE`` clause over the indexer's table (hub/query/engine.py).

Syntax: ``*``; ``term`` (full text); ``"a phrase"``; ``key: value`` / ``key: "phrase"`` / ``key: val*``
(``*`` any run, ``?`` one character within a token); ``key > 10``, ``>=``, ``<``, ``<=``, ``=``;
``key in [10 20]`` (``(``/``)`` exclusive); ``and``, ``or``, ``not`` (any case), parentheses; terms side by
side mean ``and``. ``__topic__``, ``__source__`` and ``__tag__:<key>`` are keys too.

Semantics (both paths): text is split into tokens at the index's delimiters (SLS's defaults, plus ``\\``
and NUL); a term matches a whole token (case-insensitive unless the index says otherwise); full text looks
at every field's key and value; a phrase is its tokens in order separated only by delimiters; numeric
comparisons cast the value and never match text that is not a number. Every pattern runs on RE2 (DuckDB's
regexp functions are RE2 too), so no query can backtrack. No I/O here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Union

from lark import Lark, Transformer
from lark.exceptions import LarkError, UnexpectedInput, VisitError

from ...wire import errors as E
from .index import DEFAULT_TOKENS, IndexSpec
from .patterns import compile_pattern

__all__ = ["Node", "parse_search", "row_matcher", "to_sql", "split_query", "full_text", "MAX_QUERY_BYTES",
           "All", "Term", "Phrase", "Compare", "Range", "And", "Or", "Not"]

MAX_QUERY_BYTES = 64 * 1024
"""Longest GetLogs query accepted (search and SQL together)."""

GRAMMAR = r"""
?start: or_q
      |                                   -> all
?or_q: and_q | or_q OR and_q              -> or_
?and_q: not_q
      | and_q AND not_q                   -> and_
      | and_q not_q                       -> and_
?not_q: atom | NOT not_q                  -> not_
?atom: "(" or_q ")"
     | "*"                                -> all
     | WORD ":" WORD                      -> field_term
     | WORD ":" PHRASE                    -> field_phrase
     | WORD ":" "*"                       -> field_exists
     | WORD COMP WORD                     -> compare
     | WORD IN LB WORD WORD RB            -> range_
     | PHRASE                             -> phrase
     | WORD                               -> term

OR.2: /(?i:or)(?![^\s():"<>=\[\]])/
AND.2: /(?i:and)(?![^\s():"<>=\[\]])/
NOT.2: /(?i:not)(?![^\s():"<>=\[\]])/
IN.2: /(?i:in)(?=\s*[\[(])/
LB: "[" | "("
RB: "]" | ")"
COMP: ">=" | "<=" | ">" | "<" | "="
WORD: /__tag__:[^\s:()"<>=\[\]]+/ | /[^\s:()"<>=\[\]]+/
PHRASE: /"(?:[^"\\]|\\.)*"/
%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)

_EXTRA_DELIMS = ("\\", "\x00")


# ------------------------------------------------------------------ AST


@dataclass(frozen=True)
class All:
    pass


@dataclass(frozen=True)
class Term:
    text: str
    key: str | None = None  # None: full text


@dataclass(frozen=True)
class Phrase:
    text: str
    key: str | None = None


@dataclass(frozen=True)
class Exists:
    key: str


@dataclass(frozen=True)
class Compare:
    key: str
    op: str
    value: float


@dataclass(frozen=True)
class Range:
    key: str
    lo: float
    hi: float
    lo_incl: bool
    hi_incl: bool


@dataclass(frozen=True)
class And:
    a: "Node"
    b: "Node"


@dataclass(frozen=True)
class Or:
    a: "Node"
    b: "Node"


@dataclass(frozen=True)
class Not:
    a: "Node"


Node = Union[All, Term, Phrase, Exists, Compare, Range, And, Or, Not]


def _number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise E.ParameterInvalid(f"invalid query: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise E.ParameterInvalid(f"invalid query: {text!r} is not a finite number")
    return v


class _Build(Transformer):  # type: ignore[type-arg]
    def all(self, _: Any) -> Node:
        return All()

    def term(self, items: Any) -> Node:
        return All() if str(items[0]) == "*" else Term(str(items[0]))

    def phrase(self, items: Any) -> Node:
        return Phrase(_unphrase(items[0]))

    def field_term(self, items: Any) -> Node:
        key, value = str(items[0]), str(items[1])
        return Exists(key) if value == "*" else Term(value, key)

    def field_phrase(self, items: Any) -> Node:
        return Phrase(_unphrase(items[1]), str(items[0]))

    def field_exists(self, items: Any) -> Node:
        return Exists(str(items[0]))

    def compare(self, items: Any) -> Node:
        return Compare(str(items[0]), str(items[1]), _number(str(items[2])))

    def range_(self, items: Any) -> Node:
        key, _, lb, lo, hi, rb = items
        return Range(str(key), _number(str(lo)), _number(str(hi)), str(lb) == "[", str(rb) == "]")

    def and_(self, items: Any) -> Node:
        a, b = items[0], items[-1]
        return And(a, b)

    def or_(self, items: Any) -> Node:
        return Or(items[0], items[2])

    def not_(self, items: Any) -> Node:
        return Not(items[-1])


def _unphrase(tok: str) -> str:
    body = tok[1:-1]
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(body[i + 1])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def split_query(query: str) -> tuple[str, str | None]:
    """``search | sql`` -> (search, sql or None). A ``|`` inside double or single quotes does not split."""
    if len(query.encode()) > MAX_QUERY_BYTES:
        raise E.ParameterInvalid(f"invalid query: longer than {MAX_QUERY_BYTES} bytes")
    quote = None
    for i, ch in enumerate(query):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "|":
            return query[:i].strip(), query[i + 1:].strip()
    return query.strip(), None


@lru_cache(maxsize=256)
def parse_search(text: str) -> Node:
    """The AST of a search expression (``""`` and ``*`` match everything); ``ParameterInvalid`` otherwise."""
    if len(text.encode()) > MAX_QUERY_BYTES:
        raise E.ParameterInvalid(f"invalid query: longer than {MAX_QUERY_BYTES} bytes")
    if not text.strip():
        return All()
    try:
        return _Build().transform(_PARSER.parse(text))  # type: ignore[no-any-return]
    except UnexpectedInput as exc:
        token = getattr(exc, "token", None)
        what = f"mismatched input {str(token)!r}" if token is not None else "unexpected input"
        raise E.ParameterInvalid(f"invalid query: line {getattr(exc, 'line', 1)}:{getattr(exc, 'column', 0)} "
                                 f"{what}") from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, E.SLSError):
            raise exc.orig_exc from None
        raise E.ParameterInvalid(f"invalid query: {exc.orig_exc}") from None
    except LarkError as exc:
        raise E.ParameterInvalid(f"invalid query: {exc}") from None


# ------------------------------------------------------------------ token patterns (shared by both paths)


def _delims(tokens: tuple[str, ...]) -> str:
    chars = sorted(set(tokens) | set(_EXTRA_DELIMS))
    return "".join("\\x%02x" % ord(c) if ord(c) < 0x80 else c for c in chars)


def _re_escape(s: str) -> str:
    return "".join("\\" + c if not (c.isalnum() or c == "_" or ord(c) >= 0x80) else c for c in s)


def term_regex(term: str, tokens: tuple[str, ...], case_sensitive: bool) -> str:
    """RE2 pattern: ``term`` (with ``*``/``?`` wildcards) as one whole token."""
    d = _delims(tokens)
    body = "".join(f"[^{d}]*" if c == "*" else f"[^{d}]" if c == "?" else _re_escape(c) for c in term)
    flags = "" if case_sensitive else "(?i)"
    return f"{flags}(?:^|[{d}]){body}(?:$|[{d}])"


def phrase_regex(phrase: str, tokens: tuple[str, ...], case_sensitive: bool) -> str:
    """RE2 pattern: the phrase's tokens in order, separated only by delimiters."""
    d = _delims(tokens)
    delims = set(tokens) | set(_EXTRA_DELIMS)
    words, cur = [], []
    for c in phrase:
        if c in delims:
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(c)
    if cur:
        words.append("".join(cur))
    if not words:
        return "(?:)"
    flags = "" if case_sensitive else "(?i)"
    return f"{flags}(?:^|[{d}])" + f"[{d}]+".join(_re_escape(w) for w in words) + f"(?:$|[{d}])"


def full_text(fields: dict[str, Any]) -> str:
    """The text full-text search looks at: every content field's key and value, NUL-separated."""
    parts = []
    for k, v in fields.items():
        parts.append(k)
        parts.append(v if isinstance(v, str) else v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
    return "\x00".join(parts)


# ------------------------------------------------------------------ evaluating over rows (scan)

_META = ("__time__", "__topic__", "__source__")


def _content(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _META and not k.startswith("__tag__:")}


def _as_float(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
}


def row_matcher(node: Node, spec: IndexSpec | None = None) -> Callable[[dict[str, Any]], bool]:
    """A predicate over decoded logs (dicts with ``__time__``, ``__topic__``, ``__tag__:k`` and fields)."""
    tokens = spec.tokens if spec else tuple(DEFAULT_TOKENS)
    line_cs = spec.line_case_sensitive if spec else False

    def key_opts(key: str) -> tuple[tuple[str, ...], bool, str]:
        k = spec.keys.get(key) if spec else None
        return (k.tokens, k.case_sensitive, k.type) if k else (tuple(DEFAULT_TOKENS), False, "text")

    def build(n: Node) -> Callable[[dict[str, Any]], bool]:
        if isinstance(n, All):
            return lambda row: True
        if isinstance(n, (Term, Phrase)):
            if n.key is None:
                pat = compile_pattern(term_regex(n.text, tokens, line_cs) if isinstance(n, Term)
                                      else phrase_regex(n.text, tokens, line_cs))
                return lambda row: pat.search(full_text(_content(row))) is not None
            toks, cs, kind = key_opts(n.key)
            key = n.key
            if kind in ("long", "double") and isinstance(n, Term) and "*" not in n.text and "?" not in n.text:
                want = _as_float(n.text)
                return lambda row: want is not None and _as_float(row.get(key)) == want
            pat = compile_pattern(term_regex(n.text, toks, cs) if isinstance(n, Term)
                                  else phrase_regex(n.text, toks, cs))

            def match(row: dict[str, Any]) -> bool:
                v = row.get(key)
                if v is None:
                    return False
                return pat.search(v if isinstance(v, str) else str(v)) is not None
            return match
        if isinstance(n, Exists):
            return lambda row, k=n.key: row.get(k) is not None
        if isinstance(n, Compare):
            op, want, key = _OPS[n.op], n.value, n.key
            return lambda row: (v := _as_float(row.get(key))) is not None and op(v, want)
        if isinstance(n, Range):
            r = n

            def in_range(row: dict[str, Any]) -> bool:
                v = _as_float(row.get(r.key))
                if v is None:
                    return False
                return (v >= r.lo if r.lo_incl else v > r.lo) and (v <= r.hi if r.hi_incl else v < r.hi)
            return in_range
        if isinstance(n, And):
            a, b = build(n.a), build(n.b)
            return lambda row: a(row) and b(row)
        if isinstance(n, Or):
            a, b = build(n.a), build(n.b)
            return lambda row: a(row) or b(row)
        if isinstance(n, Not):
            a = build(n.a)
            return lambda row: not a(row)
        raise TypeError(n)

    return build(node)


# ------------------------------------------------------------------ DuckDB WHERE


def _prefiltered(column: str, text: str, tokens: tuple[str, ...], case_sensitive: bool, regex_sql: str) -> str:
    """``regex_sql`` behind a plain substring test of the term's longest literal piece: DuckDB's AND drops
    the rows failing the cheap test before the regex runs (a full-text regex over every line was the cost of
    a search). ASCII pieces only, so Python's and DuckDB's lowercasing agree."""
    delims = set(tokens) | set(_EXTRA_DELIMS) | {"*", "?"}
    pieces, cur = [], []
    for c in text:
        if c in delims:
            pieces.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    pieces.append("".join(cur))
    piece = max(pieces, key=len)
    if len(piece) < 2 or not piece.isascii():
        return regex_sql
    if case_sensitive:
        return f"(contains({column}, {sql_string(piece)}) AND {regex_sql})"
    return f"(contains(lower({column}), {sql_string(piece.lower())}) AND {regex_sql})"


def sql_string(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def to_sql(node: Node, spec: IndexSpec | None, column_of: Callable[[str], tuple[str, str]],
           raw_of: Callable[[str], str] | None = None) -> str:
    """A DuckDB boolean expression for ``node``. ``column_of(key)`` gives (SQL expression of the key's
    value, its type: text/long/double); ``raw_of(key)`` the key's text as logged (for ``key: *``, which a
    typed key's non-numeric value also satisfies); ``line`` is the full-text column (see :func:`full_text`)."""
    tokens = spec.tokens if spec else tuple(DEFAULT_TOKENS)
    line_cs = spec.line_case_sensitive if spec else False

    def key_opts(key: str) -> tuple[tuple[str, ...], bool]:
        k = spec.keys.get(key) if spec else None
        return (k.tokens, k.case_sensitive) if k else (tuple(DEFAULT_TOKENS), False)

    def build(n: Node) -> str:
        if isinstance(n, All):
            return "TRUE"
        if isinstance(n, (Term, Phrase)):
            if n.key is None:
                pat = (term_regex(n.text, tokens, line_cs) if isinstance(n, Term)
                       else phrase_regex(n.text, tokens, line_cs))
                compile_pattern(pat)
                return _prefiltered("line", n.text, tokens, line_cs, f"regexp_matches(line, {sql_string(pat)})")
            col, kind = column_of(n.key)
            if kind in ("long", "double") and isinstance(n, Term) and "*" not in n.text and "?" not in n.text:
                want = _as_float(n.text)
                return "FALSE" if want is None else f"coalesce({col} = {want!r}, FALSE)"
            toks, cs = key_opts(n.key)
            pat = term_regex(n.text, toks, cs) if isinstance(n, Term) else phrase_regex(n.text, toks, cs)
            compile_pattern(pat)
            text = f"CAST({col} AS VARCHAR)"
            return _prefiltered(text, n.text, toks, cs, f"coalesce(regexp_matches({text}, {sql_string(pat)}), FALSE)")
        if isinstance(n, Exists):
            col = raw_of(n.key) if raw_of is not None else column_of(n.key)[0]
            return f"({col} IS NOT NULL)"
        if isinstance(n, Compare):
            col, kind = column_of(n.key)
            num = col if kind in ("long", "double") else f"TRY_CAST({col} AS DOUBLE)"
            op = n.op
            return f"coalesce({num} {op} {n.value!r}, FALSE)"
        if isinstance(n, Range):
            col, kind = column_of(n.key)
            num = col if kind in ("long", "double") else f"TRY_CAST({col} AS DOUBLE)"
            lo = ">=" if n.lo_incl else ">"
            hi = "<=" if n.hi_incl else "<"
            return f"coalesce({num} {lo} {n.lo!r} AND {num} {hi} {n.hi!r}, FALSE)"
        if isinstance(n, And):
            return f"({build(n.a)} AND {build(n.b)})"
        if isinstance(n, Or):
            return f"({build(n.a)} OR {build(n.b)})"
        if isinstance(n, Not):
            return f"(NOT {build(n.a)})"
        raise TypeError(n)

    return build(node)
