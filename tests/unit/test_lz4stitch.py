"""The lz4 PullLogs body made from stored records (hub/store/_lz4stitch.c, #19.6): it decodes to exactly the
LogGroupList the usual read gives, for any mix of records, and a damaged or unusual record is never stitched
(the store then reads the usual way, which refuses damage as before)."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

import lz4.block
import pytest

from sluice.hub.store import segments as S
from sluice.hub.store.sqlite import SQLiteStore
from sluice.wire import errors as E
from sluice.wire.compress import compress

pytestmark = pytest.mark.skipif(S._stitch is None, reason="the _lz4stitch extension is not compiled here")


def _record(raw: bytes, how: str, seq: int = 0) -> bytes:
    packed = {"client": ("lz4", lz4.block.compress(raw, store_size=False)),
              "hc": ("lz4", lz4.block.compress(raw, store_size=False, mode="high_compression")),
              "fast": ("lz4", compress(raw, "lz4")), "zstd": ("zstd", compress(raw, "zstd"))}.get(how)
    header, payload = S.encode_record(raw, seq, 1, packed)
    return header + payload


def _group(rng: random.Random, n: int) -> bytes:
    words = [b"GET", b"/api/v1/orders", b"200", b"Mozilla/5.0", b"10.0.0.1", b" "]
    text = b"".join(rng.choice(words) for _ in range(n // 4 + 1))[: n - n // 8]
    return text + rng.randbytes(n - len(text))


def _usual(runs: list[bytes]) -> bytes:
    return b"".join(bytes(c) for run in runs for c in S.decode_records(run, "run"))


def test_stitched_block_decodes_to_the_usual_body() -> None:
    """Random runs of records (client lz4 of any level, store lz4, raw, empty groups; lengths around the
    literal-length and varint steps) stitch to one lz4 block that decodes to the usual LogGroupList."""
    rng = random.Random(196)
    sizes = [0, 1, 4, 14, 15, 16, 19, 127, 128, 270, 16383, 16384, 70000]
    for trial in range(200):
        runs = []
        for _ in range(rng.randint(1, 3)):
            records = []
            for _ in range(rng.randint(1, 4)):
                n, how = rng.choice(sizes), rng.choice(["client", "hc", "fast", "store", "raw"])
                records.append(_record(rng.randbytes(n), "store") if how == "raw" else _record(_group(rng, n), how))
            runs.append(b"".join(records))
        made = S.stitch_lz4(runs)
        assert made is not None, trial
        block, raw_size, count = made
        want = _usual(runs)
        assert raw_size == len(want) and count == sum(len(S.decode_records(r, "r")) // 2 for r in runs)
        assert lz4.block.decompress(block, uncompressed_size=raw_size) == want, trial


def test_damage_and_zstd_are_not_stitched() -> None:
    """A flipped byte (CRC), a zstd record, and lz4 data that checks out by CRC but is not a valid block of
    that group (an offset before the group, a wrong length) all give None: the usual read decides."""
    rng = random.Random(7)
    good = _record(_group(rng, 5000), "client")
    assert S.stitch_lz4([good]) is not None
    flipped = bytearray(good)
    flipped[-3] ^= 0x10
    assert S.stitch_lz4([bytes(flipped)]) is None
    assert S.stitch_lz4([good + _record(_group(rng, 900), "zstd")]) is None

    def forged(raw_len: int, payload: bytes) -> bytes:  # a valid header and CRC around any payload
        rest = struct.pack("<BBHIIQQ", 0xB7, S.CODEC_LZ4, 0, raw_len, len(payload), 0, 1)
        return struct.pack("<I", zlib.crc32(payload, zlib.crc32(rest))) + rest + payload

    assert S.stitch_lz4([forged(5, b"\x50hello")]) is not None  # literals only: valid
    assert S.stitch_lz4([forged(6, b"\x50hello")]) is None  # decodes to 5 bytes, not 6
    assert S.stitch_lz4([forged(9, b"\x10a\x05\x00\x00")]) is None  # offset 5 reaches before the group
    assert S.stitch_lz4([forged(9, b"\x10a\x00\x00\x00")]) is None  # offset 0
    assert S.stitch_lz4([forged(9, b"\xf0")]) is None  # a literal length that runs past the data
    assert S.stitch_lz4([good[:-1]]) is None  # a run cut short


def test_store_answers_lz4_pulls_stitched_and_damage_the_usual_way(tmp_path: Path) -> None:
    """SQLiteStore.read(encoding="lz4"): the stitched block decodes to the plain read's body; over a damaged
    record it reads the usual way, so the good groups before it are served and the damage is an error."""
    store = SQLiteStore(tmp_path)
    try:
        store.create_project("p", "", {}).result(10)
        store.create_logstore("p", "l", 7, 1, {}).result(10)
        shard = store.get_shard("p", "l", 0)
        rng = random.Random(3)
        for i in range(12):
            group = _group(rng, rng.choice([50, 3000, 40000]))
            how = ["client", "store", "hc"][i % 3]
            packed = ("lz4", lz4.block.compress(group, store_size=False, mode="high_compression" if how == "hc"
                                                else "default")) if how != "store" else None
            store.append(shard, group, 1, packed=packed).result(10)
        plain = store.read(shard, 0, 100, 1 << 30)
        fast = store.read(shard, 0, 100, 1 << 30, encoding="lz4")
        assert fast.encoding == "lz4" and plain.encoding == "" and (fast.count, fast.next_seq) == (12, 12)
        assert lz4.block.decompress(fast.body, uncompressed_size=fast.raw_size) == plain.body
        part = store.read(shard, 4, 3, 1 << 30, encoding="lz4")
        assert part.count == 3 and part.next_seq == 7
        assert lz4.block.decompress(part.body, uncompressed_size=part.raw_size) == store.read(shard, 4, 3, 1 << 30).body
        seg = next((tmp_path / "segments" / str(shard.uid)).glob("*.sg2"))
        data = bytearray(seg.read_bytes())
        data[-2] ^= 0xFF  # inside the last group
        seg.write_bytes(bytes(data))
        served = store.read(shard, 0, 100, 1 << 30, encoding="lz4")
        assert served.encoding == "" and served.count == 11  # the usual read: the groups before the damage
        with pytest.raises(E.InternalServerError, match="damaged"):
            store.read(shard, 11, 10, 1 << 20, encoding="lz4")
    finally:
        store.close()
