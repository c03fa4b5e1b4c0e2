"""The hub's web console at ``/console``: projects, logstores, shards, consumer groups, a live tail, a chart.

Why it lives in the hub: everything it shows is already in the hub's memory (store metadata, coordinators,
Prometheus counters), so a page costs a walk over that state and nothing has to be installed, built or fetched
from a CDN; it works offline. Pages are rendered on the server (``pages.py``); one small script
(``static/console.js``) polls two JSON endpoints for the live tail and the throughput chart.

Access: SLS has no ``/console`` route, so the hub sends these paths here before any signature check. With
``--no-auth`` the console is open, like the API. Otherwise a sign-in form takes an AccessKeyId and secret,
checks them with ``Authenticator.login`` and sets a session cookie (``session.py``: HttpOnly, SameSite=Strict,
HMAC-signed, expiring). Every page and JSON endpoint resolves the cookie to the key's ``Principal`` and shows
only projects ``can_read`` allows. CSRF: pages and JSON endpoints are GET and change nothing; the only POSTs are
sign-in and sign-out. A SameSite=Strict cookie is never sent with a request started by another site, which is
enough for sign-out; sign-in needs no cookie, so it also refuses a cross-origin ``Origin`` header (login CSRF).

What it must not do: block the event loop (disk reads go to the hub's reader executor), import the client,
consumer or pipelines layers, or answer in a way that crashes on bad input (bad parameters get SLS-style error
JSON on ``/console/api/*`` and an error page elsewhere).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from concurrent.futures import Executor
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web

from ...wire import errors as E
from ..auth import ANONYMOUS, Principal
from ..limits import Slots
from . import pages, search, views
from .ingest import RateSampler, store_shard_counters
from .session import COOKIE_NAME, SessionStore, SignInThrottle
from .tail import DEFAULT_BACK, MAX_BACK, MAX_CONCURRENT_SCANS, RESERVE_BYTES, make_filter, parse_cursor, read_tail

if TYPE_CHECKING:
    from .parts import ConsoleParts

__all__ = ["Console", "BASE"]

log = logging.getLogger("sluice.hub.console")

BASE = pages.BASE
_T = TypeVar("_T")

# Only the console's own files, nothing inline, nothing from elsewhere (see pages.py).
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_STATIC_TYPES = {"console.css": "text/css", "console.js": "text/javascript", "search.js": "text/javascript"}
_MAX_FORM_BYTES = 16 << 10  # a key id and a secret; the hub's body limit is sized for PutLogs, not forms


def _method_not_allowed(method: str, path: str) -> E.SLSError:
    return E.SLSError(f"{method} is not allowed on {path}", error_code="MethodNotAllowed", http_status=405)


class _SignIn(Exception):
    """Raised by a page that needs a session the request does not have: redirect to the sign-in form."""


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        self.location = location


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


class Console:
    """Routes ``/console`` requests; owns the sessions and the rate sampler."""

    def __init__(self, hub: "ConsoleParts", executor: Executor) -> None:
        self.hub = hub
        self.executor = executor
        self.sessions = SessionStore()
        self.throttle = SignInThrottle()  # failed sign-ins per key and per address (session.py)
        self._scans = Slots(MAX_CONCURRENT_SCANS, hub.config.inflight_wait)  # tail polls scanning at once
        self._known_keys = frozenset(hub.config.key_table())
        self.rates = RateSampler(store_shard_counters(hub.store), hub.metrics.raw_in, hub.metrics.logs_in)
        root = resources.files(__package__) / "static"
        self._static = {name: (root / name).read_bytes() for name in _STATIC_TYPES}

    def register(self, app: web.Application) -> None:
        """Add the console's routes (before the hub's catch-all, so they win) and the sampler's lifecycle."""
        app.router.add_route("*", BASE, self.handle)
        app.router.add_route("*", BASE + r"/{tail:[\s\S]*}", self.handle)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)

    async def _on_startup(self, app: web.Application) -> None:
        self.rates.start()

    async def _on_cleanup(self, app: web.Application) -> None:
        await self.rates.stop()

    # ------------------------------------------------------------------ request handling
    async def handle(self, raw: web.Request) -> web.StreamResponse:
        path = raw.path
        parts = [p for p in path[len(BASE):].split("/") if p]
        is_api = parts[:1] == ["api"]
        who: str | None = None
        try:
            if path == BASE:
                raise _Redirect(BASE + "/")
            if parts[:1] == ["static"]:
                resp = self._static_file(parts)
            elif parts == ["login"]:
                resp = await self._login(raw)
            elif parts == ["logout"]:
                resp = await self._logout(raw)
            else:
                principal = self._principal(raw)
                if principal is None:
                    if is_api:
                        raise E.Unauthorized("sign in to the console first (the session is missing or expired)")
                    raise _SignIn()
                who = principal.key_id
                if raw.method != "GET":
                    raise _method_not_allowed(raw.method, path)
                resp = await self._route(raw, parts, principal)
        except _SignIn:
            resp = _see_other(f"{BASE}/login?" + urlencode({"next": raw.path_qs}))
        except _Redirect as exc:
            resp = _see_other(exc.location)
        except E.SLSError as exc:
            resp = self._error(exc, is_api, who)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 and is logged; the hub keeps serving
            log.exception("console error on %s %s", raw.method, raw.rel_url)
            resp = self._error(E.InternalServerError(f"internal error: {type(exc).__name__}"), is_api, who)
        self._harden(resp)
        return resp

    def _error(self, exc: E.SLSError, is_api: bool, who: str | None) -> web.Response:
        if is_api:
            return web.Response(status=exc.http_status, body=json.dumps(exc.to_json()).encode(),
                                content_type="application/json")
        return web.Response(status=exc.http_status, content_type="text/html", charset="utf-8",
                            text=pages.error_page(exc.http_status, exc.error_code, str(exc), who=who,
                                                  auth_enabled=self.hub.auth.enabled))

    @staticmethod
    def _harden(resp: web.StreamResponse) -> None:
        resp.headers["Content-Security-Policy"] = _CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        # not no-referrer: with it, browsers send "Origin: null" on form posts and the sign-in check would refuse
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers.setdefault("Cache-Control", "no-store")

    def _principal(self, raw: web.Request) -> Principal | None:
        if not self.hub.auth.enabled:
            return ANONYMOUS
        session = self.sessions.get(raw.cookies.get(COOKIE_NAME), time.time())
        return session.principal if session else None

    async def _in_executor(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _html(self, text: str, status: int = 200) -> web.Response:
        return web.Response(status=status, text=text, content_type="text/html", charset="utf-8")

    def _static_file(self, parts: list[str]) -> web.Response:
        name = parts[1] if len(parts) == 2 else ""
        if name not in self._static:
            raise E.RouteNotFound(f"no console file {'/'.join(parts[1:])!r}")
        resp = web.Response(body=self._static[name], content_type=_STATIC_TYPES[name], charset="utf-8")
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    # ------------------------------------------------------------------ sign-in
    @staticmethod
    def _safe_next(value: str | None) -> str:
        """Only back into the console: never an open redirect to another site."""
        if value and value.startswith(BASE + "/") and "\\" not in value and not value.startswith(BASE + "//"):
            return value
        return BASE + "/"

    @staticmethod
    def _check_origin(raw: web.Request) -> None:
        """Refuse a form posted by a page of another site. Host and port are compared, not the scheme, so a
        TLS-terminating proxy in front of the hub (one that keeps the Host header) still works."""
        origin = raw.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != raw.host:
            raise E.SLSError(f"cross-origin form post from {origin[:100]!r} refused", error_code="Forbidden",
                             http_status=403)

    async def _login(self, raw: web.Request) -> web.StreamResponse:
        if not self.hub.auth.enabled:
            raise _Redirect(BASE + "/")
        if raw.method == "GET":
            next_path = self._safe_next(raw.query.get("next"))
            if self._principal(raw) is not None:
                raise _Redirect(next_path)
            return self._html(pages.login_page(next_path=next_path))
        if raw.method != "POST":
            raise _method_not_allowed(raw.method, raw.path)
        self._check_origin(raw)
        form = await self._read_form(raw)
        key_id, secret, next_path = (form.get(k, "") for k in ("key_id", "secret", "next"))
        bucket, address, now = (key_id if key_id in self._known_keys else ""), raw.remote or "", time.monotonic()
        wait = self.throttle.retry_after(bucket, address, now)
        if wait > 0:  # checked before the secret: a throttled guess learns nothing
            raise E.SLSError(f"too many failed sign-ins for this key or from this address; try again in "
                             f"{math.ceil(wait)} s", error_code="TooManySignIns", http_status=429)
        principal = self.hub.auth.login(key_id, secret) if key_id and secret else None
        if principal is None:
            self.throttle.failed(bucket, address, now)
            # The form again, with the reason: a 200, as the page itself is fine (browsers log any 4xx document
            # as a console error). Nothing is set, so nothing is signed in.
            return self._html(pages.login_page(error="Wrong AccessKeyId or AccessKeySecret.",
                                               next_path=self._safe_next(next_path), key_id=key_id))
        cookie, session = self.sessions.create(principal, time.time())
        resp = _see_other(self._safe_next(next_path))
        resp.set_cookie(COOKIE_NAME, cookie, max_age=int(self.sessions.ttl), path=BASE, httponly=True,
                        samesite="Strict", secure=raw.secure)
        log.info("console sign-in by key %s", key_id)
        return resp

    async def _read_form(self, raw: web.Request) -> dict[str, str]:
        """The sign-in form (urlencoded, as the page posts it), read with the API's body limits (size, in-flight
        budget, time: a client that stalls or goes away gets a 4xx) and decoded leniently (bad UTF-8 is just a
        wrong key). Other encodings are refused: aiohttp's multipart parser raised on a non-ASCII boundary."""
        if (raw.content_length or 0) > _MAX_FORM_BYTES:
            raise E.PostBodyTooLarge(f"a sign-in form is at most {_MAX_FORM_BYTES} bytes")
        if raw.content_type != "application/x-www-form-urlencoded":
            raise E.SLSError("the sign-in form must be application/x-www-form-urlencoded",
                             error_code="InvalidContentType", http_status=415)
        body = await self.hub.limits.read_body(raw)
        if len(body) > _MAX_FORM_BYTES:
            raise E.PostBodyTooLarge(f"a sign-in form is at most {_MAX_FORM_BYTES} bytes")
        form: dict[str, str] = {}
        for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            form.setdefault(key, value)
        return form

    async def _logout(self, raw: web.Request) -> web.StreamResponse:
        if raw.method != "POST":
            raise _method_not_allowed(raw.method, raw.path)
        self._check_origin(raw)
        self.sessions.end(raw.cookies.get(COOKIE_NAME), time.time())
        resp = _see_other(f"{BASE}/login" if self.hub.auth.enabled else BASE + "/")
        resp.del_cookie(COOKIE_NAME, path=BASE)
        return resp

    # ------------------------------------------------------------------ pages and JSON
    async def _route(self, raw: web.Request, parts: list[str], principal: Principal) -> web.StreamResponse:
        hub, who, auth = self.hub, principal.key_id, self.hub.auth.enabled
        window = self.rates.interval * (self.rates.samples.maxlen or 1)
        n = len(parts)
        if n == 0:
            rows = await self._in_executor(views.overview, hub, principal, self.rates)  # walks every logstore
            return self._html(pages.overview_page(rows, who=who, auth_enabled=auth, window=window))
        if parts[0] == "api" and n == 2:
            if parts[1] == "tail":
                return await self._api_tail(raw, principal)
            if parts[1] == "rates":
                return self._api_rates(raw, principal)
            if parts[1] == "search":  # the search page's results and histogram (search.py, #21)
                return await search.api_search(self, raw, principal)
            if parts[1] == "histogram":
                return await search.api_histogram(self, raw, principal)
        if parts[0] == "p" and n == 2:
            rows_ls = await self._in_executor(views.project_view, hub, principal, parts[1], self.rates)
            return self._html(pages.project_page(parts[1], rows_ls, who=who, auth_enabled=auth, window=window))
        if parts[0] == "p" and n == 3:
            v = views.logstore_view(hub, principal, parts[1], parts[2], self.rates)
            return self._html(pages.logstore_page(v, who=who, auth_enabled=auth, window=window))
        if parts[0] == "p" and n == 4 and parts[3] == "search":
            views.require_logstore(hub, principal, parts[1], parts[2])
            span = raw.query.get("range", "15m")
            return self._html(search.search_page(parts[1], parts[2], who=who, auth_enabled=auth,
                                                 query=raw.query.get("q", "")[:4000],
                                                 span=span if span in search.RANGES else "15m"))
        if parts[0] == "p" and n == 4 and parts[3] == "tail":
            views.require_logstore(hub, principal, parts[1], parts[2])
            return self._html(pages.tail_page(parts[1], parts[2], who=who, auth_enabled=auth,
                                              query=raw.query.get("q", "")[:200],
                                              regex=raw.query.get("regex", "") in ("1", "true", "on")))
        if parts[0] == "p" and n == 5 and parts[3] == "g":
            gv = views.group_view(hub, principal, parts[1], parts[2], parts[4])
            gv = await self._in_executor(views.measure_lag, hub, gv)
            return self._html(pages.group_page(gv, who=who, auth_enabled=auth))
        raise E.RouteNotFound(f"no console page at {raw.path}")

    @staticmethod
    def _json(data: Any) -> web.Response:
        return web.Response(body=json.dumps(data).encode(), content_type="application/json")

    def _api_rates(self, raw: web.Request, principal: Principal) -> web.Response:
        """The chart's series: (time, bytes/s, logs/s) per sample interval, over what the caller may read."""
        project, logstore = raw.query.get("project", ""), raw.query.get("logstore", "")
        if logstore and not project:
            raise E.ParameterInvalid("parameter logstore needs parameter project")
        if project:
            if logstore:
                views.require_logstore(self.hub, principal, project, logstore)
            elif not principal.can_read(project) or project not in self.hub.store.project_names():
                raise views.hidden_project(project)
            projects = [project]
        else:
            projects = [p for p in self.hub.store.project_names() if principal.can_read(p)]
        # per sample: one lookup for a logstore, one per project otherwise (ingest.py keeps project totals)
        series = self.rates.series(projects, logstore or None)
        points = [[round(t, 3), round(b, 3), round(n, 3)] for t, b, n in series]
        return self._json({"interval": self.rates.interval, "points": points})

    async def _api_tail(self, raw: web.Request, principal: Principal) -> web.Response:
        q = raw.query
        project, logstore = q.get("project", ""), q.get("logstore", "")
        if not project or not logstore:
            raise E.ParameterInvalid("parameters project and logstore are required")
        meta = views.require_logstore(self.hub, principal, project, logstore)
        cursor_text = q.get("cursor", "")
        positions = parse_cursor(cursor_text) if cursor_text else None
        back_text = q.get("back", "")
        if back_text and not back_text.isdigit():
            raise E.ParameterInvalid(f"parameter back must be a number of log groups, got {back_text[:40]!r}")
        back = min(int(back_text), MAX_BACK) if back_text else DEFAULT_BACK
        regex = q.get("regex", "")
        if regex not in ("", "0", "1", "true", "false", "on"):
            raise E.ParameterInvalid(f"parameter regex must be 0 or 1, got {regex[:40]!r}")
        shards = self.hub.store.shards_of(project, meta.name)
        async with self.hub.limits.held(RESERVE_BYTES, "the console tail"), self._scans.hold("console tail"):
            # compiling a pattern can take ~0.1 s: off the loop too (tail.py)
            match = await self._in_executor(make_filter, q.get("q", ""), regex in ("1", "true", "on"))
            result = await self._in_executor(read_tail, self.hub.store, shards, positions, back, match)
        return self._json({"cursor": result.cursor, "logs": result.logs, "dropped": result.dropped,
                           "scanned": result.scanned, "shards": len(shards)})
