"""Many shards, one parked request (#19.5): against a hub, a process's consumers wait for data through one wait
session (POST /sluice/wait) instead of one long-poll connection per shard; against an endpoint without the
route they keep the per-shard path; a hub restart (sessions lost) is recovered by a reset."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from sluice.client import AsyncClient
from sluice.consumer import AsyncConsumer, ConsumerConfig
from sluice.consumer.waiter import DEFAULT_MAX_REQUESTS, beats_for, waiter_for
from sluice.testing import HubProcess
from sluice.wire import errors as E
from sluice.wire.batch import Batch
from tests.conftest import unique

LOGSTORES = 40  # x 2 shards: 80 shards, which per-shard long-polls would hold 80 connections for


def _connections_to(port: int) -> int:
    return sum(1 for c in psutil.Process().net_connections(kind="tcp")
               if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


async def _until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def _follow(hub: HubProcess, project: str, logstores: list[str], seen: dict[str, int],
                  client: AsyncClient, **config: Any) -> list[AsyncConsumer]:
    consumers = []
    for ls in logstores:
        def handler(batch: Batch, ls: str = ls) -> None:
            seen[ls] = seen.get(ls, 0) + len(batch.logs())
        cfg = ConsumerConfig(project, ls, "readers", consumer="c1", heartbeat_interval=1.0, checkpoint_interval=0.5,
                             **config)
        consumers.append(AsyncConsumer(client, cfg, handler=handler))
    for c in consumers:
        await c.start()
    return consumers


def test_one_process_many_shards_few_connections(hub: HubProcess) -> None:
    """80 idle shards are followed with at most DEFAULT_MAX_REQUESTS + 2 connections; a write to any of them is delivered
    promptly through the shared wait session."""
    project = unique("mw")

    async def go() -> None:
        async with AsyncClient(hub.url, hub.access_key_id, hub.access_key_secret) as c:
            await c.create_project(project)
            names = [f"ls-{i:02d}" for i in range(LOGSTORES)]
            for ls in names:
                await c.create_logstore(project, ls, shard_count=2)
            seen: dict[str, int] = {}
            consumers = await _follow(hub, project, names, seen, c)
            try:
                await _until(lambda: all(len(x.shards) == 2 for x in consumers), 20, "every shard held")
                waiter = waiter_for(c, project, 25.0)
                await _until(lambda: len(waiter._entries) == 2 * LOGSTORES, 20, "every shard waiting")
                assert waiter.supported is True
                beats = beats_for(c, project).stats
                before = dict(beats)
                await asyncio.sleep(2.5)  # two heartbeat rounds or so while idle
                # the rounds' heartbeats (one per consumer and second) went in one request per round
                assert beats["beats"] - before["beats"] >= LOGSTORES, (before, beats)
                assert beats["requests"] - before["requests"] <= 4, (before, beats)
                conns = _connections_to(hub.port)
                # the short requests of a round of heartbeats share DEFAULT_MAX_REQUESTS connections; the waits one
                assert conns <= DEFAULT_MAX_REQUESTS + 2, f"{conns} connections for {2 * LOGSTORES} idle shards"
                for ls in names[::7]:
                    t0 = time.monotonic()
                    await c.put_logs(project, ls, [{"n": "1"}, {"n": "2"}])
                    await _until(lambda: seen.get(ls) == 2, 10, f"the write to {ls} to be consumed")
                    assert time.monotonic() - t0 < 3.0
                assert waiter.stats["wakeups"] >= len(names[::7])
            finally:
                for x in consumers:
                    await x.stop()
    asyncio.run(go())


def test_without_the_route_each_shard_polls_on_its_own(hub: HubProcess) -> None:
    """An endpoint that answers the wait route with an SLS error (as SLS does) is used the per-shard way."""
    project = unique("mwno")

    async def go() -> None:
        async with AsyncClient(hub.url, hub.access_key_id, hub.access_key_secret) as c:
            await c.create_project(project)
            await c.create_logstore(project, "app", shard_count=2)

            async def refused(*args: Any, **kwargs: Any) -> Any:
                raise E.SLSError("no such API", error_code="RouteNotFound", http_status=404)
            c.wait_shards = refused  # type: ignore[method-assign]
            seen: dict[str, int] = {}
            consumers = await _follow(hub, project, ["app"], seen, c)
            try:
                await _until(lambda: len(consumers[0].shards) == 2, 20, "both shards held")
                await c.put_logs(project, "app", [{"n": "1"}])
                await _until(lambda: seen.get("app") == 1, 10, "the write to be consumed")
                assert waiter_for(c, project, 25.0).supported is False
            finally:
                await consumers[0].stop()
    asyncio.run(go())


def test_wait_sessions_survive_a_hub_restart(tmp_path: Path) -> None:
    """The hub forgets its sessions when it restarts: the consumer's next poll fails or finds no session,
    it sends its whole set again, and later writes are still delivered."""
    with HubProcess(tmp_path / "data") as hub:
        async def go() -> None:
            async with AsyncClient(hub.url, hub.access_key_id, hub.access_key_secret, timeout=5) as c:
                await c.create_project("restart")
                for ls in ("aa1", "bb2"):
                    await c.create_logstore("restart", ls, shard_count=1)
                seen: dict[str, int] = {}
                consumers = await _follow(hub, "restart", ["aa1", "bb2"], seen, c)
                try:
                    waiter = waiter_for(c, "restart", 25.0)
                    await _until(lambda: len(waiter._entries) == 2, 20, "both shards waiting")
                    await asyncio.to_thread(hub.restart)
                    await c.put_logs("restart", "bb2", [{"n": "1"}])
                    await _until(lambda: seen.get("bb2") == 1, 20, "the write after the restart")
                    assert waiter.stats["failures"] >= 1
                finally:
                    for x in consumers:
                        await x.stop()
        asyncio.run(go())


def _post(hub: HubProcess, host: str, body: object, wait: str = "0") -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"{hub.url}/sluice/wait", data=json.dumps(body).encode(), method="POST",
                                 headers={"Host": host, "Content-Type": "application/json", "x-sluice-wait": wait})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_wait_route_errors_are_sls_errors(tmp_path: Path) -> None:
    """Bad bodies, unknown sessions and bad waits answer SLS error JSON (hub without auth: unsigned requests)."""
    with HubProcess(tmp_path / "data", access_key=None, extra_args=["--no-auth"]) as hub:
        import urllib.request as u
        u.urlopen(u.Request(f"{hub.url}/", data=b'{"projectName": "errs"}', method="POST",
                            headers={"Host": f"errs.{hub.host}", "Content-Type": "application/json"}), timeout=10)
        host = f"errs.{hub.host}"
        status, body = _post(hub, host, {"session": "s"})
        assert status == 404 and body["errorCode"] == "WaitSessionNotExist"
        assert _post(hub, host, {"session": "s", "add": "x"})[1]["errorCode"] == "ParameterInvalid"
        assert _post(hub, host, [1, 2])[1]["errorCode"] == "ParameterInvalid"
        assert _post(hub, host, {"session": "s", "reset": True}, wait="soon")[1]["errorCode"] == "ParameterInvalid"
        assert _post(hub, host, {"session": "s", "reset": True}, wait="0") == (200, {"ready": []})
        status, body = _post(hub, host, {"session": "s", "add": [["missing", 0, "MA=="]]}, wait="5")
        assert (status, body) == (200, {"ready": [["missing", 0]]})  # gone: answered at once
        assert _post(hub, f"nope.{hub.host}", {"session": "s", "reset": True})[1]["errorCode"] == "ProjectNotExist"


def test_batched_heartbeats_answer_each_beat(hub: HubProcess) -> None:
    """POST /sluice/heartbeats: each beat is decided as a Heartbeat (shards to hold, or its own error), a
    leave lets the shards go at once, and the body is bounded before it is parsed."""
    project = unique("hbs")

    async def go() -> None:
        async with AsyncClient(hub.url, hub.access_key_id, hub.access_key_secret) as c:
            await c.create_project(project)
            await c.create_logstore(project, "app", shard_count=2)
            await c.create_consumer_group(project, "app", "gg", 30)
            beat = {"logstore": "app", "group": "gg", "held": []}
            res = await c.heartbeats(project, [{**beat, "consumer": "a"}, {**beat, "group": "nope", "consumer": "a"},
                                               {**beat, "consumer": ""}])
            assert res[0] == [0, 1]
            assert isinstance(res[1], E.SLSError) and res[1].error_code == "ConsumerGroupNotExist"
            assert isinstance(res[2], E.SLSError) and res[2].error_code == "ParameterInvalid"
            assert await c.heartbeats(project, [{**beat, "consumer": "a", "held": [0, 1]}]) == [[0, 1]]
            assert await c.heartbeats(project, [{**beat, "consumer": "a", "leave": True}]) == [[]]
            assert await c.heartbeat(project, "app", "gg", "b", []) == [0, 1]  # at once: a left
            try:
                await c.heartbeats(project, [{**beat, "consumer": "x" * 200}] * 6000)
                raise AssertionError("an oversized batch was accepted")
            except E.SLSError as exc:
                assert exc.error_code == "PostBodyTooLarge"
    asyncio.run(go())
