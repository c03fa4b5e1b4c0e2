"""pytest plugin: the ``sluice_hub`` fixture, a real SLS-compatible hub for testing your own SLS programs.

Installed with sluice (entry point ``pytest11``), so any test can ask for it::

    def test_my_consumer(sluice_hub):
        from aliyun.log import LogClient
        client = LogClient(sluice_hub.endpoint, sluice_hub.access_key_id, sluice_hub.access_key_secret)
        ...

The hub runs as its own process in a temporary directory on a loopback address, with a fresh access key.
As root it owns port 80 of its own 127.0.0.x address, so ``endpoint`` is a bare IP the official SDK uses
directly; otherwise it listens on a free port and the fixture sets ``HTTP_PROXY`` for the test (the SDK
then reaches it whatever the endpoint), and restores the environment afterwards. See docs/testing.md.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from .client import Client
from .testing import HubProcess

__all__ = ["SluiceHub", "sluice_hub"]


@dataclass
class SluiceHub:
    endpoint: str  # give this to LogClient / LogHubConfig
    url: str  # http://host:port
    access_key_id: str
    access_key_secret: str
    client: Client  # sluice's blocking client, ready to create projects and logstores
    process: HubProcess

    def create_logstore(self, project: str, logstore: str, shard_count: int = 2, ttl: int = 7) -> None:
        """Create the project if needed, then the logstore."""
        if project not in self.client.list_projects():
            self.client.create_project(project, "created by the sluice_hub fixture")
        self.client.create_logstore(project, logstore, ttl=ttl, shard_count=shard_count)


@pytest.fixture
def sluice_hub(tmp_path: Any) -> Iterator[SluiceHub]:
    """A fresh hub for one test: endpoint, keys and a ready client; stopped and removed afterwards."""
    key = ("test-" + secrets.token_hex(4), secrets.token_hex(16))
    proc = HubProcess(tmp_path / "sluice-hub", access_key=key)
    proc.start()
    saved = {k: os.environ.get(k) for k in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")}
    if proc.port != 80:
        os.environ["HTTP_PROXY"] = os.environ["http_proxy"] = proc.url
        os.environ.pop("NO_PROXY", None)
        os.environ.pop("no_proxy", None)
    client = Client(proc.url, *key)
    try:
        yield SluiceHub(proc.endpoint, proc.url, key[0], key[1], client, proc)
    finally:
        client.close()
        proc.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
