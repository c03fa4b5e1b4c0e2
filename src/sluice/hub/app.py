"""The hub's HTTP application: an assembly of parts, and the one request path every SLS API call takes.

Parts: the store (durable state), the coordinators (consumer groups, memory only), the long-polls, the
metrics, the route table (``routes.py``: which API a request is, its access class and handler), the handlers
(``api/``), retention (``retention.py``) and the web console. ``Hub.handle`` reads the body (bounded), routes
the request, checks its signature, decides access on the route's class, then runs the handler.

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
import time
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from ..wire import errors as E
from .api.context import ApiContext
from .api.request import JSON, Request, response
from .auth import Authenticator, authorize
from .config import HubConfig
from .console import Console
from .console.parts import ConsoleParts
from .coordinators import Coordinators
from .limits import RequestLimits
from .longpoll import LongPolls
from .metrics import HubMetrics
from .retention import Retention
from .query.handlers import QueryService
from .routes import TABLE, RouteTable
from .store.base import Store
from .waits import ShardWaits, store_lookup

__all__ = ["Hub"]

log = logging.getLogger("sluice.hub")


class Hub:
    """The assembly. Owns nothing durable (that is the store's); see the module docstring for the parts."""

    def __init__(self, config: HubConfig, store: Store, routes: RouteTable = TABLE) -> None:
        self.config = config
        self.store = store
        self.routes = routes
        self.auth = Authenticator(config)
        self.limits = RequestLimits(config)
        self.coordinators = Coordinators(store.group_keys())
        self.polls = LongPolls()
        store.add_listener(self.polls.on_commit)
        self.metrics = HubMetrics(store, self.coordinators)
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sluice-read")
        self.waits = ShardWaits(store_lookup(store))  # POST /sluice/wait: one parked request for many shards
        store.add_listener(self.waits.on_commit)
        self.ctx = ApiContext(config, store, self.coordinators, self.polls, self.metrics, self._executor,
                              waits=self.waits)
        self.retention = Retention(store, config.ttl_interval, self._executor)
        # search, SQL and index configs (#21): a background indexer per hub, fed by commits, never by PutLogs
        self.query = QueryService(store, config.data_dir / "index", self._executor, config.max_pull_bytes,
                                  config.max_open_indexes)
        store.add_listener(self.query.notify)
        self.ctx.query = self.query
        self._req_prefix = f"{os.getpid() & 0xFFFF:04X}{int(time.time()):08X}"
        self._req_counter = itertools.count(1)

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_put_bytes + (1 << 20))
        # The web console (/console: no SLS API there) is routed before the catch-all; it has its own sign-in.
        parts = ConsoleParts(self.config, self.auth, self.limits, self.store, self.coordinators, self.metrics,
                             query=self.query)
        Console(parts, self._executor).register(app)
        app.router.add_route("*", r"/{tail:[\s\S]*}", self.handle)  # any path, newlines included
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self.polls.start(asyncio.get_running_loop())
        self.waits.start(asyncio.get_running_loop())
        self.retention.start()
        self.query.start()

    async def _on_shutdown(self, app: web.Application) -> None:
        self.polls.close()  # answer every long-poll now, so graceful shutdown does not wait them out
        self.waits.close()

    async def _on_cleanup(self, app: web.Application) -> None:
        self.retention.stop()
        await self.query.stop()
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def expire_now(self, now: float | None = None) -> int:
        """Run one retention pass; returns the number of LogGroups deleted."""
        return await self.retention.expire_now(now)

    def _request_id(self) -> str:
        return f"{self._req_prefix}{next(self._req_counter):012X}"

    async def handle(self, raw: web.Request) -> web.StreamResponse:
        request_id = self._request_id()
        api, body = "Unknown", b""
        try:
            body = await self.limits.read_body(raw)  # size, in-flight bytes and time bounded (limits.py)
            req = Request(raw, body, self.config.hostnames)
            if req.path == "/metrics" and req.method == "GET":
                return await self._metrics_response(req, request_id)
            match = self.routes.match(req)
            api = match.api
            req.principal = self.auth.check(req.method, req.path, req.pairs, req.headers, body)
            authorize(req.principal, match.access, api, req.project)  # the one access decision, before any lookup
            if match.error is not None:
                raise match.error
            assert match.route is not None
            req.args = match.args
            if match.route.project == "exists":
                if req.project is None:
                    raise E.ProjectNotExist("no project in the Host header (expected Host: <project>.<endpoint>)")
                self.store.get_project(req.project)
                match.args["project"] = req.project
            resp = await match.route.handler(self.ctx, req)
        except E.SLSError as exc:
            if exc.http_status >= 500 and not isinstance(exc, E.ServerBusy):
                log.error("%s %s -> %s: %s", raw.method, raw.rel_url, exc.error_code, exc)
            resp = response(exc.http_status, json.dumps(exc.to_json()).encode(), JSON)
            if not raw.content.is_eof():
                resp.force_close()  # the unread rest of a body (too large, refused, too slow) is not worth draining
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must still answer in SLS's format, and be logged
            log.exception("unhandled error on %s %s", raw.method, raw.rel_url)
            err = E.InternalServerError(f"internal error: {type(exc).__name__}")
            resp = response(500, json.dumps(err.to_json()).encode(), JSON)
        resp.headers["x-log-requestid"] = request_id
        self.metrics.requests.labels(api, str(resp.status)).inc()
        self.metrics.bytes_in.inc(len(body))
        if resp.body is not None:
            self.metrics.bytes_out.inc(len(resp.body))  # type: ignore[arg-type]
        return resp

    async def _metrics_response(self, req: Request, request_id: str) -> web.Response:
        """Prometheus text format. Open when the hub runs with --no-auth; otherwise it needs
        ``Authorization: Bearer <--metrics-token>`` (Prometheus cannot sign SLS requests)."""
        token = self.config.metrics_token
        if not self.config.no_auth and (not token or req.headers.get("Authorization") != f"Bearer {token}"):
            err = E.Unauthorized("metrics need 'Authorization: Bearer <token>' (start the hub with --metrics-token)")
            resp = response(401, json.dumps(err.to_json()).encode(), JSON)
        else:
            body = await self.metrics.render(self._executor)  # built on a reader thread (metrics.py)
            resp = response(body=body, content_type="text/plain; version=0.0.4; charset=utf-8")
        resp.headers["x-log-requestid"] = request_id
        return resp
