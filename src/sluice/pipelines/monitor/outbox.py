"""Alert delivery, at least once: what the evaluator decided to send, per alerter, until it is delivered.

The outbox is part of the evaluator's state (it is in every snapshot, and alerts are re-derived from the
durable partial counts after a crash), so an alert is never lost with a process. Each alerter has its own
task: a slow or failing one never delays the others or the consumption. A failed attempt is logged and
counted (``attempts_failed``) and retried with back-off (1 s doubling to ``retry_max_interval``), by
default until it succeeds (``delivery_attempts: 0``). A delivery is marked in the state logstore
(a ``d`` record) so a successor does not send it again; a crash between the send and the mark sends it
again, with the same ``id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

import aiohttp

from .alerters import Alert, Alerter

__all__ = ["Outbox"]

log = logging.getLogger("sluice.pipelines.monitor")

MAX_ALERTS_PER_SEND = 100


class Outbox:
    def __init__(self, alerters: list[Alerter], *, attempts: int = 0, max_interval: float = 60.0,
                 on_delivered: Callable[[list[str], int, bool], None] | None = None,
                 stats: dict[str, dict[str, int]] | None = None) -> None:
        self.alerters = alerters
        self.attempts = attempts
        self.max_interval = max(1.0, max_interval)
        self.on_delivered = on_delivered  # (ids, alerter index, gave up) -> write the mark
        self.pending: dict[str, dict[str, Any]] = {}  # id -> {"alert": ..., "owed": [alerter indexes]}
        self._tries: dict[tuple[str, int], int] = {}
        self._wake = [asyncio.Event() for _ in alerters]
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._backing_off = {i: False for i in range(len(alerters))}
        self.stats = stats if stats is not None else {"sent": {}, "failed": {}, "attempts_failed": {}}
        for a in alerters:
            for k in ("sent", "failed", "attempts_failed"):
                self.stats[k].setdefault(a.name, 0)

    # ------------------------------------------------------------------ state
    def add(self, alert: Alert) -> None:
        if alert["id"] in self.pending:
            return
        self.pending[alert["id"]] = {"alert": alert, "owed": list(range(len(self.alerters)))}
        for w in self._wake:
            w.set()

    def mark(self, alert_id: str, index: int) -> None:
        p = self.pending.get(alert_id)
        if p is None:
            return
        if index in p["owed"]:
            p["owed"].remove(index)
        self._tries.pop((alert_id, index), None)
        if not p["owed"]:
            del self.pending[alert_id]

    def to_json(self) -> list[dict[str, Any]]:
        return [{"alert": p["alert"], "owed": list(p["owed"])} for p in self.pending.values()]

    def load(self, data: list[dict[str, Any]]) -> None:
        for p in data:
            owed = [i for i in p.get("owed", []) if i < len(self.alerters)]
            if owed:
                self.pending[p["alert"]["id"]] = {"alert": p["alert"], "owed": owed}

    # ------------------------------------------------------------------ delivery
    async def start(self) -> None:
        if self._tasks:
            return
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._routine(i)) for i in range(len(self.alerters))]
        for w in self._wake:
            w.set()

    async def aclose(self, drain_timeout: float = 2.0) -> None:
        """Give due sends a moment to finish, then stop (what is still owed stays in ``pending``)."""
        deadline = time.monotonic() + drain_timeout
        while self._tasks and self.pending and time.monotonic() < deadline and any(
                not self._backing_off[i] for i in range(len(self.alerters)) if self._owes(i)):
            await asyncio.sleep(0.05)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _owes(self, index: int) -> bool:
        return any(index in p["owed"] for p in self.pending.values())

    async def _routine(self, index: int) -> None:
        alerter = self.alerters[index]
        sent_at: list[float] = []
        delay = 1.0
        while True:
            if not self._owes(index):
                self._wake[index].clear()
                await self._wake[index].wait()
                continue
            if alerter.per_minute:  # rate limit: wait for room; what arrives meanwhile goes in the same message
                now = time.monotonic()
                sent_at = [t for t in sent_at if t > now - 60]
                if len(sent_at) >= alerter.per_minute:
                    await asyncio.sleep(min(1.0, sent_at[0] + 60 - now))
                    continue
            batch = [p["alert"] for p in self.pending.values() if index in p["owed"]][:MAX_ALERTS_PER_SEND]
            try:
                assert self._session is not None
                await alerter.send(batch, self._session)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - an alerter failing must not stop the others
                self.stats["attempts_failed"][alerter.name] += 1
                gave_up = []
                for a in batch:
                    n = self._tries[(a["id"], index)] = self._tries.get((a["id"], index), 0) + 1
                    if self.attempts and n >= self.attempts:
                        gave_up.append(a["id"])
                log.warning("%s alerter failed (attempt %d for %d alert(s), next in %.0fs): %s", alerter.name,
                            max(self._tries.get((a["id"], index), 1) for a in batch), len(batch), delay, exc)
                if gave_up:
                    log.error("%s alerter gave up on %d alert(s) after %d attempts: %s", alerter.name,
                              len(gave_up), self.attempts, " ".join(gave_up))
                    self.stats["failed"][alerter.name] += len(gave_up)
                    for i in gave_up:
                        self.mark(i, index)
                    if self.on_delivered is not None:
                        self.on_delivered(gave_up, index, True)
                self._backing_off[index] = True
                try:
                    await asyncio.sleep(delay)
                finally:
                    self._backing_off[index] = False
                delay = min(delay * 2, self.max_interval)
                continue
            delay = 1.0
            sent_at.append(time.monotonic())
            self.stats["sent"][alerter.name] += len(batch)
            ids = [a["id"] for a in batch]
            for i in ids:
                self.mark(i, index)
            if self.on_delivered is not None:
                self.on_delivered(ids, index, False)
