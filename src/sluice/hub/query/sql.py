"""The analytic part of a GetLogs query (after ``|``): SLS's Presto-flavoured SQL mapped onto DuckDB with
sqlglot, and checked so that it can read nothing but the logstore's own rows.

SLS lets the statement leave out ``FROM`` (``* | select status, count(*) group by status``) or name
``log``; both read the rows the search part selected (a CTE named ``log`` built by the engine). Anything
else a user could reach through DuckDB (other tables, files, settings, extensions) is refused here, and the
engine's connection also has external access disabled. ``__time__`` is seconds since the epoch, as in SLS;
``date_trunc``/``date_format`` given it directly get a timestamp. No I/O here.
"""

from __future__ import annotations

from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from ...wire import errors as E

__all__ = ["to_duckdb", "is_analytic"]

_ALLOWED_ROOTS = (exp.Select, exp.Union, exp.Subquery)


def _bad(message: str) -> E.SLSError:
    return E.ParameterInvalid(f"invalid query: {message}")


def _time_arg(node: exp.Expression) -> exp.Expression:
    """``__time__`` (bigint seconds) where a timestamp is expected -> ``to_timestamp(__time__)``."""
    if isinstance(node, exp.Column) and node.name == "__time__":
        return exp.func("to_timestamp", node.copy())
    return node


@lru_cache(maxsize=256)
def to_duckdb(statement: str) -> str:
    """The statement as DuckDB SQL reading from ``log``; ``ParameterInvalid`` when it is not one SELECT
    over the logstore."""
    try:
        trees = sqlglot.parse(statement, read="presto")
    except (ParseError, SqlglotError) as exc:
        raise _bad(f"line {getattr(exc, 'errors', [{}])[0].get('line', 1) if getattr(exc, 'errors', None) else 1}: "
                   f"{str(exc).splitlines()[0][:300]}") from None
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        raise _bad("exactly one SELECT statement is allowed after '|'")
    tree = trees[0]
    if not isinstance(tree, _ALLOWED_ROOTS):
        raise _bad(f"only SELECT is allowed after '|', got {tree.key.upper()}")
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for table in list(tree.find_all(exp.Table)):
        if table.args.get("db") or table.args.get("catalog") or not isinstance(table.this, exp.Identifier):
            raise _bad(f"table {table.sql()} does not exist; query the logstore as 'log' (or leave out FROM)")
        if table.name.lower() not in ("log", *ctes):
            raise _bad(f"table {table.name} does not exist; query the logstore as 'log' (or leave out FROM)")
        table.set("this", exp.to_identifier("log")) if table.name.lower() == "log" else None
    for node in tree.find_all(exp.Command, exp.Pragma, exp.Set):
        raise _bad(f"{node.key} is not allowed")
    for select in tree.find_all(exp.Select):
        if select.args.get("from") is None and select.args.get("from_") is None:
            select.from_("log", copy=False)
    for node in list(tree.find_all(exp.DateTrunc, exp.TimestampTrunc, exp.TimeToStr)):
        arg = node.this
        if isinstance(arg, exp.Column) and arg.name == "__time__":
            node.set("this", _time_arg(arg))
    try:
        return tree.sql("duckdb")
    except SqlglotError as exc:
        raise _bad(str(exc).splitlines()[0][:300]) from None


def is_analytic(query: str) -> bool:
    """Whether a GetLogs query has an SQL part (``search | select ...``)."""
    from .search import split_query

    return split_query(query)[1] is not None
