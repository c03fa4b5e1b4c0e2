"""SQLiteStore implements the Store protocol (store/base.py), and its snapshots do not move under the caller."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

from sluice.hub.store import open_store
from sluice.hub.store.base import Store
from sluice.hub.store.sqlite import SQLiteStore


def _members() -> list[str]:
    return [n for n, v in vars(Store).items() if callable(v) and not n.startswith("_")]


def test_engine_has_every_protocol_method_with_its_parameters() -> None:
    assert len(_members()) > 20
    for name in _members():
        want = list(inspect.signature(getattr(Store, name)).parameters)
        got = list(inspect.signature(getattr(SQLiteStore, name)).parameters)
        assert got[:len(want)] == want, f"SQLiteStore.{name}{got} does not match Store.{name}{want}"


def test_mutations_are_awaitable_and_snapshots_are_copies(tmp_path: Path) -> None:
    store = open_store(tmp_path / "data")
    try:
        async def go() -> None:
            await store.create_project("proj", "", {})
            await store.create_logstore("proj", "ls", 1, 2, {})
            await store.create_group("proj", "ls", "g", 10, False)
            before = store.snapshot("proj")
            group, shards, checkpoints = store.group_snapshot("proj", "ls", "g")
            await store.split_shard("proj", "ls", 0, 1 << 126)
            await store.save_checkpoint("proj", "ls", "g", 1, "MA==", 0, "c")
            await store.create_group("proj", "ls", "g2", 10, False)
            assert sorted(before[0].shards) == [0, 1] and list(before[0].groups) == ["g"]  # unchanged
            assert sorted(shards) == [0, 1] and checkpoints == {}
            assert [s.shard_id for s in store.shards_of("proj", "ls")] == [0, 1, 2, 3]
            assert [g.name for g in store.groups_of("proj", "ls")] == ["g", "g2"]
            assert store.group_keys() == [("proj", "ls", "g"), ("proj", "ls", "g2")]
            assert store.project_names() == ["proj"] and store.logstore_names("proj") == ["ls"]
            assert set(store.shard_counters()) == {s.uid for s in store.shards_of("proj", "ls")}
        asyncio.run(go())
    finally:
        store.close()


def test_configured_lists_only_the_logstores_holding_the_key(tmp_path: Path) -> None:
    store = open_store(tmp_path / "data")
    try:
        async def go() -> None:
            await store.create_project("proj", "", {})
            await store.create_logstore("proj", "b", 1, 2, {"sluice_index": {"line": {}}})
            await store.create_logstore("proj", "a", 1, 1, {"other": 1})
            await store.create_logstore("proj", "c", 1, 1, {"sluice_index": {"keys": {}}})
            got = store.configured("sluice_index")
            assert [(p, n, v) for p, n, v, _ in got] == [("proj", "b", {"line": {}}), ("proj", "c", {"keys": {}})]
            assert [s.shard_id for s in got[0][3]] == [0, 1]
            await store.split_shard("proj", "b", 0, 1 << 126)
            assert [s.shard_id for s in got[0][3]] == [0, 1]  # the caller's list does not move
            assert [s.shard_id for s in store.configured("sluice_index")[0][3]] == [0, 1, 2, 3]
            await store.delete_logstore("proj", "c")
            assert [n for _, n, _, _ in store.configured("sluice_index")] == ["b"]
            assert store.configured("absent") == []
        asyncio.run(go())
    finally:
        store.close()
