"""What an SDK-style processor's ``process(log_groups, tracker)`` receives: objects shaped like the official
SDK's protobuf ``LogGroupList`` / ``LogGroup`` / ``Log`` / ``Content``, built from the pulled bytes.

Why not the protobuf runtime: a program written for the SDK walks ``log_group.Logs[i].Contents[j].Key``;
on the runtime every step of that walk creates a wrapper or a new str, and the walk was the whole cost of
seed 002's handler. Here ``.Logs`` is a read-only C sequence over the group's bytes (``_sdklogs.c``) whose
small read-only Log/Content objects (attributes are slot reads, key strings shared between logs) are built
as the handler reads them, and refilled in place when it has let go of them; the header (Topic, Source,
LogTags) comes from the cheap header scan of ``wire.batch`` and no log is decoded for a handler that only
routes by topic and forwards (seed 004). ``SerializeToString()`` returns the received bytes.

Without the extension (no compiler at install), ``.Logs`` is the protobuf runtime's, as before: same
values, slower. Editing a group (``log_group.Topic = ...``) parses it with the runtime, and from then on the
group is that message (its ``.Logs`` too), so an edited group re-encodes with the edit. Any other protobuf
method (``ListFields``, ``HasField``, ``ByteSize``...) is answered by the parsed message.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Iterator

from ..wire.batch import Batch, LazyLogGroup
from ..wire.loggroup import LogGroupList as _PBLogGroupList
from ..wire.loggroup import split_groups

try:  # the C decoder (src/sluice/client/_sdklogs.c), built at install where a compiler is available
    from ._sdklogs import Content as _Content
    from ._sdklogs import Logs as _decode_logs  # Logs(buf): the group's logs, built when read
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _Content = _decode_logs = None

__all__ = ["SDKLogGroup", "SDKLogGroupList", "FAST_OBJECTS", "flatten"]

FAST_OBJECTS = _decode_logs is not None


class _Tag:
    """A LogTag as the protobuf runtime shows it (used only without the extension's Content type)."""

    __slots__ = ("Key", "Value")

    def __init__(self, Key: Any = "", Value: Any = "") -> None:  # noqa: N803 - the SDK's names
        self.Key, self.Value = Key, Value

    def __repr__(self) -> str:
        return f"LogTag(Key={self.Key!r}, Value={self.Value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Tag) and (self.Key, self.Value) == (other.Key, other.Value)


_TagType: Any = _Content if _Content is not None else _Tag


class SDKLogGroup(LazyLogGroup):
    """One LogGroup of a pull, read the SDK's way (``.Topic``, ``.Source``, ``.LogTags``, ``.Logs``...)."""

    __slots__ = ()

    @property
    def Logs(self) -> Any:  # noqa: N802 - the SDK's name
        if self._is_parsed() or _decode_logs is None:
            return self._full.Logs
        d = self.__dict__
        logs = d.get("_logs")
        if logs is None:
            try:
                logs = d["_logs"] = _decode_logs(self.raw)
            except ValueError as exc:
                from ..wire.errors import WireError
                raise WireError(str(exc)) from None
        return logs

    @property
    def LogTags(self) -> Any:  # noqa: N802
        if self._is_parsed():
            return self._full.LogTags
        d = self.__dict__
        tags = d.get("_tags")
        if tags is None:
            tags = d["_tags"] = [_TagType(k, v) for k, v in self.header.tags]
        return tags

    @property
    def Reserved(self) -> str:  # noqa: N802
        return str(self._full.Reserved)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_full", "header"):
            raise AttributeError(name)
        return getattr(self._full, name)  # ListFields, HasField, ByteSize...: the parsed message answers

    def __repr__(self) -> str:
        return f"LogGroup(Topic={self.Topic!r}, Source={self.Source!r}, {len(self)} logs)"


class SDKLogGroupList(Batch):
    """A pull as the SDK hands it to ``process``: ``.LogGroups`` of :class:`SDKLogGroup`; also a ``Batch``
    (``.shard``, ``.next_cursor``, ``.logs()``...)."""

    @classmethod
    def of(cls, batch: Batch) -> "SDKLogGroupList":
        return cls(project=batch.project, logstore=batch.logstore, shard=batch.shard, cursor=batch.cursor,
                   next_cursor=batch.next_cursor, count=batch.count, raw=batch.raw, endpoint=batch.endpoint)

    @cached_property
    def LogGroups(self) -> list[SDKLogGroup]:  # type: ignore[override]  # noqa: N802
        return [SDKLogGroup(b) for b in split_groups(self.raw)]

    def __iter__(self) -> Iterator[SDKLogGroup]:  # type: ignore[override]
        return iter(self.LogGroups)

    def __getitem__(self, i: int) -> SDKLogGroup:
        return self.LogGroups[i]

    def SerializeToString(self) -> bytes:  # noqa: N802
        return bytes(self.raw)

    @cached_property
    def _message(self) -> Any:
        m = _PBLogGroupList()
        m.ParseFromString(self.raw)
        return m

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_message":
            raise AttributeError(name)
        return getattr(self._message, name)


def flatten(log_groups: Any, time_as_str: bool | None = None, decode_bytes: bool | None = None) -> list[dict[str, Any]]:
    """The SDK's ``PullLogResponse.loggroups_to_flattern_list`` (what ``ConsumerJsonProcessorBase.process``
    receives), over the fast objects: same keys, same order, same values (including the SDK's
    ``__time_ns_part__``, which it builds as a 1-tuple)."""
    out: list[dict[str, Any]] = []
    for group in log_groups.LogGroups:
        tags = {f"__tag__:{t.Key}": t.Value for t in group.LogTags}
        topic, source = group.Topic, group.Source
        for log in group.Logs:
            item: dict[str, Any] = {"__time__": str(log.Time) if time_as_str else log.Time,
                                    "__topic__": topic, "__source__": source}
            if log.Time_ns:
                item["__time_ns_part__"] = (str(log.Time_ns) if time_as_str else log.Time_ns,)
            item.update(tags)
            if decode_bytes:
                for c in log.Contents:
                    item[_b2u(c.Key)] = _b2u(c.Value)
            else:
                for c in log.Contents:
                    item[c.Key] = c.Value
            out.append(item)
    return out


def _b2u(value: Any) -> Any:
    return value.decode("utf8", "ignore") if isinstance(value, bytes) else value
