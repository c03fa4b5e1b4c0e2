"""Damaged storage after a kill -9 is never silently erased, and never served (#17.7).

Rules shown: recovery cuts only what it can prove is an unacknowledged tail (records of a transaction
after the last committed one); anything else (hub.db-wal deleted or damaged, a segment file truncated,
committed records the index does not list) stops the hub with a message naming the file, and changes no
file; ``sluice hub --check`` reports the same without changing anything (exit 1), and 0 on a sound
directory. Putting the right files back lets the hub start with every acknowledged log.

Found by the issue: deleting hub.db-wal made the hub start empty and delete every segment; flipped WAL
bytes truncated segments; truncated segments were zero-filled and the zeros served.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.client import Client, RetryPolicy
from sluice.testing import HubProcess
from sluice.wire.errors import SLSError
from tests._consumers import hash_key_for
from tests.faults._figures import record

SHARDS = 2
BATCHES = 40


def _client(hub: HubProcess) -> Client:
    return Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=10, retry=RetryPolicy(attempts=1))


def _fill(hub: HubProcess) -> dict[int, list[str]]:
    """Small acknowledged batches on every shard (small so they stay in the WAL, not yet checkpointed)."""
    c = _client(hub)
    c.create_project("dmg")
    c.create_logstore("dmg", "events", shard_count=SHARDS)
    acked: dict[int, list[str]] = {s: [] for s in range(SHARDS)}
    for b in range(BATCHES):
        shard = b % SHARDS
        c.put_logs("dmg", "events", [{"b": str(b), "pad": "x" * 200}], hash_key=hash_key_for(shard, SHARDS))
        acked[shard].append(str(b))
    c.close()
    return acked


def _read_all(hub: HubProcess) -> dict[int, list[str]]:
    c = _client(hub)
    out: dict[int, list[str]] = {}
    for shard in range(SHARDS):
        cursor = c.get_cursor("dmg", "events", shard, "begin")
        rows = out.setdefault(shard, [])
        while True:
            res = c.pull_logs("dmg", "events", shard, cursor)
            if res.count == 0:
                break
            for group in res.log_groups():
                rows.extend(next(x.Value for x in log.Contents if x.Key == "b") for log in group.Logs)
            cursor = res.next_cursor
    c.close()
    return out


def _files(data: Path) -> dict[str, int]:
    return {str(p.relative_to(data)): p.stat().st_size for p in sorted((data / "segments").rglob("*")) if p.is_file()}


def _start_fails(hub: HubProcess) -> str:
    with pytest.raises(RuntimeError) as info:
        hub.start(timeout=20)
    hub.proc = None
    return str(info.value)


def _check(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice", "hub", "--data-dir", str(data), "--check"],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def killed(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A hub SIGKILLed after acknowledged writes: (hub, data dir, acknowledged logs per shard)."""
    data = tmp_path / "data"
    hub = HubProcess(data, log_path=tmp_path / "hub.log")
    hub.start()
    try:
        acked = _fill(hub)
        hub.kill()
        assert (data / "hub.db-wal").stat().st_size > 0
        yield hub, data, acked
    finally:
        hub.close()


def test_deleted_wal_stops_the_hub_and_erases_nothing(killed) -> None:  # type: ignore[no-untyped-def]
    hub, data, acked = killed
    saved = data.parent / "saved-wal"
    shutil.copy(data / "hub.db-wal", saved)
    before = _files(data)
    (data / "hub.db-wal").unlink()
    message = _start_fails(hub)
    assert "hub.db" in message and "hub.db-wal was lost or damaged" in message, message
    assert _files(data) == before, "a refused start must not touch a single segment file"
    check = _check(data)
    assert check.returncode == 1 and "hub.db-wal" in check.stderr, check
    assert _files(data) == before
    shutil.copy(saved, data / "hub.db-wal")  # the operator puts the file back: everything is there
    hub.start()
    assert _read_all(hub) == acked
    record("storage_deleted_wal", refused=True, files_kept=len(before), logs_after_restore=sum(map(len, acked.values())))


@pytest.mark.parametrize("where", [0.02, 0.5, 0.97])
def test_flipped_wal_bytes_never_cut_acknowledged_data(killed, where: float) -> None:  # type: ignore[no-untyped-def]
    """Bytes flipped at some point of the WAL: SQLite ignores the WAL from the damaged frame on, so the
    index is older than the data. The hub must refuse (naming hub.db) or start with every acknowledged log;
    either way no segment shrinks."""
    hub, data, acked = killed
    wal = data / "hub.db-wal"
    raw = bytearray(wal.read_bytes())
    at = max(40, int(len(raw) * where))
    for i in range(at, min(at + 16, len(raw))):
        raw[i] ^= 0x5A
    wal.write_bytes(bytes(raw))
    before = _files(data)
    try:
        hub.start(timeout=20)
    except RuntimeError as exc:
        hub.proc = None
        assert "hub.db" in str(exc) and "damaged" in str(exc), exc
        assert _files(data) == before
        assert _check(data).returncode == 1
        outcome = "refused"
    else:
        assert _read_all(hub) == acked
        assert all(_files(data)[k] >= v for k, v in before.items() if k in _files(data))
        outcome = "all data"
    record("storage_flipped_wal", at=where, outcome=outcome)


def test_truncated_segment_stops_the_hub_and_is_not_zero_filled(killed) -> None:  # type: ignore[no-untyped-def]
    hub, data, acked = killed
    seg = max((data / "segments").rglob("*.sg2"), key=lambda p: p.stat().st_size)
    cut = seg.stat().st_size // 2
    with open(seg, "r+b") as f:
        f.truncate(cut)
    message = _start_fails(hub)
    assert str(seg) in message and "truncated" in message, message
    assert seg.stat().st_size == cut, "the truncated file was changed (zero-filled?)"
    check = _check(data)
    assert check.returncode == 1 and str(seg) in check.stderr
    assert seg.stat().st_size == cut
    record("storage_truncated_segment", refused=True)


def test_segment_truncated_under_a_running_hub_is_an_error_not_zeros(tmp_path: Path) -> None:
    """While the hub runs, a segment cut short is answered with an error naming the damage; the groups
    before it are still served; never zeros."""
    with HubProcess(tmp_path / "data", log_path=tmp_path / "hub.log") as hub:
        acked = _fill(hub)
        seg = next((tmp_path / "data" / "segments").rglob("*.sg2"))
        shard_files = sorted(seg.parent.glob("*.sg2"))
        assert len(shard_files) == 1
        with open(seg, "r+b") as f:
            f.truncate(seg.stat().st_size // 2)
        c = _client(hub)
        damaged_seen = False
        for shard in range(SHARDS):
            cursor = c.get_cursor("dmg", "events", shard, "begin")
            got: list[str] = []
            try:
                while True:
                    res = c.pull_logs("dmg", "events", shard, cursor)
                    if res.count == 0:
                        break
                    for group in res.log_groups():
                        got.extend(next(x.Value for x in log.Contents if x.Key == "b") for log in group.Logs)
                    cursor = res.next_cursor
            except SLSError as exc:
                assert "damaged" in str(exc), exc
                damaged_seen = True
            assert got == acked[shard][:len(got)], "only intact groups, in order"
        c.close()
        assert damaged_seen


def test_a_provably_uncommitted_tail_is_cut_and_a_committed_one_is_not(tmp_path: Path) -> None:
    """Records past the index's end carrying a transaction number after the last committed one are an
    append that never committed: cut, with a log line. The same bytes with a committed number mean the
    index lost rows: refused."""
    from sluice.hub.store.check import TxnFile
    from sluice.hub.store.segments import encode_record

    data = tmp_path / "data"
    hub = HubProcess(data, log_path=tmp_path / "hub.log")
    hub.start()
    try:
        acked = _fill(hub)
        hub.stop()
        committed = TxnFile(data / "hub.txn").read()
        assert committed
        seg = next((data / "segments").rglob("*.sg2"))
        size = seg.stat().st_size
        head, payload = encode_record(b"\x1a\x01z" * 50, 999, committed + 1)
        with open(seg, "ab") as f:
            f.write(head + payload[: len(payload) // 2])  # cut mid-record, as a kill would
        assert _check(data).returncode == 0
        hub.start()
        assert seg.stat().st_size == size
        assert "never committed" in hub.log_tail(200)
        assert _read_all(hub) == acked
        hub.stop()
        head, payload = encode_record(b"\x1a\x01z" * 50, 999, committed)
        with open(seg, "ab") as f:
            f.write(head + payload)
        message = _start_fails(hub)
        assert str(seg) in message and "committed" in message
        assert seg.stat().st_size == size + len(head) + len(payload)
    finally:
        hub.close()


def test_check_passes_on_a_sound_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with HubProcess(data, log_path=tmp_path / "hub.log") as hub:
        _fill(hub)
        hub.kill()
    before = _files(data)
    check = _check(data)
    assert check.returncode == 0, check
    assert "agree" in check.stdout
    assert _files(data) == before


def _repair(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice", "hub", "--data-dir", str(data), "--repair"],
                          capture_output=True, text=True, timeout=120)


def _is_prefix_each(got: dict[int, list[str]], acked: dict[int, list[str]]) -> bool:
    return all(got.get(s, []) == acked[s][:len(got.get(s, []))] for s in acked)


@pytest.mark.parametrize("damage", ["deleted wal", "truncated segment", "flipped record byte"])
def test_repair_sets_aside_what_the_index_does_not_hold_and_the_hub_starts(killed, damage: str) -> None:  # type: ignore[no-untyped-def]
    """``sluice hub --repair`` (the operator's choice after a refusal): nothing deleted, the unaccounted bytes
    moved into set-aside/, the hub starts, serves only intact groups in order, and takes new writes."""
    hub, data, acked = killed
    before_bytes = sum(_files(data).values())
    if damage == "deleted wal":
        (data / "hub.db-wal").unlink()
    else:
        seg = max((data / "segments").rglob("*.sg2"), key=lambda p: p.stat().st_size)
        if damage == "truncated segment":
            with open(seg, "r+b") as f:
                f.truncate(seg.stat().st_size * 2 // 3)
        else:
            raw = bytearray(seg.read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            seg.write_bytes(bytes(raw))
    assert _check(data).returncode == 1
    fixed = _repair(data)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    aside = next((data / "set-aside").iterdir())
    assert (aside / "hub.db").exists()
    if damage == "deleted wal":
        kept = sum(_files(data).values()) - sum(p.stat().st_size for p in (aside / "segments").rglob("*")
                                                 if p.is_file())
        assert kept == 0 or kept <= before_bytes  # every byte is either still in place or set aside
        assert sum(p.stat().st_size for p in (aside / "segments").rglob("*") if p.is_file()) > 0
    hub.start()
    c = _client(hub)
    if "dmg" not in c.list_projects():  # the WAL held the project itself (never checkpointed): all set aside
        assert damage == "deleted wal"
        c.create_project("dmg")
        c.create_logstore("dmg", "events", shard_count=SHARDS)
    got = _read_all(hub)
    assert _is_prefix_each(got, acked) if damage != "flipped record byte" else \
        all(set(got[s]) <= set(acked[s]) and got[s] == sorted(got[s], key=acked[s].index) for s in acked)
    if damage == "flipped record byte":
        assert sum(map(len, got.values())) == sum(map(len, acked.values())) - 1  # exactly the damaged one
    c.put_logs("dmg", "events", [{"b": "after-repair"}], hash_key=hash_key_for(0, SHARDS))
    c.close()
    assert _read_all(hub)[0][-1] == "after-repair"
    record("storage_repair", damage=damage, served=sum(map(len, got.values())),
           acknowledged=sum(map(len, acked.values())))
