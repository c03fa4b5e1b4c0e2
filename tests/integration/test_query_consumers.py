"""SPL on sluice's own consumer and on ``sluice run`` (#21 item 1): the server filters every pull, the
handler sees only what the query keeps, cursors move over the raw data, and a query the server refuses
stops the consumer at start instead of delivering unfiltered logs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sluice.client import AsyncClient
from sluice.consumer import AsyncConsumer, ConsumerConfig
from sluice.testing import HubProcess
from sluice.wire import errors as E
from tests._consumers import hash_key_for
from tests._jobs import JobProc, wait_for
from tests.conftest import unique

QUERY = "* | where status = '500'"


def _rows(n: int) -> list[dict[str, str]]:
    return [{"id": str(i), "status": "500" if i % 5 == 0 else "200"} for i in range(n)]


async def _put(client: AsyncClient, project: str, logstore: str, rows: list[dict[str, str]], shards: int) -> None:
    for j in range(0, len(rows), 4):  # groups of 4 logs, spread over the shards
        await client.put_logs(project, logstore, rows[j:j + 4], topic="t",
                              hash_key=hash_key_for((j // 4) % shards, shards))


async def _all_logs(client: AsyncClient, project: str, logstore: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for s in await client.list_shards(project, logstore):
        shard = int(s["shardID"])
        cursor = await client.get_cursor(project, logstore, shard, "begin")
        while True:
            r = await client.pull_logs(project, logstore, shard, cursor)
            if not r.count:
                break
            out.extend(r.batch(client.endpoint).logs())
            cursor = r.next_cursor
    return out


@pytest.fixture
def args(hub: HubProcess) -> tuple[str, str, str]:
    return hub.url, hub.access_key_id, hub.access_key_secret


def test_native_consumer_gets_only_what_the_query_keeps(args: tuple[str, str, str]) -> None:
    """Bounded consumption (end=t) with a query over 2 shards: exactly the status-500 logs, and run() returns
    by itself, so batches the query emptied neither stall a shard nor hide its end."""

    async def main() -> None:
        async with AsyncClient(*args, timeout=10) as client:
            project, ls = unique("spc"), "src"
            await client.create_project(project)
            await client.create_logstore(project, ls, shard_count=2)
            rows = _rows(80)
            await _put(client, project, ls, rows, shards=2)
            t = int(time.time()) + 1
            await asyncio.sleep(t + 0.05 - time.time())
            seen: list[dict[str, str]] = []

            def handle(batch):  # type: ignore[no-untyped-def]
                seen.extend(batch.logs())

            cfg = ConsumerConfig(project=project, logstore=ls, group="spl", consumer="spl-c", end=str(t),
                                 heartbeat_interval=1.0, timeout=3, checkpoint_interval=0.2, query=QUERY)
            consumer = AsyncConsumer(client, cfg, handler=handle)
            try:
                await asyncio.wait_for(consumer.run(), 30)
            finally:
                await consumer.stop()
            assert sorted(int(d["id"]) for d in seen) == [int(r["id"]) for r in rows if r["status"] == "500"]
            assert {d["status"] for d in seen} == {"500"}

    asyncio.run(main())


def test_a_query_the_server_refuses_stops_the_consumer_at_start(args: tuple[str, str, str]) -> None:
    async def main() -> None:
        async with AsyncClient(*args, timeout=10) as client:
            project = unique("spc")
            await client.create_project(project)
            await client.create_logstore(project, "src", shard_count=1)
            cfg = ConsumerConfig(project=project, logstore="src", group="bad", query="* | where status = = '1'")
            consumer = AsyncConsumer(client, cfg, handler=lambda batch: None)
            with pytest.raises(E.ConfigError) as info:
                await consumer.start()
            assert "refused the SPL query" in str(info.value) and "ParameterInvalid" in str(info.value)
            await consumer.stop()

    asyncio.run(main())


JOB = """
sources:
  - endpoint: "{url}"
    access_key_id: "${{AK}}"
    access_key_secret: "${{SK}}"
    project: {project}
    logstores: [src]
    query: "{query}"
group: spl-dispatch
start: begin
heartbeat_interval: 1
dispatch:
  routes:
    - match: {{topic: t}}
      to: {{logstore: dst}}
  default: drop
"""


def test_sluice_run_source_query(hub: HubProcess, args: tuple[str, str, str], tmp_path: Path) -> None:
    """A dispatch job whose source has ``query:`` writes only what the query keeps; with a query the server
    refuses, ``sluice run`` exits non-zero naming it."""
    project = unique("spj")
    rows = _rows(60)

    async def setup() -> None:
        async with AsyncClient(*args, timeout=10) as client:
            await client.create_project(project)
            await client.create_logstore(project, "src", shard_count=2)
            await client.create_logstore(project, "dst", shard_count=1)
            await _put(client, project, "src", rows, shards=2)

    async def dst_logs() -> list[dict[str, str]]:
        async with AsyncClient(*args, timeout=10) as client:
            return await _all_logs(client, project, "dst")

    asyncio.run(setup())
    env = {**os.environ, "AK": hub.access_key_id, "SK": hub.access_key_secret}
    want = sorted(int(r["id"]) for r in rows if r["status"] == "500")
    job_file = tmp_path / "job.yaml"
    job_file.write_text(JOB.format(url=hub.url, project=project, query=QUERY))
    job = JobProc(job_file, env, tmp_path / "job.log")
    try:
        got: list[dict[str, str]] = []

        def arrived() -> bool:
            got[:] = asyncio.run(dst_logs())
            return len(got) >= len(want)

        wait_for(arrived, 30, "the query's logs in dst", interval=0.5, alive=[job])
        time.sleep(1.0)  # nothing else may follow
        got[:] = asyncio.run(dst_logs())
        assert sorted(int(d["id"]) for d in got) == want
    finally:
        job.terminate()

    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(JOB.format(url=hub.url, project=project, query="* | where status = = '1'"))
    proc = subprocess.run([sys.executable, "-m", "sluice", "run", str(bad_file), "--quiet"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "refused the SPL query" in proc.stdout + proc.stderr
