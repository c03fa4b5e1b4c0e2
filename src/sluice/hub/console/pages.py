"""The console's HTML: server-rendered pages built from the rows in ``views.py``.

Plain f-strings with ``html.escape`` on every value that came from a user or a client (names, descriptions,
consumer names, cursors), so there is no template engine to install or learn, and nothing to build. Pages carry
no inline script or style: the hub serves them with a Content-Security-Policy that allows only its own
``/console/static`` files, which keeps an escaping slip from becoming script. Links are absolute and built with
``quote`` so any valid name is a valid URL. Times are shown in UTC, with how long ago.
"""

from __future__ import annotations

import time
from html import escape
from urllib.parse import quote, urlencode

from .views import ConsumerRow, GroupView, LogstoreRow, LogstoreView, ProjectRow, ShardLag, ShardRow
from .ingest import Rate

__all__ = ["error_page", "group_page", "login_page", "logstore_page", "overview_page", "project_page", "tail_page"]

BASE = "/console"


# ---------------------------------------------------------------------- formatting
def _bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop always returns


def _rate_bytes(rate: Rate | None) -> str:
    return "-" if rate is None else f"{_bytes(rate.bytes_per_s)}/s"


def _rate_units(rate: Rate | None, unit: str) -> str:
    return "-" if rate is None else f"{rate.units_per_s:.1f} {unit}/s"


def _utc(seconds: float | None) -> str:
    if not seconds:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + "Z"


def _ago(seconds: float | None, now: float | None = None) -> str:
    """``<time>`` with the UTC time as text and how long ago as its title."""
    if not seconds:
        return "-"
    age = (now or time.time()) - seconds
    return f'<time title="{_age(age)} ago">{_utc(seconds)}</time>'


def _age(age: float) -> str:
    age = max(0.0, age)
    if age < 120:
        return f"{age:.0f} s"
    if age < 7200:
        return f"{age / 60:.0f} min"
    if age < 172800:
        return f"{age / 3600:.1f} h"
    return f"{age / 86400:.1f} d"


def _num(n: float | int) -> str:
    return f"{n:,.0f}"


def url(*parts: str) -> str:
    return BASE + "/" + "/".join(quote(p, safe="") for p in parts)


def _a(href: str, text: str) -> str:
    return f'<a href="{escape(href)}">{escape(text)}</a>'


def _table(cls: str, head: list[str], rows: list[str], empty: str, *, right: frozenset[int] = frozenset()) -> str:
    """A table; ``right`` are the indexes of the numeric columns, whose headers align with their numbers."""
    th = "".join(f'<th class="num">{escape(h)}</th>' if i in right else f"<th>{escape(h)}</th>"
                 for i, h in enumerate(head))
    body = "".join(rows) if rows else f'<tr class="empty"><td colspan="{len(head)}">{escape(empty)}</td></tr>'
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _td(cls: str, html_text: str, title: str = "") -> str:
    t = f' title="{escape(title)}"' if title else ""
    return f'<td class="{cls}"{t}>{html_text}</td>'


# ---------------------------------------------------------------------- layout
def layout(title: str, crumbs: list[tuple[str, str | None]], body: str, *, who: str | None,
           auth_enabled: bool) -> str:
    """The page frame. ``who`` is the signed-in key id (None with --no-auth)."""
    trail = " / ".join(_a(href, text) if href else f"<span>{escape(text)}</span>" for text, href in crumbs)
    if auth_enabled and who is not None:
        account = (f'<form class="who" method="post" action="{BASE}/logout"><span>key <b>{escape(who)}</b></span>'
                   f'<button type="submit">Sign out</button></form>')
    elif not auth_enabled:
        account = '<span class="who open">open (hub runs with --no-auth)</span>'
    else:
        account = ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · sluice console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{BASE}/static/console.css">
<script src="{BASE}/static/console.js" defer></script>
</head><body>
<header><a class="brand" href="{BASE}/">sluice</a><nav class="crumbs">{trail}</nav>{account}</header>
<main>
{body}
</main>
<footer>rendered {_utc(time.time())}</footer>
</body></html>
"""


def _chart(src: str, caption: str) -> str:
    return (f'<figure class="chart" id="chart" data-src="{escape(src)}">'
            f'<svg viewBox="0 0 600 140" role="img" aria-label="{escape(caption)}"></svg>'
            f'<figcaption><span class="legend bytes">bytes/s</span> <span class="legend logs">logs/s</span> '
            f'<span class="chart-note">{escape(caption)}</span> <span class="chart-now"></span></figcaption></figure>')


def _stat(label: str, value: str, cls: str = "") -> str:
    return f'<div class="stat {cls}"><div class="value">{value}</div><div class="label">{escape(label)}</div></div>'


# ---------------------------------------------------------------------- pages
def overview_page(rows: list[ProjectRow], *, who: str | None, auth_enabled: bool, window: float) -> str:
    known = [r.rate for r in rows if r.rate is not None]
    total = Rate(sum(r.bytes_per_s for r in known), sum(r.units_per_s for r in known)) if known else None
    stats = "".join([
        _stat("projects", _num(len(rows))),
        _stat("logstores", _num(sum(r.logstores for r in rows))),
        _stat("shards", _num(sum(r.shards for r in rows))),
        _stat("stored", escape(_bytes(sum(r.bytes_stored for r in rows)))),
        _stat("ingest", escape(_rate_bytes(total)), "rate"),
    ])
    trs = [
        f'<tr data-project="{escape(r.name)}">'
        + _td("name", _a(url("p", r.name), r.name), r.description)
        + _td("num", _num(r.logstores)) + _td("num", _num(r.shards)) + _td("num bytes", escape(_bytes(r.bytes_stored)))
        + _td("num", _num(r.log_groups)) + _td("num rate", escape(_rate_bytes(r.rate)))
        + _td("num rate", escape(_rate_units(r.rate, "logs"))) + "</tr>"
        for r in rows
    ]
    body = (f'<h1>Projects</h1><section class="stats">{stats}</section>'
            + _chart(f"{BASE}/api/rates", f"ingest of these projects, last {window / 60:.0f} min")
            + _table("projects", ["project", "logstores", "shards", "stored", "log groups", "ingest", "logs"], trs,
                     "no projects yet (create one with the SDK or `sluice admin`)", right=frozenset(range(1, 7))))
    return layout("Projects", [("projects", None)], body, who=who, auth_enabled=auth_enabled)


def project_page(project: str, rows: list[LogstoreRow], *, who: str | None, auth_enabled: bool, window: float) -> str:
    trs = [
        f'<tr data-logstore="{escape(r.name)}">'
        + _td("name", _a(url("p", project, r.name), r.name))
        + _td("num", f"{r.shards_writable} / {r.shards}", "readwrite / all shards")
        + _td("num bytes", escape(_bytes(r.bytes_stored))) + _td("num", _num(r.log_groups))
        + _td("num logs-in", _num(r.logs_in), "logs accepted by PutLogs since the hub started")
        + _td("num rate", escape(_rate_bytes(r.rate))) + _td("num rate", escape(_rate_units(r.rate, "logs")))
        + _td("num", _num(r.groups)) + _td("num", f"{r.ttl} d") + "</tr>"
        for r in rows
    ]
    src = f"{BASE}/api/rates?" + urlencode({"project": project})
    body = (f"<h1>Project {escape(project)}</h1>"
            + _chart(src, f"ingest of project {project}, last {window / 60:.0f} min")
            + _table("logstores", ["logstore", "shards", "stored", "log groups", "logs in (since start)", "ingest",
                                   "logs", "consumer groups", "ttl"], trs, "no logstores in this project",
                     right=frozenset(range(1, 9))))
    return layout(project, [("projects", f"{BASE}/"), (project, None)], body, who=who, auth_enabled=auth_enabled)


def _shard_row(s: ShardRow) -> str:
    parents = ", ".join(str(p) for p in s.parents)
    return (f'<tr data-shard="{s.shard_id}">' + _td("num", str(s.shard_id), f"parents: {parents}" if parents else "")
            + _td(f"status {escape(s.status)}", escape(s.status))
            + _td("key", f"{escape(s.begin_key)}<br>{escape(s.end_key)}", "inclusive begin key / exclusive end key")
            + _td("num begin", _num(s.begin_seq)) + _td("num end", _num(s.end_seq))
            + _td("num bytes", escape(_bytes(s.bytes_stored)))
            + _td("num rate", escape(_rate_bytes(s.rate)) + "<br>" + escape(_rate_units(s.rate, "groups")))
            + _td("time", _ago(s.last_write_ms / 1000 if s.last_write_ms else None)) + "</tr>")


def logstore_page(v: LogstoreView, *, who: str | None, auth_enabled: bool, window: float) -> str:
    groups = [
        f'<tr data-group="{escape(g.name)}">'
        + _td("name", _a(url("p", v.project, v.name, "g", g.name), g.name))
        + _td("num consumers", _num(g.consumers)) + _td("num lag", _num(g.lag_log_groups))
        + _td("num", f"{g.timeout} s") + _td("", "yes" if g.in_order else "no") + "</tr>"
        for g in v.groups
    ]
    src = f"{BASE}/api/rates?" + urlencode({"project": v.project, "logstore": v.name})
    stats = "".join([
        _stat("shards (readwrite)", f"{sum(s.status == 'readwrite' for s in v.shards)} / {len(v.shards)}"),
        _stat("stored", escape(_bytes(sum(s.bytes_stored for s in v.shards)))),
        _stat("ingest", escape(_rate_bytes(v.rate)), "rate"),
        _stat("logs", escape(_rate_units(v.rate, "logs")), "rate"),
        _stat("ttl", f"{v.ttl} d"),
    ])
    body = (f'<h1>Logstore {escape(v.name)} <a class="button" href="{escape(url("p", v.project, v.name, "tail"))}">'
            f"Live tail</a> <a class=\"button\" href=\"{escape(url('p', v.project, v.name, 'search'))}\">"
            f"Search</a></h1>"
            f'<section class="stats">{stats}</section>'
            + _chart(src, f"ingest of {v.name}, last {window / 60:.0f} min")
            + "<h2>Shards</h2>"
            + _table("shards", ["shard", "status", "key range", "begin seq", "end seq", "stored", "rate",
                                "last write"], [_shard_row(s) for s in v.shards], "no shards",
                     right=frozenset({0, 3, 4, 5, 6}))
            + "<h2>Consumer groups</h2>"
            + _table("groups", ["group", "consumers", "lag (log groups)", "timeout", "in order"], groups,
                     "no consumer groups", right=frozenset({1, 2, 3})))
    crumbs = [("projects", f"{BASE}/"), (v.project, url("p", v.project)), (v.name, None)]
    return layout(f"{v.project}/{v.name}", crumbs, body, who=who, auth_enabled=auth_enabled)


def _lag_row(s: ShardLag) -> str:
    bound = "" if s.lag_exact else "≥ "
    owner = escape(s.owner) if s.owner else ('<span class="muted">finished</span>' if s.finished
                                              else '<span class="muted">none</span>')
    cp = (f'<code>{escape(s.checkpoint)}</code> <span class="muted">seq {_num(s.checkpoint_seq)}</span>'
          if s.checkpoint and s.checkpoint_seq is not None else '<span class="muted">none</span>')
    lag_cls = "num lag-groups" + (" behind" if s.lag_log_groups else "")
    return (f'<tr data-shard="{s.shard_id}">' + _td("num", str(s.shard_id))
            + _td(f"status {escape(s.status)}", escape(s.status)) + _td("owner", owner)
            + _td("checkpoint", cp, f"committed by {s.committed_by}" if s.committed_by else "")
            + _td("time updated", _ago(s.updated_us / 1e6 if s.updated_us else None))
            + _td("time cp-time", _ago(s.checkpoint_time_ms / 1000 if s.checkpoint_time_ms else None),
                  "receive time of the first unconsumed log group")
            + _td(lag_cls, _num(s.lag_log_groups))
            + _td("num lag-logs", "-" if s.lag_logs is None else bound + _num(s.lag_logs))
            + _td("num lag-bytes", "-" if s.lag_bytes is None else bound + escape(_bytes(s.lag_bytes)))
            + _td("num lag-seconds", "-" if s.lag_seconds is None else f"{s.lag_seconds:.1f}")
            + "</tr>")


def _consumer_row(c: ConsumerRow) -> str:
    return (f'<tr data-consumer="{escape(c.name)}">' + _td("name", escape(c.name))
            + _td("num heartbeat", f"{c.seconds_since_heartbeat:.1f} s ago")
            + _td("held", escape(", ".join(map(str, c.held)) or "-"))
            + _td("granted", escape(", ".join(map(str, c.granted)) or "-")) + "</tr>")


def group_page(v: GroupView, *, who: str | None, auth_enabled: bool) -> str:
    total = sum(s.lag_log_groups for s in v.shards)
    stats = "".join([
        _stat("consumers alive", _num(len(v.consumers))),
        _stat("lag (log groups)", _num(total), "behind" if total else ""),
        _stat("timeout", f"{v.timeout} s"),
        _stat("in order", "yes" if v.in_order else "no"),
    ])
    body = (f"<h1>Consumer group {escape(v.name)}</h1>"
            f'<section class="stats">{stats}</section>'
            "<h2>Shards</h2>"
            + _table("lag", ["shard", "status", "owner", "checkpoint", "committed", "checkpoint time",
                             "lag (groups)", "lag (logs)", "lag (bytes)", "lag (s)"],
                     [_lag_row(s) for s in v.shards], "no shards", right=frozenset({0, 6, 7, 8, 9}))
            + '<p class="note">Owner: the consumer the hub hands the shard to now (from heartbeats). Lag counts '
              "from the checkpoint (or the oldest kept group) to the end of the shard; seconds are the end's receive "
              "time minus the checkpoint's. “≥” marks a lower bound: only the first 1,000 groups (1 MiB) after a "
              "checkpoint are read to count logs and bytes.</p>"
            + "<h2>Consumers</h2>"
            + _table("consumers", ["consumer", "last heartbeat", "reports holding", "granted"],
                     [_consumer_row(c) for c in v.consumers],
                     f"no live consumers (none heartbeated within the last {v.timeout} s since the hub started)",
                     right=frozenset({1})))
    crumbs = [("projects", f"{BASE}/"), (v.project, url("p", v.project)),
              (v.logstore, url("p", v.project, v.logstore)), (v.name, None)]
    return layout(f"{v.logstore}/{v.name}", crumbs, body, who=who, auth_enabled=auth_enabled)


def tail_page(project: str, logstore: str, *, who: str | None, auth_enabled: bool, query: str, regex: bool) -> str:
    checked = " checked" if regex else ""
    body = (f"<h1>Live tail of {escape(logstore)}</h1>"
            f'<form id="tail-form" class="tail-form" data-project="{escape(project)}" '
            f'data-logstore="{escape(logstore)}">'
            f'<input type="search" name="q" id="tail-q" placeholder="keyword, or a regular expression" '
            f'value="{escape(query)}" maxlength="200" autocomplete="off">'
            f'<label><input type="checkbox" name="regex" id="tail-regex"{checked}> regex</label>'
            '<button type="submit">Apply</button><button type="button" id="tail-pause">Pause</button></form>'
            '<p id="tail-status" class="muted">starting…</p>'
            '<table class="tail"><thead><tr><th>time (UTC)</th><th>shard</th><th>topic</th><th>source</th>'
            '<th>log</th></tr></thead><tbody id="tail-rows"></tbody></table>')
    crumbs = [("projects", f"{BASE}/"), (project, url("p", project)), (logstore, url("p", project, logstore)),
              ("tail", None)]
    return layout(f"tail {project}/{logstore}", crumbs, body, who=who, auth_enabled=auth_enabled)


def login_page(*, error: str = "", next_path: str = "", key_id: str = "") -> str:
    err = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (f'<form class="login" method="post" action="{BASE}/login"><h1>Sign in</h1>{err}'
            '<p class="muted">Use an access key the hub was started with (<code>--access-key ID:SECRET</code>).</p>'
            f'<input type="hidden" name="next" value="{escape(next_path)}">'
            f'<label>AccessKeyId <input name="key_id" autocomplete="username" required '
            f'value="{escape(key_id)}"></label>'
            '<label>AccessKeySecret <input name="secret" type="password" autocomplete="current-password" required>'
            '</label><button type="submit">Sign in</button></form>')
    return layout("Sign in", [("sign in", None)], body, who=None, auth_enabled=True)


def error_page(status: int, code: str, message: str, *, who: str | None, auth_enabled: bool) -> str:
    body = (f'<h1>{status} {escape(code)}</h1><p class="error" role="alert">{escape(message)}</p>'
            f'<p>{_a(BASE + "/", "back to projects")}</p>')
    return layout(code, [("projects", f"{BASE}/"), (code, None)], body, who=who, auth_enabled=auth_enabled)
