"""Shared fixtures: a real hub process on its own loopback address, and the official SDK as its client."""

from __future__ import annotations

import itertools
import os
from typing import Iterator

import pytest

from sluice.testing import HubProcess

_names = itertools.count(1)


def unique(prefix: str) -> str:
    """A fresh resource name (lowercase, SLS-valid)."""
    return f"{prefix}-{os.getpid() % 10000}-{next(_names)}"


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub for the session, on port 80 of its own 127.0.0.x address (so the SDK needs no proxy)."""
    data = tmp_path_factory.mktemp("hub") / "data"
    proc = HubProcess(data)
    proc.start()
    yield proc
    crashed = proc.proc is not None and proc.proc.poll() is not None
    proc.close()
    assert not crashed, f"the session hub died:\n{proc.log_tail()}"


@pytest.fixture
def hub_log_on_failure(request: pytest.FixtureRequest, hub: HubProcess) -> Iterator[None]:
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"--- hub log ---\n{hub.log_tail()}")


@pytest.fixture
def sdk(hub: HubProcess, hub_log_on_failure: None):  # type: ignore[no-untyped-def]
    """The official SDK's LogClient pointed at the session hub."""
    from aliyun.log import LogClient

    return LogClient(hub.endpoint, hub.access_key_id, hub.access_key_secret)


@pytest.fixture
def project(sdk) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = unique("p")
    sdk.create_project(name, "test project")
    yield name
    try:
        sdk.delete_project(name)
    except Exception:  # noqa: BLE001 - a test may have deleted it already
        pass
