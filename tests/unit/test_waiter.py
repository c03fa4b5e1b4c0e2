"""The consumer's side of wait sessions (consumer/waiter.py) against a scripted client: joins share a
request, a reset travels alone (a join overtaking it on another connection would be wiped), failures resend
the whole set, and batched heartbeats give each consumer its own answer or error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sluice.consumer.waiter import HeartbeatBatcher, ShardWaiter
from sluice.wire import errors as E


class _Client:
    """Each wait_shards call is recorded and answered when the test says so."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answers: list[asyncio.Future[list[tuple[str, int]]]] = []

    async def wait_shards(self, project: str, session: str, *, add: Any = (), reset: bool = False,
                          wait: float = 0.0) -> list[tuple[str, int]]:
        fut: asyncio.Future[list[tuple[str, int]]] = asyncio.get_running_loop().create_future()
        self.calls.append({"add": sorted((ls, s) for ls, s, _ in add), "reset": reset, "wait": wait})
        self.answers.append(fut)
        return await fut


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_joins_share_a_request_and_a_reset_travels_alone() -> None:
    async def go() -> None:
        client = _Client()
        w = ShardWaiter(client, "p", 25.0)  # type: ignore[arg-type]
        w.supported = True  # as after a reset probe that failed: the next send is a reset
        a = asyncio.create_task(w.wait("ls", 0, "c0"))
        b = asyncio.create_task(w.wait("ls", 1, "c0"))
        await _settle()
        assert client.calls == [{"add": [("ls", 0), ("ls", 1)], "reset": True, "wait": 0.0}]
        c = asyncio.create_task(w.wait("other", 0, "c0"))  # joins while the reset is in flight: held back
        await _settle()
        assert len(client.calls) == 1
        client.answers[0].set_result([("ls", 1)])
        await _settle()
        assert b.done() and not a.done()
        assert client.calls[1] == {"add": [("other", 0)], "reset": False, "wait": 25.0}
        client.answers[1].set_result([("ls", 0), ("other", 0)])
        await _settle()
        assert a.done() and c.done()
    asyncio.run(go())


def test_a_failed_poll_resends_the_whole_set() -> None:
    async def go() -> None:
        client = _Client()
        w = ShardWaiter(client, "p", 25.0)  # type: ignore[arg-type]
        w.supported, w._reset = True, False
        a = asyncio.create_task(w.wait("ls", 0, "c0"))
        await _settle()
        b = asyncio.create_task(w.wait("ls", 1, "c1"))
        await _settle()
        assert [c["reset"] for c in client.calls] == [False, False]
        client.answers[0].set_exception(E.SLSError("gone", error_code="WaitSessionNotExist", http_status=404))
        await _settle()
        assert client.calls[2] == {"add": [("ls", 0), ("ls", 1)], "reset": True, "wait": 0.0}
        client.answers[2].set_result([])
        client.answers[1].set_result([])
        await _settle()
        assert not a.done() and not b.done()
        assert client.calls[-1]["reset"] is False  # the next poll is parked again
        a.cancel()
        b.cancel()
        await asyncio.gather(a, b, return_exceptions=True)
    asyncio.run(go())


class _BeatClient:
    def __init__(self) -> None:
        self.requests: list[list[dict[str, Any]]] = []

    async def heartbeats(self, project: str, beats: list[dict[str, Any]]) -> list[Any]:
        self.requests.append(beats)
        return [E.SLSError("no group", error_code="ConsumerGroupNotExist", http_status=404)
                if b["group"] == "missing" else [0] for b in beats]


def test_heartbeats_of_one_iteration_go_in_one_request() -> None:
    async def go() -> None:
        client = _BeatClient()
        b = HeartbeatBatcher(client, "p")  # type: ignore[arg-type]
        results = await asyncio.gather(*(b.beat(f"ls{i}", "g", "c", [0]) for i in range(10)),
                                       b.beat("ls", "missing", "c", []), return_exceptions=True)
        assert len(client.requests) == 1 and len(client.requests[0]) == 11
        assert results[:10] == [[0]] * 10
        assert isinstance(results[10], E.SLSError) and results[10].error_code == "ConsumerGroupNotExist"
    asyncio.run(go())


def test_heartbeat_request_failure_reaches_every_beat() -> None:
    class Down:
        async def heartbeats(self, project: str, beats: list[dict[str, Any]]) -> list[Any]:
            raise E.TransportError("refused")

    async def go() -> None:
        b = HeartbeatBatcher(Down(), "p")  # type: ignore[arg-type]
        for r in await asyncio.gather(b.beat("a", "g", "c", []), b.beat("b", "g", "c", []), return_exceptions=True):
            assert isinstance(r, E.TransportError)
    asyncio.run(go())


@pytest.mark.parametrize("code", ["RouteNotFound", "Unauthorized"])
def test_an_sls_error_on_the_probe_means_per_shard_polling(code: str) -> None:
    class Sls:
        async def wait_shards(self, *a: Any, **k: Any) -> Any:
            raise E.SLSError("no", error_code=code, http_status=404)

    async def go() -> bool:
        return await ShardWaiter(Sls(), "p", 25.0).available()  # type: ignore[arg-type]
    assert asyncio.run(go()) is False
