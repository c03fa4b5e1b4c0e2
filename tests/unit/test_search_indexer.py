"""The background indexer (hub/query/indexer.py) over a real store on a temporary directory (no sockets):
it follows the shards from its checkpoint, resumes after a restart without duplicates, applies TTL
expiry, and drops the index when the config goes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sluice.hub.query.index import CONFIG_KEY, IndexSpec, validate
from sluice.hub.query.indexer import Indexer
from sluice.hub.query.search import parse_search
from sluice.hub.store.sqlite import SQLiteStore
from sluice.wire.loggroup import LogGroup

INDEX = validate({"line": {}, "keys": {"status": {"type": "long"}}})


def _wait(fut):  # type: ignore[no-untyped-def]
    return fut.result(timeout=10)


def _group(statuses: list[int], t: int) -> bytes:
    g = LogGroup(Topic="web")
    for s in statuses:
        log = g.Logs.add(Time=t)
        log.Contents.add(Key="status", Value=str(s))
        log.Contents.add(Key="msg", Value=f"request done {s}")
    return g.SerializeToString()


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SQLiteStore(tmp_path / "data")
    _wait(s.create_project("proj", "", {}))
    _wait(s.create_logstore("proj", "web", 7, 2, {CONFIG_KEY: INDEX}))
    yield s
    s.close()


def _count(indexer: Indexer, query: str) -> int:
    spec = IndexSpec.from_config(INDEX)
    return indexer.index_for("proj", "web").search(parse_search(query), spec, 0, 2**31, None, 0, 0, False).processed


def test_follows_shards_resumes_and_expires(tmp_path: Path, store: SQLiteStore) -> None:
    now = int(time.time())
    for i in range(30):
        shard = store.get_shard("proj", "web", i % 2)
        _wait(store.append(shard, _group([200, 500, 200], now), 3))
    indexer = Indexer(store, tmp_path / "index")
    while indexer.run_pass():
        pass
    assert indexer.caught_up("proj", "web")
    assert _count(indexer, "*") == 90 and _count(indexer, "status: 500") == 30 and _count(indexer, "done") == 90
    # a restart: the index file holds its checkpoint; nothing is indexed twice, new data is picked up
    for idx in list(indexer._indexes.values()):
        idx.close()
    again = Indexer(store, tmp_path / "index")
    _wait(store.append(store.get_shard("proj", "web", 0), _group([404], now), 1))
    while again.run_pass():
        pass
    assert _count(again, "*") == 91 and _count(again, "status >= 404") == 31
    # TTL: the store expires old groups; the next pass deletes their rows
    for sid in (0, 1):
        _wait(store.expire(store.get_shard("proj", "web", sid), int((time.time() + 5) * 1000)))
    again.run_pass()
    assert _count(again, "*") == 0
    # the index config goes: the index file goes
    meta = store.get_logstore("proj", "web")
    _wait(store.update_logstore("proj", "web", meta.ttl, {}))
    again.run_pass()
    assert not again.path_for("proj", "web").exists()


def test_hub_check_covers_indexes(tmp_path: Path, store: SQLiteStore) -> None:
    from sluice.hub.store.check import check_data_dir

    _wait(store.append(store.get_shard("proj", "web", 0), _group([200], int(time.time())), 1))
    indexer = Indexer(store, tmp_path / "data" / "index")
    while indexer.run_pass():
        pass
    path = indexer.path_for("proj", "web")
    for idx in list(indexer._indexes.values()):
        idx.close()
    store.close()
    problems, _ = check_data_dir(tmp_path / "data")
    assert problems == []
    path.write_bytes(b"not a duckdb file" * 100)
    problems, _ = check_data_dir(tmp_path / "data")
    assert len(problems) == 1 and "search index" in problems[0] and "cannot be opened" in problems[0]


def test_orphan_index_files_are_removed_at_start(tmp_path: Path, store: SQLiteStore) -> None:
    orphan = tmp_path / "index" / "proj" / "gone.duckdb"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x")
    Indexer(store, tmp_path / "index").run_pass()
    assert not orphan.exists()


def test_helper_process_builds_the_same_index(tmp_path: Path, store: SQLiteStore) -> None:
    now = int(time.time())
    for i in range(6):
        _wait(store.append(store.get_shard("proj", "web", i % 2), _group([200, 500], now), 2))
    indexer = Indexer(store, tmp_path / "index", helper=True)
    try:
        while indexer.run_pass():
            pass
        assert indexer._helper is not None and indexer._helper_wanted  # the helper did the work
        assert _count(indexer, "*") == 12 and _count(indexer, "status: 500 and done") == 6
    finally:
        if indexer._helper is not None:
            indexer._helper.shutdown()
        for idx in list(indexer._indexes.values()):
            idx.close()


def test_a_deleted_shard_leaves_the_index(tmp_path: Path, store: SQLiteStore) -> None:
    now = int(time.time())
    for sid in (0, 1):
        _wait(store.append(store.get_shard("proj", "web", sid), _group([200], now), 1))
    indexer = Indexer(store, tmp_path / "index")
    while indexer.run_pass():
        pass
    assert _count(indexer, "*") == 2
    _wait(store.split_shard("proj", "web", 0, (1 << 126)))  # shard 0 becomes readonly
    _wait(store.delete_shard("proj", "web", 0))
    indexer.run_pass()
    assert _count(indexer, "*") == 1
    for idx in list(indexer._indexes.values()):
        idx.close()
