"""Shared by the monitor tests: a webhook receiver that can be taken down, writing logs with a chosen log
time (seconds and nanoseconds) to a chosen shard, and a brute-force evaluation of keyword rules in log time."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from typing import Any

from sluice.client import Client
from sluice.testing import free_port
from sluice.wire.loggroup import LogGroup
from tests._consumers import hash_key_for

# A monitor job with one keyword rule (FATAL, 2 s windows, by host) and a webhook; {extra} adds job-level keys.
FATAL_JOB = """
sources:
  - endpoint: {url}
    access_key_id: ${{SLS_AK_ID}}
    access_key_secret: ${{SLS_AK_KEY}}
    project: {project}
    logstores: [web]
group: {group}
start: begin
heartbeat_interval: 1
monitor:
  rules:
    - {{name: fatal, keyword: FATAL, window: 2s, group_by: host}}
  alerters:
    - webhook: {{url: "{hook}"}}
  dedup: 0s
  lateness: 2s
{extra}
"""


class Hook:
    """A webhook on 127.0.0.1. ``down`` makes it answer 503 (counted in ``refused``); ``alerts`` are the
    alerts of every accepted POST, in arrival order, with their arrival time."""

    def __init__(self) -> None:
        self.port = free_port()
        self.down = False
        self.refused = 0
        self.alerts: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: Any) -> Any:
        from aiohttp import web
        body = await request.json()
        if self.down:
            self.refused += 1
            return web.Response(status=503, text="down")
        now = time.time()
        for a in body["alerts"]:
            self.alerts.append({**a, "_arrived": now})
        return web.json_response({"ok": True})

    def start(self) -> "Hook":
        from aiohttp import web

        async def setup() -> None:
            app = web.Application()
            app.router.add_post("/hook", self._hook)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self._thread.start()
        asyncio.run_coroutine_threadsafe(setup(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def of_group(self, group: str) -> list[dict[str, Any]]:
        return [a for a in list(self.alerts) if a.get("group") == group]


def put_at(client: Client, project: str, logstore: str, shard: int, shards: int, t: float,
           fields: dict[str, str]) -> tuple[float, dict[str, str]]:
    """One log with log time ``t`` (seconds and nanoseconds) in its own LogGroup, on ``shard``."""
    g = LogGroup()
    e = g.Logs.add()
    e.Time = int(t)
    e.Time_ns = int(round((t - int(t)) * 1e9)) % 1_000_000_000
    for k, v in fields.items():
        c = e.Contents.add()
        c.Key, c.Value = k, v
    client.put_log_group(project, logstore, g.SerializeToString(), hash_key=hash_key_for(shard, shards))
    return int(t) + e.Time_ns / 1e9, fields


def brute_force(written: list[tuple[float, dict[str, str]]], rules: list[dict[str, Any]], dedup: float
                ) -> set[tuple[Any, ...]]:
    """Keyword rules over the logs as written, in log time: tumbling windows aligned to the epoch; a window
    alerts when its count reaches the threshold unless a kept window of the same rule and key started less
    than ``dedup`` before it. (rule, key, window start, from, to, count) per alert."""
    out: set[tuple[Any, ...]] = set()
    for rule in rules:
        w = int(rule["window"])
        windows: dict[tuple[str, int], list[float]] = defaultdict(list)
        for t, fields in written:
            if any(rule["keyword"] in v for v in fields.values()):
                key = fields.get(rule.get("group_by") or "", "") if rule.get("group_by") else ""
                windows[(key, int(t) - int(t) % w)].append(t)
        last: dict[str, int] = {}
        for (key, s), ts in sorted(windows.items(), key=lambda kv: kv[0][1]):
            if len(ts) < rule["threshold"]:
                continue
            if key in last and s - last[key] < dedup:
                continue
            last[key] = s
            out.add((rule["name"], key, s, round(min(ts), 3), round(max(ts), 3), len(ts)))
    return out


def alert_tuple(a: dict[str, Any]) -> tuple[Any, ...]:
    return (a["rule"], a["key"], a["window_start"], round(a["from"], 3), round(a["to"], 3), a["count"])


def evaluator_of(client: Client, project: str, group: str) -> str:
    """The consumer that last checkpointed the job's state shard (its evaluator), '' while there is none."""
    from sluice.pipelines.monitor.state import default_state_logstore
    from sluice.wire.errors import SLSError
    try:
        entries = client.get_checkpoints(project, default_state_logstore(group), group)
    except SLSError:
        return ""
    return next((str(e.get("consumer", "")) for e in entries if e.get("checkpoint")), "")
