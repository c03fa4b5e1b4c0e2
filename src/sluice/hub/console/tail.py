"""The console's live tail: read what arrived on a logstore's shards since a cursor, filter it, say where to go on.

The cursor is the console's own, not an SLS cursor: ``shard:seq`` pairs joined by commas, one per shard, so one
string carries a position in every shard and the browser just sends back what it got. A shard missing from a
cursor (a child created by a split since) is read from its oldest kept group: all of it is new to the reader.

Bounded work per poll (issue #17: one poll on a 64-shard logstore took 1.6 GB and 15 s; one regex froze the hub):

* Patterns are RE2's (linear time in the text, bounded memory): no pattern can backtrack for seconds or hours.
  Python's ``re`` is never given a user's pattern. Compiling one can still take ~0.1 s (a pattern RE2 refuses
  as too large), so the caller compiles it on the reader executor, inside the scan slot, not on the event loop.
* One poll scans at most ``MAX_SCAN_BYTES`` of stored LogGroups in all (each shard gets an even slice, at least
  ``MIN_SLICE``, from a start shard that rotates with the cursor), and stops after ``MAX_SCAN_SECONDS``. It
  reads ``SLICE_BYTES`` at a time and decodes one LogGroup at a time, keeping only the newest ``MAX_LOGS``
  matches (a heap), so memory is bounded by the slice and the page, not by the logstore. Where it stopped is in
  the cursor: the next poll goes on from there, so nothing is skipped, only shown later.
* The caller holds ``RESERVE_BYTES`` of the hub's in-flight byte budget (hub/limits.py) while a poll runs, so
  console polls and API request bodies share one bound on what the hub holds, and at most
  ``MAX_CONCURRENT_SCANS`` polls scan at once, so polls never occupy every reader thread PullLogs needs.

If more logs match than a page shows, the oldest are dropped and counted, which is what a tail is for. Reading
and filtering run on the hub's reader executor (:func:`read_tail` is blocking); parsing the request runs on the
event loop.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass
from typing import Any, Callable

import re2

from ...wire import errors as E
from ...wire.loggroup import parse_group, split_groups
from ..store.base import ShardMeta
from ..store.base import Store

__all__ = ["DEFAULT_BACK", "MAX_CONCURRENT_SCANS", "RESERVE_BYTES", "TailResult", "format_cursor", "make_filter", "parse_cursor",
           "read_tail"]

DEFAULT_BACK = 20  # LogGroups per shard shown when the tail opens, so a page is not empty until the next write
MAX_BACK = 1000
MAX_GROUPS = 200  # LogGroups per shard per poll, like one PullLogs
MAX_LOGS = 500  # matches returned per poll (the newest)
MAX_PATTERN = 200
MAX_SCAN_BYTES = 4 << 20  # stored LogGroup bytes one poll scans, all shards together
MIN_SLICE = 16 << 10  # a shard's slice of that, at least (so many shards still make progress)
SLICE_BYTES = 256 << 10  # read from the store at a time
MAX_SCAN_SECONDS = 0.5  # a poll stops scanning after this long and goes on at the next poll
RESERVE_BYTES = 4 * MAX_SCAN_BYTES  # what a poll holds of the in-flight budget: the bytes and their decoded logs
MAX_CONCURRENT_SCANS = 2  # polls scanning at once, hub-wide: the reader threads (4) are PullLogs' too
PATTERN_MEMORY = 8 << 20  # RE2's memory budget for one compiled filter
_MAX_SHARDS = 4096

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a user's bad pattern is an answer to the user, not a line on the hub's stderr
_RE2_OPTIONS.max_mem = PATTERN_MEMORY


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
            pattern = re2.compile(text, options=_RE2_OPTIONS)
        except re2.error as exc:
            detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise E.ParameterInvalid(f"the filter is not a valid regular expression (RE2 syntax: no backreferences "
                                     f"or lookaround): {detail}") from None
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


def _slices(shards: list[ShardMeta], positions: dict[int, int] | None) -> list[tuple[ShardMeta, int]]:
    """Shards in scan order with their byte slices: an even share of ``MAX_SCAN_BYTES`` (at least ``MIN_SLICE``),
    starting at a shard that moves with the cursor, so when the budget runs out before the last shard, the
    next poll starts elsewhere and every shard makes progress."""
    if not shards:
        return []
    share = max(MIN_SLICE, MAX_SCAN_BYTES // len(shards))
    start = sum(positions.values()) % len(shards) if positions else 0
    return [(shard, share) for shard in shards[start:] + shards[:start]]


def read_tail(store: Store, shards: list[ShardMeta], positions: dict[int, int] | None, back: int,
              match: Callable[[str], bool] | None, *, clock: Callable[[], float] = time.monotonic) -> TailResult:
    """Blocking (reader thread). ``positions`` None: start ``back`` groups before each shard's end.

    Work is bounded (module docstring): bytes scanned, time, and the matches kept. A shard not reached stays
    where it was; one cut short goes on from the first LogGroup not scanned."""
    deadline = clock() + MAX_SCAN_SECONDS
    budget = MAX_SCAN_BYTES
    kept: list[tuple[tuple[int, int, int, int], int, dict[str, Any]]] = []  # min-heap: the oldest match first
    matched = 0
    nxt: dict[int, int] = {}
    scanned = 0
    tie = 0
    for shard, share in _slices(shards, positions):
        end = shard.end_seq
        seq = _start_of(shard, positions, back)
        share = min(share, budget)
        groups_left = MAX_GROUPS
        while share > 0 and groups_left > 0 and seq < end and clock() < deadline:
            result = store.read(shard, seq, groups_left, min(SLICE_BYTES, share), end)
            if not result.count:
                break
            share -= len(result.body)
            budget -= len(result.body)
            groups_left -= result.count
            cut_short = False
            for raw in split_groups(result.body):
                for i, entry in enumerate(_logs_of(bytes(raw), shard.shard_id)):
                    scanned += 1
                    if match is None or match(_line(entry)):
                        matched += 1
                        tie += 1
                        item = ((entry["time"], shard.shard_id, seq, i), tie, entry)
                        if len(kept) < MAX_LOGS:
                            heapq.heappush(kept, item)
                        elif item[0] > kept[0][0]:
                            heapq.heapreplace(kept, item)
                seq += 1
                if clock() >= deadline:  # checked per LogGroup: one slice can take long with a costly pattern
                    cut_short = True
                    break
            if not cut_short:
                seq = max(seq, result.next_seq)
        nxt[shard.shard_id] = seq  # every shard is in the scan order: one not reached keeps its position
    kept.sort(key=lambda item: item[0])
    return TailResult(format_cursor(nxt), [item[2] for item in kept], matched - len(kept), scanned)


def _start_of(shard: ShardMeta, positions: dict[int, int] | None, back: int) -> int:
    """Where a shard's scan starts (also where it stays when a poll did not reach it)."""
    end = shard.end_seq
    if positions is None:
        return min(max(shard.begin_seq, end - back), end)
    return min(max(shard.begin_seq, positions.get(shard.shard_id, shard.begin_seq)), end)
