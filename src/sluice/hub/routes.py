"""The hub's one route table: every SLS API it serves, in every request form the official SDKs send.

Each entry is method + path pattern (+ a selector on query parameters) -> API name, access class, handler.
Everything that needs to know which API a request is comes from here: the dispatch, the access decision
(``auth.authorize`` on the entry's access class), the ``api`` label of the request metrics, and the one error
for a request no entry takes. So a request can never be authorized as one API and executed as another.

Adding an API is one entry here and one handler in ``hub/api/`` (docs/hub-internals.md shows it).

Matching, in order:

1. the path's segments (empty ones dropped) against each pattern: a literal matches itself, ``{name}`` any
   segment, ``{name:int}`` a segment that is an integer (or else the request is answered ShardNotExist, as SLS
   does for ``/shards/abc``);
2. among the entries of that shape and method, more literal segments win (``/shards/lb`` before
   ``/shards/{shard:int}``), then entries with a selector are tried before one without;
3. a shape and method whose every entry has a selector on a parameter the request does not satisfy is
   ParameterInvalid naming the valid values; a shape with no entry for the method is RouteNotFound.

Paths under ``/logstores`` need the project (from ``Host``) to exist before any handler runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..wire import errors as E
from .api import consumer_groups, heartbeats, logs, logstores, projects, shards, waits
from .api.context import ApiContext
from .api.request import Request
from .auth import Access
from .query.handlers import ROUTE_HANDLERS as _Q

__all__ = ["Route", "Match", "RouteTable", "TABLE", "ANY", "UNKNOWN_API"]

Handler = Callable[[ApiContext, Request], Awaitable[web.StreamResponse]]

ANY = "*"
"""A selector value meaning "present and not empty"."""
UNKNOWN_API = "Unknown"
"""The API name of a request no entry takes: its metrics label, and a write for the access decision."""


@dataclass(frozen=True)
class Route:
    """One API in one request form. ``select`` maps query parameters to the value they must have (or ANY);
    ``when`` is a further test on the request (ListProject vs GetProject); ``project``: "none" (no project
    needed), "named" (the Host must name one; the handler looks it up) or "exists" (checked before the
    handler runs)."""

    method: str
    path: str
    api: str
    access: Access
    handler: Handler
    select: Mapping[str, str] = field(default_factory=dict)
    when: Callable[[Request], bool] | None = None
    project: str = "exists"
    # compiled from ``path`` once (matching runs per request, so it only compares strings):
    size: int = field(init=False, repr=False, compare=False)  # number of segments
    literals: int = field(init=False, repr=False, compare=False)  # how many are literal
    checks: tuple[tuple[int, str], ...] = field(init=False, repr=False, compare=False)  # (position, literal)
    captures: tuple[tuple[int, str, str], ...] = field(init=False, repr=False, compare=False)  # (pos, name, conv)

    def __post_init__(self) -> None:
        checks, captures = [], []
        parts = [p for p in self.path.split("/") if p]
        for i, part in enumerate(parts):
            if part.startswith("{") and part.endswith("}"):
                name, _, conv = part[1:-1].partition(":")
                captures.append((i, name, conv or "str"))
            else:
                checks.append((i, part))
        for name, value in (("size", len(parts)), ("literals", len(checks)), ("checks", tuple(checks)),
                            ("captures", tuple(captures))):
            object.__setattr__(self, name, value)

    def shape_matches(self, parts: list[str]) -> bool:
        if len(parts) != self.size:
            return False
        for i, lit in self.checks:
            if parts[i] != lit:
                return False
        return True

    def selected(self, req: Request) -> bool:
        for key, want in self.select.items():
            got = req.params.get(key)
            if not got if want == ANY else got != want:
                return False
        return self.when is None or self.when(req)


class Match:
    """The outcome of routing one request: the entry (None if none takes it), its path arguments, and the
    error to answer instead of running a handler (raised only after the access decision, as before).
    A plain slotted class: one is made per request."""

    __slots__ = ("route", "args", "error")

    def __init__(self, route: Route | None, args: dict[str, Any], error: E.SLSError | None = None) -> None:
        self.route = route
        self.args = args
        self.error = error

    @property
    def api(self) -> str:
        return self.route.api if self.route is not None else UNKNOWN_API

    @property
    def access(self) -> Access:
        return self.route.access if self.route is not None else Access.WRITE


def _convert(route: Route, parts: list[str]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for i, name, conv in route.captures:
        if conv == "int":
            try:
                args[name] = int(parts[i])
            except ValueError:
                raise E.ShardNotExist(f"{name} {parts[i]!r} does not exist") from None
        else:
            args[name] = parts[i]
    return args


class RouteTable:
    def __init__(self, routes: list[Route]) -> None:
        self.routes: list[Route] = []
        self._by_shape: dict[tuple[int, str], list[Route]] = {}  # (segments, method) -> entries in matching order
        for r in routes:
            self.add(r)

    def add(self, route: Route) -> None:
        """Add an entry. Most literal segments first, then entries with a selector before the fallback
        without one; otherwise in the order added (an earlier entry wins a tie)."""
        self.routes.append(route)
        same = [r for r in self.routes if (r.size, r.method) == (route.size, route.method)]
        self._by_shape[(route.size, route.method)] = sorted(same, key=lambda r: (-r.literals, not (r.select or r.when)))

    def apis(self, access: Access) -> frozenset[str]:
        """The API names of one access class (what docs and tests list)."""
        return frozenset(r.api for r in self.routes if r.access is access)

    def match(self, req: Request) -> Match:
        parts = req.parts
        candidates = [r for r in self._by_shape.get((len(parts), req.method), ()) if r.shape_matches(parts)]
        if not candidates:  # no such path, or none for this method: the same answer
            return Match(None, {}, E.RouteNotFound(f"no API at {req.method} {req.path}"))
        top = candidates[0].literals
        candidates = [r for r in candidates if r.literals == top]
        try:
            args = _convert(candidates[0], parts)
        except E.SLSError as exc:
            return Match(None, {}, exc)
        for r in candidates:
            if r.selected(req):
                return Match(r, args)
        keys = sorted({k for r in candidates for k in r.select})
        key = keys[0] if keys else "type"
        valid = ", ".join(sorted({r.select[key] for r in candidates if r.select.get(key, ANY) != ANY}))
        return Match(None, args, E.ParameterInvalid(f"{key} {req.params.get(key)!r} is not valid: use {valid}"))


def _unsupported(message: str) -> Handler:
    async def handler(ctx: ApiContext, req: Request) -> web.StreamResponse:
        raise E.ParameterInvalid(message)
    return handler


_QUERY = _unsupported("query APIs (GetLogs, GetHistograms) are not supported by the hub")

R, W, C, A, L = Access.READ, Access.WRITE, Access.CONSUME, Access.ADMIN, Access.LIST
_LS = "/logstores/{logstore}"
_SHARD = _LS + "/shards/{shard:int}"
_GROUP = _LS + "/consumergroups/{group}"

TABLE = RouteTable([
    # projects: "/" with the project in Host
    Route("GET", "/", "ListProject", L, projects.list_projects, when=projects.is_list_project, project="none"),
    Route("GET", "/", "GetProject", R, projects.get_project, project="named"),
    Route("POST", "/", "CreateProject", A, projects.create_project, project="none"),
    Route("PUT", "/", "UpdateProject", W, projects.update_project, project="named"),
    Route("DELETE", "/", "DeleteProject", A, projects.delete_project, project="named"),
    # logstores
    Route("GET", "/logstores", "ListLogstore", R, logstores.list_logstores),
    Route("POST", "/logstores", "CreateLogstore", W, logstores.create_logstore),
    Route("GET", _LS, "GetLogstore", R, logstores.get_logstore),
    Route("PUT", _LS, "UpdateLogstore", W, logstores.update_logstore),
    Route("DELETE", _LS, "DeleteLogstore", W, logstores.delete_logstore),
    Route("GET", _LS, "GetLogs", R, _Q["GetLogs"], select={"type": "log"}),
    Route("GET", _LS, "GetHistograms", R, _Q["GetHistograms"], select={"type": "histogram"}),
    Route("GET", _LS, "GetLogs", R, _QUERY, select={"type": ANY}),
    Route("GET", _LS + "/logs", "GetLogs", R, _unsupported("query APIs (GetLogs) are not supported by the hub")),
    Route("POST", _LS + "/logs", "GetLogs", R, _Q["GetLogsV2"]),
    # index configs (#21)
    Route("GET", _LS + "/index", "GetIndex", R, _Q["Index"]),
    Route("POST", _LS + "/index", "CreateIndex", W, _Q["Index"]),
    Route("PUT", _LS + "/index", "UpdateIndex", W, _Q["Index"]),
    Route("DELETE", _LS + "/index", "DeleteIndex", W, _Q["Index"]),
    # data plane: PutLogs as Python/Java send it (/shards/lb, /shards/route?key=) and as Go sends it (/logstores/x)
    Route("POST", _LS + "/shards/lb", "PutLogs", W, logs.put_logs),
    Route("POST", _LS + "/shards/route", "PutLogs", W, logs.put_logs_routed),
    Route("POST", _LS, "PutLogs", W, logs.put_logs),
    # shards; PullLogs is type=log (Python, Java) or type=logs (Go)
    Route("GET", _LS + "/shards", "ListShards", R, shards.list_shards),
    Route("GET", _SHARD, "PullLogs", R, logs.pull_logs, select={"type": "log"}),
    Route("GET", _SHARD, "PullLogs", R, logs.pull_logs, select={"type": "logs"}),
    Route("GET", _SHARD, "GetCursor", R, shards.get_cursor, select={"type": "cursor"}),
    Route("GET", _SHARD, "GetCursorTime", R, shards.get_cursor_time, select={"type": "cursor_time"}),
    Route("POST", _SHARD, "SplitShard", W, shards.split_shard, select={"action": "split"}),
    Route("POST", _SHARD, "MergeShard", W, shards.merge_shard, select={"action": "merge"}),
    Route("DELETE", _SHARD, "DeleteShard", W, shards.delete_shard),
    # consumer groups
    Route("GET", _LS + "/consumergroups", "ListConsumerGroup", R, consumer_groups.list_groups),
    Route("POST", _LS + "/consumergroups", "CreateConsumerGroup", C, consumer_groups.create_group),
    Route("PUT", _GROUP, "UpdateConsumerGroup", C, consumer_groups.update_group),
    Route("DELETE", _GROUP, "DeleteConsumerGroup", W, consumer_groups.delete_group),
    Route("POST", _GROUP, "Heartbeat", C, consumer_groups.heartbeat, select={"type": "heartbeat"}),
    Route("POST", _GROUP, "UpdateCheckPoint", C, consumer_groups.update_checkpoint, select={"type": "checkpoint"}),
    Route("GET", _GROUP, "GetCheckPoint", R, consumer_groups.get_checkpoints),
    # sluice's own: one parked request waits on many shards (consumer/waiter.py); SLS answers an error
    Route("POST", "/sluice/wait", "WaitShards", R, waits.wait),
    # sluice's own: the heartbeats of many consumers of one process in one request (consumer/waiter.py)
    Route("POST", "/sluice/heartbeats", "Heartbeats", C, heartbeats.heartbeats),
])
