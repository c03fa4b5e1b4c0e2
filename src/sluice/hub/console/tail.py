"""The console's live tail: read what arrived on a logstore's shards since a cursor, filter it, say where to go on.

The cursor is the console's own, not an SLS cursor: ``shard:seq`` pairs joined by commas, one per shard, so one
string carries a position in every shard and the browser just sends back what it got. A shard missing from a
cursor (a child created by a split since) is read from its oldest kept group: all of it is new to the reader.

Each poll reads at most ``MAX_GROUPS``/``MAX_BYTES`` per shard (like one PullLogs), so a busy logstore costs the
same per poll as a quiet one; if more logs match than a page shows, the oldest are dropped and counted, which is
what a tail is for. Reading and filtering run on the hub's reader executor (:func:`read_tail` is blocking);
parsing the request runs on the event loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ...wire import errors as E
from ...wire.loggroup import parse_group, split_groups
from ..store.base import ShardMeta
from ..store.sqlite import SQLiteStore

__all__ = ["DEFAULT_BACK", "TailResult", "format_cursor", "make_filter", "parse_cursor", "read_tail"]

DEFAULT_BACK = 20  # LogGroups per shard shown when the tail opens, so a page is not empty until the next write
MAX_BACK = 1000
MAX_GROUPS = 200
MAX_BYTES = 512 << 10
MAX_LOGS = 500
MAX_PATTERN = 200
_MAX_SHARDS = 4096


@dataclass(frozen=True)
class TailResult:
    cursor: str
    logs: list[dict[str, Any]]
    dropped: int  # matching logs not returned (more than MAX_LOGS in one poll)
    scanned: int  # logs looked at


def parse_cursor(text: str) -> dict[int, int]:
    """``"0:12,1:40"`` -> {0: 12, 1: 40}; anything else is a ParameterInvalid naming the cursor."""
    out: dict[int, int] = {}
    if not text:
        return out
    items = text.split(",")
    if len(items) > _MAX_SHARDS:
        raise E.ParameterInvalid("tail cursor names too many shards")
    for item in items:
        sid, sep, seq = item.partition(":")
        if not sep or not sid.isdigit() or not seq.isdigit() or len(sid) > 9 or len(seq) > 18:
            raise E.ParameterInvalid(f"tail cursor {text[:80]!r} is not valid: expected shard:seq pairs")
        out[int(sid)] = int(seq)
    return out


def format_cursor(positions: dict[int, int]) -> str:
    return ",".join(f"{sid}:{seq}" for sid, seq in sorted(positions.items()))


def make_filter(text: str, is_regex: bool) -> Callable[[str], bool] | None:
    """A predicate over a log's text line: a case-insensitive keyword, or a regular expression (searched)."""
    if not text:
        return None
    if len(text) > MAX_PATTERN:
        raise E.ParameterInvalid(f"the filter is longer than {MAX_PATTERN} characters")
    if is_regex:
        try:
            pattern = re.compile(text)
        except re.error as exc:
            raise E.ParameterInvalid(f"the filter is not a valid regular expression: {exc}") from None
        return lambda line: pattern.search(line) is not None
    needle = text.casefold()
    return lambda line: needle in line.casefold()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _logs_of(raw: bytes, shard_id: int) -> list[dict[str, Any]]:
    try:
        group = parse_group(raw)
    except E.WireError:  # stored as received; a group the parser refuses is shown as such, not skipped silently
        return [{"time": 0, "shard": shard_id, "topic": "", "source": "", "tags": {},
                 "fields": [["(unreadable LogGroup)", f"{len(raw)} bytes"]]}]
    tags = {_text(t.Key): _text(t.Value) for t in group.LogTags}
    out = []
    for log in group.Logs:
        out.append({"time": log.Time, "shard": shard_id, "topic": _text(group.Topic), "source": _text(group.Source),
                    "tags": tags, "fields": [[_text(c.Key), _text(c.Value)] for c in log.Contents]})
    return out


def _line(entry: dict[str, Any]) -> str:
    """The text a filter is matched against: fields as key=value, then topic, source and tags."""
    parts = [f"{k}={v}" for k, v in entry["fields"]]
    parts += [entry["topic"], entry["source"]] + [f"{k}={v}" for k, v in entry["tags"].items()]
    return " ".join(parts)


def read_tail(store: SQLiteStore, shards: list[ShardMeta], positions: dict[int, int] | None, back: int,
              match: Callable[[str], bool] | None) -> TailResult:
    """Blocking (reader thread). ``positions`` None: start ``back`` groups before each shard's end."""
    found: list[tuple[int, int, int, dict[str, Any]]] = []
    nxt: dict[int, int] = {}
    scanned = 0
    for shard in shards:
        end = shard.end_seq
        if positions is None:
            start = max(shard.begin_seq, end - back)
        else:
            start = max(shard.begin_seq, positions.get(shard.shard_id, shard.begin_seq))
        start = min(start, end)
        result = store.read(shard, start, MAX_GROUPS, MAX_BYTES, end)
        seq = start
        for raw in split_groups(result.body):
            for i, entry in enumerate(_logs_of(bytes(raw), shard.shard_id)):
                scanned += 1
                if match is None or match(_line(entry)):
                    found.append((entry["time"], seq, i, entry))
            seq += 1
        nxt[shard.shard_id] = max(start, result.next_seq) if result.count else start
    found.sort(key=lambda item: (item[0], item[3]["shard"], item[1], item[2]))
    dropped = max(0, len(found) - MAX_LOGS)
    return TailResult(format_cursor(nxt), [item[3] for item in found[dropped:]], dropped, scanned)
