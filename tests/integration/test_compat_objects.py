"""Issue #20.1: what an SDK-style processor receives from sluice's compat consumer reads exactly like the SDK's
own protobuf objects: seed 002's handler, the SDK's own ``loggroups_to_flattern_list`` and the compat
``flatten`` give equal results on sluice's objects (C decoder, and the protobuf fallback) and on the SDK's
parsed ``LogGroupList`` of the same bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aliyun.log.log_logs_pb2 import LogGroup as SDKLogGroup
from aliyun.log.log_logs_pb2 import LogGroupList as SDKLogGroupListPB
from aliyun.log.pulllog_response import PullLogResponse
from sluice.client import sdkobjects
from sluice.client.sdkobjects import SDKLogGroupList, flatten
from sluice.wire.batch import Batch
from sluice.wire.errors import WireError
from sluice.wire.loggroup import frame_groups

text = st.text(st.characters(codec="utf-8"), max_size=12)
content = st.tuples(st.sampled_from(["a", "b", "msg", "ts", "键", ""]) | text, text)
log = st.tuples(st.integers(0, 2**32 - 1), st.none() | st.integers(0, 999_999_999), st.lists(content, max_size=6))
group = st.tuples(text, text, st.lists(st.tuples(text, text), max_size=3), st.lists(log, max_size=8))


def encode(spec: tuple[str, str, list[tuple[str, str]], list[Any]]) -> bytes:
    topic, source, tags, logs = spec
    g = SDKLogGroup()
    g.Topic, g.Source = topic, source
    for t, ns, contents in logs:
        lg = g.Logs.add()
        lg.Time = t
        if ns is not None:
            lg.Time_ns = ns
        for k, v in contents:
            c = lg.Contents.add()
            c.Key, c.Value = k, v
    for k, v in tags:
        tag = g.LogTags.add()
        tag.Key, tag.Value = k, v
    return g.SerializeToString()


def seed_002_process(log_groups: Any) -> list[dict[str, Any]]:
    """Seed 002's SampleConsumer.process, minus the print and the checkpoint."""
    out = []
    for log_group in log_groups.LogGroups:
        items = []
        for log in log_group.Logs:
            item = dict()
            item['time'] = log.Time
            for content in log.Contents:
                item[content.Key] = content.Value
            items.append(item)
        log_items = dict()
        log_items['topic'] = log_group.Topic
        log_items['source'] = log_group.Source
        log_items['logs'] = items
        out.append(log_items)
    return out


def both(raw_groups: list[bytes]) -> tuple[SDKLogGroupList, Any]:
    raw = frame_groups(raw_groups)
    ours = SDKLogGroupList.of(Batch(project="p", logstore="l", shard=0, cursor="c", next_cursor="n",
                                    count=len(raw_groups), raw=raw))
    theirs = SDKLogGroupListPB()
    theirs.ParseFromString(raw)
    return ours, theirs


@pytest.fixture(params=["c", "protobuf"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "c":
        if not sdkobjects.FAST_OBJECTS:
            pytest.fail("the _sdklogs extension is not built")
    else:
        monkeypatch.setattr(sdkobjects, "_decode_logs", None)
        monkeypatch.setattr(sdkobjects, "_TagType", sdkobjects._Tag)
    return str(request.param)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(group, max_size=4))
def test_seed_002_handler_sees_what_the_sdk_shows(decoder: str, specs: list[Any]) -> None:
    ours, theirs = both([encode(s) for s in specs])
    assert seed_002_process(ours) == seed_002_process(theirs)
    assert PullLogResponse.loggroups_to_flattern_list(ours) == PullLogResponse.loggroups_to_flattern_list(theirs)
    assert PullLogResponse.loggroups_to_flattern_list(ours, time_as_str=True) == \
        PullLogResponse.loggroups_to_flattern_list(theirs, time_as_str=True)
    assert flatten(ours) == PullLogResponse.loggroups_to_flattern_list(theirs)
    for a, b in zip(ours.LogGroups, theirs.LogGroups):
        assert [(t.Key, t.Value) for t in a.LogTags] == [(t.Key, t.Value) for t in b.LogTags]
        assert [lg.Time_ns for lg in a.Logs] == [lg.Time_ns for lg in b.Logs]
        assert [lg.HasField("Time_ns") for lg in a.Logs] == [lg.HasField("Time_ns") for lg in b.Logs]
        assert a.SerializeToString() == b.SerializeToString()  # the received bytes, unchanged
        assert len(a.Logs) == len(b.Logs) and a.MachineUUID == b.MachineUUID
    assert ours.SerializeToString() == theirs.SerializeToString()
    assert ours.ByteSize() == theirs.ByteSize()  # protobuf methods answered by the parsed message


def test_logs_are_read_only_and_edits_of_the_group_are_forwarded() -> None:
    ours, _ = both([encode(("t", "s", [("k", "v")], [(1, None, [("a", "1")])]))])
    g = ours.LogGroups[0]
    with pytest.raises(AttributeError, match="read-only"):
        g.Logs[0].Contents[0].Value = "changed"
    with pytest.raises(AttributeError, match="read-only"):
        g.Logs[0].Time = 2
    g.Topic = g.Topic + "_copied"  # the SDK's way of editing a group before put_log_raw
    sent = SDKLogGroup()
    sent.ParseFromString(g.SerializeToString())
    assert sent.Topic == "t_copied" and sent.Logs[0].Contents[0].Value == "1" and sent.LogTags[0].Key == "k"


def test_malformed_group_is_a_wire_error() -> None:
    raw = frame_groups([b"\x0a\x05\x08"])  # a Logs field whose length runs past the end
    ours = SDKLogGroupList.of(Batch(project="p", logstore="l", shard=0, cursor="c", next_cursor="n", count=1,
                                    raw=raw))
    with pytest.raises(WireError):
        ours.LogGroups[0].Logs
