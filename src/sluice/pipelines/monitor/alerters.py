"""Alerters: where monitor alerts go (webhook, DingTalk robot, email, the process log).

Each alerter has its own queue and task, so a slow or failing one never delays the others or the
consumption: sends are retried with back-off, and a rate limit (a DingTalk robot takes 20 messages a
minute, then blocks for 10 minutes) merges waiting alerts into one message instead of dropping them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import smtplib
import time
import urllib.parse
from email.message import EmailMessage


import aiohttp

from ..config import AlerterSpec, DingTalk, Email, Webhook
from .rules import Alert

__all__ = ["Alerter", "AlertDispatcher", "build_alerter", "dingtalk_sign"]

log = logging.getLogger("sluice.pipelines.monitor")


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk robot signature: base64(HMAC-SHA256(secret, "timestamp\\nsecret")), URL-encoded."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode())


def _markdown(alerts: list[Alert]) -> str:
    lines = []
    for a in alerts:
        lines.append(f"### {a.title()}")
        lines.append(f"- shard {a.shard}, threshold {a.threshold}, key `{a.key or '-'}`")
        lines.append(f"- log time {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(a.first_time))} .. "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(a.last_time))} UTC")
        for s in a.samples:
            lines.append(f"> {json.dumps({k: v for k, v in s.items() if not k.startswith('__tag__')}, ensure_ascii=False)[:300]}")
    return "\n".join(lines)


class Alerter:
    name = "alerter"
    per_minute: int | None = None

    async def send(self, alerts: list[Alert], session: aiohttp.ClientSession) -> None:
        raise NotImplementedError


class LogAlerter(Alerter):
    name = "log"

    async def send(self, alerts: list[Alert], session: aiohttp.ClientSession) -> None:
        for a in alerts:
            log.warning("ALERT %s", json.dumps(a.to_json(), ensure_ascii=False))


class WebhookAlerter(Alerter):
    name = "webhook"

    def __init__(self, spec: Webhook) -> None:
        self.spec = spec

    async def send(self, alerts: list[Alert], session: aiohttp.ClientSession) -> None:
        body = {"alerts": [a.to_json() for a in alerts]}
        async with session.post(self.spec.url, json=body, headers=self.spec.headers,
                                timeout=aiohttp.ClientTimeout(total=15)) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"webhook answered HTTP {resp.status}: {(await resp.text())[:200]}")


class DingTalkAlerter(Alerter):
    name = "dingtalk"

    def __init__(self, spec: DingTalk) -> None:
        self.spec = spec
        self.per_minute = spec.per_minute

    def url(self, now_ms: int | None = None) -> str:
        if not self.spec.secret:
            return self.spec.url
        ts = int(time.time() * 1000) if now_ms is None else now_ms
        sep = "&" if "?" in self.spec.url else "?"
        return f"{self.spec.url}{sep}timestamp={ts}&sign={dingtalk_sign(self.spec.secret, ts)}"

    async def send(self, alerts: list[Alert], session: aiohttp.ClientSession) -> None:
        title = alerts[0].title() if len(alerts) == 1 else f"[sluice] {len(alerts)} alerts"
        text = _markdown(alerts)
        if self.spec.at_mobiles:
            text += "\n\n" + " ".join(f"@{m}" for m in self.spec.at_mobiles)
        body = {"msgtype": "markdown", "markdown": {"title": title, "text": text},
                "at": {"atMobiles": self.spec.at_mobiles, "isAtAll": False}}
        async with session.post(self.url(), json=body, timeout=aiohttp.ClientTimeout(total=15)) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 300 or (isinstance(data, dict) and data.get("errcode", 0) != 0):
                raise RuntimeError(f"DingTalk refused the message: HTTP {resp.status} {data}")


class EmailAlerter(Alerter):
    name = "email"

    def __init__(self, spec: Email) -> None:
        self.spec = spec

    def _send_sync(self, alerts: list[Alert]) -> None:
        s = self.spec
        msg = EmailMessage()
        msg["Subject"] = alerts[0].title() if len(alerts) == 1 else f"[sluice] {len(alerts)} alerts"
        msg["From"] = s.sender
        msg["To"] = ", ".join(s.to)
        msg.set_content(_markdown(alerts) + "\n\n" + json.dumps([a.to_json() for a in alerts], indent=2,
                                                                 ensure_ascii=False))
        with smtplib.SMTP(s.host, s.port, timeout=15) as smtp:
            if s.starttls:
                smtp.starttls()
            if s.username:
                smtp.login(s.username, s.password or "")
            smtp.send_message(msg)

    async def send(self, alerts: list[Alert], session: aiohttp.ClientSession) -> None:
        await asyncio.to_thread(self._send_sync, alerts)


def build_alerter(spec: AlerterSpec) -> Alerter:
    if spec.webhook is not None:
        return WebhookAlerter(spec.webhook)
    if spec.dingtalk is not None:
        return DingTalkAlerter(spec.dingtalk)
    if spec.email is not None:
        return EmailAlerter(spec.email)
    return LogAlerter()


class AlertDispatcher:
    """Fan alerts out to every alerter, each with its own queue, retries and rate limit."""

    def __init__(self, alerters: list[Alerter], *, retries: int = 5) -> None:
        self.alerters = alerters
        self.retries = retries
        self._queues: list[asyncio.Queue[Alert]] = [asyncio.Queue() for _ in alerters]
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.sent = {a.name: 0 for a in alerters}
        self.failed = {a.name: 0 for a in alerters}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._routine(a, q)) for a, q in zip(self.alerters, self._queues)]

    def publish(self, alert: Alert) -> None:
        for q in self._queues:
            q.put_nowait(alert)

    async def aclose(self, drain_timeout: float = 5.0) -> None:
        deadline = time.monotonic() + drain_timeout
        while any(not q.empty() for q in self._queues) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _routine(self, alerter: Alerter, queue: asyncio.Queue[Alert]) -> None:
        sent_at: list[float] = []
        while True:
            pending = [await queue.get()]
            if alerter.per_minute:
                while True:  # rate limit: wait for room, folding whatever arrives meanwhile into one message
                    now = time.monotonic()
                    sent_at = [t for t in sent_at if t > now - 60]
                    if len(sent_at) < alerter.per_minute:
                        break
                    await asyncio.sleep(min(1.0, sent_at[0] + 60 - now))
                    while not queue.empty():
                        pending.append(queue.get_nowait())
            while not queue.empty():
                pending.append(queue.get_nowait())
            delay = 1.0
            for attempt in range(self.retries):
                try:
                    assert self._session is not None
                    await alerter.send(pending, self._session)
                    self.sent[alerter.name] += len(pending)
                    sent_at.append(time.monotonic())
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - an alerter failing must not stop the others
                    log.warning("%s alerter failed (attempt %d/%d): %s", alerter.name, attempt + 1, self.retries, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
            else:
                self.failed[alerter.name] += len(pending)
                log.error("%s alerter gave up on %d alert(s) after %d attempts", alerter.name, len(pending),
                          self.retries)


