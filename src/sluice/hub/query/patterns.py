"""User-supplied regular expressions, compiled with RE2 (linear time: no pattern can stall the hub).

Every pattern a query carries (SPL ``regexp_like``/``parse-regexp``, ``like``, search wildcards) goes through
:func:`compile_pattern`; Python's backtracking ``re`` is never given a user's pattern. Compiled patterns are
cached (queries repeat: a consumer sends the same SPL with every pull). No I/O here.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

from ...wire import errors as E

__all__ = ["compile_pattern", "like_to_regex", "MAX_PATTERN_MEMORY"]

MAX_PATTERN_MEMORY = 8 << 20
"""RE2's memory budget per compiled pattern (bytes); a pattern needing more is refused."""

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a user's bad pattern is an answer to the user, not a line on the hub's stderr
_OPTIONS.max_mem = MAX_PATTERN_MEMORY
_OPTIONS_I = re2.Options()
_OPTIONS_I.log_errors = False
_OPTIONS_I.max_mem = MAX_PATTERN_MEMORY
_OPTIONS_I.case_sensitive = False


@lru_cache(maxsize=512)
def compile_pattern(pattern: str, ignore_case: bool = False) -> Any:
    """An RE2 pattern object (``search``, ``match``, ``groups``, ``groupindex``); a pattern RE2 refuses
    raises ``ParameterInvalid`` naming it."""
    try:
        return re2.compile(pattern, options=_OPTIONS_I if ignore_case else _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise E.ParameterInvalid(f"invalid query: bad regular expression {pattern!r}: {detail}") from None


def like_to_regex(pattern: str, escape: str | None = None) -> str:
    """SQL LIKE (``%`` any run, ``_`` one character) as an anchored RE2 pattern."""
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if escape is not None and ch == escape and i + 1 < len(pattern):
            out.append(re2.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re2.escape(ch))
        i += 1
    out.append("$")
    return "(?s)" + "".join(out)
