"""Issue #20: ``_sdklogs.Logs``, what ``log_group.Logs`` is in a compat consumer: a read-only sequence over the
received bytes whose Log objects are built when read, and refilled in place by an iterator once the handler
has let go of them. Whatever a handler keeps (a Log, its Contents, one Content, a value) must stay what the SDK's
own protobuf objects show for the same bytes, whichever way it reads the sequence."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aliyun.log.log_logs_pb2 import LogGroup as SDKLogGroup

_sdklogs = pytest.importorskip("sluice.client._sdklogs", reason="the C extension is optional; the protobuf "
                                                                "fallback is tested in test_compat_objects")
Logs = _sdklogs.Logs

text = st.text(st.characters(codec="utf-8"), max_size=10)
values = text | st.binary(max_size=6)  # bytes that are not UTF-8 come out as bytes, as the runtime gives them
content = st.tuples(st.sampled_from(["a", "b", "msg", "键", ""]) | text, st.sampled_from(["GET", "200", ""]) | values)
log_spec = st.tuples(st.integers(0, 2**32 - 1) | st.sampled_from([7, 7, 8]), st.none() | st.integers(0, 999_999_999),
                     st.lists(content, max_size=7))
logs_spec = st.lists(log_spec, max_size=12)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def encode(logs: list[Any]) -> bytes:
    """A LogGroup, encoded by hand so a Value can hold bytes that are not UTF-8 (the runtime refuses to set
    those, but parses them: as bytes)."""
    body = b""
    for t, ns, contents in logs:
        lg = _varint(1 << 3) + _varint(t)
        for k, v in contents:
            lg += _field(2, _field(1, k.encode()) + _field(2, v if isinstance(v, bytes) else v.encode()))
        if ns is not None:
            lg += _varint(4 << 3 | 5) + ns.to_bytes(4, "little")
        body += _field(1, lg)
    return body + _field(3, b"t")


def sdk_view(raw: bytes) -> list[tuple[int, int, bool, list[tuple[Any, Any]]]]:
    """What the SDK's protobuf runtime shows for the same bytes."""
    g = SDKLogGroup()
    g.ParseFromString(raw)
    return [(lg.Time, lg.Time_ns, lg.HasField("Time_ns"), [(c.Key, c.Value) for c in lg.Contents]) for lg in g.Logs]


def view(log: Any) -> tuple[int, int, bool, list[tuple[Any, Any]]]:
    return (log.Time, log.Time_ns, log.HasField("Time_ns"), [(c.Key, c.Value) for c in log.Contents])


@settings(max_examples=200, deadline=None)
@given(logs_spec, st.sampled_from(["drop", "keep_log", "keep_contents", "keep_content", "keep_last", "list",
                                   "index", "slice", "two_iterators"]))
def test_what_a_handler_keeps_stays_what_the_sdk_shows(logs: list[Any], how: str) -> None:
    raw = encode(logs)
    want = sdk_view(raw)
    seq = Logs(raw)
    assert len(seq) == len(want) and bool(seq) == bool(want)
    if how == "drop":  # the seed's loop: read each log, keep only values
        got = [view(log) for log in seq]
    elif how == "keep_log":  # every Log object kept, read after the loop
        kept = [log for log in seq]
        got = [view(log) for log in kept]
    elif how == "keep_contents":  # each Contents tuple kept, read after the loop
        kept_c = [(log.Time, log.Time_ns, log.HasField("Time_ns"), log.Contents) for log in seq]
        got = [(t, ns, has, [(c.Key, c.Value) for c in cs]) for t, ns, has, cs in kept_c]
    elif how == "keep_content":  # single Content objects kept while their logs are dropped
        firsts = []
        for log in seq:
            cs = log.Contents
            firsts.append(cs[0] if cs else None)
        assert [(c.Key, c.Value) if c is not None else None for c in firsts] == \
            [w[3][0] if w[3] else None for w in want]
        got = [view(log) for log in seq]
    elif how == "keep_last":  # the loop variables outlive the loop, as in the seed's handler
        got = []
        last_log = last_content = None
        for log in seq:
            fields = []
            for c in log.Contents:
                fields.append((c.Key, c.Value))
                last_content = c
            got.append((log.Time, log.Time_ns, log.HasField("Time_ns"), fields))
            last_log = log
        if last_log is not None:
            assert view(last_log) == want[-1]
        if last_content is not None:
            assert (last_content.Key, last_content.Value) == next(f for w in reversed(want) for f in reversed(w[3]))
    elif how == "list":
        got = [view(log) for log in list(seq)]
    elif how == "index":
        got = [view(seq[i]) for i in range(len(seq))]
        assert [view(seq[-i - 1]) for i in range(len(seq))] == list(reversed(want))
    elif how == "slice":
        assert [view(x) for x in seq[1::2]] == want[1::2]
        assert [view(x) for x in seq[::-1]] == want[::-1]
        got = [view(x) for x in seq[:]]
    else:  # two iterators over the same sequence, interleaved
        a, b = iter(seq), iter(seq)
        got, other = [], []
        for x, y in zip(a, b):
            got.append(view(x))
            other.append(view(y))
        assert other == want
    assert got == want


def test_a_loop_that_lets_go_of_its_logs_reuses_two_objects() -> None:
    raw = encode([(i, None, [("k", str(i)), ("v", "x")]) for i in range(50)])
    assert len({id(log) for log in Logs(raw)}) <= 2  # nothing kept: refilled, not reallocated
    kept = list(Logs(raw))
    assert len({id(log) for log in kept}) == 50 and [log.Contents[0].Value for log in kept] == [str(i) for i in range(50)]


def test_contents_of_different_sizes_and_time_ns_after_refill() -> None:
    logs = [(1, 5, [("a", "1"), ("b", "2"), ("c", "3")]), (2, None, []), (3, None, [("a", "x")]), (3, 0, [("a", "x")])]
    raw = encode(logs)
    seen = [view(log) for log in Logs(raw)]
    assert seen == sdk_view(raw)
    assert [s[2] for s in seen] == [True, False, False, True]


def test_indexing_errors_and_iterator_protocol() -> None:
    seq = Logs(encode([(1, None, [("a", "1")]), (2, None, [("a", "2")])]))
    with pytest.raises(IndexError):
        seq[2]
    with pytest.raises(IndexError):
        seq[-3]
    with pytest.raises(TypeError):
        seq["0"]
    it = iter(seq)
    assert it.__length_hint__() == 2 and next(it).Time == 1 and it.__length_hint__() == 1
    assert next(it).Time == 2
    for _ in range(2):
        with pytest.raises(StopIteration):
            next(it)
    assert it.__length_hint__() == 0
    assert [log.Time for log in reversed(seq)] == [2, 1]
    assert "Content(Key='a', Value='1')" in repr(seq)
    with pytest.raises(AttributeError, match="read-only"):
        seq[0].Time = 5
    with pytest.raises(AttributeError):
        seq.append  # noqa: B018 - a read-only sequence: no list methods that would silently not forward
    assert len(Logs(b"")) == 0 and list(Logs(b"")) == []


def test_malformed_log_is_refused_when_the_sequence_is_made() -> None:
    good = encode([(1, None, [("a", "1")])])
    # a Content whose Value length runs past its log: found by the check at creation, before any log is read
    bad_log = b"\x08\x01" + b"\x12\x04" + b"\x0a\x01a" + b"\x12"
    bad = good + b"\x0a" + bytes([len(bad_log)]) + bad_log
    with pytest.raises(ValueError, match="malformed LogGroup"):
        Logs(bad)
    with pytest.raises(ValueError, match="malformed LogGroup"):
        Logs(b"\x0a\x05\x08")
    with pytest.raises(TypeError):
        Logs(buf=good)


def test_threads_iterating_one_sequence() -> None:
    raw = encode([(i, None, [("k", str(i)), ("n", "v" * (i % 7))]) for i in range(2000)])
    seq = Logs(raw)
    want = sdk_view(raw)
    results: list[Any] = []

    def run() -> None:
        results.append([view(log) for log in seq])

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [want] * 4
