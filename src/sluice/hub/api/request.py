"""What every API handler shares: the decoded request, response builders, and parameter parsing.

Kept apart from the handlers so each resource module (projects, logstores, shards, logs, consumer groups)
reads as a list of small functions, and apart from ``routes.py`` so the table imports handlers, never the
reverse.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping
from urllib.parse import parse_qsl

from aiohttp import web

from ...wire import errors as E
from ..addressing import project_from_host
from ..auth import ANONYMOUS, Principal
from ..limits import MAX_JSON_BODY

__all__ = ["Request", "response", "json_response", "as_bool", "as_int", "check_name", "JSON", "MAX_PAGE",
           "PROJECT_NAME", "LOGSTORE_NAME", "GROUP_NAME"]

JSON = "application/json"
MAX_PAGE = 500  # items in one ListProject/ListLogStores page, as SLS (a bigger or negative size gets this)

# Names are matched in full (re.fullmatch): "$" in a pattern would also accept a name ending in a newline.
PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
LOGSTORE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]")
GROUP_NAME = re.compile(r"[A-Za-z0-9_-]{2,128}")


def check_name(pattern: re.Pattern[str], value: Any) -> bool:
    """True if ``value`` is a string that ``pattern`` matches from its first character to its last."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None


class Request:
    """What a handler needs from an HTTP request, decoded once. ``args`` holds the path's named parts (as
    the route table captured them: ``logstore``, ``shard`` (an int), ``group``)."""

    __slots__ = ("method", "path", "parts", "params", "pairs", "project", "headers", "body", "raw", "principal",
                 "args")

    def __init__(self, raw: web.Request, body: bytes, hostnames: tuple[str, ...]) -> None:
        self.raw = raw
        self.method = raw.method
        self.path = raw.rel_url.path or "/"
        self.parts = [p for p in self.path.split("/") if p]
        self.pairs = parse_qsl(raw.rel_url.raw_query_string, keep_blank_values=True)
        self.params = dict(self.pairs)
        self.headers = raw.headers
        self.project = project_from_host(raw.headers.get("Host"), hostnames)
        self.body = body
        self.principal: Principal = ANONYMOUS  # set once the signature is checked
        self.args: Mapping[str, Any] = {}

    def json(self) -> Any:
        if not self.body:
            raise E.PostBodyInvalid("the request body must be JSON and is empty")
        if len(self.body) > MAX_JSON_BODY:  # refused before parsing (limits.py)
            raise E.PostBodyTooLarge(f"a JSON request body of {len(self.body)} bytes exceeds the limit of "
                                     f"{MAX_JSON_BODY} bytes")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise E.PostBodyInvalid(f"the request body is not valid JSON: {type(exc).__name__}") from None

    def int_param(self, name: str, default: int | None = None) -> int:
        value = self.params.get(name)
        if value is None or value == "":
            if default is None:
                raise E.ParameterInvalid(f"parameter {name} is required")
            return default
        try:
            return int(value)
        except ValueError:
            raise E.ParameterInvalid(f"parameter {name} must be an integer, got {value!r}") from None


def response(status: int = 200, body: bytes | None = None, content_type: str | None = None,
             headers: dict[str, str] | None = None) -> web.Response:
    """A response; an empty success has no Content-Type (clients that parse any JSON-typed body stay calm)."""
    resp = web.Response(status=status, body=body, headers=headers)
    if content_type and body is not None:
        resp.headers["Content-Type"] = content_type
    return resp


def json_response(data: Any) -> web.Response:
    return response(body=json.dumps(data).encode(), content_type=JSON)


def as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise E.ParameterInvalid(f"{name} must be a boolean, got {value!r}")


def as_int(value: Any, name: str, error: type[E.SLSError] = E.ParameterInvalid) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise error(f"{name} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise error(f"{name} must be an integer, got {value!r}") from None
