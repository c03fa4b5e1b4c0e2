"""Value types of the hub's durable state, and the interface an engine implements.

The store owns projects, logstores, shards (with their lineage and key ranges), the per-shard sequence of
LogGroups, consumer groups and checkpoints. It knows nothing of HTTP or of heartbeats: the coordinator in
``hub/groups.py``, the handlers in ``hub/api/``, the console and the metrics sit above it and use only
:class:`Store` (no caller outside ``store/`` imports an engine or takes an engine's lock).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    "Store",
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
        body.setdefault("maxSplitShard", 64)
        # what the hub does, whatever the create request asked: it never splits a shard by itself (SLS does on
        # load); shards split only on SplitShard (#20)
        body["autoSplit"] = False
        return body


@dataclass
class ReadResult:
    """Groups read from a shard: a serialized LogGroupList of ``count`` groups, and the sequence number
    after the last one. Read with ``encoding="lz4"``, an engine may answer the LogGroupList already as one lz4
    block (``encoding`` says so; ``raw_size`` is then its uncompressed size)."""

    body: bytes
    count: int
    next_seq: int
    encoding: str = ""
    raw_size: int = 0


class Store(Protocol):
    """What the hub needs from an engine (``SQLiteStore`` implements it).

    Three kinds of method, and why:

    * **Lookups** read committed metadata from memory. They are plain methods (no I/O, cheap enough for the
      event loop) that take the engine's lock themselves. The ``get_*`` lookups raise SLS's NotExist errors and
      return the engine's current record; every other lookup returns a *snapshot*: a new list or dict, and for
      ``snapshot()`` copies of the logstore, group and checkpoint containers, so a caller iterates it without
      a lock and without seeing a half-applied change. The ``ShardMeta`` entries are the engine's own
      records: their counters (``end_seq``, ``begin_seq``, ``bytes_stored``) move on as data is committed, so
      read them, never write them (the long-poll and PullLogs rely on seeing ``end_seq`` advance).
    * **Mutations** are queued to the engine's writer and return an awaitable that resolves after the change
      is durable (``await store.create_project(...)``); an acknowledged write survives kill -9.
    * **Disk reads** (``read``, ``recv_time_ms``, ``seq_at_time``) block: call them on a worker thread.
    """

    # lookups: memory, committed state, the engine's lock taken inside
    def get_project(self, project: str) -> ProjectMeta: ...
    def get_logstore(self, project: str, logstore: str) -> LogstoreMeta: ...
    def get_shard(self, project: str, logstore: str, shard_id: int) -> ShardMeta: ...
    def get_group(self, project: str, logstore: str, group: str) -> GroupMeta: ...
    def project_names(self) -> list[str]: ...
    def logstore_names(self, project: str) -> list[str]: ...
    def shards_of(self, project: str, logstore: str) -> list[ShardMeta]: ...
    def groups_of(self, project: str, logstore: str) -> list[GroupMeta]: ...
    def group_snapshot(self, project: str, logstore: str,
                       group: str) -> tuple[GroupMeta, dict[int, ShardMeta], dict[int, Checkpoint]]: ...
    def group_keys(self) -> list[tuple[str, str, str]]: ...
    def logstore_keys(self) -> list[tuple[str, str]]: ...  # every (project, logstore), sorted
    # every shard as (project, logstore, shard id, status, bytes stored, begin_seq, end_seq), by logstore
    def shard_rows(self) -> list[tuple[str, str, int, str, int, int, int]]: ...
    def shard_counters(self) -> dict[int, tuple[int, int]]: ...  # uid -> (bytes stored, end_seq), for rates
    def snapshot(self, project: str | None = None) -> list[LogstoreMeta]: ...
    # (project, logstore, config[key], shards by id) of the logstores whose config holds key: what a follower of
    # a few configured logstores (the indexer) reads on every pass without copying the whole hub's metadata
    def configured(self, key: str) -> list[tuple[str, str, Any, list[ShardMeta]]]: ...

    # mutations: awaitable, resolved after commit
    def create_project(self, name: str, description: str, extra: dict[str, str]) -> Awaitable[Any]: ...
    def update_project(self, name: str, description: str) -> Awaitable[Any]: ...
    def delete_project(self, name: str) -> Awaitable[Any]: ...
    def create_logstore(self, project: str, name: str, ttl: int, shard_count: int,
                        config: dict[str, Any]) -> Awaitable[Any]: ...
    def update_logstore(self, project: str, name: str, ttl: int, config: dict[str, Any]) -> Awaitable[Any]: ...
    def delete_logstore(self, project: str, name: str) -> Awaitable[Any]: ...
    def split_shard(self, project: str, logstore: str, shard_id: int, key: int) -> Awaitable[Any]: ...
    def merge_shard(self, project: str, logstore: str, shard_id: int) -> Awaitable[Any]: ...
    def delete_shard(self, project: str, logstore: str, shard_id: int) -> Awaitable[Any]: ...
    def append(self, picked: ShardMeta, data: bytes, nlogs: int,
               repick: Callable[[], ShardMeta] | None = None,
               packed: tuple[str, bytes] | None = None) -> Awaitable[Any]: ...
    def create_group(self, project: str, logstore: str, name: str, timeout: int, in_order: bool) -> Awaitable[Any]: ...
    def update_group(self, project: str, logstore: str, name: str, timeout: int | None,
                     in_order: bool | None) -> Awaitable[Any]: ...
    def delete_group(self, project: str, logstore: str, name: str) -> Awaitable[Any]: ...
    def save_checkpoint(self, project: str, logstore: str, group: str, shard_id: int, cursor: str, seq: int,
                        consumer: str) -> Awaitable[Any]: ...

    # retention: never blocks (nothing due: a lookup; else bounded writer transactions); a concurrent future of
    # the number of groups deleted (awaitable with asyncio.wrap_future)
    def expire(self, shard: ShardMeta, cutoff_ms: int) -> Any: ...

    # disk reads: blocking, call from a worker thread
    def read(self, shard: ShardMeta, start: int, count: int, max_bytes: int, end: int | None = None,
             encoding: str = "") -> ReadResult: ...
    def recv_time_ms(self, shard: ShardMeta, seq: int) -> int | None: ...
    def seq_at_time(self, shard: ShardMeta, t_ms: int) -> int: ...

    # lifecycle
    def add_listener(self, fn: Callable[[set[int]], None]) -> None: ...
    def close(self) -> None: ...
