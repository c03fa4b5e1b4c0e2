"""Value types of the hub's durable state, and the interface an engine implements.

The store owns projects, logstores, shards (with their lineage and key ranges), the per-shard sequence of
LogGroups, consumer groups and checkpoints. It knows nothing of HTTP or of heartbeats: the coordinator in
``hub/groups.py`` and the routes in ``hub/app.py`` sit above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KEY_SPACE",
    "ProjectMeta",
    "LogstoreMeta",
    "ShardMeta",
    "GroupMeta",
    "Checkpoint",
    "ReadResult",
    "key_hex",
    "initial_ranges",
]

KEY_SPACE = 1 << 128
"""Shards split the 128-bit MD5 key space; the last shard's exclusive end is written as 32 'f's."""


def key_hex(value: int) -> str:
    """A key bound as SLS writes it: 32 lowercase hex digits; the top of the space is all 'f'."""
    if value >= KEY_SPACE:
        return "f" * 32
    return f"{value:032x}"


def initial_ranges(count: int) -> list[tuple[int, int]]:
    """Key ranges of ``count`` fresh shards: boundary i is i * 2^128 / count, as SLS assigns them."""
    return [(i * KEY_SPACE // count, (i + 1) * KEY_SPACE // count) for i in range(count)]


@dataclass
class ProjectMeta:
    name: str
    description: str
    create_time: int
    last_modify_time: int
    resource_group_id: str = ""
    data_redundancy_type: str = ""


@dataclass
class ShardMeta:
    """One shard. ``begin_seq``/``end_seq`` bound the retained, *committed* groups: [begin, end)."""

    uid: int  # hub-wide unique id; never reused, also the high bits of the row ids of its data
    shard_id: int
    status: str  # "readwrite" | "readonly"
    begin_key: int
    end_key: int
    create_time: int
    parents: tuple[int, ...] = ()
    begin_seq: int = 0
    end_seq: int = 0
    last_write_ms: int = 0
    bytes_stored: int = 0

    @property
    def is_writable(self) -> bool:
        return self.status == "readwrite"

    def to_json(self) -> dict[str, Any]:
        return {
            "shardID": self.shard_id,
            "status": self.status,
            "inclusiveBeginKey": key_hex(self.begin_key),
            "exclusiveEndKey": key_hex(self.end_key),
            "createTime": self.create_time,
        }


@dataclass
class Checkpoint:
    cursor: str
    seq: int
    consumer: str
    update_time_us: int


@dataclass
class GroupMeta:
    name: str
    timeout: int
    in_order: bool
    checkpoints: dict[int, Checkpoint] = field(default_factory=dict)


@dataclass
class LogstoreMeta:
    project: str
    name: str
    ttl: int
    config: dict[str, Any]
    create_time: int
    last_modify_time: int
    shards: dict[int, ShardMeta] = field(default_factory=dict)
    groups: dict[str, GroupMeta] = field(default_factory=dict)

    def writable_shards(self) -> list[ShardMeta]:
        return [s for s in self.shards.values() if s.is_writable]

    def to_json(self) -> dict[str, Any]:
        body = dict(self.config)
        body.update(
            logstoreName=self.name,
            ttl=self.ttl,
            shardCount=len(self.writable_shards()),
            createTime=self.create_time,
            lastModifyTime=self.last_modify_time,
        )
        body.setdefault("enable_tracking", False)
        body.setdefault("appendMeta", False)
        body.setdefault("autoSplit", False)
        body.setdefault("maxSplitShard", 64)
        return body


@dataclass
class ReadResult:
    """Groups read from a shard: a serialized LogGroupList of ``count`` groups, and the sequence number
    after the last one."""

    body: bytes
    count: int
    next_seq: int
