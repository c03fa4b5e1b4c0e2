"""The console tail's work bounds (hub/console/tail.py, #17 items 1 and 4), with a fake store and a fake clock."""

from __future__ import annotations

from sluice.client._async import build_log_group
from sluice.hub.console import tail
from sluice.hub.store.base import ReadResult, ShardMeta
from sluice.wire.loggroup import frame_groups

GROUP = build_log_group([{"msg": f"line {i}", "__time__": 1_700_000_000 + i} for i in range(10)])


class FakeStore:
    """Every shard holds ``groups`` copies of GROUP; counts the bytes handed out."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def read(self, shard: ShardMeta, start: int, count: int, max_bytes: int, end: int | None = None) -> ReadResult:
        stop = shard.end_seq if end is None else min(end, shard.end_seq)
        n, size = 0, 0
        while start + n < stop and n < count and (n == 0 or size < max_bytes):
            n += 1
            size += len(GROUP)
        body = frame_groups([GROUP] * n)
        self.read_bytes += len(body)
        return ReadResult(body, n, start + n)


def _shard(sid: int, groups: int) -> ShardMeta:
    return ShardMeta(uid=sid + 1, shard_id=sid, status="readwrite", begin_key=0, end_key=1, create_time=0,
                     end_seq=groups)


def test_hardening_a_poll_stops_at_its_deadline_and_the_next_goes_on() -> None:
    """The clock passes the deadline after a few groups: the poll stops there, mid-slice, and its cursor names the
    first group not scanned, so polls together scan every group exactly once."""
    shards = [_shard(0, 50), _shard(1, 50)]
    ticks = iter(range(10_000))
    clock = lambda: next(ticks) * tail.MAX_SCAN_SECONDS / 7  # noqa: E731 - the deadline passes within one slice
    positions = {0: 0, 1: 0}
    scanned = 0
    for _ in range(100):
        result = tail.read_tail(FakeStore(), shards, positions, 0, None, clock=clock)  # type: ignore[arg-type]
        assert result.scanned <= 10 * 8
        scanned += result.scanned
        positions = tail.parse_cursor(result.cursor)
        if positions == {0: 50, 1: 50}:
            break
    assert positions == {0: 50, 1: 50}
    assert scanned == 2 * 50 * 10


def test_hardening_a_poll_scans_a_bounded_number_of_bytes() -> None:
    store = FakeStore()
    shards = [_shard(i, 100_000) for i in range(64)]
    result = tail.read_tail(store, shards, {i: 0 for i in range(64)}, 0, None)  # type: ignore[arg-type]
    assert store.read_bytes <= tail.MAX_SCAN_BYTES + 64 * (len(GROUP) + 8)
    assert len(result.logs) == tail.MAX_LOGS and result.dropped == result.scanned - tail.MAX_LOGS
