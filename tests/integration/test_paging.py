"""Every listing reads to the end (#19.4): client list calls page past the first page, and ``sluice status``
shows a logstore that only the second page of ListLogStores holds."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from sluice.client import AsyncClient, Client
from sluice.testing import HubProcess
from tests.conftest import unique


def test_list_logstores_pages_to_the_end(client: Client) -> None:
    """More logstores than one page: every one is listed once, in the hub's order, whatever the page size."""
    project = unique("pg")
    client.create_project(project)
    names = sorted(f"ls-{i:03d}" for i in range(23))
    for name in names:
        client.create_logstore(project, name, shard_count=1)
    assert client.list_logstores(project, page_size=5) == names  # 5 pages, the last one short
    assert client.list_logstores(project, page_size=23) == names  # exactly one full page, then an empty one
    assert client.list_logstores(project) == names


def test_list_projects_pages_to_the_end(client: Client) -> None:
    """More projects than one page (page size 2): each created project is listed exactly once."""
    mine = {unique("pgp") for _ in range(5)}
    for name in mine:
        client.create_project(name)
    listed = client.list_projects(page_size=2)
    assert mine <= set(listed)
    assert len(listed) == len(set(listed))
    assert listed == client.list_projects()


def test_unpaged_listings_hold_everything(client: Client) -> None:
    """ListShards and ListConsumerGroup are not paged by the API: one answer holds every shard and group,
    more than the 5-item pages used above."""
    project = unique("pgs")
    client.create_project(project)
    client.create_logstore(project, "many", shard_count=64)
    assert [s["shardID"] for s in client.list_shards(project, "many")] == list(range(64))
    groups = [f"g{i}" for i in range(8)]
    for g in groups:
        client.create_consumer_group(project, "many", g, 30)
    assert sorted(g["name"] for g in client.list_consumer_groups(project, "many")) == groups


def test_status_shows_logstores_past_the_first_page(hub: HubProcess) -> None:
    """501 logstores (one more than SLS's and the client's page of 500): the one only the second page holds,
    and its consumer group, appear in ``sluice status``."""
    project = unique("pgst")

    async def setup() -> None:
        async with AsyncClient(hub.url, hub.access_key_id, hub.access_key_secret) as c:
            await c.create_project(project)
            sem = asyncio.Semaphore(16)

            async def make(name: str) -> None:
                async with sem:
                    await c.create_logstore(project, name, shard_count=1)
            await asyncio.gather(*(make(f"ls-{i:03d}") for i in range(500)))
            await c.create_logstore(project, "zz-last", shard_count=1)
            await c.create_consumer_group(project, "zz-last", "tail-readers", 30)
            assert len(await c.list_logstores(project)) == 501
            for size in ("-1", "1000"):  # the hub's page is at most 500, as SLS's: clients page on
                page = (await c.transport.request("GET", "/logstores", project=project,
                                                  params=[("offset", "0"), ("size", size)])).json()
                assert (page["count"], page["total"], len(page["logstores"])) == (500, 501, 500)
    asyncio.run(setup())
    out = subprocess.run([sys.executable, "-m", "sluice", "status", "--endpoint", hub.url, "--access-key-id",
                          hub.access_key_id, "--access-key-secret", hub.access_key_secret, "--project",
                          project, "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["logstore"], r["group"], r["shard"]) for r in rows] == [("zz-last", "tail-readers", 0)]
