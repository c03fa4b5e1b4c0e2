"""Damaged and hostile bytes given to the C extensions: a clean error or exactly the pure-Python answer,
never a crash or a different answer (the session's hostile review, helper HFZ). Each case here came from
fuzzing an AddressSanitizer build; the cases are small and run in the normal suite in seconds."""

from __future__ import annotations

import copy
import gc
import pickle
import random
import struct
import zlib
from typing import Any

import lz4.block
import pytest

from sluice.hub.store import segments as S


def _lz4_record(raw: bytes, payload: bytes) -> bytes:
    """A v2 record holding ``payload`` as the lz4 block of ``raw``, with a valid CRC (what a client's own
    lz4 body becomes when the hub stores it as it came)."""
    rest = S._REST.pack(S._MAGIC, S.CODEC_LZ4, 0, len(raw), len(payload), 1, 1)
    return struct.pack("<I", zlib.crc32(payload, zlib.crc32(rest))) + rest + payload


def _usual(runs: list[bytes]) -> bytes:
    return b"".join(bytes(c) for run in runs for c in S.decode_records(run, "run"))


def _same_as_usual(runs: list[bytes]) -> None:
    """stitch_lz4 either declines (None: the store reads the usual way) or gives a block lz4 decodes to
    exactly the usual body."""
    try:
        usual: bytes | None = _usual(runs)
    except S.SegmentDamaged:
        usual = None
    made = S.stitch_lz4(runs)
    if made is None:
        return
    block, raw_size, records = made
    assert usual is not None, "stitched a run the usual read refuses"
    assert lz4.block.decompress(block, uncompressed_size=raw_size) == usual
    assert raw_size == len(usual)


# A 32-byte group as one sequence of 14 literals and an 18-byte match (offset 14) reaching the group's very
# end, then an empty last sequence. lz4's decoder accepts it (its fast path for short sequences skips the
# "last 5 bytes are literals" rule), so the hub stores such a client body as it came; stitched behind a frame
# header the same sequence takes the checked path and the whole PullLogs body failed to decode.
_TAIL_MATCH_RAW = (b"\x1a\x02aa" + b"\x0a\x08\x08\x01\x12\x04\x0a\x00\x12\x00") * 2 + b"\x1a\x02aa"
_TAIL_MATCH_LZ4 = bytes([0xEE]) + _TAIL_MATCH_RAW[:14] + struct.pack("<H", 14) + b"\x00"


@pytest.mark.skipif(S._stitch is None, reason="the _lz4stitch extension is not compiled here")
def test_lz4stitch_match_at_group_end_is_not_stitched_into_an_undecodable_body() -> None:
    assert lz4.block.decompress(_TAIL_MATCH_LZ4, uncompressed_size=32) == _TAIL_MATCH_RAW
    rec = _lz4_record(_TAIL_MATCH_RAW, _TAIL_MATCH_LZ4)
    good = _lz4_record(b"x" * 100, lz4.block.compress(b"x" * 100, store_size=False))
    for runs in ([rec], [good, rec], [rec + good], [good + rec + good]):
        _same_as_usual(runs)


@pytest.mark.skipif(S._stitch is None, reason="the _lz4stitch extension is not compiled here")
@pytest.mark.parametrize("payload,raw_len", [
    (bytes([0x44]) + b"abcd" + struct.pack("<H", 4) + b"\x50" + b"vwxyz", 13),  # match starts 9 before end
    (bytes([0x10]) + b"a" + struct.pack("<H", 1) + b"\x00", 5),  # output under 13 bytes with a match
    (bytes([0xF0, 0x01]) + b"q" * 16 + struct.pack("<H", 0) + b"\x50" + b"12345", 41),  # offset 0
    (bytes([0x4F, 0x00]) + b"abcd" + struct.pack("<H", 4) + b"\x10" + b"z", 24),  # one literal at the end
])
def test_lz4stitch_forged_lz4_with_valid_crc_matches_the_usual_read(payload: bytes, raw_len: int) -> None:
    rec = _lz4_record(b"\0" * raw_len, payload)
    good = _lz4_record(b"y" * 64, lz4.block.compress(b"y" * 64, store_size=False))
    for runs in ([rec], [good + rec], [rec, good]):
        _same_as_usual(runs)


@pytest.mark.skipif(S._stitch is None, reason="the _lz4stitch extension is not compiled here")
def test_lz4stitch_random_damage_with_recomputed_crc() -> None:
    """Bit flips, cuts and inserted bytes in lz4 payloads whose CRC is then made valid again (what the CRC
    cannot catch): never stitched into something other than the usual body."""
    rng = random.Random(20261206)
    words = [b"GET ", b"/api/v1/orders ", b"200 ", b"Mozilla/5.0 ", b"10.0.0.1 "]
    for _ in range(400):
        raw = b"".join(rng.choice(words) for _ in range(rng.randint(1, 60))) + rng.randbytes(rng.randint(0, 9))
        payload = bytearray(lz4.block.compress(raw, store_size=False))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(payload))
            op = rng.random()
            if op < 0.5:
                payload[i] ^= 1 << rng.randrange(8)
            elif op < 0.7:
                del payload[i:i + rng.randint(1, 4)]
            elif op < 0.85:
                payload[i:i] = rng.randbytes(rng.randint(1, 4))
            else:
                payload[i] = rng.choice([0x00, 0xFF, 0x0F, 0xF0])
        raw_len = len(raw) + rng.choice([0, 0, 0, -1, 1])
        rec = _lz4_record(b"\0" * raw_len, bytes(payload))
        good = _lz4_record(raw, lz4.block.compress(raw, store_size=False))
        _same_as_usual([good + rec] if rng.random() < 0.5 else [rec, good])


# ------------------------------------------------------------------ client/_sdklogs.c
def _sdk_group(nlogs: int, ncontents: int) -> bytes:
    from sluice.wire.loggroup import LogGroupRaw
    g = LogGroupRaw()
    for i in range(nlogs):
        log = g.Logs.add()
        log.Time = 1_700_000_000 + i
        for j in range(ncontents):
            c = log.Contents.add()
            c.Key = f"k{j}"
            c.Value = f"v{i}-{j}".encode()
    return g.SerializeToString()


def _sdklogs() -> Any:
    return pytest.importorskip("sluice.client._sdklogs")


def test_sdklogs_iterator_drained_by_a_finalizer_during_a_build() -> None:
    """A Log's build allocates a Contents tuple (25 items: no free list), which can run the collector and
    with it any finalizer; one that exhausts the same iterator made it let go of the Logs, whose buffer and
    field offsets the build was still reading (heap use-after-free under ASan)."""
    M = _sdklogs()
    it = iter(M.Logs(_sdk_group(50, 25)))  # the iterator holds the only reference to the Logs
    drained: list[int] = []

    class Drain:
        def __del__(self) -> None:
            drained.append(sum(1 for _ in it))
            junk.extend(bytearray(b"\xff" * 20_000) for _ in range(8))  # reuse what was freed

    junk: list[bytearray] = []
    for _ in range(5):
        d = Drain()
        d.me = d  # type: ignore[attr-defined]  # a cycle: freed by the collector
    del d
    old = gc.get_threshold()
    gc.set_threshold(1)
    try:
        log = next(it)
    finally:
        gc.set_threshold(*old)
    gc.collect()
    assert log.Time == 1_700_000_000
    assert [(c.Key, c.Value) for c in log.Contents] == [(f"k{j}", f"v0-{j}") for j in range(25)]
    assert next(it, None) is None


def test_sdklogs_objects_outlive_their_group_and_stay_read_only() -> None:
    M = _sdklogs()
    logs = M.Logs(bytearray(_sdk_group(3, 22)))
    kept = list(logs)  # distinct objects: nothing is refilled under a holder
    first_contents = logs[0].Contents
    one = next(iter(logs))
    del logs
    gc.collect()
    assert [log.Time for log in kept] == [1_700_000_000 + i for i in range(3)]
    assert [(c.Key, c.Value) for c in first_contents] == [(f"k{j}", f"v0-{j}") for j in range(22)]
    assert one.Contents == kept[0].Contents and one.Contents != kept[1].Contents
    for obj in (one, one.Contents[0]):
        with pytest.raises(TypeError):
            pickle.dumps(obj)
        with pytest.raises(TypeError):
            copy.copy(obj)
        with pytest.raises(AttributeError):
            obj.Key = "x"


@pytest.mark.parametrize("buf", [
    b"\x0a\x80",  # truncated length
    b"\x0a\x05\x12\x03\x0a\x05",  # Content's key runs past its Content
    b"\x0a\x0b\x12\x09\x0a\xff\xff\xff\xff\xff\xff\xff\xff",  # huge key length
    b"\x0a\x02\x08" + b"\xff" * 11,  # varint longer than 10 bytes
    b"\x0a\x03\x25\x00\x00",  # truncated fixed32
    b"\x0a\x01\x0f",  # wire type 7
    b"\x0a\x02\x00\x00",  # field number 0
])
def test_sdklogs_malformed_logs_are_refused_like_the_protobuf_runtime(buf: bytes) -> None:
    from sluice.wire.loggroup import LogGroupRaw
    M = _sdklogs()
    with pytest.raises(Exception):
        LogGroupRaw().ParseFromString(buf)
    with pytest.raises(ValueError, match="malformed LogGroup"):
        M.Logs(buf)


# ------------------------------------------------------------------ wire/_pbread.h (every C decoder)
@pytest.mark.parametrize("key", [1 << 32, (1 << 32) + 2, (1 << 33) + 8 * 9])
def test_a_field_number_past_32_bits_is_refused_as_the_protobuf_runtime_does(key: int) -> None:
    """A key varint over 32 bits (field number >= 2**29): the runtime refuses the group; the C readers took
    its low bits and skipped it as an unknown field, so a consumer and the indexer read a group the Python
    path refuses (and skips)."""
    from sluice.wire.loggroup import LogGroup, encode_varint
    log = b"\x08\x01\x12\x06\x0a\x01k\x12\x01v"
    group = b"\x0a" + encode_varint(len(log)) + log + encode_varint(key) + b"\x00"
    with pytest.raises(Exception):
        LogGroup().ParseFromString(group)
    logdecode = pytest.importorskip("sluice.wire._logdecode")
    for fn in (logdecode.group_logs, logdecode.group_header, logdecode.logs_span, _sdklogs().Logs):
        with pytest.raises(ValueError, match="field number"):
            fn(group)
    from sluice.hub.query import batch as qb
    ok = b"\x0a" + encode_varint(len(log)) + log
    body = b"".join(b"\x0a" + encode_varint(len(g)) + g for g in (ok, group, ok))
    assert qb.build_from_body(body, 7, ["k"]) == qb.build_from_body_py(body, 7, ["k"])


# ------------------------------------------------------------------ hub/query/_indexrows.c
def test_indexrows_names_list_changed_by_another_thread_during_the_walk() -> None:
    """build_text walks bodies of 16 KiB and more with the GIL released, reading the names' UTF-8; it held
    the caller's list itself, so another thread replacing the list's items freed those strings under the
    walk (heap use-after-free under ASan). It now keeps its own tuple."""
    import threading

    from sluice.hub.query import batch as qb
    from sluice.wire.loggroup import encode_varint
    indexrows = pytest.importorskip("sluice.hub.query._indexrows")
    group = _sdk_group(1500, 3)
    body = b"\x0a" + encode_varint(len(group)) + group
    names = ["".join(["k", "1"]) for _ in range(4)]  # not interned: freed when replaced
    want = qb.build_from_body_py(body, 3, list(names))
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            names[:] = ["".join(["k", "1"]) for _ in range(4)]

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(20):
            assert indexrows.build_text(body, 3, names) == want
    finally:
        stop.set()
        t.join()


def test_hub_lz4_pull_of_a_client_body_with_a_match_at_the_group_end(hub, sdk, project: str) -> None:  # type: ignore[no-untyped-def]
    """End to end: a producer sends a 32-byte group as an lz4 body whose only match reaches the group's end
    (lz4's decoder takes it, so the hub stores the body as it came); an lz4 PullLogs of it must decode to the
    group (the stitched body did not: the consumer could not read the shard with lz4)."""
    import asyncio

    from sluice.client._transport import Credentials, Transport
    from sluice.wire.compress import decompress
    from sluice.wire.loggroup import LogGroup, encode_varint, split_groups

    unit = b"\x1a\x02aa" + b"\x0a\x06\x08" + encode_varint(1_700_000_000) + b"\x1a\x00"  # topic, log, topic
    raw = unit * 2 + unit[:4]
    assert len(unit) == 14 and len(raw) == 32
    body = bytes([0xEE]) + raw[:14] + struct.pack("<H", 14) + b"\x00"
    assert lz4.block.decompress(body, uncompressed_size=32) == raw
    LogGroup().ParseFromString(raw)  # a valid group
    sdk.create_logstore(project, "tailmatch", ttl=1, shard_count=1)

    async def run() -> list[bytes]:
        t = Transport(hub.url, Credentials(hub.access_key_id, hub.access_key_secret), timeout=30)
        try:
            await t.request("POST", "/logstores/tailmatch/shards/lb", project=project, retry=False, body=body,
                            headers={"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": "32",
                                     "x-log-compresstype": "lz4"})
            resp = await t.request("GET", "/logstores/tailmatch/shards/0", project=project,
                                   params=[("type", "cursor"), ("from", "begin")])
            resp = await t.request("GET", "/logstores/tailmatch/shards/0", project=project,
                                   params=[("type", "log"), ("cursor", resp.json()["cursor"]), ("count", "10")],
                                   headers={"Accept-Encoding": "lz4", "Accept": "application/x-protobuf"})
            ctype = resp.headers.get("x-log-compresstype")
            got = decompress(resp.body, ctype, int(resp.headers["x-log-bodyrawsize"]), limit=1 << 20)
            return [bytes(g) for g in split_groups(got)]
        finally:
            await t.aclose()

    assert asyncio.run(run()) == [raw]
    cursor = sdk.get_cursor(project, "tailmatch", 0, "begin").get_cursor()
    res = sdk.pull_logs(project, "tailmatch", 0, cursor, count=10)  # the SDK asks for lz4
    (g,) = res.get_loggroup_list().LogGroups
    assert (g.Topic, [log.Time for log in g.Logs]) == ("aa", [1_700_000_000] * 2)
