"""Packing consecutive LogGroups into one PutLogs body (src/sluice/wire/pack.py, ``_logdecode.logs_span``).

Properties: for any sequence of groups, the bodies hold every log of every group, in order, each log under
its own group's topic, source and tags (checked by parsing the bodies with the protobuf runtime); only groups
whose non-log bytes are identical share a body; no body exceeds the limits unless one group alone does; a
group whose logs are not one contiguous run, or any group without the extension, goes alone; and
``logs_span`` never crashes on malformed input.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.wire import pack as pack_module
from sluice.wire.batch import LazyLogGroup
from sluice.wire.errors import WireError
from sluice.wire.loggroup import LogGroup, encode_varint
from sluice.wire.pack import pack_groups
from tests.unit.test_batch import _build, group_st, mutated_group

logs_span = pack_module._logs_span


def _serialized(specs: list[dict[str, Any]]) -> list[bytes]:
    return [g.SerializeToString() for g in _build(specs).LogGroups]


def _flatten(raws: list[bytes]) -> list[tuple[Any, ...]]:
    """Every log with the header it lives under: what a reader of the target logstore sees."""
    out = []
    for raw in raws:
        g = LogGroup()
        g.ParseFromString(raw)
        head = (g.Topic, g.Source, g.MachineUUID, tuple((t.Key, t.Value) for t in g.LogTags))
        for log in g.Logs:
            out.append((head, log.SerializeToString()))
    return out


def test_logs_span_finds_the_logs() -> None:
    raw = _serialized([{"logs": [{"time": 1, "contents": [("k", "v")]}] * 3, "tags": [("a", "b")],
                        "topic": "t"}])[0]
    start, end, n = logs_span(raw)
    assert n == 3 and start == 0
    rest = LogGroup()
    rest.ParseFromString(raw[:start] + raw[end:])
    assert len(rest.Logs) == 0 and rest.Topic == "t" and rest.LogTags[0].Key == "a"
    assert logs_span(b"") == (0, 0, 0)
    assert logs_span(memoryview(b"xx" + raw)[2:]) == (start, end, n)


def test_logs_split_by_a_header_field_are_not_one_run() -> None:
    log = b"\x08\x01"  # Log{Time: 1}
    field = b"\x0a" + encode_varint(len(log)) + log
    assert logs_span(field + b"\x1a\x01t" + field) is None  # Logs, Topic, Logs
    assert logs_span(b"\x08\x05" + field) is None  # field 1 as a varint: not a log


@pytest.mark.parametrize("raw", [b"\x0a\x80", b"\x0a\x05ab", b"\x0b", b"\x00\x01"])
def test_malformed_groups_raise(raw: bytes) -> None:
    with pytest.raises(ValueError):
        logs_span(raw)
    with pytest.raises(WireError):
        list(pack_groups([raw]))


@settings(max_examples=300, deadline=None)
@given(st.lists(group_st, max_size=8), st.integers(1, 6), st.integers(40, 2000), st.booleans())
def test_packing_keeps_every_log_under_its_header(specs: list[dict[str, Any]], max_logs: int, max_bytes: int,
                                                   lazy: bool) -> None:
    # repeat some headers so that runs of packable groups occur
    raws = _serialized(specs + specs)
    items: list[Any] = [LazyLogGroup(memoryview(r)) for r in raws] if lazy else raws
    bodies = list(pack_groups(items, max_logs=max_logs, max_bytes=max_bytes))
    assert sum(b.groups for b in bodies) == len(raws)
    assert _flatten([b.body() for b in bodies]) == _flatten(raws)
    i = 0
    for b in bodies:
        members = raws[i:i + b.groups]
        i += b.groups
        if b.groups > 1:
            spans = [logs_span(r) for r in members]
            heads = {(r[:s[0]], r[s[1]:]) for r, s in zip(members, spans)}
            assert len(heads) == 1, "only groups with identical non-log bytes share a body"
            assert b.logs <= max_logs and sum(s[1] - s[0] for s in spans) <= max_bytes
            assert b.logs == sum(s[2] for s in spans)


def test_same_header_groups_share_a_body_within_the_limits() -> None:
    log = {"time": 1, "contents": [("k", "v" * 10)]}
    a = {"logs": [log] * 3, "tags": [("h", "1")], "topic": "t"}
    b = {"logs": [log] * 3, "tags": [("h", "2")], "topic": "t"}
    raws = _serialized([a, a, a, b, b, a])
    bodies = list(pack_groups(raws, max_logs=6))
    assert [x.groups for x in bodies] == [2, 1, 2, 1]
    merged = LogGroup()
    merged.ParseFromString(bodies[0].body())
    assert len(merged.Logs) == 6 and merged.LogTags[0].Value == "1" and len(merged.LogTags) == 1
    assert [x.groups for x in pack_groups(raws)] == [3, 2, 1]


def test_a_changed_lazy_group_is_packed_as_changed() -> None:
    raw = _serialized([{"logs": [{"time": 1, "contents": [("k", "v")]}], "tags": [], "topic": "t"}])[0]
    g = LazyLogGroup(memoryview(raw))
    g.Topic = "t_copied"
    changed, unchanged = pack_groups([g, LazyLogGroup(raw)])  # their headers now differ: two bodies
    parsed = LogGroup()
    parsed.ParseFromString(changed.body())
    assert parsed.Topic == "t_copied" and len(parsed.Logs) == 1
    assert unchanged.body() == raw


def test_without_the_extension_every_group_goes_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pack_module, "_logs_span", None)
    raws = _serialized([{"logs": [{"time": 1, "contents": [("k", "v")]}], "tags": [], "topic": "t"}] * 3)
    bodies = list(pack_groups(raws))
    assert [b.body() for b in bodies] == raws


@settings(max_examples=500, deadline=None)
@given(group_st, st.data())
def test_logs_span_on_mutated_groups_never_crashes(spec: dict[str, Any], data: st.DataObject) -> None:
    raw = mutated_group(spec, data)
    try:
        span = logs_span(raw)
    except ValueError:
        return
    if span is not None:
        start, end, n = span
        assert 0 <= start <= end <= len(raw) and n >= 0
