"""The monitor's evaluator against a brute-force evaluation of the rules in log time (hypothesis).

Generated: logs with log times (and nanosecond parts) over a few minutes, hosts, matching or not, spread
over three shards; rules with thresholds, tumbling or sliding windows, group_by; a dedup period. They are
cut into LogGroups and batches and fed shard by shard in a random interleaving (each shard in order, as a
consumer reads it) through the consumer-side scanner and the partial-count records into the evaluator,
with batches read twice (a successor re-reading a crashed consumer's uncommitted batches) and the
evaluator restored from its JSON snapshot at random points. The alerts must be exactly the windows a
brute-force pass finds: every window whose count reaches the threshold, kept greedily in window order
unless a kept one of the same rule and key started less than ``dedup`` before it.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.pipelines.config import Monitor
from sluice.pipelines.monitor.scan import Scanner, first_log_time
from sluice.pipelines.monitor.state import partial_records
from sluice.pipelines.monitor.windows import Evaluator, alert_id
from sluice.wire.batch import Batch
from sluice.wire.cursor import encode_cursor
from sluice.wire.loggroup import LogGroup, frame_groups

T0 = 1_700_000_000
LATENESS = 5.0
SRC = "http://hub|p|web"

log_st = st.tuples(st.integers(0, 2),  # shard
                   st.integers(0, 300),  # seconds after T0
                   st.integers(0, 999_999_999),  # ns part
                   st.sampled_from(["h0", "h1"]),
                   st.sampled_from(["ok", "ERR disk", "fine ERR"]),
                   st.sampled_from(["200", "500", "503", "404"]))

rules_st = st.fixed_dictionaries({
    "threshold": st.integers(1, 4),
    "window": st.sampled_from([10, 30, 60]),
    "sliding": st.booleans(),
    "dedup": st.sampled_from([0, 10, 45, 120]),
})


def _spec(p: dict[str, Any]) -> Monitor:
    w = p["window"]
    slide = w // 2 if p["sliding"] else None
    return Monitor.model_validate({
        "rules": [
            {"name": "err", "keyword": "ERR", "threshold": p["threshold"], "window": w, "slide": slide,
             "group_by": "host"},
            {"name": "5xx", "field": "status", "regex": "^5\\d\\d$", "threshold": max(1, p["threshold"] - 1),
             "window": w},
        ],
        "dedup": p["dedup"], "lateness": LATENESS, "samples": 2})


def _brute_force(spec: Monitor, logs: list[tuple[int, int, int, str, str, str]]) -> set[tuple[str, str, int]]:
    kept: set[tuple[str, str, int]] = set()
    for rule in spec.rules:
        counts: dict[tuple[str, int], int] = defaultdict(int)
        step, window = int(rule.step), int(rule.window)
        for _, sec, _, host, msg, status in logs:
            t = T0 + sec
            if rule.keyword is not None:
                hit = rule.keyword in msg or rule.keyword in host or rule.keyword in status
            else:
                hit = re.search(rule.regex or "", status) is not None
            if not hit:
                continue
            key = host if rule.group_by == "host" else ""
            s = t - t % step
            while s > t - window:
                counts[(key, s)] += 1
                s -= step
        by_key: dict[str, list[int]] = defaultdict(list)
        for (key, s), n in counts.items():
            if n >= rule.threshold:
                by_key[key].append(s)
        for key, starts in by_key.items():
            last: int | None = None
            for s in sorted(starts):
                if last is not None and s - last < spec.dedup:
                    continue
                kept.add((rule.name, key, s))
                last = s
    return kept


def _group(logs: list[tuple[int, int, int, str, str, str]]) -> bytes:
    g = LogGroup()
    for _, sec, ns, host, msg, status in logs:
        e = g.Logs.add()
        e.Time = T0 + sec
        e.Time_ns = ns
        for k, v in (("host", host), ("msg", msg), ("status", status)):
            c = e.Contents.add()
            c.Key, c.Value = k, v
    return g.SerializeToString()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=rules_st, logs=st.lists(log_st, max_size=60), data=st.data())
def test_evaluator_equals_brute_force_in_log_time(params: dict[str, Any], logs: list[Any], data: st.DataObject) -> None:
    spec = _spec(params)
    scanner = Scanner(spec)
    ev = Evaluator(spec, "g")
    fired: list[dict[str, Any]] = []
    fired += ev.apply_shards({"shards": {SRC: [0, 1, 2]}})

    # each shard in log-time order (as written by a producer in real time), cut into groups and batches
    batches: dict[int, list[tuple[int, list[bytes]]]] = {}
    for shard in range(3):
        mine = sorted((x for x in logs if x[0] == shard), key=lambda x: (x[1], x[2]))
        groups, i = [], 0
        while i < len(mine):
            n = data.draw(st.integers(1, 3))
            groups.append(_group(mine[i:i + n]))
            i += n
        out, seq, j = [], 0, 0
        while j < len(groups):
            n = data.draw(st.integers(1, 3))
            out.append((seq, groups[j:j + n]))
            seq += n
            j += n
        batches[shard] = out

    def feed(shard: int, seq: int, groups: list[bytes]) -> list[dict[str, Any]]:
        batch = Batch(project="p", logstore="web", shard=shard, cursor=encode_cursor(seq),
                      next_cursor=encode_cursor(seq + len(groups)), count=len(groups), raw=frame_groups(groups))
        entries, wm = scanner.scan(batch)
        out = []
        for _, body in partial_records(SRC, shard, seq, seq + len(groups), wm, entries):
            out += ev.apply_partial(json.loads(json.dumps(body)))
        return out

    pos = {s: 0 for s in range(3)}
    while any(pos[s] < len(batches[s]) for s in range(3)):
        shard = data.draw(st.sampled_from([s for s in range(3) if pos[s] < len(batches[s])]))
        seq, groups = batches[shard][pos[shard]]
        fired += feed(shard, seq, groups)
        pos[shard] += 1
        if pos[shard] >= 2 and data.draw(st.booleans()):  # a successor re-reads two batches as one
            (s1, g1), (_, g2) = batches[shard][pos[shard] - 2], batches[shard][pos[shard] - 1]
            assert feed(shard, s1, g1 + g2) == []
        if data.draw(st.integers(0, 4)) == 0:  # the evaluator's holder changes: restore from a snapshot
            ev = Evaluator.from_json(spec, "g", json.loads(json.dumps(ev.to_json())))
    fired += ev.apply_idle({"t": T0 + 10_000, "s": [[SRC, s] for s in range(3)]})  # every window closes

    assert ev.late == 0
    got = [(a["rule"], a["key"], a["window_start"]) for a in fired]
    assert len(got) == len(set(got)), "a window alerted twice"
    assert set(got) == _brute_force(spec, logs)
    for a in fired:
        rule = next(r for r in spec.rules if r.name == a["rule"])
        assert a["count"] >= a["threshold"] == rule.threshold
        assert a["window_start"] <= a["from"] <= a["to"] < a["window_end"] == a["window_start"] + rule.window
        assert a["id"] == alert_id("g", a["rule"], a["key"], a["window_start"])
        assert 1 <= len(a["samples"]) <= 2
        for s in a["samples"]:
            assert (rule.keyword in s["msg"]) if rule.keyword else s["status"].startswith("5")
            assert a["key"] == (s["host"] if rule.group_by else "")


def test_late_logs_are_dropped_and_counted() -> None:
    """A match for a window the watermark passed by more than the allowed lateness is late: not counted."""
    spec = _spec({"threshold": 1, "window": 10, "sliding": False, "dedup": 0})
    ev = Evaluator(spec, "g")
    ev.apply_shards({"shards": {SRC: [0]}})
    ev.apply_idle({"t": T0 + 100, "s": [[SRC, 0]]})
    late = [[0, "h0", T0, 0, 1, float(T0), float(T0), [[float(T0), {"msg": "ERR"}]]]]
    assert ev.apply_partial({"src": SRC, "shard": 0, "start": 0, "next": 1, "wm": T0, "e": late}) == []
    assert ev.late == 1
    fresh = [[0, "h0", T0 + 90, 0, 1, float(T0 + 96), float(T0 + 96), [[float(T0 + 96), {"msg": "ERR"}]]]]
    assert [a["window_start"] for a in ev.apply_partial(
        {"src": SRC, "shard": 0, "start": 1, "next": 2, "wm": T0 + 96, "e": fresh})] == [T0 + 90]


def test_dedup_waits_for_the_previous_window_to_close() -> None:
    """With dedup longer than the window, a crossed window alerts only once the previous one can no longer
    cross (a late-arriving earlier burst would have suppressed it); then it alerts without new data."""
    spec = _spec({"threshold": 1, "window": 10, "sliding": False, "dedup": 60})
    ev = Evaluator(spec, "g")
    ev.apply_shards({"shards": {SRC: [0, 1]}})
    e = [[0, "h0", T0 + 20, 0, 1, float(T0 + 21), float(T0 + 21), []]]
    assert ev.apply_partial({"src": SRC, "shard": 0, "start": 0, "next": 1, "wm": T0 + 21, "e": e}) == []
    # shard 1 is behind: its burst in the window before arrives now and wins the dedup
    e1 = [[0, "h0", T0 + 10, 0, 1, float(T0 + 12), float(T0 + 12), []]]
    assert ev.apply_partial({"src": SRC, "shard": 1, "start": 0, "next": 1, "wm": T0 + 12, "e": e1}) == []
    fired = ev.apply_idle({"t": T0 + 40, "s": [[SRC, 0], [SRC, 1]]})
    assert [a["window_start"] for a in fired] == [T0 + 10]  # T0+20 is within 60 s of it: suppressed


def test_first_log_time_reads_the_bytes() -> None:
    assert first_log_time(_group([(0, 7, 0, "h", "m", "200"), (0, 9, 0, "h", "m", "200")])) == T0 + 7
    assert first_log_time(b"") == float("-inf")


def test_large_batches_split_between_groups_and_count_once() -> None:
    """A batch with more entries than one record holds is split between log groups; every match counts once,
    also when the whole batch is read again."""
    from sluice.pipelines.monitor.state import MAX_ENTRIES_PER_RECORD
    spec = _spec({"threshold": 1, "window": 10, "sliding": False, "dedup": 0})
    ev = Evaluator(spec, "g")
    entries = [[0, f"h{k % 7}", T0, off, 1, float(T0), float(T0), []] for off in range(1500) for k in range(3)]
    records = partial_records(SRC, 0, 100, 1600, float(T0), entries)
    assert len(records) > 1 and all(len(b["e"]) <= MAX_ENTRIES_PER_RECORD + 2 for _, b in records)
    for (_, a), (_, b) in zip(records, records[1:]):
        assert a["next"] == 100 + b["e"][0][3] and a["e"][-1][3] < b["e"][0][3]
    for _ in range(2):
        for _, body in records:
            ev.apply_partial(json.loads(json.dumps(body)))
    assert sum(b[0] for b in ev.buckets.values()) == 4500


def test_invalid_records_are_skipped() -> None:
    """Garbage in the state logstore never raises out of the evaluator's processor."""
    import asyncio
    from unittest.mock import MagicMock

    from sluice.pipelines.monitor.outbox import Outbox
    from sluice.pipelines.monitor.state import EvaluatorProcessor
    spec = _spec({"threshold": 1, "window": 10, "sliding": False, "dedup": 0})

    async def main() -> None:
        p = EvaluatorProcessor(spec, "g", MagicMock(), lambda: Outbox([]), {}, {})
        p.ev, p.outbox = Evaluator(spec, "g"), Outbox([])
        for kind, text in (("p", "not json"), ("p", "{}"), ("i", '{"t": "x"}'), ("s", "[]"), ("d", '{"ids": 5}'),
                           ("p", json.dumps({"src": SRC, "shard": 0, "start": 0, "next": 1, "e": [[1]]}))):
            p._apply(0, kind, text)
    asyncio.run(main())


def test_open_keys_per_rule_are_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A group_by field with ever new values cannot grow the evaluator without bound: past MAX_OPEN_KEYS keys
    with open windows, matches of new keys are dropped and counted; closed windows free their keys."""
    import sluice.pipelines.monitor.windows as w
    monkeypatch.setattr(w, "MAX_OPEN_KEYS", 3)
    spec = _spec({"threshold": 5, "window": 10, "sliding": False, "dedup": 0})
    ev = Evaluator(spec, "g")
    ev.apply_shards({"shards": {SRC: [0]}})
    e = [[0, f"h{k}", T0, k, 1, float(T0), float(T0), []] for k in range(5)]
    ev.apply_partial({"src": SRC, "shard": 0, "start": 0, "next": 5, "wm": T0, "e": e})
    assert ev.overflow == 2 and len(ev.buckets) == 3
    restored = Evaluator.from_json(spec, "g", json.loads(json.dumps(ev.to_json())))
    assert restored._keys == ev._keys and restored.overflow == 2
    ev.apply_idle({"t": T0 + 100, "s": [[SRC, 0]]})  # every window closes: the keys are free again
    e2 = [[0, f"x{k}", T0 + 100, k, 1, float(T0 + 100), float(T0 + 100), []] for k in range(3)]
    ev.apply_partial({"src": SRC, "shard": 0, "start": 5, "next": 8, "wm": T0 + 100, "e": e2})
    assert ev.overflow == 2 and len(ev.buckets) == 3
