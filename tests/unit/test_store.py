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
    seg = next((tmp_path / "segments" / str(shard.uid)).glob("*.sg2"))
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


def _seg_files(tmp_path: Path, shard) -> list[Path]:  # type: ignore[no-untyped-def]
    return sorted((tmp_path / "segments" / str(shard.uid)).glob("*.sg*"))


def test_a_batch_notes_only_the_shards_it_touches(tmp_path: Path) -> None:
    """#19.1: undo information for a batch costs what it touched, not the number of shards in the hub."""
    s = SQLiteStore(tmp_path)
    _wait(s.create_project("proj", "", {}))
    _wait(s.create_logstore("proj", "many", 7, 64, {}))
    for sid in range(64):
        _wait(s.append(s.get_shard("proj", "many", sid), b"\x1a\x01x", 1))
    journal = s.segments.mark()
    uid = s.get_shard("proj", "many", 5).uid
    s.segments.append(uid, 1, b"\x1a\x01y")
    assert list(journal) == [uid]
    s.segments.rollback(journal)
    assert [bytes(b) for b in split_groups(s.read(s.get_shard("proj", "many", 5), 0, 10, 1 << 20).body)] == [b"\x1a\x01x"]
    _wait(s.append(s.get_shard("proj", "many", 5), b"\x1a\x01z", 1))
    assert s.read(s.get_shard("proj", "many", 5), 0, 10, 1 << 20).count == 2
    s.close()


def test_groups_are_stored_compressed_and_read_back_raw(tmp_path: Path, store: SQLiteStore) -> None:
    """#19.6: a group is stored compressed (the client's lz4 body as it came, or lz4 by the store); reads
    give the raw LogGroupList."""
    from sluice.wire.compress import compress

    shard = store.get_shard("proj", "logs", 0)
    group = b"".join([b"\x1a\x20" + b"%032d" % (i % 7) for i in range(2000)])
    _wait(store.append(shard, group, 2000, packed=("lz4", compress(group, "lz4"))))
    _wait(store.append(shard, group, 2000))  # no client body: the store compresses
    _wait(store.append(shard, group, 2000, packed=("zstd", compress(group, "zstd"))))
    _wait(store.append(shard, group, 2000, packed=("deflate", compress(group, "deflate"))))  # lz4 by the store
    assert sum(f.stat().st_size for f in _seg_files(store.data_dir, shard)) < 0.2 * 4 * len(group)
    got = store.read(shard, 0, 10, 1 << 30)
    assert got.count == 4 and [bytes(b) for b in split_groups(got.body)] == [group] * 4


def test_write_descriptors_stay_within_the_budget(tmp_path: Path) -> None:
    """#17.3: any number of shards under a fixed number of open segment files (LRU)."""
    s = SQLiteStore(tmp_path, max_open_segments=4)
    _wait(s.create_project("proj", "", {}))
    _wait(s.create_logstore("proj", "wide", 7, 40, {}))
    for rnd in range(2):
        for sid in range(40):
            _wait(s.append(s.get_shard("proj", "wide", sid), b"\x1a\x02%02d" % rnd, 1))
            assert s.segments.open_count() <= 4
    for sid in range(40):
        assert [bytes(b) for b in split_groups(s.read(s.get_shard("proj", "wide", sid), 0, 10, 1 << 20).body)] \
            == [b"\x1a\x0200", b"\x1a\x0201"]
    s.close()


def test_os_refusing_descriptors_is_server_busy(monkeypatch: pytest.MonkeyPatch, store: SQLiteStore) -> None:
    """#17.3: EMFILE on a write or a read is ServerBusy (503, retried by clients), never a 500."""
    import errno
    import os

    from sluice.hub.store import segments

    shard = store.get_shard("proj", "logs", 0)
    _wait(store.append(shard, b"\x1a\x01a", 1))
    real_open = os.open

    def refusing(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.EMFILE, "Too many open files")
    store.segments.close()  # drop the cached write descriptor so the next append must open
    monkeypatch.setattr(segments.os, "open", refusing)
    with pytest.raises(E.ServerBusy):
        _wait(store.append(shard, b"\x1a\x01b", 1))
    with pytest.raises(E.ServerBusy):
        store.read(shard, 0, 10, 1 << 20)
    monkeypatch.setattr(segments.os, "open", real_open)
    assert _wait(store.append(shard, b"\x1a\x01c", 1)) == (0, 1)  # the failed batch's sequence number is reused
    assert [bytes(b) for b in split_groups(store.read(shard, 0, 10, 1 << 20).body)] == [b"\x1a\x01a", b"\x1a\x01c"]


def test_expiry_in_small_batches_frees_the_last_segment(tmp_path: Path, store: SQLiteStore) -> None:
    """#19.2: retention deletes in transactions of expire_batch groups; a shard whose groups all expired
    keeps no segment file; writes and a reopen work after."""
    shard = store.get_shard("proj", "logs", 0)
    store.expire_batch = 3
    for i in range(10):
        _wait(store.append(shard, b"\x1a\x01%d" % i, 1))
    cutoff = int(time.time() * 1000) + 1000
    assert _wait(store.expire(shard, 0)) == 0
    assert _wait(store.expire(shard, cutoff)) == 10
    assert (shard.begin_seq, shard.end_seq) == (10, 10)
    assert _seg_files(tmp_path, shard) == []
    _wait(store.append(shard, b"\x1a\x01z", 1))
    store.close()
    again = SQLiteStore(tmp_path)
    s = again.get_shard("proj", "logs", 0)
    assert (s.begin_seq, s.end_seq) == (10, 11)
    assert [bytes(b) for b in split_groups(again.read(s, 0, 10, 1 << 20).body)] == [b"\x1a\x01z"]
    again.close()


def test_damaged_record_is_refused_not_served(tmp_path: Path, store: SQLiteStore) -> None:
    """#17.7: a flipped byte in a stored group is an error naming the damage, never garbage served; the
    good groups before it are still served."""
    shard = store.get_shard("proj", "logs", 0)
    _wait(store.append(shard, b"\x1a\x05first", 1))
    _wait(store.append(shard, b"\x1a\x06second", 1))
    seg = _seg_files(tmp_path, shard)[0]
    data = bytearray(seg.read_bytes())
    data[-2] ^= 0xFF
    seg.write_bytes(bytes(data))
    got = store.read(shard, 0, 10, 1 << 20)
    assert [bytes(b) for b in split_groups(got.body)] == [b"\x1a\x05first"]
    with pytest.raises(E.InternalServerError, match="damaged"):
        store.read(shard, 1, 10, 1 << 20)


def test_first_format_segments_still_read(tmp_path: Path) -> None:
    """#19.6: a data directory written before compression (raw framed .seg files, no transaction numbers)
    opens, reads, and new groups go to a new compressed segment."""
    import sqlite3

    s = SQLiteStore(tmp_path)
    _wait(s.create_project("proj", "", {}))
    _wait(s.create_logstore("proj", "old", 7, 1, {}))
    uid = s.get_shard("proj", "old", 0).uid
    s.close()
    groups = [b"\x1a\x03old", b"\x1a\x04old2"]
    d = tmp_path / "segments" / str(uid)
    d.mkdir(parents=True, exist_ok=True)
    framed = [b"\x0a" + bytes([len(g)]) + g for g in groups]
    (d / f"{0:020d}.seg").write_bytes(b"".join(framed) + b"\x0a\x09cut-off")  # plus an unindexed tail
    conn = sqlite3.connect(tmp_path / "hub.db")
    off = 0
    for seq, f in enumerate(framed):
        conn.execute("INSERT INTO log(id, recv_ms, nlogs, seg, off, len) VALUES (?,?,?,?,?,?)",
                     ((uid << 40) | seq, 1000 + seq, 1, 0, off, len(f)))
        off += len(f)
    conn.execute("DROP TABLE meta")
    conn.execute("ALTER TABLE log DROP COLUMN raw")
    conn.commit()
    conn.close()
    (tmp_path / "hub.txn").unlink()
    again = SQLiteStore(tmp_path)
    shard = again.get_shard("proj", "old", 0)
    assert [bytes(b) for b in split_groups(again.read(shard, 0, 10, 1 << 20).body)] == groups
    _wait(again.append(shard, b"\x1a\x03new", 1))
    assert [bytes(b) for b in split_groups(again.read(shard, 0, 10, 1 << 20).body)] == groups + [b"\x1a\x03new"]
    assert sorted(p.suffix for p in d.iterdir()) == [".seg", ".sg2"]
    again.close()


def test_a_read_is_bounded_by_raw_bytes_not_stored_bytes(store: SQLiteStore) -> None:
    """Groups are stored compressed, but a pull's size bound counts what it will send (raw bytes)."""
    shard = store.get_shard("proj", "logs", 0)
    group = b"\x1a\x20" + b"%032d" % 0
    group = group * 3000  # ~100 KB, compresses ~50x
    for _ in range(10):
        _wait(store.append(shard, group, 3000))
    assert store.read(shard, 0, 100, 250_000).count == 3


def test_sync_full_reaches_segments_the_lru_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--sync full: every segment a batch wrote is fsynced before the commit, even one whose descriptor
    the LRU closed meanwhile."""
    import os

    from sluice.hub.store import segments as segmod

    segs = segmod.SegmentFiles(tmp_path, max_open=1)
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(segmod.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    segs.mark()
    segs.append(1, 0, b"\x1a\x01a")
    segs.append(2, 0, b"\x1a\x01b")
    assert segs.open_count() == 1
    segs.sync({1, 2})
    assert len(synced) == 2
    segs.close()


def test_unexplained_new_format_data_without_transaction_records_is_refused(tmp_path: Path) -> None:
    """#17.7: with hub.txn gone (it exists from a store's first start on), the index cannot be shown not to
    have lost transactions, so a tail cannot be proven uncommitted: the store refuses to open rather than cut."""
    import sqlite3

    from sluice.hub.store.check import StorageDamaged

    s = SQLiteStore(tmp_path)
    _wait(s.create_project("proj", "", {}))
    _wait(s.create_logstore("proj", "logs", 7, 1, {}))
    shard = s.get_shard("proj", "logs", 0)
    for i in range(3):
        _wait(s.append(shard, b"\x1a\x01%d" % i, 1))
    s.close()
    conn = sqlite3.connect(tmp_path / "hub.db")
    conn.execute("DELETE FROM log WHERE id = ?", ((shard.uid << 40) | 2,))
    conn.execute("DELETE FROM meta")
    conn.commit()
    conn.close()
    (tmp_path / "hub.txn").unlink()
    seg = _seg_files(tmp_path, shard)[0]
    size = seg.stat().st_size
    with pytest.raises(StorageDamaged, match="hub.txn: missing"):
        SQLiteStore(tmp_path)
    assert seg.stat().st_size == size


def test_a_reader_connection_refused_is_server_busy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """#17.3: a new reader thread whose SQLite connection cannot open (EMFILE) answers ServerBusy on reads and
    time lookups (GetCursor by time), never a 500."""
    import sqlite3
    import threading

    s = SQLiteStore(tmp_path)
    _wait(s.create_project("proj", "", {}))
    _wait(s.create_logstore("proj", "logs", 7, 1, {}))
    shard = s.get_shard("proj", "logs", 0)
    _wait(s.append(shard, b"\x1a\x01a", 1))

    def refusing(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise sqlite3.OperationalError("unable to open database file")
    monkeypatch.setattr(s, "_connect", refusing)
    errors: list[BaseException] = []

    def fresh_thread() -> None:  # a thread without a reader connection yet
        for call in (lambda: s.read(shard, 0, 10, 1 << 20), lambda: s.seq_at_time(shard, 0)):
            try:
                call()
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)
    t = threading.Thread(target=fresh_thread)
    t.start()
    t.join()
    assert len(errors) == 2 and all(isinstance(e, E.ServerBusy) for e in errors), errors
    s.close()
