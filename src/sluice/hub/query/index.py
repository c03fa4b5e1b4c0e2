"""A logstore's index configuration as SLS spells it (CreateIndex/GetIndex/UpdateIndex/DeleteIndex bodies).

``{"line": {"token": [...], "caseSensitive": bool, "chn": bool}, "keys": {"<key>": {"type": "text"|"long"|
"double"|"json", "token": [...], "caseSensitive": bool, "doc_value": bool, "alias": str}}, ...}``

:func:`validate` checks a body and returns it normalised (what GetIndex answers); :class:`IndexSpec` is what
search and SQL need from it: which keys are typed, which are case-sensitive, whether full text is on.
The config is persisted inside the logstore's own config (key :data:`CONFIG_KEY`), so it lives and dies
with the logstore. No I/O here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ...wire import errors as E

__all__ = ["CONFIG_KEY", "IndexSpec", "KeySpec", "validate", "index_error", "DEFAULT_TOKENS", "MAX_INDEX_KEYS"]

CONFIG_KEY = "sluice_index"
"""Where the index body is kept in the logstore's persisted config."""

DEFAULT_TOKENS = [",", " ", "'", '"', ";", "=", "(", ")", "[", "]", "{", "}", "?", "@", "&", "<", ">", "/", ":",
                  "\n", "\t", "\r"]
"""SLS's default token delimiters."""

MAX_INDEX_KEYS = 500
"""Most field indexes in one logstore (SLS allows 500)."""

_TYPES = {"text", "long", "double", "json"}
_KEY_NAME = re.compile(r"[^\x00-\x1f]{1,128}")  # fullmatch: "$" would let a trailing newline in


def index_error(code: str, message: str, status: int = 400) -> E.SLSError:
    """SLS's index error codes (IndexConfigNotExist, IndexAlreadyExist, IndexInfoInvalid)."""
    return E.SLSError(message, error_code=code, http_status=status)


@dataclass(frozen=True)
class KeySpec:
    name: str
    type: str  # text | long | double | json
    case_sensitive: bool = False
    tokens: tuple[str, ...] = tuple(DEFAULT_TOKENS)
    alias: str = ""


@dataclass(frozen=True)
class IndexSpec:
    """What queries need from a logstore's index (None of it: the logstore has no index)."""

    line: bool
    line_case_sensitive: bool = False
    keys: dict[str, KeySpec] = field(default_factory=dict)
    tokens: tuple[str, ...] = tuple(DEFAULT_TOKENS)

    @classmethod
    def from_config(cls, body: dict[str, Any] | None) -> "IndexSpec | None":
        if not body:
            return None
        line = body.get("line")
        keys = {}
        for name, k in (body.get("keys") or {}).items():
            keys[name] = KeySpec(name, k.get("type", "text"), bool(k.get("caseSensitive", False)),
                                 tuple(k.get("token") or DEFAULT_TOKENS), str(k.get("alias") or ""))
        return cls(line=line is not None,
                   line_case_sensitive=bool(line.get("caseSensitive", False)) if line else False,
                   keys=keys, tokens=tuple((line or {}).get("token") or DEFAULT_TOKENS))


def _tokens(value: Any, where: str) -> list[str]:
    if value is None:
        return list(DEFAULT_TOKENS)
    if not isinstance(value, list) or not all(isinstance(t, str) and len(t) == 1 for t in value):
        raise index_error("IndexInfoInvalid", f"{where}.token must be a list of single characters")
    return value


def validate(body: Any) -> dict[str, Any]:
    """The index body normalised, or ``IndexInfoInvalid``."""
    if not isinstance(body, dict):
        raise index_error("IndexInfoInvalid", "the index body must be a JSON object")
    out: dict[str, Any] = {}
    line = body.get("line")
    if line is not None:
        if not isinstance(line, dict):
            raise index_error("IndexInfoInvalid", "line must be an object")
        out["line"] = {**line, "token": _tokens(line.get("token"), "line"),
                       "caseSensitive": bool(line.get("caseSensitive", False))}
    keys = body.get("keys")
    if keys is not None:
        if not isinstance(keys, dict):
            raise index_error("IndexInfoInvalid", "keys must be an object of key -> config")
        if len(keys) > MAX_INDEX_KEYS:
            raise index_error("IndexInfoInvalid", f"{len(keys)} key indexes exceed the limit of {MAX_INDEX_KEYS}")
        norm = {}
        for name, k in keys.items():
            if not _KEY_NAME.fullmatch(name) or not isinstance(k, dict):
                raise index_error("IndexInfoInvalid", f"key {name!r}: invalid name or config")
            kind = k.get("type", "text")
            if kind not in _TYPES:
                raise index_error("IndexInfoInvalid", f"key {name!r}: type must be one of {sorted(_TYPES)}")
            entry = {**k, "type": kind, "doc_value": bool(k.get("doc_value", False))}
            if kind in ("text", "json"):
                entry["token"] = _tokens(k.get("token"), f"keys.{name}")
                entry["caseSensitive"] = bool(k.get("caseSensitive", False))
            norm[name] = entry
        out["keys"] = norm
    if "line" not in out and not out.get("keys"):
        raise index_error("IndexInfoInvalid", "an index needs a line (full text) config or at least one key")
    for extra in ("log_reduce", "max_text_len", "scan_index", "log_reduce_white_list", "log_reduce_black_list"):
        if extra in body:
            out[extra] = body[extra]
    return out
