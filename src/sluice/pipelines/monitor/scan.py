"""The consumer side of the monitor: match a batch's logs against the rules and sum the matches per rule,
key, window bucket (log time) and LogGroup, ready to be written as one partial-count record.

Keyword rules (and field rules, on the field's name) first search a group's raw bytes: a group that
cannot match is never parsed. The shard's watermark needs the log time of every group, matching or not:
it is read from the first log of each group, straight from the bytes (a few varints, no parse); a group's
logs lie within seconds of each other, and a watermark that is a little low only makes a window close
a little later.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ...wire.batch import Batch, LazyLogGroup
from ..config import Monitor, Rule

__all__ = ["Scanner", "first_log_time", "log_time"]


class _CompiledRule:
    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.keyword = rule.keyword.encode() if rule.keyword is not None else None
        self.regex = re.compile(rule.regex) if rule.regex is not None else None
        self.field_name = rule.field.encode() if rule.field is not None else None
        self.step = int(rule.step)

    def prefilter(self, group: LazyLogGroup) -> bool:
        """False when the group surely holds no match: the keyword, or the field's name, is absent from its
        raw bytes (both appear verbatim in the protobuf), so the group need not be parsed."""
        if self.keyword is not None and not group.contains(self.keyword):
            return False
        return self.field_name is None or group.contains(self.field_name)

    def matches(self, log: dict[str, Any]) -> bool:
        f = self.rule.field
        if f is not None:
            value = log.get(f)
            if value is None:
                return False
            values = [str(value)]
        else:
            values = [str(v) for k, v in log.items() if not k.startswith("__")]
        if self.regex is not None:
            return any(self.regex.search(v) for v in values)
        kw = self.rule.keyword or ""
        return any(kw in v for v in values)


def _varint(buf: Any, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _skip(buf: Any, pos: int, wire: int) -> int:
    if wire == 0:
        return _varint(buf, pos)[1]
    if wire == 1:
        return pos + 8
    if wire == 2:
        n, pos = _varint(buf, pos)
        return pos + n
    if wire == 5:
        return pos + 4
    raise ValueError(f"wire type {wire}")


def first_log_time(raw: Any) -> float:
    """``Time`` of the group's first log (LogGroup field 1 -> Log field 1), from the bytes; -inf if none."""
    try:
        pos, end = 0, len(raw)
        while pos < end:
            key, pos = _varint(raw, pos)
            if key == 0x0A:  # field 1, length-delimited: a Log
                n, pos = _varint(raw, pos)
                stop = pos + n
                while pos < stop:
                    k, pos = _varint(raw, pos)
                    if k == 0x08:  # Log.Time
                        return float(_varint(raw, pos)[0])
                    pos = _skip(raw, pos, k & 7)
                return -math.inf
            pos = _skip(raw, pos, key & 7)
    except (IndexError, ValueError):
        pass
    return -math.inf


def log_time(log: dict[str, Any], group: LazyLogGroup, index: int) -> float:
    """A log's time in seconds: ``__time__`` plus its nanosecond part, from a ``__time_ns_part__`` field or
    the protobuf's ``Time_ns`` (read from the parsed group; only groups with a match get here)."""
    t = float(int(log.get("__time__", 0) or 0))
    ns = log.get("__time_ns_part__")
    if ns is None:
        try:
            ns = group.Logs[index].Time_ns
        except (IndexError, AttributeError, ValueError):
            ns = 0
    try:
        return t + int(ns) / 1e9
    except (TypeError, ValueError):
        return t


class Scanner:
    """Matches a batch; returns entries ``[rule, key, bucket, group offset, n, tmin, tmax, samples]`` (per
    rule, key, bucket and group) and the batch's watermark (the latest first-log time of its groups)."""

    def __init__(self, spec: Monitor) -> None:
        self.rules = list(enumerate(_CompiledRule(r) for r in spec.rules))
        self.samples = spec.samples
        self.matched = 0

    def scan(self, batch: Batch) -> tuple[list[list[Any]], float]:
        entries: dict[tuple[int, str, int, int], list[Any]] = {}
        wm = -math.inf
        for off, group in enumerate(batch):
            t0 = first_log_time(group.raw)
            if t0 > wm:
                wm = t0
            candidates = [(i, r) for i, r in self.rules if r.prefilter(group)]
            if not candidates:
                continue
            for index, log in enumerate(group.logs()):
                for i, r in candidates:
                    if not r.matches(log):
                        continue
                    self.matched += 1
                    t = log_time(log, group, index)
                    if t > wm:
                        wm = t
                    key = str(log.get(r.rule.group_by, "")) if r.rule.group_by else ""
                    bucket = int(t // r.step) * r.step
                    e = entries.get((i, key, bucket, off))
                    if e is None:
                        e = entries[(i, key, bucket, off)] = [0, t, t, []]
                    e[0] += 1
                    e[1] = min(e[1], t)
                    e[2] = max(e[2], t)
                    if len(e[3]) < self.samples:
                        e[3].append([t, log])
        return [[i, key, bucket, off, *v] for (i, key, bucket, off), v in entries.items()], wm
