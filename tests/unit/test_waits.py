"""The hub's many-shard wait sessions (hub/waits.py), without HTTP: what is ready, wake-ups, supersession,
reset and bounds."""

from __future__ import annotations

import asyncio

import pytest

from sluice.hub.store.base import ShardMeta
from sluice.hub.waits import ShardWaits, WaitRequest, parse_wait_body
from sluice.wire import errors as E
from sluice.wire.cursor import encode_cursor


def _shards(n: int) -> dict[tuple[str, str, int], ShardMeta]:
    return {("p", f"ls{i}", 0): ShardMeta(uid=i + 1, shard_id=0, status="readwrite", begin_key=0, end_key=1,
                                           create_time=0) for i in range(n)}


def _waits(shards: dict[tuple[str, str, int], ShardMeta], **kw: int) -> ShardWaits:
    return ShardWaits(lambda p, ls, s: shards.get((p, ls, s)), **kw)


def _req(session: str = "s1", reset: bool = False, add: list[tuple[str, int, int]] | None = None,
         remove: list[tuple[str, int]] | None = None) -> WaitRequest:
    return WaitRequest(session, reset, add or [], remove or [])


def test_ready_at_once_when_data_or_readonly_or_gone() -> None:
    """A shard with data past the cursor, a read-only shard, a missing shard and a bad cursor are answered
    without waiting; a caught-up writable shard is not."""
    shards = _shards(4)
    shards[("p", "ls1", 0)].end_seq = 5
    shards[("p", "ls2", 0)].status = "readonly"
    w = _waits(shards)

    async def go() -> list[tuple[str, int]]:
        return await w.poll("k", "p", _req(reset=True, add=[("ls0", 0, 0), ("ls1", 0, 3), ("ls2", 0, 0),
                                                             ("gone", 0, 0), ("ls3", 0, -1)]), 5.0)
    assert sorted(asyncio.run(go())) == [("gone", 0), ("ls1", 0), ("ls2", 0), ("ls3", 0)]


def test_wake_answers_a_waiting_poll_with_only_that_shard() -> None:
    shards = _shards(50)
    w = _waits(shards)

    async def go() -> list[tuple[str, int]]:
        task = asyncio.create_task(w.poll("k", "p", _req(reset=True, add=[(f"ls{i}", 0, 0) for i in range(50)]),
                                          30.0))
        await asyncio.sleep(0)
        assert not task.done()
        shards[("p", "ls7", 0)].end_seq = 1
        w.wake({8})  # uid of ls7
        return await asyncio.wait_for(task, 5)
    assert asyncio.run(go()) == [("ls7", 0)]


def test_newer_poll_supersedes_and_session_keeps_its_set() -> None:
    """A second poll of the session answers the first at once; shards added by either stay watched."""
    shards = _shards(3)
    w = _waits(shards)

    async def go() -> None:
        first = asyncio.create_task(w.poll("k", "p", _req(reset=True, add=[("ls0", 0, 0)]), 30.0))
        await asyncio.sleep(0)
        second = asyncio.create_task(w.poll("k", "p", _req(add=[("ls1", 0, 0)]), 30.0))
        assert await asyncio.wait_for(first, 5) == []
        shards[("p", "ls0", 0)].end_seq = 2
        w.wake({1})
        assert await asyncio.wait_for(second, 5) == [("ls0", 0)]
        third = asyncio.create_task(w.poll("k", "p", _req(remove=[("ls1", 0)], add=[("ls2", 0, 0)]), 30.0))
        await asyncio.sleep(0)
        shards[("p", "ls1", 0)].end_seq = 1
        w.wake({2})  # removed: no answer for it
        await asyncio.sleep(0)
        assert not third.done()
        shards[("p", "ls2", 0)].end_seq = 1
        w.wake({3})
        assert await asyncio.wait_for(third, 5) == [("ls2", 0)]
    asyncio.run(go())


def test_timeout_rechecks_everything_and_unknown_session_needs_reset() -> None:
    shards = _shards(2)
    w = _waits(shards)

    async def go() -> None:
        with pytest.raises(E.SLSError) as info:
            await w.poll("k", "p", _req(add=[("ls0", 0, 0)]), 0)
        assert info.value.error_code == "WaitSessionNotExist" and info.value.http_status == 404
        assert await w.poll("k", "p", _req(reset=True, add=[("ls0", 0, 0), ("ls1", 0, 0)]), 0) == []
        shards[("p", "ls1", 0)].status = "readonly"  # a split: no commit, no wake
        assert await w.poll("k", "p", _req(), 0.01) == [("ls1", 0)]
        # another key cannot see or use this session
        with pytest.raises(E.SLSError):
            await w.poll("other", "p", _req(), 0)
    asyncio.run(go())


def test_bounds_on_sessions_and_shards() -> None:
    shards = _shards(4)
    w = _waits(shards, max_sessions=2, max_shards=3)

    async def go() -> None:
        await w.poll("k", "p", _req("a", reset=True), 0)
        await w.poll("k", "p", _req("b", reset=True), 0)
        with pytest.raises(E.SLSError) as busy:
            await w.poll("k", "p", _req("c", reset=True), 0)
        assert busy.value.error_code == "ServerBusy"
        with pytest.raises(E.SLSError) as many:
            await w.poll("k", "p", _req("a", add=[(f"ls{i}", 0, 0) for i in range(4)]), 0)
        assert many.value.error_code == "ParameterInvalid"
    asyncio.run(go())


def test_close_answers_waiting_polls() -> None:
    w = _waits(_shards(1))

    async def go() -> list[tuple[str, int]]:
        task = asyncio.create_task(w.poll("k", "p", _req(reset=True, add=[("ls0", 0, 0)]), 30.0))
        await asyncio.sleep(0)
        w.close()
        return await asyncio.wait_for(task, 5)
    assert asyncio.run(go()) == []


@pytest.mark.parametrize("body", [
    [], {"session": ""}, {"session": "x" * 65}, {"session": "s", "reset": "yes"}, {"session": "s", "add": {}},
    {"session": "s", "add": [["ls", "0", "MA=="]]}, {"session": "s", "add": [["ls", 0]]},
    {"session": "s", "add": [["ls", 0, 5]]}, {"session": "s", "remove": [["ls", True]]},
])
def test_bad_bodies_are_parameter_invalid(body: object) -> None:
    with pytest.raises(E.SLSError) as info:
        parse_wait_body(body)
    assert info.value.error_code == "ParameterInvalid"


def test_body_cursors_decode_and_bad_ones_are_ready() -> None:
    req = parse_wait_body({"session": "s-1", "reset": True, "add": [["ls", 0, encode_cursor(42)], ["ls", 1, "??"]],
                           "remove": [["old", 3]]})
    assert req.add == [("ls", 0, 42), ("ls", 1, -1)] and req.remove == [("old", 3)] and req.reset
