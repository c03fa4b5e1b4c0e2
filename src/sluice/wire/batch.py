"""Lazy views of pulled data: raw bytes -> log groups (topic, source, tags, raw bytes) -> logs only when asked.

A PullLogs body is a LogGroupList. Most handlers look at a few things: a router looks at topics, a forwarder
sends the groups' bytes on unchanged, a keyword monitor searches the bytes before parsing anything. So:

* ``Batch`` holds the body and splits it into groups without parsing them (a varint scan per group).
* ``LazyLogGroup`` reads its header (Topic, Source, MachineUUID, LogTags) in one C pass over the group's
  top-level fields (``_logdecode.group_header``), or without the extension with a protobuf message that
  declares the Logs as opaque bytes: no log is decoded there.
  Its logs are parsed (also in C) only on ``.Logs`` / ``.logs()``.
* ``logs()`` builds dicts in C straight from the bytes (``_logdecode.c``) when that extension is built.
* ``SerializeToString()`` returns the received bytes, so the SDK's ``put_log_raw`` forwards a group
  without re-encoding, and ``.LogGroups``/``.Topic``/``.Logs``... read like the SDK's protobuf objects, so
  its processors run unchanged.

No I/O here.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Iterator, NamedTuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from .errors import WireError
from .loggroup import LogGroup, split_groups

__all__ = ["Batch", "Header", "LazyLogGroup", "FAST_DECODER", "read_header"]

try:  # the C decoder (src/sluice/wire/_logdecode.c), built at install where a compiler is available
    from ._logdecode import group_header as _group_header
    from ._logdecode import group_logs as _group_logs
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _group_header = _group_logs = None

FAST_DECODER = _group_logs is not None


def _header_message() -> Any:
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="sluice/sls/header.proto", package="sluice.sls.header",
                                             syntax="proto2")
    tag = fdp.message_type.add(name="LogTag")
    tag.field.add(name="Key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    tag.field.add(name="Value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    head = fdp.message_type.add(name="LogGroupHeader")
    # Logs (field 1) as opaque bytes: the runtime keeps a view of each log instead of copying it into the
    # unknown-field set, which measured ~2x faster for a 230 kB group (and no log is ever decoded here)
    head.field.add(name="Logs", number=1, type=F.TYPE_BYTES, label=F.LABEL_REPEATED)
    for name, number in (("Topic", 3), ("Source", 4), ("MachineUUID", 5)):
        head.field.add(name=name, number=number, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    head.field.add(name="LogTags", number=6, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                   type_name=".sluice.sls.header.LogTag")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("sluice.sls.header.LogGroupHeader"))


_Header = _header_message()


class Header(NamedTuple):
    """What a LogGroup says besides its logs; ``span`` is ``(start, end, n)`` of its Logs fields when they
    are one contiguous run (wire/pack.py), None when not known or not contiguous."""

    topic: Any
    source: Any
    machine_uuid: Any
    tags: list[tuple[Any, Any]]
    n_logs: int
    span: tuple[int, int, int] | None


def read_header(raw: bytes | memoryview) -> Header:
    """The header of one serialized LogGroup, no log decoded: in C when the extension is built (one
    prefetching pass, ~5x faster on a group not yet in cache), else with the protobuf runtime. Values are
    str, or bytes where not UTF-8, as the runtime gives proto2 strings."""
    try:
        if _group_header is not None:
            return Header(*_group_header(raw))
        h = _Header()
        h.ParseFromString(raw)
    except Exception as exc:  # noqa: BLE001 - ValueError from C; DecodeError or ValueError from upb
        raise WireError(f"malformed LogGroup: {exc}") from None
    return Header(h.Topic, h.Source, h.MachineUUID, [(t.Key, t.Value) for t in h.LogTags], len(h.Logs), None)


class LazyLogGroup:
    """One LogGroup of a batch. Header fields and logs are decoded on first use."""

    __slots__ = ("raw", "__dict__")

    def __init__(self, raw: bytes | memoryview) -> None:
        self.raw = raw

    @cached_property
    def header(self) -> Header:
        """Topic, source, machine id, tags, log count and where the logs lie, as received."""
        return read_header(self.raw)

    @cached_property
    def _full(self) -> Any:
        g = LogGroup()
        try:
            g.ParseFromString(self.raw)
        except Exception as exc:  # noqa: BLE001
            raise WireError(f"malformed LogGroup: {exc}") from None
        return g

    # --- the SDK's protobuf attribute names ---
    # Reads come from the cheap header until someone touches the logs or tags (or assigns a field); from
    # then on the fully parsed message is the truth, and SerializeToString re-encodes it, so changes made
    # the SDK way (``log_group.Topic += "_copied"``) are forwarded. Untouched groups forward their bytes.
    def _is_parsed(self) -> bool:
        return "_full" in self.__dict__

    @property
    def Topic(self) -> str:  # noqa: N802 - the SDK's name
        return str(self._full.Topic if self._is_parsed() else self.header.topic)

    @Topic.setter
    def Topic(self, value: str) -> None:  # noqa: N802
        self._full.Topic = value

    @property
    def Source(self) -> str:  # noqa: N802
        return str(self._full.Source if self._is_parsed() else self.header.source)

    @Source.setter
    def Source(self, value: str) -> None:  # noqa: N802
        self._full.Source = value

    @property
    def MachineUUID(self) -> str:  # noqa: N802
        return str(self._full.MachineUUID if self._is_parsed() else self.header.machine_uuid)

    @property
    def LogTags(self) -> Any:  # noqa: N802
        return self._full.LogTags

    @property
    def Logs(self) -> Any:  # noqa: N802
        return self._full.Logs

    def SerializeToString(self) -> bytes:  # noqa: N802 - what put_log_raw calls
        return bytes(self.payload)

    @property
    def payload(self) -> bytes | memoryview:
        """What to forward: the received bytes (no copy), or the re-encoding once the group was parsed."""
        return self._full.SerializeToString() if self._is_parsed() else self.raw

    # --- the native names ---
    @property
    def topic(self) -> str:
        return self.Topic

    @property
    def source(self) -> str:
        return self.Source

    @property
    def tags(self) -> dict[str, str]:
        if self._is_parsed():
            return {t.Key: t.Value for t in self._full.LogTags}
        return dict(self.header.tags)

    def __len__(self) -> int:
        """The number of logs, counted on the header view (no log is decoded) unless already parsed."""
        return len(self._full.Logs) if self._is_parsed() else self.header.n_logs

    def logs(self) -> list[dict[str, Any]]:
        """Each log as a dict of its fields, plus ``__time__``, ``__topic__``, ``__source__`` and
        ``__tag__:<key>``, as the SDK's flattened JSON looks. Decoded in C from the bytes when the extension
        is built (~4x faster), else (or once the group was changed through its protobuf attributes) from
        the parsed message."""
        if _group_logs is not None and not self._is_parsed():
            try:
                return _group_logs(self.raw)
            except ValueError as exc:
                raise WireError(str(exc)) from None
        return self._logs_from_message()

    def _logs_from_message(self) -> list[dict[str, Any]]:
        g = self._full
        base: dict[str, Any] = {"__topic__": g.Topic, "__source__": g.Source}
        for t in g.LogTags:
            base[f"__tag__:{t.Key}"] = t.Value
        out = []
        for log in g.Logs:
            d = {c.Key: c.Value for c in log.Contents}
            d["__time__"] = log.Time
            d.update(base)
            out.append(d)
        return out

    def contains(self, needle: bytes) -> bool:
        """Whether the raw bytes contain ``needle``: a cheap pre-filter before parsing (no false negatives
        for plain-text field values)."""
        return needle in bytes(self.raw) if isinstance(self.raw, memoryview) else needle in self.raw


class Batch:
    """One pull from one shard: ``count`` LogGroups in ``raw`` (a serialized LogGroupList), read from
    ``cursor``; ``next_cursor`` is where the next pull starts (and the checkpoint once it is handled)."""

    def __init__(self, *, project: str, logstore: str, shard: int, cursor: str, next_cursor: str, count: int,
                 raw: bytes, endpoint: str = "") -> None:
        self.project = project
        self.logstore = logstore
        self.shard = shard
        self.cursor = cursor
        self.next_cursor = next_cursor
        self.count = count
        self.raw = raw
        self.endpoint = endpoint

    @cached_property
    def LogGroups(self) -> list[LazyLogGroup]:  # noqa: N802 - the SDK's LogGroupList attribute
        return [LazyLogGroup(b) for b in split_groups(self.raw)]

    @property
    def groups(self) -> list[LazyLogGroup]:
        return self.LogGroups

    def __iter__(self) -> Iterator[LazyLogGroup]:
        return iter(self.LogGroups)

    def __len__(self) -> int:
        return self.count

    @property
    def raw_size(self) -> int:
        return len(self.raw)

    def logs(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for g in self.LogGroups:
            out.extend(g.logs())
        return out

    def log_count(self) -> int:
        return sum(len(g) for g in self.LogGroups)

    def __repr__(self) -> str:
        return (f"Batch({self.project}/{self.logstore} shard {self.shard}, {self.count} groups, "
                f"{len(self.raw)} bytes, next {self.next_cursor})")
