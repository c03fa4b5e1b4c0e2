"""Fixtures of the integration tests that run ``sluice run`` jobs (a module may override ``env`` or
``client``, as test_pipelines.py does for its two hubs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

from sluice.client import Client
from sluice.testing import HubProcess
from tests._jobs import JobProc


@pytest.fixture
def jobs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., JobProc]]:
    """Start ``sluice run`` processes; all are killed at teardown, their output printed if the test failed."""
    started: list[JobProc] = []

    def start(config: Path, env: dict[str, str]) -> JobProc:
        j = JobProc(config, env, tmp_path / f"job{len(started)}.log")
        started.append(j)
        return j

    yield start
    for j in started:
        j.kill()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for j in started:
            print(f"--- sluice run {j.config.name} (pid {j.proc.pid}, rc {j.proc.returncode}) ---\n"
                  f"{j.output()[-6000:]}")


@pytest.fixture
def client(hub: HubProcess, hub_log_on_failure: None) -> Iterator[Client]:
    c = Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=20)
    yield c
    c.close()


@pytest.fixture
def env(hub: HubProcess) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "SLS_AK_ID": hub.access_key_id,
            "SLS_AK_KEY": hub.access_key_secret}
