"""The C decoder behind ``LazyLogGroup.logs()`` (src/sluice/wire/_logdecode.c).

Properties: for any LogGroup the protobuf runtime serializes (random topics, sources, tags, logs with
duplicate, empty and unicode keys and values, times up to 2^32-1, with or without Time_ns), the C decoder
builds exactly the dicts the protobuf path builds; values and keys that are not UTF-8 come out as bytes in
both; and no input at all (random bytes, mutated groups) makes it read out of bounds, crash or hang: it
either decodes or raises ValueError (WireError through ``logs()``).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.wire import batch as batch_module
from sluice.wire.batch import FAST_DECODER, LazyLogGroup
from sluice.wire.errors import WireError
from sluice.wire.loggroup import LogGroupRaw
from tests.unit.test_batch import _build, group_st, mutated_group


def test_the_extension_is_built() -> None:
    """CI must exercise the C path: the install compiles it (scripts/test.sh; gcc and Python headers)."""
    assert FAST_DECODER, "sluice.wire._logdecode was not built; pip install -e . compiles it"


def _slow(raw: bytes) -> list[dict[str, Any]]:
    return LazyLogGroup(raw)._logs_from_message()


@settings(max_examples=300, deadline=None)
@given(group_st)
def test_c_decoder_equals_the_protobuf_path(spec: dict[str, Any]) -> None:
    raw = _build([spec]).LogGroups[0].SerializeToString()
    assert LazyLogGroup(raw).logs() == _slow(raw)


def test_non_utf8_keys_and_values_come_out_as_bytes_in_both_paths() -> None:
    g = LogGroupRaw()  # bytes values; keys are str, so invalid keys are patched into the bytes below
    g.Topic = "t"
    log = g.Logs.add()
    log.Time = 7
    for k, v in (("ok", b"\xff\xfe"), ("k2", "ünï".encode()), ("KEYX", b"v")):
        c = log.Contents.add()
        c.Key, c.Value = k, v
    tag = g.LogTags.add()
    tag.Key, tag.Value = "TAGX", "x"
    raw = g.SerializeToString().replace(b"KEYX", b"\xc3\xff\xfe\xfd").replace(b"TAGX", b"\xff\xff\xff\xff")
    fast = LazyLogGroup(raw).logs()
    assert fast == _slow(raw)
    assert fast[0]["ok"] == b"\xff\xfe" and fast[0]["k2"] == "ünï" and fast[0][b"\xc3\xff\xfe\xfd"] == "v"
    assert fast[0]["__tag__:" + str(b"\xff\xff\xff\xff")] == "x"


def test_duplicate_keys_last_wins_and_meta_overrides_fields() -> None:
    g = LogGroupRaw()
    g.Topic, g.Source = "topic", "src"
    log = g.Logs.add()
    log.Time = 1
    for k, v in ((b"a", b"1"), (b"a", b"2"), (b"__topic__", b"mine"), (b"__time__", b"x")):
        c = log.Contents.add()
        c.Key, c.Value = k, v
    raw = g.SerializeToString()
    assert LazyLogGroup(raw).logs() == _slow(raw) == [{"a": "2", "__topic__": "topic", "__time__": 1,
                                                       "__source__": "src"}]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(raw: bytes) -> None:
    try:
        out = LazyLogGroup(raw).logs()
    except WireError:
        return
    assert isinstance(out, list) and all(isinstance(d, dict) for d in out)


@settings(max_examples=500, deadline=None)
@given(group_st, st.data())
def test_mutated_groups_never_crash(spec: dict[str, Any], data: st.DataObject) -> None:
    raw = mutated_group(spec, data)
    try:
        out = LazyLogGroup(raw).logs()
    except WireError:
        return
    assert isinstance(out, list)


def test_a_memoryview_slice_is_read_in_place() -> None:
    spec = {"logs": [{"time": 5, "contents": [("k", "v")]}], "tags": [("h", "x")], "topic": "t"}
    raw = _build([spec]).LogGroups[0].SerializeToString()
    framed = memoryview(b"junk" + raw + b"junk")[4:4 + len(raw)]
    assert LazyLogGroup(framed).logs() == [{"k": "v", "__time__": 5, "__topic__": "t", "__source__": "",
                                            "__tag__:h": "x"}]


@pytest.mark.parametrize("raw", [b"\x0a\x80", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x0b", b"\x08"])
def test_malformed_is_a_wire_error(raw: bytes) -> None:
    with pytest.raises(WireError):
        LazyLogGroup(raw).logs()


# --- the header pass (group_header): what LazyLogGroup's topic/source/tags/len read ---


def _runtime_header(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        m.setattr(batch_module, "_group_header", None)
        return batch_module.read_header(raw)


@settings(max_examples=300, deadline=None)
@given(group_st)
def test_c_header_equals_the_protobuf_runtime(spec: dict[str, Any]) -> None:
    raw = _build([spec]).LogGroups[0].SerializeToString()
    fast = batch_module.read_header(raw)
    with pytest.MonkeyPatch.context() as mp:
        slow = _runtime_header(raw, mp)
    assert fast[:5] == slow[:5]
    assert fast.span is not None and fast.span[2] == fast.n_logs == len(spec["logs"])


def test_c_header_non_utf8_and_repeated_fields() -> None:
    # Topic twice (last wins), a tag whose key is not UTF-8, a MachineUUID, an unknown field
    raw = (b"\x1a\x01a" + b"\x1a\x02\xff\xfe" + b"\x2a\x03m-1" + b"\x32\x08\x0a\x02\xff\x41\x12\x02BC"
           + b"\x78\x05")
    fast = batch_module.read_header(raw)
    with pytest.MonkeyPatch.context() as mp:
        slow = _runtime_header(raw, mp)
    assert fast[:5] == slow[:5] == (b"\xff\xfe", "", "m-1", [(b"\xffA", "BC")], 0)
    g = LazyLogGroup(raw)
    assert g.tags == {b"\xffA": "BC"} and len(g) == 0


@settings(max_examples=500, deadline=None)
@given(group_st, st.data())
def test_c_header_on_mutated_groups_never_crashes(spec: dict[str, Any], data: st.DataObject) -> None:
    raw = mutated_group(spec, data)
    try:
        h = batch_module.read_header(raw)
    except WireError:
        return
    assert h.n_logs >= 0 and isinstance(h.tags, list)
