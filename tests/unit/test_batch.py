"""The lazy batch types (``Batch`` / ``LazyLogGroup``) against the protobuf runtime.

Property: for any LogGroupList (random topics, sources, machine UUIDs, tags and logs, unicode and empty
values included), framed as bytes, the groups of ``Batch(...).LogGroups`` read lazily exactly what an eager
parse (``sluice.wire.loggroup.LogGroupList``) reads, hand back the received bytes unchanged from
``SerializeToString()`` and are accepted as is by the official SDK's own ``LogGroup`` message (what
``LogClient.put_log_raw`` relies on).
"""

from __future__ import annotations

from typing import Any

from aliyun.log import log_logs_pb2 as sdk_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.wire.batch import Batch, LazyLogGroup
from sluice.wire.errors import WireError
from sluice.wire.loggroup import LogGroup, LogGroupList, frame_groups, split_groups

# protobuf strings must be valid UTF-8: no surrogates (hypothesis' default alphabet already has none).
text = st.text(max_size=12)
short_text = st.one_of(st.just(""), text)
pair = st.tuples(short_text, short_text)
log_st = st.fixed_dictionaries(
    {"time": st.integers(0, 2**32 - 1), "contents": st.lists(pair, max_size=5)},
    optional={"time_ns": st.integers(0, 2**32 - 1)},
)
group_st = st.fixed_dictionaries(
    {"logs": st.lists(log_st, max_size=5), "tags": st.lists(pair, max_size=4)},
    optional={"topic": short_text, "source": short_text, "machine_uuid": short_text},
)
groups_st = st.lists(group_st, max_size=6)


def _build(groups: list[dict[str, Any]]) -> Any:
    lst = LogGroupList()
    for spec in groups:
        g = lst.LogGroups.add()
        if "topic" in spec:
            g.Topic = spec["topic"]
        if "source" in spec:
            g.Source = spec["source"]
        if "machine_uuid" in spec:
            g.MachineUUID = spec["machine_uuid"]
        for k, v in spec["tags"]:
            t = g.LogTags.add()
            t.Key, t.Value = k, v
        for item in spec["logs"]:
            lg = g.Logs.add()
            lg.Time = item["time"]
            if "time_ns" in item:
                lg.Time_ns = item["time_ns"]
            for k, v in item["contents"]:
                c = lg.Contents.add()
                c.Key, c.Value = k, v
    return lst


def mutated_group(spec: dict[str, Any], data: st.DataObject) -> bytes:
    """A serialized group with 1-4 random bit flips, cuts or insertions: input no decoder may crash on."""
    raw = bytearray(_build([spec]).LogGroups[0].SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        if not raw:
            break
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del raw[pos:]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=6))
    return bytes(raw)


def _batch(raw: bytes, count: int) -> Batch:
    return Batch(project="p", logstore="ls", shard=3, cursor="MA==", next_cursor="MQ==", count=count, raw=raw,
                 endpoint="http://127.0.0.1:80")


def _logs_of(g: Any) -> list[tuple[int, int | None, list[tuple[str, str]]]]:
    return [(lg.Time, lg.Time_ns if lg.HasField("Time_ns") else None, [(c.Key, c.Value) for c in lg.Contents])
            for lg in g.Logs]


def _tags_of(g: Any) -> list[tuple[str, str]]:
    return [(t.Key, t.Value) for t in g.LogTags]


def _flat(g: Any) -> list[dict[str, Any]]:
    """What ``logs()`` must give for eager group ``g``: fields, then __time__/__topic__/__source__/__tag__:k
    (these override a content of the same name, as in the SDK's flattened JSON)."""
    out = []
    for lg in g.Logs:
        d: dict[str, Any] = {c.Key: c.Value for c in lg.Contents}
        d["__time__"] = lg.Time
        d["__topic__"] = g.Topic
        d["__source__"] = g.Source
        for t in g.LogTags:
            d[f"__tag__:{t.Key}"] = t.Value
        out.append(d)
    return out


@settings(max_examples=100, deadline=None)
@given(groups_st)
def test_lazy_fields_equal_eager_parse(groups: list[dict[str, Any]]) -> None:
    raw = _build(groups).SerializeToString()
    eager = LogGroupList()
    eager.ParseFromString(raw)
    batch = _batch(raw, len(eager.LogGroups))

    assert len(batch) == len(groups) == batch.count
    assert batch.raw_size == len(raw)
    lazy = batch.LogGroups
    assert len(lazy) == len(eager.LogGroups)
    assert batch.groups is lazy and list(batch) == lazy
    for lz, eg in zip(lazy, eager.LogGroups):
        assert isinstance(lz, LazyLogGroup)
        # header first: reading it must not parse the logs
        assert (lz.Topic, lz.Source, lz.MachineUUID) == (eg.Topic, eg.Source, eg.MachineUUID)
        assert (lz.topic, lz.source) == (eg.Topic, eg.Source)
        assert lz.tags == {t.Key: t.Value for t in eg.LogTags}
        assert "_full" not in lz.__dict__, "reading the header must not build the logs"
        # the SDK's LogTags attribute is the full (mutable) message, so changes made through it are forwarded
        assert _tags_of(lz) == _tags_of(eg)
        # then the logs
        assert _logs_of(lz) == _logs_of(eg)
        assert len(lz) == len(eg.Logs)
        assert lz.logs() == _flat(eg)
    assert batch.log_count() == sum(len(g["logs"]) for g in groups)
    assert batch.logs() == [d for eg in eager.LogGroups for d in _flat(eg)]


@settings(max_examples=100, deadline=None)
@given(groups_st)
def test_serialize_returns_the_exact_received_bytes(groups: list[dict[str, Any]]) -> None:
    lst = _build(groups)
    raw = lst.SerializeToString()
    group_bytes = [g.SerializeToString() for g in lst.LogGroups]
    assert frame_groups(group_bytes) == raw  # the list is just its framed groups
    assert [bytes(v) for v in split_groups(raw)] == group_bytes
    batch = _batch(raw, len(group_bytes))
    out = [g.SerializeToString() for g in batch.LogGroups]
    assert all(type(b) is bytes for b in out)
    assert out == group_bytes
    assert frame_groups(out) == raw  # forwarding every group rebuilds the body byte for byte
    # also when the header and logs were read first (cached parses must not change what is sent)
    for g in batch.LogGroups:
        _ = (g.Topic, g.LogTags, g.Logs)
    assert [g.SerializeToString() for g in batch.LogGroups] == group_bytes


@settings(max_examples=100, deadline=None)
@given(groups_st)
def test_official_sdk_accepts_lazy_groups(groups: list[dict[str, Any]]) -> None:
    """``put_log_raw(log_group=lazy)`` serializes with ``SerializeToString()``; the SDK's own LogGroup (in the
    default pool, beside sluice's private one) parses those bytes to the same fields."""
    raw = _build(groups).SerializeToString()
    sdk_list = sdk_pb2.LogGroupList()
    sdk_list.ParseFromString(raw)
    for lz, sg in zip(_batch(raw, len(groups)).LogGroups, sdk_list.LogGroups, strict=True):
        parsed = sdk_pb2.LogGroup()
        parsed.ParseFromString(lz.SerializeToString())
        assert parsed == sg
        assert (parsed.Topic, parsed.Source, parsed.MachineUUID) == (lz.Topic, lz.Source, lz.MachineUUID)
        assert _tags_of(parsed) == _tags_of(lz)
        assert _logs_of(parsed) == _logs_of(lz)
        assert parsed.SerializeToString() == lz.SerializeToString()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_wire_error_only(data: bytes) -> None:
    """Malformed bytes fail with ``WireError`` (never another exception type) when the groups are read."""
    batch = _batch(data, 0)
    try:
        for g in batch.LogGroups:
            _ = (g.Topic, g.Source, g.tags)
            g.logs()
    except WireError:
        pass


def test_empty_batch() -> None:
    batch = _batch(b"", 0)
    assert batch.LogGroups == [] and len(batch) == 0 and batch.logs() == [] and batch.log_count() == 0


def test_header_only_group_and_empty_values() -> None:
    """A group with no logs and explicitly empty fields; the lazy view and the SDK agree with the eager one."""
    g = LogGroup()
    g.Topic = ""
    g.Source = ""
    t = g.LogTags.add()
    t.Key, t.Value = "", ""
    raw = frame_groups([g.SerializeToString()])
    (lz,) = _batch(raw, 1).LogGroups
    assert (lz.Topic, lz.Source, lz.tags, len(lz), lz.logs()) == ("", "", {"": ""}, 0, [])
    assert lz.SerializeToString() == g.SerializeToString()
    parsed = sdk_pb2.LogGroup()
    parsed.ParseFromString(lz.SerializeToString())
    assert parsed.HasField("Topic") and parsed.Topic == "" and len(parsed.Logs) == 0


def test_topic_can_be_changed_before_forwarding() -> None:
    """aliyun-log-python-sdk tests/consumer_group_examples/copy_data_to_logstore.py: ``log_group.Topic +=
    "_copied"; put_method(log_group=log_group)``: the forwarded bytes must carry the new topic and the logs."""
    g = LogGroup()
    g.Topic = "t"
    lg = g.Logs.add()
    lg.Time = 1
    c = lg.Contents.add()
    c.Key, c.Value = "k", "v"
    (lz,) = _batch(frame_groups([g.SerializeToString()]), 1).LogGroups
    lz.Topic += "_copied"
    parsed = sdk_pb2.LogGroup()
    parsed.ParseFromString(lz.SerializeToString())
    assert parsed.Topic == "t_copied" and len(parsed.Logs) == 1 and parsed.Logs[0].Contents[0].Value == "v"
