"""Monitor rules: match logs, count matches per rule (and key) over a sliding window, decide when to alert.

Keyword rules first search the group's raw bytes (C speed); only groups that contain the keyword are
parsed. Regex rules on a field parse the group's logs (in C) and look at that one field. Pure: the
caller passes the clock, so windows and dedup are testable without sleeping.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ...wire.batch import Batch, LazyLogGroup
from ..config import Monitor, Rule

__all__ = ["Alert", "RuleEngine"]


@dataclass
class Alert:
    rule: str
    key: str
    project: str
    logstore: str
    shard: int
    count: int
    threshold: int
    window: float
    samples: list[dict[str, Any]]
    first_time: int
    last_time: int
    endpoint: str = ""
    merged: int = 1  # alerts folded into this one by a rate limit

    def title(self) -> str:
        return f"[sluice] {self.rule}: {self.count} matches in {self.window:g}s on {self.project}/{self.logstore}"

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "key": self.key, "endpoint": self.endpoint, "project": self.project,
                "logstore": self.logstore, "shard": self.shard, "count": self.count, "threshold": self.threshold,
                "window_seconds": self.window, "from": self.first_time, "to": self.last_time,
                "samples": self.samples, "merged": self.merged}


class _CompiledRule:
    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.keyword = rule.keyword.encode() if rule.keyword is not None else None
        self.regex = re.compile(rule.regex) if rule.regex is not None else None
        self.field_name = rule.field.encode() if rule.field is not None else None

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


@dataclass
class _Window:
    times: deque[float] = field(default_factory=deque)
    samples: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10))
    first_time: int = 0
    last_time: int = 0


class RuleEngine:
    """Counts matches per (rule, key) in a sliding window; returns alerts that are due (deduplicated)."""

    def __init__(self, spec: Monitor) -> None:
        self.rules = [_CompiledRule(r) for r in spec.rules]
        self.dedup = spec.dedup
        self.samples = spec.samples
        self._windows: dict[tuple[str, str], _Window] = {}
        self._last_alert: dict[tuple[str, str], float] = {}
        self.matched = 0

    def scan(self, batch: Batch, now: float) -> list[Alert]:
        alerts: list[Alert] = []
        for group in batch:
            candidates = [r for r in self.rules if r.prefilter(group)]
            if not candidates:
                continue
            for log in group.logs():
                for r in candidates:
                    if r.matches(log):
                        self.matched += 1
                        alert = self._count(r, log, batch, now)
                        if alert is not None:
                            alerts.append(alert)
        return alerts

    def _count(self, r: _CompiledRule, log: dict[str, Any], batch: Batch, now: float) -> Alert | None:
        rule = r.rule
        key = str(log.get(rule.group_by, "")) if rule.group_by else ""
        w = self._windows.setdefault((rule.name, key), _Window())
        w.times.append(now)
        while w.times and w.times[0] < now - rule.window:
            w.times.popleft()
        t = int(log.get("__time__", 0) or 0)
        if len(w.times) == 1 or not w.first_time:
            w.first_time = t
        w.last_time = max(w.last_time, t)
        w.samples.append(log)
        if len(w.times) < rule.threshold:
            return None
        last = self._last_alert.get((rule.name, key))
        if last is not None and now - last < self.dedup:
            return None
        self._last_alert[(rule.name, key)] = now
        alert = Alert(rule.name, key, batch.project, batch.logstore, batch.shard, len(w.times), rule.threshold,
                      rule.window, list(w.samples)[-self.samples:], w.first_time, w.last_time, batch.endpoint)
        w.samples.clear()
        return alert
