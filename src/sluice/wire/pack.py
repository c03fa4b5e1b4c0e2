"""Packing LogGroups for PutLogs: consecutive groups that differ only in their logs become one request body.

Why: forwarding a pulled group as it is (dispatch, ``put_log_group(group.raw)``) costs one PutLogs per group,
and with groups of ~1,000 logs the per-request work (HTTP, signing, a round trip) was about a third of a
dispatcher's CPU (bench/consumer.py). A LogGroup on the wire is a run of ``Logs`` fields plus a few header
fields (topic, source, tags); protobuf concatenates repeated fields, so ``header + logs_1 + logs_2 + ...``
*is* the LogGroup holding every log of the packed groups, in order, with that header.

Groups are packed only when their bytes outside the ``Logs`` run are byte-identical: same topic, source,
machine id, tags and any field we do not know, so nothing about a group is changed or lost by packing. A
request stays within SLS's published PutLogs limits (4,096 logs, 3 MB; docs: sls-api.md section 10); a group
over either limit on its own is sent alone, as before.

Finding the ``Logs`` run needs the C extension (``_logdecode.logs_span``: a scan of the group's top-level
fields, a few microseconds). Without it every group is its own request: a Python scan of 1,000 fields would
cost more than the request it saves. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Union

from .errors import WireError

try:
    from ._logdecode import logs_span as _logs_span
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _logs_span = None

__all__ = ["Buffer", "PackedBody", "pack_groups", "MAX_PUT_LOGS", "MAX_PUT_BYTES"]

MAX_PUT_LOGS = 4096
MAX_PUT_BYTES = 3_000_000

Buffer = Union[bytes, bytearray, memoryview]


@dataclass
class PackedBody:
    """One PutLogs body: ``b"".join(parts)`` is a serialized LogGroup of ``groups`` packed groups, ``size``
    bytes and ``logs`` logs (-1 for a group sent alone unscanned)."""

    parts: list[Buffer] = field(default_factory=list)
    size: int = 0
    logs: int = 0
    groups: int = 0

    def body(self) -> bytes:
        return self.parts[0] if len(self.parts) == 1 and isinstance(self.parts[0], bytes) else b"".join(self.parts)


def _bytes_and_span(group: Any) -> tuple[Buffer, tuple[int, int, int] | None]:
    """A group's serialized bytes (bytes-like as given; a LazyLogGroup's received bytes, or its re-encoding
    once it was changed through its protobuf attributes) and where its logs lie, if packable."""
    if not isinstance(group, (bytes, bytearray, memoryview)):
        raw = group.payload
        if raw is group.raw and _logs_span is not None:
            return raw, group.header.span  # found by the pass that read its header: no second scan
        group = raw
    if _logs_span is None:
        return group, None
    try:
        return group, _logs_span(group)
    except ValueError as exc:
        raise WireError(str(exc)) from None


def pack_groups(groups: Iterable[Any], *, max_logs: int = MAX_PUT_LOGS,
                max_bytes: int = MAX_PUT_BYTES) -> Iterator[PackedBody]:
    """PutLogs bodies for ``groups`` (serialized LogGroups or LazyLogGroups), in order; consecutive groups
    with identical non-log bytes share a body while it stays within ``max_logs`` and ``max_bytes``."""
    current: PackedBody | None = None
    key: tuple[bytes, bytes] | None = None
    tail: Buffer = b""  # the current body's header bytes after its logs run
    for group in groups:
        raw, span = _bytes_and_span(group)
        if span is None:  # cannot pack (no extension, or logs not in one run): a body of its own
            if current is not None:
                current.parts.append(tail)
                yield current
                current, key = None, None
            yield PackedBody([raw], len(raw), -1, 1)
            continue
        start, end, n = span
        mv = memoryview(raw)
        gkey = (bytes(mv[:start]), bytes(mv[end:]))
        if (current is not None and gkey == key and current.logs + n <= max_logs
                and current.size + (end - start) <= max_bytes):
            current.parts.append(mv[start:end])
            current.size += end - start
            current.logs += n
            current.groups += 1
            continue
        if current is not None:
            current.parts.append(tail)
            yield current
        current, key = PackedBody([mv[:end]], end, n, 1), gkey
        tail = mv[end:]
        current.size += len(tail)
    if current is not None:
        current.parts.append(tail)
        yield current
