"""Log -> event: which fields a forwarded event carries, and its time. Pure, no I/O.

Every forwarded log becomes one event: its own fields (all, or the selected ones), plus the group's
``__topic__``, ``__source__`` and tags as ``__tag__:<key>`` (the SDK's flattened names, as ``Batch.logs()``
gives them), and the log's own time (``Time`` plus ``Time_ns`` when the producer sent it), never the time
of sending. The sinks format events; this module only decides their content.

Speed matters here (every log of the job passes through): fields are read once per log straight from the
parsed protobuf, the group's part is built once per group, and JSON is written by the C encoder of the
standard library, set up once instead of per call as ``json.dumps`` does.
"""

from __future__ import annotations

import json
import json.encoder
from typing import Any, Callable, Iterator

from ...wire.batch import LazyLogGroup

__all__ = ["FieldSelection", "group_meta", "json_encoder", "log_events"]


def json_encoder() -> Callable[[Any], str]:
    """A compact, UTF-8 (not \\u-escaped) JSON encoder for dicts of strings; control characters are
    escaped, so an encoded event never contains a raw newline (newline framing stays safe)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the plain encoder, same output
        enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
        return enc.encode
    c = make(None, None, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    return lambda obj: c(obj, 0)[0]  # type: ignore[no-any-return]


class FieldSelection:
    """``fields`` (keep only these) and ``exclude_fields`` (drop these), applied to the log's own fields.
    The group's topic, source and tags are always kept: a SIEM needs to know where an event came from."""

    def __init__(self, include: list[str] | None = None, exclude: list[str] | None = None) -> None:
        self.include = tuple(dict.fromkeys(include)) if include is not None else None
        self.exclude = tuple(exclude or ())
        self.is_all = self.include is None and not self.exclude

    def apply(self, fields: dict[str, str]) -> dict[str, str]:
        if self.include is not None:
            fields = {k: fields[k] for k in self.include if k in fields}
        for k in self.exclude:
            fields.pop(k, None)
        return fields


def group_meta(group: LazyLogGroup) -> dict[str, str]:
    """The group's part of every event: topic, source and tags. """
    meta = {"__topic__": group.Topic, "__source__": group.Source}
    for t in group.LogTags:
        meta[f"__tag__:{t.Key}"] = t.Value
    return meta


def log_events(group: LazyLogGroup, meta: dict[str, str],
               selection: FieldSelection) -> Iterator[tuple[int, int, dict[str, str]]]:
    """(seconds, nanoseconds, selected fields + ``meta``) per log of a group, in order: what every sink
    turns into one event."""
    if selection.is_all:
        for entry in group.Logs:
            fields = {c.Key: c.Value for c in entry.Contents}
            fields.update(meta)
            yield entry.Time, entry.Time_ns, fields
    else:
        for entry in group.Logs:
            fields = selection.apply({c.Key: c.Value for c in entry.Contents})
            fields.update(meta)
            yield entry.Time, entry.Time_ns, fields
