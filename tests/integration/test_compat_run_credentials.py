"""Issue #20.5: rotating credentials (the SDK's ``credentials_refresher``) in ``sluice run``: a source or target may
name a ``credentials_file`` (STS's AccessKeyId/AccessKeySecret/SecurityToken, kept current by something else);
its keys are read at start and again whenever a request fails authentication."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Callable

import pytest

from sluice.client import Client
from sluice.pipelines.clients import ClientPool, FileCredentials
from sluice.testing import HubProcess
from sluice.wire.errors import ConfigError
from tests._jobs import JobProc
from tests._jobs import wait_for as _wait_for

from ..conftest import unique

JOB = """
sources:
  - endpoint: {url}
    credentials_file: {creds}
    project: {project}
    logstores: [app]
group: {group}
start: begin
heartbeat_interval: 1
dispatch:
  routes:
    - match: {{topic: keep}}
      to: {{logstore: copy}}
  default: drop
"""


def _write_creds(path: Path, key_id: str, secret: str, token: str = "") -> None:
    path.write_text(json.dumps({"Credentials": {"AccessKeyId": key_id, "AccessKeySecret": secret,
                                                "SecurityToken": token, "Expiration": "2099-01-01T00:00:00Z"}}))


def test_a_job_with_only_a_credentials_file_runs(hub: HubProcess, client: Client, env: dict[str, str],
                                                 tmp_path: Path, jobs: Callable[..., JobProc]) -> None:
    project = unique("runcred")
    client.create_project(project)
    client.create_logstore(project, "app", shard_count=1)
    client.create_logstore(project, "copy", shard_count=1)
    client.put_logs(project, "app", [{"i": str(i)} for i in range(30)], topic="keep")
    client.put_logs(project, "app", [{"i": "x"}], topic="other")
    creds = tmp_path / "sts.json"
    _write_creds(creds, hub.access_key_id, hub.access_key_secret)
    config = tmp_path / "job.yaml"
    config.write_text(JOB.format(url=hub.url, creds=creds, project=project, group=unique("g")))
    no_keys = {k: v for k, v in env.items() if not k.startswith(("SLS_AK", "ALIBABA_CLOUD"))}
    job = jobs(config, no_keys)

    def copied() -> int:
        cursor = client.get_cursor(project, "copy", 0, "begin")
        return sum(len(g) for g in client.pull_logs(project, "copy", 0, cursor).log_groups())

    try:
        _wait_for(lambda: copied() >= 30, 30, "the routed logs", alive=[job])
        time.sleep(0.5)
        assert copied() == 30
        rc, _ = job.terminate()
        assert rc == 0, job.output()[-3000:]
    finally:
        job.kill()


def test_the_file_is_read_again_when_a_request_fails_authentication(hub: HubProcess, tmp_path: Path) -> None:
    creds = tmp_path / "sts.yaml"
    _write_creds(creds, "expired-key", "expired-secret", "old-token")

    async def main() -> None:
        pool = ClientPool()
        c = pool.get(hub.endpoint, credentials_file=str(creds))
        assert pool.get(hub.endpoint, credentials_file=str(creds)) is c  # one client per file
        assert c.transport.credentials.access_key_id == "expired-key"
        _write_creds(creds, hub.access_key_id, hub.access_key_secret)  # rotated by something else
        assert isinstance(await c.list_projects(), list)  # auth error -> file read again -> retried
        assert c.transport.credentials.access_key_id == hub.access_key_id
        assert c.transport.credentials.security_token is None
        await pool.aclose()

    asyncio.run(main())


def test_a_bad_credentials_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"AccessKeyId": "only-an-id"}))
    with pytest.raises(ConfigError, match="needs AccessKeyId and AccessKeySecret"):
        FileCredentials(str(bad))()
    with pytest.raises(ConfigError, match="credentials file"):
        FileCredentials(str(tmp_path / "missing.json"))()
    snake = tmp_path / "snake.yaml"
    snake.write_text("access_key_id: a\naccess_key_secret: b\nsecurity_token: t\n")
    assert FileCredentials(str(snake))() == ("a", "b", "t")
