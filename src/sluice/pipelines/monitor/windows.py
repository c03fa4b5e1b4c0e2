"""The monitor's evaluator: event-time windows, watermarks and log-time dedup, as a pure state machine.

Why pure: a job may run as many processes, and the evaluator's holder may crash; its state must be a
function of the records it read from the state logstore (monitor/state.py), in their order, and nothing
else (no clock, no I/O), so a successor that loads a snapshot and reads the records after it arrives at
exactly the same windows, decisions and alerts.

Semantics (docs/pipelines.md, "Guarantees"):

* Windows are in log time (``__time__``, plus ``__time_ns_part__`` for from/to and sample order), aligned
  to the epoch: window ``s`` covers ``[s, s + window)`` with ``s`` a multiple of the rule's ``step``
  (``slide``, default the window: tumbling). Counts are kept per bucket of ``step`` seconds.
* A window *crosses* when its count reaches the threshold; the alert is taken as of that moment (count,
  from/to of the counted matches, samples: the earliest in log time).
* The watermark of a shard is the latest log time seen on it (or, while its consumer is caught up, the
  wall-clock time of that report); the job's watermark is the minimum over every read-write shard of
  every source. A window is *closed* when the watermark passed its end by ``lateness``; a match for a
  closed window is late: counted in ``late`` and dropped.
* Dedup in log time: a crossed window alerts unless an alert of the same rule and key fired for a window
  starting less than ``dedup`` seconds before it. When that depends on earlier windows that could still
  cross (``dedup`` > ``step``), the decision waits until the previous window closed; decisions are taken
  in window order, so they equal a brute-force pass over the windows sorted by start.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from ..config import Monitor

__all__ = ["Evaluator", "alert_id", "NEG_INF"]

NEG_INF = -math.inf
MAX_OPEN_KEYS = 100_000  # per rule: group_by values with open windows; matches of further keys are dropped


def alert_id(group: str, rule: str, key: str, window_start: int) -> str:
    """The alert's identity: the same rule, key and window always give the same id (a redelivery is
    recognisable by it, whichever process or attempt sent it)."""
    return hashlib.sha256(f"{group}\0{rule}\0{key}\0{window_start}".encode()).hexdigest()[:24]


def _sample_key(s: list[Any]) -> tuple[Any, ...]:
    return (s[0], s[1], s[2])  # (log time, "src|shard", seq): a total order independent of arrival


class Evaluator:
    """Applies state records in order; ``apply_*`` return the alerts decided to fire (as dicts)."""

    def __init__(self, spec: Monitor, group: str) -> None:
        self.spec = spec
        self.group = group
        self.rules = spec.rules
        self.dedup = float(spec.dedup)
        self.lateness = float(spec.lateness)
        self.nsamples = spec.samples
        # (rule index, key, bucket start) -> [count, tmin, tmax, samples]; a sample is [t, sid, seq, log]
        self.buckets: dict[tuple[int, str, int], list[Any]] = {}
        self.crossed: dict[tuple[int, str], dict[int, dict[str, Any]]] = {}  # undecided crossed windows
        self.decided: dict[tuple[int, str, int], bool] = {}  # window -> fired (kept until it closes)
        self.last_fired: dict[tuple[int, str], int] = {}
        self.wm: dict[str, float] = {}  # "src|shard" -> watermark
        self.applied: dict[str, int] = {}  # "src|shard" -> next group sequence number not yet applied
        self.shards: dict[str, list[int]] = {}  # src -> read-write shards (from "shards" records)
        self.late = 0
        self.overflow = 0  # matches dropped because their rule had MAX_OPEN_KEYS keys with open windows
        self._keys: dict[int, dict[str, int]] = {}  # rule -> key -> open buckets
        self._watermark = NEG_INF
        self._collected = NEG_INF

    # ------------------------------------------------------------------ watermark
    def watermark(self) -> float:
        return self._watermark

    def _recompute_watermark(self) -> None:
        if not self.shards:
            self._watermark = NEG_INF
            return
        self._watermark = min((self.wm.get(f"{src}|{s}", NEG_INF) for src, ids in self.shards.items()
                               for s in ids), default=NEG_INF)

    def _closed(self, rule_index: int, start: int) -> bool:
        return self._watermark >= start + self.rules[rule_index].window + self.lateness

    # ------------------------------------------------------------------ records
    def apply_partial(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """A consumer's counts for one batch of one shard: ``src``, ``shard``, ``start``/``next`` (group
        sequence numbers), ``wm`` (latest log time seen), ``e``: entries ``[rule, key, bucket, offset,
        n, tmin, tmax, samples]``. Entries of groups already applied (a crashed consumer's successor reads
        its uncommitted batches again) are skipped, so each group counts once."""
        src, shard = body["src"], int(body["shard"])
        sid = f"{src}|{shard}"
        start = int(body["start"])
        upto = self.applied.get(sid, -1)
        touched: set[tuple[int, str]] = set()
        for r, key, bucket, off, n, tmin, tmax, samples in body.get("e", ()):
            seq = start + int(off)
            if seq < upto or r >= len(self.rules):
                continue
            if self._closed(r, bucket):  # the latest window holding this bucket has closed: late
                self.late += n
                continue
            b = self.buckets.get((r, key, bucket))
            if b is None:
                keys = self._keys.setdefault(r, {})
                if key not in keys and len(keys) >= MAX_OPEN_KEYS:
                    self.overflow += n
                    continue
                keys[key] = keys.get(key, 0) + 1
                b = self.buckets[(r, key, bucket)] = [0, tmin, tmax, []]
            b[0] += n
            b[1] = min(b[1], tmin)
            b[2] = max(b[2], tmax)
            if samples and self.nsamples:
                b[3].extend([t, sid, seq, log] for t, log in samples)
                b[3].sort(key=_sample_key)
                del b[3][self.nsamples:]
            self._check(r, key, bucket, src, shard)
            touched.add((r, key))
        self.applied[sid] = max(upto, int(body["next"]))
        wm = body.get("wm")
        if wm is not None and wm > self.wm.get(sid, NEG_INF):
            self.wm[sid] = float(wm)
            self._recompute_watermark()
        return self._decide()

    def apply_idle(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Shards whose consumer had read everything at a wall time (``[src, shard, t]``, or ``t`` for all):
        their watermark moves to that time."""
        for entry in body.get("s", ()):
            src, shard = entry[0], entry[1]
            t = float(entry[2] if len(entry) > 2 else body["t"])
            sid = f"{src}|{shard}"
            if t > self.wm.get(sid, NEG_INF):
                self.wm[sid] = t
        self._recompute_watermark()
        return self._decide()

    def apply_shards(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The read-write shards of every source (the evaluator lists them and writes this record)."""
        self.shards = {src: sorted(int(s) for s in ids) for src, ids in body["shards"].items()}
        self._recompute_watermark()
        return self._decide()

    # ------------------------------------------------------------------ windows
    def _windows_of(self, r: int, bucket: int) -> range:
        rule = self.rules[r]
        step, window = int(rule.step), int(rule.window)
        return range(bucket - window + step, bucket + 1, step)

    def _check(self, r: int, key: str, bucket: int, src: str, shard: int) -> None:
        rule = self.rules[r]
        step, window = int(rule.step), int(rule.window)
        crossed = self.crossed.get((r, key))
        for s in self._windows_of(r, bucket):
            if (r, key, s) in self.decided or (crossed is not None and s in crossed) or self._closed(r, s):
                continue
            parts = [self.buckets[(r, key, b)] for b in range(s, s + window, step) if (r, key, b) in self.buckets]
            count = sum(p[0] for p in parts)
            if count < rule.threshold:
                continue
            samples = sorted((x for p in parts for x in p[3]), key=_sample_key)[:self.nsamples]
            endpoint, project, logstore = (src.split("|", 2) + ["", "", ""])[:3]
            alert = {"id": alert_id(self.group, rule.name, key, s), "rule": rule.name, "key": key,
                     "group": self.group, "endpoint": endpoint, "project": project, "logstore": logstore,
                     "shard": shard, "count": count, "threshold": rule.threshold, "window_seconds": rule.window,
                     "window_start": s, "window_end": s + window,
                     "from": min(p[1] for p in parts), "to": max(p[2] for p in parts),
                     "samples": [x[3] for x in samples], "merged": 1}
            self.crossed.setdefault((r, key), {})[s] = alert

    def _decide(self) -> list[dict[str, Any]]:
        fired: list[dict[str, Any]] = []
        for (r, key), windows in list(self.crossed.items()):
            rule = self.rules[r]
            step, window = int(rule.step), int(rule.window)
            for s in sorted(windows):
                last = self.last_fired.get((r, key))
                if last is not None and last < s < last + self.dedup:
                    self.decided[(r, key, s)] = False  # within the dedup period of a fired alert
                elif self.dedup > step and not self._watermark >= s - step + window + self.lateness:
                    break  # an earlier window could still cross and fire first: wait for it to close
                else:
                    self.decided[(r, key, s)] = True
                    self.last_fired[(r, key)] = max(s, last) if last is not None else s
                    fired.append(windows[s])
                del windows[s]
            if not windows:
                del self.crossed[(r, key)]
        self._collect()
        return fired

    def _collect(self) -> None:
        """Forget what no future record can change: closed buckets and windows, stale dedup marks."""
        w = self._watermark
        if w == NEG_INF or w < self._collected + 1.0:  # a pass over the state at most per second of log time
            return
        self._collected = w
        lat = self.lateness
        for k in [k for k in self.buckets if w >= k[2] + self.rules[k[0]].window + lat]:
            del self.buckets[k]
            keys = self._keys.get(k[0], {})
            keys[k[1]] = keys.get(k[1], 1) - 1
            if keys[k[1]] <= 0:
                del keys[k[1]]
        for k in [k for k in self.decided if w >= k[2] + self.rules[k[0]].window + lat]:
            del self.decided[k]
        for k in [k for k, s in self.last_fired.items()
                  if w >= s + self.dedup + self.rules[k[0]].window + lat]:
            del self.last_fired[k]

    # ------------------------------------------------------------------ snapshots
    def to_json(self) -> dict[str, Any]:
        return {"rules": [r.name for r in self.rules],
                "buckets": [[r, k, b, *v] for (r, k, b), v in self.buckets.items()],
                "crossed": [[r, k, s, a] for (r, k), ws in self.crossed.items() for s, a in ws.items()],
                "decided": [[r, k, s, f] for (r, k, s), f in self.decided.items()],
                "last_fired": [[r, k, s] for (r, k), s in self.last_fired.items()],
                "wm": self.wm, "applied": self.applied, "shards": self.shards, "late": self.late,
                "overflow": self.overflow}

    @classmethod
    def from_json(cls, spec: Monitor, group: str, data: dict[str, Any]) -> "Evaluator":
        ev = cls(spec, group)
        if data.get("rules") != [r.name for r in spec.rules]:
            # the rules changed: counts keyed by rule index would be misread; positions and watermarks stay
            data = {**data, "buckets": [], "crossed": [], "decided": [], "last_fired": []}
        ev.buckets = {(r, k, b): [c, lo, hi, smp] for r, k, b, c, lo, hi, smp in data.get("buckets", [])}
        for r, k, s, a in data.get("crossed", []):
            ev.crossed.setdefault((r, k), {})[s] = a
        ev.decided = {(r, k, s): f for r, k, s, f in data.get("decided", [])}
        ev.last_fired = {(r, k): s for r, k, s in data.get("last_fired", [])}
        ev.wm = {k: float(v) for k, v in data.get("wm", {}).items()}
        ev.applied = {k: int(v) for k, v in data.get("applied", {}).items()}
        ev.shards = {k: list(v) for k, v in data.get("shards", {}).items()}
        ev.late = int(data.get("late", 0))
        ev.overflow = int(data.get("overflow", 0))
        for r, k, _ in ev.buckets:
            keys = ev._keys.setdefault(r, {})
            keys[k] = keys.get(k, 0) + 1
        ev._recompute_watermark()
        return ev
