"""Alert delivery is at-least-once (issue 18): a webhook that is down, a job killed with SIGKILL during the
outage and started again, and SMTP over implicit TLS (465-style) and STARTTLS against a real server.

* Outage: every alert raised while the webhook refuses is retried with back-off (a log line per failed
  attempt); the process is killed -9 in the middle of the outage and started again; once the webhook is
  back, every alert arrives exactly once per id. The 2-minute outage of the issue runs as a slow test.
* Email: aiosmtpd with a certificate from a throwaway CA (trustme), once speaking TLS from the first byte,
  once requiring STARTTLS; a client that does not trust the CA is refused.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import ssl
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sluice.client import Client
from sluice.pipelines.config import Email
from sluice.pipelines.monitor.alerters import EmailAlerter
from sluice.testing import HubProcess, free_port
from tests._jobs import JobProc, wait_for
from tests.conftest import unique
from tests.integration._monitor import FATAL_JOB, Hook, evaluator_of, put_at

def _outage(hub: HubProcess, client: Client, tmp_path: Path, jobs: Callable[..., JobProc], outage: float,
            extra: str, back_within: float) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SLS_AK_ID": hub.access_key_id,
           "SLS_AK_KEY": hub.access_key_secret}
    project = unique("mdeliv")
    client.create_project(project, "test_monitor_delivery")
    client.create_logstore(project, "web", shard_count=2)
    group = unique("out").replace("-", "_")
    hook = Hook().start()
    hook.down = True
    config = tmp_path / "job.yaml"
    config.write_text(FATAL_JOB.format(url=hub.url, project=project, group=group, hook=hook.url, extra=extra))
    try:
        first = jobs(config, env)
        wait_for(lambda: bool(evaluator_of(client, project, group)) or
                 (put_at(client, project, "web", 0, 2, time.time(), {"msg": "warm-up"}) and False), 30,
                 "the evaluator", interval=0.5, alive=[first])
        down_since = time.monotonic()
        for i, host in enumerate(("a", "b", "c")):
            put_at(client, project, "web", i % 2, 2, time.time(), {"msg": f"FATAL {host}", "host": host})
        wait_for(lambda: hook.refused >= 2, 30, "failed attempts", alive=[first])
        wait_for(lambda: "webhook alerter failed (attempt" in first.output(), 10, "a log line per failed attempt")
        time.sleep(2.5)  # a snapshot holding the owed alerts, and the state checkpoint, are written
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(5) == -signal.SIGKILL
        refused = hook.refused

        second = jobs(config, env)  # the same job again: it owes the alerts the first one raised
        put_at(client, project, "web", 1, 2, time.time(), {"msg": "FATAL d", "host": "d"})
        wait_for(lambda: hook.refused > refused, 40, "the restarted job retrying the owed alerts", alive=[second])
        remaining = outage - (time.monotonic() - down_since)
        if remaining > 0:
            time.sleep(remaining)
        hook.down = False
        wait_for(lambda: {a["key"] for a in hook.alerts} >= {"a", "b", "c", "d"}, back_within,
                 "every alert after the outage", alive=[second])
        time.sleep(2)  # time for a duplicate to arrive
        rc, _ = second.terminate()
        assert rc == 0, second.output()[-3000:]
    finally:
        hook.stop()
    ids = [a["id"] for a in hook.alerts]
    assert sorted(a["key"] for a in hook.alerts) == ["a", "b", "c", "d"], hook.alerts
    assert len(set(ids)) == 4, "one id per alert (rule, key, window)"
    assert "state restored from the snapshot" in second.output()


def test_webhook_outage_and_kill_during_it_every_alert_exactly_once(
        hub: HubProcess, client: Client, tmp_path: Path, jobs: Callable[..., JobProc]) -> None:
    _outage(hub, client, tmp_path, jobs, outage=8, extra="  retry_max_interval: 2s", back_within=20)


@pytest.mark.slow
def test_webhook_down_two_minutes(hub: HubProcess, client: Client, tmp_path: Path,
                                  jobs: Callable[..., JobProc]) -> None:
    """The issue's case: the webhook is down for 2 minutes (default back-off, up to 60 s between attempts)."""
    _outage(hub, client, tmp_path, jobs, outage=120, extra="", back_within=90)


# ---------------------------------------------------------------------------------------------- email
class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.tls: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(email.message_from_bytes(envelope.original_content or envelope.content,
                                                      policy=email.policy.default))
        self.tls.append(server.transport.get_extra_info("ssl_object") is not None)
        return "250 OK"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("smtp-certs")
    ca_pem = d / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    yield ctx, ca_pem


ALERT = {"id": "0123abcd", "rule": "fatal", "key": "h1", "project": "p", "logstore": "web", "shard": 0,
         "count": 1, "threshold": 1, "window_seconds": 60, "window_start": 1700000000, "window_end": 1700000060,
         "from": 1700000001.5, "to": 1700000001.5, "samples": [{"msg": "FATAL"}], "group": "g", "endpoint": "",
         "merged": 1}


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_email_over_tls(certs: tuple[Any, Path], mode: str) -> None:
    from aiosmtpd.controller import Controller
    server_ctx, ca_pem = certs
    box = _Mailbox()
    port = free_port()
    if mode == "implicit":
        controller = Controller(box, hostname="127.0.0.1", port=port, ssl_context=server_ctx)
    else:
        controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=server_ctx, require_starttls=True)
    controller.start()
    try:
        spec = Email.model_validate({"host": "127.0.0.1", "port": port, "from": "sluice@example.com",
                                     "to": ["oncall@example.com"], "tls": mode, "ca_bundle": str(ca_pem),
                                     "timeout": 10})
        asyncio.run(EmailAlerter(spec).send([ALERT], None))  # type: ignore[arg-type]
        assert len(box.messages) == 1 and box.tls == [True]
        msg = box.messages[0]
        assert msg["X-Sluice-Alert-Ids"] == "0123abcd" and "[sluice] fatal" in msg["Subject"]
        assert '"id": "0123abcd"' in msg.get_body(("plain",)).get_content()
        # a client that does not trust the server's CA refuses to send
        untrusted = Email.model_validate({**spec.model_dump(by_alias=True), "ca_bundle": None})
        with pytest.raises(ssl.SSLError):
            asyncio.run(EmailAlerter(untrusted).send([ALERT], None))  # type: ignore[arg-type]
        if mode == "starttls":  # the server requires STARTTLS: a plain client is refused
            plain = Email.model_validate({**spec.model_dump(by_alias=True), "tls": "none"})
            with pytest.raises(Exception):
                asyncio.run(EmailAlerter(plain).send([ALERT], None))  # type: ignore[arg-type]
        assert len(box.messages) == 1
    finally:
        controller.stop()


def test_email_port_465_defaults_to_implicit_tls() -> None:
    spec = Email.model_validate({"host": "h", "port": 465, "from": "a@b", "to": ["c@d"]})
    assert spec.tls_mode == "implicit"
    assert Email.model_validate({"host": "h", "port": 587, "from": "a@b", "to": ["c@d"], "starttls": True}).tls_mode \
        == "starttls"
    assert Email.model_validate({"host": "h", "from": "a@b", "to": ["c@d"]}).tls_mode == "none"
