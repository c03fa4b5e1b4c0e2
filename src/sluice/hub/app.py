"""The hub's HTTP API: SLS API version 0.6.0 routes -> handlers -> responses.

Every response carries ``x-log-requestid``; every failure is SLS's error JSON with the status SLS uses
(``wire.errors``), never a traceback. Successes are exactly 200; an empty success has no Content-Type,
so clients that parse any JSON-typed body are not confused. ``x-log-*`` response headers are lowercase,
as the official SDK looks them up case-sensitively. Absolute-form request targets are accepted (the path
is taken from them, the project from ``Host``), which is what makes ``HTTP_PROXY`` point any SDK here.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from ..wire import errors as E
from ..wire.compress import choose_encoding, compress, decompress
from ..wire.cursor import decode_cursor, encode_cursor
from ..wire.loggroup import parse_group
from .addressing import project_from_host
from .auth import ANONYMOUS, Authenticator, Principal, authorize
from .config import DEFAULT_MAX_PULL_COUNT, HubConfig
from .console import Console
from .groups import GroupCoordinator
from .limits import RequestLimits
from .metrics import HubMetrics, api_name, is_list_project
from .query.spl import apply_to_groups as apply_spl
from .query.spl import compile_spl
from .store.base import KEY_SPACE, GroupMeta, LogstoreMeta, ShardMeta
from .store.sqlite import SQLiteStore

__all__ = ["Hub"]

log = logging.getLogger("sluice.hub")

_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_LOGSTORE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
_GROUP_NAME = re.compile(r"^[A-Za-z0-9_-]{2,128}$")
_JSON = "application/json"


class _Request:
    """What a handler needs from an HTTP request, decoded once."""

    __slots__ = ("method", "path", "parts", "params", "pairs", "project", "headers", "body", "raw", "principal")

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
        self.principal: Principal = ANONYMOUS  # set by Hub.handle once the signature is checked

    def json(self) -> Any:
        if not self.body:
            raise E.PostBodyInvalid("the request body must be JSON and is empty")
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


def _response(status: int = 200, body: bytes | None = None, content_type: str | None = None,
              headers: dict[str, str] | None = None) -> web.Response:
    resp = web.Response(status=status, body=body, headers=headers)
    if content_type and body is not None:
        resp.headers["Content-Type"] = content_type
    return resp


def _json_response(data: Any) -> web.Response:
    return _response(body=json.dumps(data).encode(), content_type=_JSON)


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise E.ParameterInvalid(f"{name} must be a boolean, got {value!r}")


def _as_int(value: Any, name: str, error: type[E.SLSError] = E.ParameterInvalid) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise error(f"{name} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise error(f"{name} must be an integer, got {value!r}") from None


class Hub:
    """The hub's request handling. Owns the coordinators (memory only: consumers re-heartbeat after a
    restart) and the long-poll waiters; durable state is the store's."""

    def __init__(self, config: HubConfig, store: SQLiteStore) -> None:
        self.config = config
        self.store = store
        self.auth = Authenticator(config)
        self.limits = RequestLimits(config)
        self.coordinators: dict[tuple[str, str, str], GroupCoordinator] = {}
        self._rr = itertools.count()
        self._req_prefix = f"{os.getpid() & 0xFFFF:04X}{int(time.time()):08X}"
        self._req_counter = itertools.count(1)
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sluice-read")
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        # Groups that existed before this start: their consumers are still running and will report what
        # they hold; their coordinators hand out unreported shards only after one timeout (no double reads).
        with store.lock:
            self._recovering = {(p, l, g) for (p, l), meta in store.logstores.items() for g in meta.groups}
        store.add_listener(self._on_commit)
        self.metrics = HubMetrics(self)

    # ------------------------------------------------------------------ plumbing
    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_put_bytes + (1 << 20))
        # The web console (/console: no SLS API there) is routed before the catch-all; it has its own sign-in.
        Console(self, self._executor).register(app)
        app.router.add_route("*", r"/{tail:[\s\S]*}", self.handle)  # any path, newlines included
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()
        self._ttl_task = asyncio.create_task(self._retention_routine())

    async def _on_shutdown(self, app: web.Application) -> None:
        """Stopping: answer every long-poll now (empty), so graceful shutdown does not wait them out."""
        self._closing = True
        for waiters in self._waiters.values():
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def _on_cleanup(self, app: web.Application) -> None:
        self._ttl_task.cancel()  # long-polls were already answered in _on_shutdown
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _request_id(self) -> str:
        return f"{self._req_prefix}{next(self._req_counter):012X}"

    async def handle(self, raw: web.Request) -> web.StreamResponse:
        request_id = self._request_id()
        api, body = "Unknown", b""
        try:
            body = await self.limits.read_body(raw)  # size, in-flight bytes and time bounded (limits.py)
            req = _Request(raw, body, self.config.hostnames)
            if req.path == "/metrics" and req.method == "GET":
                return self._metrics_response(req, request_id)
            api = api_name(req.method, req.parts, req.params, req.project)
            req.principal = self.auth.check(req.method, req.path, req.pairs, req.headers, body)
            authorize(req.principal, api, req.project)  # the one access decision, before any route looks
            resp = await self._dispatch(req)
        except E.SLSError as exc:
            if exc.http_status >= 500 and not isinstance(exc, E.ServerBusy):
                log.error("%s %s -> %s: %s", raw.method, raw.rel_url, exc.error_code, exc)
            resp = _response(exc.http_status, json.dumps(exc.to_json()).encode(), _JSON)
            if not raw.content.is_eof():
                resp.force_close()  # the unread rest of a body (too large, refused, too slow) is not worth draining
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must still answer in SLS's format, and be logged
            log.exception("unhandled error on %s %s", raw.method, raw.rel_url)
            err = E.InternalServerError(f"internal error: {type(exc).__name__}")
            resp = _response(500, json.dumps(err.to_json()).encode(), _JSON)
        resp.headers["x-log-requestid"] = request_id
        self.metrics.requests.labels(api, str(resp.status)).inc()
        self.metrics.bytes_in.inc(len(body))
        if resp.body is not None:
            self.metrics.bytes_out.inc(len(resp.body))  # type: ignore[arg-type]
        return resp

    def _metrics_response(self, req: _Request, request_id: str) -> web.Response:
        """Prometheus text format. Open when the hub runs with --no-auth; otherwise it needs
        ``Authorization: Bearer <--metrics-token>`` (Prometheus cannot sign SLS requests)."""
        token = self.config.metrics_token
        if not self.config.no_auth and (not token or req.headers.get("Authorization") != f"Bearer {token}"):
            err = E.Unauthorized("metrics need 'Authorization: Bearer <token>' (start the hub with --metrics-token)")
            resp = _response(401, json.dumps(err.to_json()).encode(), _JSON)
        else:
            resp = _response(body=self.metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")
        resp.headers["x-log-requestid"] = request_id
        return resp

    async def _dispatch(self, req: _Request) -> web.StreamResponse:
        parts, method = req.parts, req.method
        if not parts:
            return await self._project_route(req)
        if parts[0] != "logstores":
            raise E.RouteNotFound(f"no API at {method} {req.path}")
        project = self._require_project(req)
        n = len(parts)
        if n == 1:
            if method == "GET":
                return self._list_logstores(project, req)
            if method == "POST":
                return await self._create_logstore(project, req)
        elif n == 2:
            ls = parts[1]
            if method == "GET":
                if req.params.get("type"):
                    raise E.ParameterInvalid("query APIs (GetLogs, GetHistograms) are not supported by the hub")
                return _json_response(self.store.get_logstore(project, ls).to_json())
            if method == "PUT":
                return await self._update_logstore(project, ls, req)
            if method == "DELETE":
                await asyncio.wrap_future(self.store.delete_logstore(project, ls))
                self._forget_coordinators(project, ls)
                return _response()
        elif parts[2] == "shards":
            return await self._shard_route(project, parts, req)
        elif parts[2] == "consumergroups":
            return await self._group_route(project, parts, req)
        elif n == 3 and parts[2] == "logs":
            raise E.ParameterInvalid("query APIs (GetLogs) are not supported by the hub")
        raise E.RouteNotFound(f"no API at {method} {req.path}")

    def _require_project(self, req: _Request) -> str:
        if req.project is None:
            raise E.ProjectNotExist("no project in the Host header (expected Host: <project>.<endpoint>)")
        self.store.get_project(req.project)
        return req.project

    # ------------------------------------------------------------------ projects
    async def _project_route(self, req: _Request) -> web.StreamResponse:
        method = req.method
        if is_list_project(method, req.project, req.params):
            return self._list_projects(req)
        if method == "POST":
            data = req.json() if req.body else {}
            if not isinstance(data, dict):
                raise E.ProjectInfoInvalid("the project body must be a JSON object")
            name = req.project or data.get("projectName")
            if not isinstance(name, str) or not _PROJECT_NAME.match(name):
                raise E.ProjectInfoInvalid(
                    f"project name {name!r} is invalid: 3-63 lowercase letters, digits or hyphens")
            desc = data.get("description", "")
            extra = {k: str(data[k]) for k in ("resourceGroupId", "dataRedundancyType") if data.get(k)}
            await asyncio.wrap_future(self.store.create_project(name, str(desc or ""), extra))
            return _response()
        if req.project is None:
            raise E.ProjectNotExist("no project in the Host header (expected Host: <project>.<endpoint>)")
        if method == "GET":
            return _json_response(self._project_json(req.project))
        if method == "PUT":
            data = req.json()
            desc = data.get("description", "") if isinstance(data, dict) else ""
            await asyncio.wrap_future(self.store.update_project(req.project, str(desc)))
            return _response()
        if method == "DELETE":
            await asyncio.wrap_future(self.store.delete_project(req.project))
            for key in [k for k in self.coordinators if k[0] == req.project]:
                del self.coordinators[key]
            return _response()
        raise E.RouteNotFound(f"no API at {method} /")

    def _project_json(self, name: str) -> dict[str, Any]:
        p = self.store.get_project(name)
        return {
            "projectName": p.name,
            "description": p.description,
            "status": "Normal",
            "region": self.config.region,
            "owner": "",
            "createTime": str(p.create_time),
            "lastModifyTime": str(p.last_modify_time),
            "resourceGroupId": p.resource_group_id,
            "dataRedundancyType": p.data_redundancy_type or "LRS",
        }

    def _list_projects(self, req: _Request) -> web.StreamResponse:
        offset, size = max(0, req.int_param("offset", 0)), req.int_param("size", 100)
        pattern = req.params.get("projectName") or ""
        with self.store.lock:
            names = sorted(n for n in self.store.projects if pattern in n and req.principal.can_read(n))
        page = names[offset: offset + size] if size >= 0 else names[offset:]
        return _json_response({"count": len(page), "total": len(names),
                               "projects": [self._project_json(n) for n in page]})

    # ------------------------------------------------------------------ logstores
    def _list_logstores(self, project: str, req: _Request) -> web.StreamResponse:
        offset, size = max(0, req.int_param("offset", 0)), req.int_param("size", 100)
        pattern = req.params.get("logstoreName") or ""
        with self.store.lock:
            names = sorted(n for (p, n) in self.store.logstores if p == project and pattern in n)
        page = names[offset: offset + size] if size >= 0 else names[offset:]
        return _json_response({"count": len(page), "total": len(names), "logstores": page})

    @staticmethod
    def _logstore_body(req: _Request) -> tuple[dict[str, Any], int]:
        data = req.json()
        if not isinstance(data, dict):
            raise E.LogStoreInfoInvalid("the logstore body must be a JSON object")
        ttl = _as_int(data.get("ttl", 30), "ttl", E.LogStoreInfoInvalid)
        if not 1 <= ttl <= 3650:
            raise E.LogStoreInfoInvalid(f"ttl must be between 1 and 3650 days, got {ttl}")
        return data, ttl

    async def _create_logstore(self, project: str, req: _Request) -> web.StreamResponse:
        data, ttl = self._logstore_body(req)
        name = data.get("logstoreName")
        if not isinstance(name, str) or not _LOGSTORE_NAME.match(name):
            raise E.LogStoreInfoInvalid(
                f"logstore name {name!r} is invalid: 3-63 lowercase letters, digits, '_' or '-'")
        shards = _as_int(data.get("shardCount", 2), "shardCount", E.LogStoreInfoInvalid)
        if not 1 <= shards <= 256:
            raise E.LogStoreInfoInvalid(f"shardCount must be between 1 and 256, got {shards}")
        config = {k: v for k, v in data.items() if k not in ("logstoreName", "ttl", "shardCount")}
        await asyncio.wrap_future(self.store.create_logstore(project, name, ttl, shards, config))
        return _response()

    async def _update_logstore(self, project: str, name: str, req: _Request) -> web.StreamResponse:
        data, ttl = self._logstore_body(req)
        meta = self.store.get_logstore(project, name)
        if "shardCount" in data and _as_int(data["shardCount"], "shardCount") != len(meta.writable_shards()):
            raise E.ParameterInvalid("shardCount cannot be changed by UpdateLogStore; split or merge shards")
        config = dict(meta.config)
        config.update({k: v for k, v in data.items() if k not in ("logstoreName", "ttl", "shardCount")})
        await asyncio.wrap_future(self.store.update_logstore(project, name, ttl, config))
        return _response()

    # ------------------------------------------------------------------ shards
    async def _shard_route(self, project: str, parts: list[str], req: _Request) -> web.StreamResponse:
        ls, method = parts[1], req.method
        if len(parts) == 3:
            if method == "GET":
                meta = self.store.get_logstore(project, ls)
                with self.store.lock:
                    shards = sorted(meta.shards.values(), key=lambda s: s.shard_id)
                return _json_response([s.to_json() for s in shards])
        elif len(parts) == 4:
            target = parts[3]
            if method == "POST" and target in ("lb", "route"):
                return await self._put_logs(project, ls, target, req)
            try:
                shard_id = int(target)
            except ValueError:
                raise E.ShardNotExist(f"shard {target!r} does not exist") from None
            if method == "GET":
                kind = req.params.get("type")
                if kind == "log":
                    return await self._pull_logs(project, ls, shard_id, req)
                if kind == "cursor":
                    return await self._get_cursor(project, ls, shard_id, req)
                if kind == "cursor_time":
                    return await self._get_cursor_time(project, ls, shard_id, req)
                raise E.ParameterInvalid(f"type {kind!r} is not valid: use cursor, cursor_time or log")
            if method == "POST":
                action = req.params.get("action")
                if action == "split":
                    key = self._parse_key(req.params.get("key"))
                    shards = await asyncio.wrap_future(self.store.split_shard(project, ls, shard_id, key))
                    return _json_response([s.to_json() for s in shards])
                if action == "merge":
                    shards = await asyncio.wrap_future(self.store.merge_shard(project, ls, shard_id))
                    return _json_response([s.to_json() for s in shards])
                raise E.ParameterInvalid(f"action {action!r} is not valid: use split or merge")
            if method == "DELETE":
                await asyncio.wrap_future(self.store.delete_shard(project, ls, shard_id))
                return _response()
        raise E.RouteNotFound(f"no API at {method} {req.path}")

    @staticmethod
    def _parse_key(value: str | None) -> int:
        if not value:
            raise E.ParameterInvalid("a hash key is required (32 hex digits)")
        try:
            key = int(value.strip(), 16)
        except ValueError:
            raise E.ParameterInvalid(f"hash key {value!r} is not hexadecimal") from None
        if len(value.strip()) > 32 or key >= KEY_SPACE:
            raise E.ParameterInvalid(f"hash key {value!r} is longer than 128 bits")
        return key

    def _pick_shard(self, meta: LogstoreMeta, target: str, req: _Request) -> ShardMeta:
        writable = meta.writable_shards()
        if not writable:
            raise E.LogStoreWithoutShard(f"logstore {meta.name} has no writable shard")
        key_text = req.params.get("key") if target == "route" else req.headers.get("x-log-hashkey")
        if target == "route" or key_text:
            key = self._parse_key(key_text)
            for s in writable:
                if s.begin_key <= key < s.end_key or (s.end_key >= KEY_SPACE - 1 and key >= s.begin_key):
                    return s
            raise E.ShardNotExist(f"no writable shard covers hash key {key_text}")
        return writable[next(self._rr) % len(writable)]

    async def _put_logs(self, project: str, ls: str, target: str, req: _Request) -> web.StreamResponse:
        meta = self.store.get_logstore(project, ls)
        raw_size_text = req.headers.get("x-log-bodyrawsize")
        raw_size = None
        if raw_size_text:
            try:
                raw_size = int(raw_size_text)
            except ValueError:
                raise E.InvalidBodyRawSize(f"x-log-bodyrawsize {raw_size_text!r} is not an integer") from None
        data = decompress(req.body, req.headers.get("x-log-compresstype"), raw_size, limit=self.config.max_put_bytes)
        try:
            group = parse_group(data)
        except E.WireError as exc:
            raise E.PostBodyInvalid(f"the body is not a valid LogGroup: {exc}") from None
        nlogs = len(group.Logs)
        if nlogs == 0:
            raise E.PostBodyInvalid("the LogGroup holds no logs")
        if nlogs > self.config.max_put_logs:
            raise E.InvalidLogSize(
                f"{nlogs} logs in one request exceed the limit of {self.config.max_put_logs}; split the request")
        shard = self._pick_shard(meta, target, req)
        await asyncio.wrap_future(self.store.append(shard, data, nlogs,
                                                    repick=lambda: self._pick_shard(meta, target, req)))
        self.metrics.logs_in.labels(project, ls).inc(nlogs)
        self.metrics.raw_in.labels(project, ls).inc(len(data))
        return _response()

    def _shard_and_cursor(self, project: str, ls: str, shard_id: int, cursor_text: str | None,
                          name: str = "cursor") -> tuple[ShardMeta, int]:
        shard = self.store.get_shard(project, ls, shard_id)
        if not cursor_text:
            raise E.InvalidCursor(f"parameter {name} is required")
        seq = decode_cursor(cursor_text)
        if seq > shard.end_seq:
            raise E.InvalidCursor(f"{name} {cursor_text} is beyond the end of shard {shard_id}")
        return shard, seq

    async def _pull_logs(self, project: str, ls: str, shard_id: int, req: _Request) -> web.StreamResponse:
        if req.params.get("processor"):  # a named consume processor lives in SLS; never answer unfiltered
            raise E.ParameterInvalid("invalid query: consume processors are not supported by this hub; pass query=")
        spl = compile_spl(req.params["query"]) if req.params.get("query", "").strip() else None  # 400 if invalid
        shard, seq = self._shard_and_cursor(project, ls, shard_id, req.params.get("cursor"))
        count = req.int_param("count", DEFAULT_MAX_PULL_COUNT)
        if count < 0:
            raise E.ParameterInvalid(f"count must be between 0 and {DEFAULT_MAX_PULL_COUNT}, got {count}")
        count = min(count, DEFAULT_MAX_PULL_COUNT)
        end = None
        if req.params.get("end_cursor"):
            _, end = self._shard_and_cursor(project, ls, shard_id, req.params["end_cursor"], "end_cursor")
        encoding = choose_encoding(req.headers.get("Accept-Encoding"))
        wait = self._wait_seconds(req)
        if wait > 0 and count > 0 and max(seq, shard.begin_seq) >= shard.end_seq and (end is None or end > seq):
            await self._wait_for_data(shard, seq, wait)
        loop = asyncio.get_running_loop()
        spl_raw = [0, 0]
        body, raw_size, groups, nxt = await loop.run_in_executor(
            self._executor, self._read_and_encode, shard, seq, count, end, encoding, spl, spl_raw)
        headers = {
            "x-log-cursor": encode_cursor(nxt),
            "x-log-count": str(groups),
            "x-log-bodyrawsize": str(raw_size),
        }
        if spl is not None:  # what the pull read before the SPL filtered it (the SDK reads both)
            headers["x-log-rawdatacount"], headers["x-log-rawdatasize"] = str(spl_raw[0]), str(spl_raw[1])
        if encoding and raw_size:
            headers["x-log-compresstype"] = encoding
        return _response(body=body, content_type="application/x-protobuf", headers=headers)

    def _read_and_encode(self, shard: ShardMeta, seq: int, count: int, end: int | None,
                         encoding: str, spl: Any = None, spl_raw: list[int] | None = None) -> tuple[bytes, int, int, int]:
        """Runs on a reader thread: fetch the stored (already framed) groups, compress once. With an SPL
        program, the groups are filtered/rewritten first; the cursor still moves over the raw groups."""
        result = self.store.read(shard, seq, count, self.config.max_pull_bytes, end)
        if not result.count:
            return b"", 0, 0, max(seq, min(result.next_seq, shard.end_seq))
        if spl is not None and spl_raw is not None:
            spl_raw[:] = [result.count, len(result.body)]
            body, groups = apply_spl(spl, result.body)
            return (compress(body, encoding) if body else b""), len(body), groups, result.next_seq
        return compress(result.body, encoding), len(result.body), result.count, result.next_seq

    def _wait_seconds(self, req: _Request) -> float:
        text = req.headers.get("x-sluice-wait")
        if not text:
            return 0.0
        try:
            return max(0.0, min(float(text), self.config.max_wait))
        except ValueError:
            raise E.ParameterInvalid(f"x-sluice-wait {text!r} must be a number of seconds") from None

    async def _wait_for_data(self, shard: ShardMeta, seq: int, wait: float) -> None:
        """Long-poll (sluice's own consumer only; SDK clients never send x-sluice-wait): return when the
        shard has data at ``seq`` or the wait is over."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(shard.uid, []).append(fut)
        try:
            if shard.end_seq > seq or not shard.is_writable or self._closing:
                return
            await asyncio.wait_for(asyncio.shield(fut), wait)
        except asyncio.TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(shard.uid)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[shard.uid]

    def _on_commit(self, uids: set[int]) -> None:
        """Store writer thread: new data committed on these shards; wake their long-polls."""
        loop = self._loop
        if loop is not None and self._waiters:
            loop.call_soon_threadsafe(self._wake, uids)

    def _wake(self, uids: set[int]) -> None:
        for uid in uids:
            for fut in self._waiters.pop(uid, ()):
                if not fut.done():
                    fut.set_result(None)

    async def _get_cursor(self, project: str, ls: str, shard_id: int, req: _Request) -> web.StreamResponse:
        shard = self.store.get_shard(project, ls, shard_id)
        where = (req.params.get("from") or "").strip()
        if where == "begin":
            seq = shard.begin_seq
        elif where == "end":
            seq = shard.end_seq
        else:
            try:
                t = float(where)
            except ValueError:
                raise E.ParameterInvalid(f"Parameter From is not valid: {where!r} (use begin, end or unix seconds)") \
                    from None
            if t != t or t < 0:
                raise E.ParameterInvalid(f"Parameter From is not valid: {where!r}")
            if t * 1000 > shard.last_write_ms:
                seq = shard.end_seq
            else:
                seq = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self.store.seq_at_time, shard, int(t * 1000))
        return _json_response({"cursor": encode_cursor(seq)})

    async def _get_cursor_time(self, project: str, ls: str, shard_id: int, req: _Request) -> web.StreamResponse:
        shard, seq = self._shard_and_cursor(project, ls, shard_id, req.params.get("cursor"))
        if seq < shard.begin_seq:
            raise E.InvalidCursor(f"cursor {req.params.get('cursor')} points before the oldest kept data")
        if seq == shard.end_seq:
            ms = shard.last_write_ms or int(time.time() * 1000)
        else:
            found = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.store.recv_time_ms, shard, seq)
            ms = found if found is not None else int(time.time() * 1000)
        return _json_response({"cursor_time": ms // 1000})

    # ------------------------------------------------------------------ consumer groups
    def _coordinator(self, project: str, ls: str, group: GroupMeta) -> GroupCoordinator:
        key = (project, ls, group.name)
        coord = self.coordinators.get(key)
        if coord is None:
            coord = self.coordinators[key] = GroupCoordinator(float(group.timeout),
                                                              recovering=key in self._recovering)
        coord.timeout = float(group.timeout)
        return coord

    def _forget_coordinators(self, project: str, ls: str) -> None:
        for key in [k for k in self.coordinators if k[0] == project and k[1] == ls]:
            del self.coordinators[key]

    async def _group_route(self, project: str, parts: list[str], req: _Request) -> web.StreamResponse:
        ls, method = parts[1], req.method
        if len(parts) == 3:
            meta = self.store.get_logstore(project, ls)
            if method == "GET":
                with self.store.lock:
                    groups = sorted(meta.groups.values(), key=lambda g: g.name)
                return _json_response([{"name": g.name, "timeout": g.timeout, "order": g.in_order} for g in groups])
            if method == "POST":
                data = req.json()
                if not isinstance(data, dict):
                    raise E.ParameterInvalid("the consumer group body must be a JSON object")
                name = data.get("consumerGroup")
                if not isinstance(name, str) or not _GROUP_NAME.match(name):
                    raise E.ParameterInvalid(f"consumer group name {name!r} is invalid: 2-128 of [A-Za-z0-9_-]")
                timeout = self._group_timeout(data.get("timeout"))
                order = _as_bool(data.get("order", False), "order")
                await asyncio.wrap_future(self.store.create_group(project, ls, name, timeout, order))
                return _response()
        elif len(parts) == 4:
            name = parts[3]
            if method == "PUT":
                data = req.json()
                if not isinstance(data, dict):
                    raise E.ParameterInvalid("the consumer group body must be a JSON object")
                timeout = self._group_timeout(data["timeout"]) if "timeout" in data else None
                order = _as_bool(data["order"], "order") if "order" in data else None
                await asyncio.wrap_future(self.store.update_group(project, ls, name, timeout, order))
                return _response()
            if method == "DELETE":
                await asyncio.wrap_future(self.store.delete_group(project, ls, name))
                self.coordinators.pop((project, ls, name), None)
                return _response()
            if method == "POST":
                kind = req.params.get("type")
                if kind == "heartbeat":
                    return self._heartbeat(project, ls, name, req)
                if kind == "checkpoint":
                    return await self._update_checkpoint(project, ls, name, req)
                raise E.ParameterInvalid(f"type {kind!r} is not valid: use heartbeat or checkpoint")
            if method == "GET":
                return self._get_checkpoints(project, ls, name, req)
        raise E.RouteNotFound(f"no API at {method} {req.path}")

    @staticmethod
    def _group_timeout(value: Any) -> int:
        timeout = _as_int(value, "timeout")
        if not 1 <= timeout <= 86400:
            raise E.ParameterInvalid(f"timeout must be between 1 and 86400 seconds, got {timeout}")
        return timeout

    def is_finished(self, shard: ShardMeta, group: GroupMeta) -> bool:
        """A read-only shard is finished for a group when it holds no data (never had any, or all expired)
        or the group's checkpoint reached its end. Finished shards are no longer handed out."""
        if shard.is_writable:
            return False
        if shard.begin_seq >= shard.end_seq:
            return True
        cp = group.checkpoints.get(shard.shard_id)
        return cp is not None and cp.seq >= shard.end_seq

    def assignable_shards(self, meta: LogstoreMeta, group: GroupMeta) -> list[int]:
        """Shards a group may hand out now: not finished, and with ``in_order``, all parents finished (a
        parent deleted by DeleteShard counts as finished)."""
        out = []
        for s in sorted(meta.shards.values(), key=lambda s: s.shard_id):
            if self.is_finished(s, group):
                continue
            if group.in_order and any(
                    p in meta.shards and not self.is_finished(meta.shards[p], group) for p in s.parents):
                continue
            out.append(s.shard_id)
        return out

    def _heartbeat(self, project: str, ls: str, name: str, req: _Request) -> web.StreamResponse:
        group = self.store.get_group(project, ls, name)
        consumer = req.params.get("consumer")
        if not consumer:
            raise E.ParameterInvalid("parameter consumer is required")
        held = req.json() if req.body else []
        if not isinstance(held, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in held):
            raise E.ParameterInvalid("the heartbeat body must be a JSON array of shard ids")
        meta = self.store.get_logstore(project, ls)
        with self.store.lock:
            assignable = self.assignable_shards(meta, group)
        coord = self._coordinator(project, ls, group)
        if not held and req.headers.get("x-sluice-leave"):
            # sluice's consumer says goodbye after releasing everything (SLS has no such call): its shards
            # move to the others at their next heartbeat instead of after the group timeout.
            coord.leave(consumer)
            return _json_response([])
        granted = coord.heartbeat(consumer, held, assignable, time.monotonic())
        return _json_response(granted)

    async def _update_checkpoint(self, project: str, ls: str, name: str, req: _Request) -> web.StreamResponse:
        group = self.store.get_group(project, ls, name)
        data = req.json()
        if not isinstance(data, dict):
            raise E.ParameterInvalid("the checkpoint body must be a JSON object")
        shard_id = _as_int(data.get("shard"), "shard")
        shard = self.store.get_logstore(project, ls).shards.get(shard_id)
        if shard is None:
            raise E.ShardNotExist(f"shard {shard_id} does not exist", http_status=404)
        cursor = data.get("checkpoint")
        if not isinstance(cursor, str):
            raise E.InvalidShardCheckPoint("checkpoint must be a cursor string")
        try:
            seq = decode_cursor(cursor)
        except E.InvalidCursor:
            raise E.InvalidShardCheckPoint(f"checkpoint {cursor!r} is not a valid cursor") from None
        if seq > shard.end_seq:
            raise E.InvalidShardCheckPoint(f"checkpoint {cursor!r} is beyond the end of shard {shard_id}")
        consumer = req.params.get("consumer", "")
        force = req.params.get("forceSuccess", "false").lower() == "true"
        coord = self._coordinator(project, ls, group)
        owner = coord.may_commit(consumer, shard_id, time.monotonic())
        if not owner and not force:
            raise E.ConsumerNotMatch(f"consumer {consumer!r} does not hold shard {shard_id} of group {name}")
        previous = group.checkpoints.get(shard_id)
        if not owner and previous is not None and seq < previous.seq:
            # A forced commit from a consumer that no longer holds the shard (a late flush after failover)
            # must not rewind the new owner's progress. Accepted and ignored, as a stale write.
            log.info("ignored stale checkpoint %s < %s from %r on %s/%s/%s shard %d", seq, previous.seq,
                     consumer, project, ls, name, shard_id)
            return _response()
        await asyncio.wrap_future(self.store.save_checkpoint(project, ls, name, shard_id, cursor.strip(), seq,
                                                             consumer))
        return _response()

    def _get_checkpoints(self, project: str, ls: str, name: str, req: _Request) -> web.StreamResponse:
        group = self.store.get_group(project, ls, name)
        meta = self.store.get_logstore(project, ls)
        wanted = req.params.get("shard")
        with self.store.lock:
            shard_ids = sorted(meta.shards)
            if wanted not in (None, "", "-1"):
                sid = req.int_param("shard")
                shard_ids = [sid] if sid in meta.shards else []
            out = []
            for sid in shard_ids:
                cp = group.checkpoints.get(sid)
                out.append({"shard": sid, "checkpoint": cp.cursor if cp else "",
                            "updateTime": cp.update_time_us if cp else 0, "consumer": cp.consumer if cp else ""})
        return _json_response(out)

    # ------------------------------------------------------------------ retention
    async def _retention_routine(self) -> None:
        """Every ``ttl_interval`` seconds, delete groups older than their logstore's TTL."""
        while True:
            await asyncio.sleep(self.config.ttl_interval)
            try:
                await self.expire_now()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - retention must keep running
                log.exception("retention pass failed")

    async def expire_now(self, now: float | None = None) -> int:
        """Run one retention pass; returns the number of LogGroups deleted."""
        now = time.time() if now is None else now
        with self.store.lock:
            work = [(s, int((now - ls.ttl * 86400) * 1000)) for ls in self.store.logstores.values()
                    if ls.ttl < 3650 for s in ls.shards.values()]
        loop = asyncio.get_running_loop()
        deleted = 0
        for shard, cutoff in work:
            if shard.begin_seq >= shard.end_seq:
                continue
            fut = await loop.run_in_executor(self._executor, self.store.expire, shard, cutoff)
            deleted += int(await asyncio.wrap_future(fut) or 0)
        return deleted

