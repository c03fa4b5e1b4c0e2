"""Wire codecs: cursors, compression, LogGroup framing (no I/O)."""

from __future__ import annotations

import zlib

import lz4.block
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from sluice.wire import errors as E
from sluice.wire.compress import choose_encoding, compress, decompress
from sluice.wire.cursor import decode_cursor, encode_cursor
from sluice.wire.loggroup import LogGroup, LogGroupList, frame_groups, parse_group, split_groups


@given(st.integers(min_value=0, max_value=(1 << 62)))
def test_cursor_round_trip(seq: int) -> None:
    """A cursor is base64 of the decimal sequence number, and decodes back to it."""
    c = encode_cursor(seq)
    assert decode_cursor(c) == seq
    assert "+" not in c and "/" not in c


def test_cursor_examples_and_tolerance() -> None:
    """Known SLS-style values decode; trailing newline and missing padding are accepted."""
    assert decode_cursor("MTQ0NzI5OTYwNjg5NjYzMjM1Ng==") == 1447299606896632356
    assert encode_cursor(1000) == "MTAwMA=="
    assert decode_cursor("MTAwMA==\n") == 1000
    assert decode_cursor("MTAwMA") == 1000


@given(st.text(max_size=80))
def test_garbage_cursors_raise_invalid_cursor(text: str) -> None:
    """Anything that is not base64 of a decimal number raises InvalidCursor, nothing else."""
    try:
        value = decode_cursor(text)
    except E.InvalidCursor:
        return
    assert value >= 0


@pytest.mark.parametrize("ctype", ["", "lz4", "zstd", "deflate"])
@given(data=st.binary(max_size=5000))
def test_compression_round_trip(ctype: str, data: bytes) -> None:
    """Every supported body encoding round-trips with the declared raw size."""
    assert decompress(compress(data, ctype), ctype, len(data), limit=1 << 20) == data


def test_compressed_formats_are_what_sls_uses() -> None:
    """lz4 is a raw block (no size prefix), deflate a zlib stream, zstd a frame."""
    data = b"hello hello hello hello hello"
    assert lz4.block.decompress(compress(data, "lz4"), uncompressed_size=len(data)) == data
    assert zlib.decompress(compress(data, "deflate")) == data
    assert zstandard.ZstdDecompressor().decompress(compress(data, "zstd")) == data
    vector = bytes.fromhex("f0160a130880e2cfaa0612060a016b12017625050000001a017422017332080a02746b12027476")
    assert decompress(vector, "lz4", 37, limit=100).hex() == (
        "0a130880e2cfaa0612060a016b12017625050000001a017422017332080a02746b12027476")


def test_decompression_limits_and_errors() -> None:
    """Corrupt bodies and oversize claims raise SLS errors, never other exceptions."""
    with pytest.raises(E.PostBodyTooLarge):
        decompress(b"x", "lz4", 1 << 40, limit=1 << 20)
    with pytest.raises(E.PostBodyTooLarge):
        decompress(zlib.compress(b"\0" * 5000), "deflate", None, limit=1000)
    with pytest.raises(E.PostBodyUncompressError):
        decompress(b"\xff\xff\xff", "lz4", 100, limit=1000)
    with pytest.raises(E.PostBodyUncompressError):
        decompress(b"not zstd", "zstd", 100, limit=1000)
    with pytest.raises(E.InvalidCompressType):
        decompress(b"abc", "snappy", 3, limit=1000)


def test_zstd_bombs_are_refused_without_inflating() -> None:
    """A zstd frame declaring (or, undeclared, expanding to) more than the limit is refused, never inflated:
    64 MiB of zeros compress to a few kB. Truncated frames are errors, not short bodies."""
    zeros = b"\0" * (64 << 20)
    declared = zstandard.ZstdCompressor().compress(zeros)
    undeclared = zstandard.ZstdCompressor(write_content_size=False).compress(zeros)
    assert len(declared) < 10_000 and len(undeclared) < 10_000
    with pytest.raises(E.PostBodyTooLarge):
        decompress(declared, "zstd", None, limit=1 << 20)
    with pytest.raises(E.PostBodyUncompressError, match="larger than the limit"):
        decompress(undeclared, "zstd", None, limit=1 << 20)
    small = zstandard.ZstdCompressor(write_content_size=False).compress(b"abc" * 1000)
    assert decompress(small, "zstd", 3000, limit=1 << 20) == b"abc" * 1000
    with pytest.raises(E.PostBodyUncompressError):
        decompress(small[:-3], "zstd", None, limit=1 << 20)


def test_choose_encoding() -> None:
    """PullLogs answers in the first encoding the client lists that we support."""
    assert choose_encoding("lz4") == "lz4"
    assert choose_encoding("gzip, deflate") == "deflate"
    assert choose_encoding("zstd") == "zstd"
    assert choose_encoding("") == "" and choose_encoding(None) == "" and choose_encoding("br") == ""


def _group(i: int) -> bytes:
    g = LogGroup()
    g.Topic = f"t{i}"
    log = g.Logs.add()
    log.Time = 1700000000 + i
    c = log.Contents.add()
    c.Key, c.Value = "k", "v" * i
    return g.SerializeToString()


def test_log_group_vector() -> None:
    """The LogGroup of the reference vector serializes to its 37 bytes."""
    g = LogGroup()
    g.Topic, g.Source = "t", "s"
    log = g.Logs.add()
    log.Time, log.Time_ns = 1700000000, 5
    c = log.Contents.add()
    c.Key, c.Value = "k", "v"
    tag = g.LogTags.add()
    tag.Key, tag.Value = "tk", "tv"
    assert g.SerializeToString().hex() == (
        "0a130880e2cfaa0612060a016b12017625050000001a017422017332080a02746b12027476")


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=20))
def test_frame_and_split_groups(sizes: list[int]) -> None:
    """Framing stored groups gives a LogGroupList; splitting it gives the same bytes back."""
    groups = [_group(i) for i in sizes]
    body = frame_groups(groups)
    parsed = LogGroupList()
    parsed.ParseFromString(body)
    assert [g.SerializeToString() for g in parsed.LogGroups] == groups
    assert [bytes(b) for b in split_groups(body)] == groups


def test_malformed_group_raises_wire_error() -> None:
    """Bytes that are not a LogGroup raise WireError."""
    with pytest.raises(E.WireError):
        parse_group(b"\x0a\xff\xff\xff\xff\x0f junk")
    with pytest.raises(E.WireError):
        list(split_groups(b"\x0a\x05ab"))


def test_error_registry() -> None:
    """Codes map to classes with SLS's statuses; unknown codes keep their code; aliases resolve."""
    err = E.for_code("LogStoreNotExist", "gone", http_status=404, request_id="r1")
    assert isinstance(err, E.SLSError) and err.http_status == 404 and err.request_id == "r1"
    assert err.to_json() == {"errorCode": "LogStoreNotExist", "errorMessage": "gone"}
    assert type(E.for_code("ShardNotExsit", "x")).__name__ == "ShardNotExist"
    unknown = E.for_code("BrandNewCode", "?", http_status=418)
    assert (unknown.error_code, unknown.http_status) == ("BrandNewCode", 418)
    statuses = {"SignatureNotMatch": 401, "Unauthorized": 401, "ProjectNotExist": 404, "InvalidCursor": 400,
                "PostBodyTooLarge": 400, "ConsumerGroupAlreadyExist": 400, "InternalServerError": 500,
                "ServerBusy": 503, "WriteQuotaExceed": 403}
    for code, status in statuses.items():
        assert E.all_codes()[code].http_status == status
