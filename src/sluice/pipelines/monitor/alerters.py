"""Alerters: where monitor alerts go (webhook, DingTalk robot, email, the process log).

An alerter only sends; monitor/outbox.py decides what and when (its own queue per alerter, retries with
back-off, rate limits that merge waiting alerts into one message). An alert is a dict (monitor/windows.py)
whose ``id`` names its rule, key and window: a receiver that sees an id twice got a redelivery.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
from typing import Any
import urllib.parse
from email.message import EmailMessage


import aiohttp

from ..config import AlerterSpec, DingTalk, Email, Webhook
Alert = dict[str, Any]

__all__ = ["Alerter", "build_alerter", "dingtalk_sign", "title"]

log = logging.getLogger("sluice.pipelines.monitor")


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk robot signature: base64(HMAC-SHA256(secret, "timestamp\\nsecret")), URL-encoded."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode())


def title(a: Alert) -> str:
    return (f"[sluice] {a['rule']}: {a['count']} matches in {a['window_seconds']:g}s on "
            f"{a['project']}/{a['logstore']}")


def _markdown(alerts: list[Alert]) -> str:
    lines = []
    for a in alerts:
        lines.append(f"### {title(a)}")
        lines.append(f"- shard {a['shard']}, threshold {a['threshold']}, key `{a['key'] or '-'}`, id `{a['id']}`")
        lines.append(f"- log time {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(a['from']))} .. "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(a['to']))} UTC")
        for s in a["samples"]:
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
            log.warning("ALERT %s", json.dumps(a, ensure_ascii=False))


class WebhookAlerter(Alerter):
    name = "webhook"

    def __init__(self, spec: Webhook) -> None:
        self.spec = spec

    async def send(self, alerts: list[Alert], session: aiohttp.ClientSession) -> None:
        body = {"alerts": alerts}
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
        title_ = title(alerts[0]) if len(alerts) == 1 else f"[sluice] {len(alerts)} alerts"
        text = _markdown(alerts)
        if self.spec.at_mobiles:
            text += "\n\n" + " ".join(f"@{m}" for m in self.spec.at_mobiles)
        body = {"msgtype": "markdown", "markdown": {"title": title_, "text": text},
                "at": {"atMobiles": self.spec.at_mobiles, "isAtAll": False}}
        async with session.post(self.url(), json=body, timeout=aiohttp.ClientTimeout(total=15)) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 300 or (isinstance(data, dict) and data.get("errcode", 0) != 0):
                raise RuntimeError(f"DingTalk refused the message: HTTP {resp.status} {data}")


class EmailAlerter(Alerter):
    name = "email"

    def __init__(self, spec: Email) -> None:
        self.spec = spec

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.spec.ca_bundle)
        if not self.spec.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _send_sync(self, alerts: list[Alert]) -> None:
        s = self.spec
        msg = EmailMessage()
        msg["Subject"] = title(alerts[0]) if len(alerts) == 1 else f"[sluice] {len(alerts)} alerts"
        msg["From"] = s.sender
        msg["To"] = ", ".join(s.to)
        msg["X-Sluice-Alert-Ids"] = " ".join(str(a["id"]) for a in alerts)
        msg.set_content(_markdown(alerts) + "\n\n" + json.dumps(alerts, indent=2, ensure_ascii=False))
        mode = s.tls_mode
        smtp: smtplib.SMTP
        if mode == "implicit":  # SMTPS: TLS from the first byte (port 465)
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._tls_context())
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        with smtp:
            if mode == "starttls":
                smtp.starttls(context=self._tls_context())
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
