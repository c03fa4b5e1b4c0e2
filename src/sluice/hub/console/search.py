"""The console's search page per logstore (#21): a query box (SLS search syntax, SQL after ``|``), a time range,
a histogram of matches over that range and a results table, like SLS's own log search page.

The page is rendered here; ``static/search.js`` fetches two JSON endpoints (``/console/api/search`` and
``/console/api/histogram``) that run the same code as GetLogs/GetHistograms (``hub/query/handlers.py``), so the
page can do exactly what the API can: an indexed logstore is searched in its index, one without is scanned
(bounded), SQL needs an index. Access is the session's: the logstore must be readable by the signed-in key.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from aiohttp import web

from ...wire import errors as E
from ..auth import Principal
from . import views
from .pages import BASE, layout, url

__all__ = ["search_page", "api_search", "api_histogram", "RANGES", "MAX_CONSOLE_LINES"]

RANGES = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
"""The time ranges the page offers (seconds back from now)."""
MAX_CONSOLE_LINES = 100
"""Rows one console search shows (a page of GetLogs)."""


def search_page(project: str, logstore: str, *, who: str | None, auth_enabled: bool, query: str,
                span: str) -> str:
    options = "".join(f'<option value="{k}"{" selected" if k == span else ""}>last {k}</option>' for k in RANGES)
    body = (f"<h1>Search {escape(logstore)}</h1>"
            f'<form id="search-form" class="tail-form" data-project="{escape(project)}" '
            f'data-logstore="{escape(logstore)}">'
            f'<input type="search" name="q" id="search-q" placeholder="status: 500 and method: POST | select ..." '
            f'value="{escape(query)}" maxlength="4000" autocomplete="off">'
            f'<select name="range" id="search-range">{options}</select>'
            '<button type="submit">Search</button></form>'
            '<p id="search-status" class="muted">ready</p>'
            '<figure id="search-histogram" class="chart"><svg viewBox="0 0 600 80" preserveAspectRatio="none" '
            'role="img" aria-label="matches over time"></svg><figcaption class="muted">matches over time'
            '</figcaption></figure>'
            '<table class="tail" id="search-results"><thead id="search-head"></thead>'
            '<tbody id="search-rows"></tbody></table>'
            f'<script src="{BASE}/static/search.js" defer></script>')
    crumbs = [("projects", f"{BASE}/"), (project, url("p", project)), (logstore, url("p", project, logstore)),
              ("search", None)]
    return layout(f"search {project}/{logstore}", crumbs, body, who=who, auth_enabled=auth_enabled)


def _range(q: Any) -> tuple[int, int]:
    """(from, to) from ``range`` (one of RANGES) or explicit ``from``/``to`` unix seconds."""
    now = int(time.time()) + 1
    if q.get("from") or q.get("to"):
        try:
            start, end = int(q.get("from", "0")), int(q.get("to", str(now)))
        except ValueError:
            raise E.ParameterInvalid("parameters from and to must be unix seconds") from None
        if end < start:
            raise E.ParameterInvalid("from must not be after to")
        return start, end
    span = q.get("range", "15m")
    if span not in RANGES:
        raise E.ParameterInvalid(f"range must be one of {', '.join(RANGES)}")
    return now - RANGES[span], now


def _target(console: Any, raw: web.Request, principal: Principal) -> tuple[Any, str, str]:
    q = raw.query
    project, logstore = q.get("project", ""), q.get("logstore", "")
    if not project or not logstore:
        raise E.ParameterInvalid("parameters project and logstore are required")
    views.require_logstore(console.hub, principal, project, logstore)
    service = getattr(console.hub, "query", None)
    if service is None:
        raise E.ParameterInvalid("search is not available on this hub")
    return service, project, logstore


async def api_search(console: Any, raw: web.Request, principal: Principal) -> web.Response:
    from ..query.handlers import query_logs

    service, project, logstore = _target(console, raw, principal)
    start, end = _range(raw.query)
    query = raw.query.get("q", "")[:4000]
    result, progress, _, sql = await query_logs(service, project, logstore, start, end, query, None, 0,
                                                MAX_CONSOLE_LINES, True)
    return console._json({"progress": progress, "count": result.count, "processed": result.processed,
                          "elapsed_ms": result.elapsed_ms, "sql": sql is not None, "keys": result.keys,
                          "rows": result.rows, "from": start, "to": end})


async def api_histogram(console: Any, raw: web.Request, principal: Principal) -> web.Response:
    from ..query.handlers import histograms

    service, project, logstore = _target(console, raw, principal)
    start, end = _range(raw.query)
    buckets, progress, total = await histograms(service, project, logstore, start, end,
                                                raw.query.get("q", "")[:4000], None)
    return console._json({"progress": progress, "total": total, "buckets": buckets})
