"""The SQLite + segment-file store on a temporary directory (no sockets)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sluice.hub.store.sqlite import SQLiteStore
from sluice.wire import errors as E
from sluice.wire.loggroup import split_groups


def _wait(fut):  # type: ignore[no-untyped-def]
    return fut.result(timeout=10)


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SQLiteStore(tmp_path, group_quota=2)
    _wait(s.create_project("proj", "", {}))
    _wait(s.create_logstore("proj", "logs", 7, 2, {}))
    yield s
    s.close()


def test_append_read_and_reopen(tmp_path: Path, store: SQLiteStore) -> None:
    """Appended groups read back in order as one LogGroupList body, and survive a reopen."""
    shard = store.get_shard("proj", "logs", 0)
    groups = [b"\x1a\x01" + bytes([65 + i]) for i in range(5)]
    for g in groups:
        _wait(store.append(shard, g, 1))
    got = store.read(shard, 0, 100, 1 << 20)
    assert got.count == 5 and got.next_seq == 5
    assert [bytes(b) for b in split_groups(got.body)] == groups
    assert store.read(shard, 2, 2, 1 << 20).count == 2
    store.close()
    again = SQLiteStore(tmp_path)
    shard2 = again.get_shard("proj", "logs", 0)
    assert (shard2.begin_seq, shard2.end_seq) == (0, 5)
    assert [bytes(b) for b in split_groups(again.read(shard2, 0, 100, 1 << 20).body)] == groups
    again.close()


def test_recovery_cuts_unindexed_tail(tmp_path: Path, store: SQLiteStore) -> None:
    """Bytes written to a segment whose index never committed (a crash mid-batch) are cut at restart."""
    shard = store.get_shard("proj", "logs", 1)
    _wait(store.append(shard, b"\x1a\x01A", 1))
    store.close()
    seg = next((tmp_path / "segments" / str(shard.uid)).glob("*.seg"))
    with open(seg, "ab") as f:
        f.write(b"\x0a\x05garbage-from-an-uncommitted-write")
    again = SQLiteStore(tmp_path)
    s = again.get_shard("proj", "logs", 1)
    _wait(again.append(s, b"\x1a\x01B", 1))
    assert [bytes(b) for b in split_groups(again.read(s, 0, 10, 1 << 20).body)] == [b"\x1a\x01A", b"\x1a\x01B"]
    again.close()


def test_read_respects_bytes_and_end(store: SQLiteStore) -> None:
    """A read stops at max_bytes (at least one group) and never passes end."""
    shard = store.get_shard("proj", "logs", 0)
    for i in range(10):
        _wait(store.append(shard, b"\x1a\x04" + b"%04d" % i, 1))
    assert store.read(shard, 0, 100, 1).count == 1
    assert store.read(shard, 0, 100, 1 << 20, end=3).next_seq == 3
    assert store.read(shard, 10, 100, 1 << 20).count == 0


def test_time_lookup_and_expiry(store: SQLiteStore) -> None:
    """Receive times are monotonic; expiry deletes old groups and moves begin to the oldest kept."""
    shard = store.get_shard("proj", "logs", 0)
    _wait(store.append(shard, b"\x1a\x01a", 1))
    time.sleep(0.02)
    middle = int(time.time() * 1000)
    time.sleep(0.02)
    _wait(store.append(shard, b"\x1a\x01b", 1))
    assert store.seq_at_time(shard, middle) == 1
    assert store.seq_at_time(shard, 0) == 0
    assert _wait(store.expire(shard, middle)) == 1
    assert (shard.begin_seq, shard.end_seq) == (1, 2)
    assert store.read(shard, 0, 10, 1 << 20).count == 1  # a cursor before begin is clamped, not refused


def test_readonly_split_merge(store: SQLiteStore) -> None:
    """Split makes the parent readonly with children max+1/max+2; merge makes one child max+1."""
    parent = store.get_shard("proj", "logs", 0)
    mid = (parent.begin_key + parent.end_key) // 2
    shards = _wait(store.split_shard("proj", "logs", 0, mid))
    assert [s.shard_id for s in shards] == [0, 2, 3]
    assert parent.status == "readonly"
    with pytest.raises(E.ShardReadOnly):
        _wait(store.append(parent, b"\x1a\x01x", 1))
    merged = _wait(store.merge_shard("proj", "logs", 2))
    assert merged[0].shard_id == 4 and merged[0].parents == (2, 3)
    assert (merged[0].begin_key, merged[0].end_key) == (parent.begin_key, parent.end_key)
    with pytest.raises(E.ParameterInvalid):
        _wait(store.split_shard("proj", "logs", 1, 0))


def test_groups_quota_and_checkpoints(tmp_path: Path, store: SQLiteStore) -> None:
    """The consumer-group quota is enforced; checkpoints persist across a reopen."""
    _wait(store.create_group("proj", "logs", "g1", 10, False))
    _wait(store.create_group("proj", "logs", "g2", 10, True))
    with pytest.raises(E.ConsumerGroupQuotaExceed):
        _wait(store.create_group("proj", "logs", "g3", 10, False))
    with pytest.raises(E.ConsumerGroupAlreadyExist):
        _wait(store.create_group("proj", "logs", "g1", 10, False))
    _wait(store.save_checkpoint("proj", "logs", "g1", 1, "MQ==", 1, "c1"))
    store.close()
    again = SQLiteStore(tmp_path)
    cp = again.get_group("proj", "logs", "g1").checkpoints[1]
    assert (cp.cursor, cp.seq, cp.consumer) == ("MQ==", 1, "c1")
    assert again.get_group("proj", "logs", "g2").in_order
    again.close()


def test_delete_logstore_removes_files(tmp_path: Path, store: SQLiteStore) -> None:
    """Deleting a logstore removes its index rows and segment files."""
    shard = store.get_shard("proj", "logs", 0)
    _wait(store.append(shard, b"\x1a\x01a", 1))
    assert (tmp_path / "segments" / str(shard.uid)).exists()
    _wait(store.delete_logstore("proj", "logs"))
    assert not (tmp_path / "segments" / str(shard.uid)).exists()
    with pytest.raises(E.LogStoreNotExist):
        store.get_logstore("proj", "logs")
