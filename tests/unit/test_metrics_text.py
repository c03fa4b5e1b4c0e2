"""/metrics' state families written directly (hub/metrics_text.py) parse to the same samples prometheus-client
wrote for them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from sluice.hub.metrics_text import counter_text, escape_label, state_text, take_state
from sluice.hub.store.base import Checkpoint, GroupMeta, LogstoreMeta, ShardMeta


class _Store:
    """The Store lookups take_state uses, over a dict."""

    def __init__(self) -> None:
        self.logstores: dict[tuple[str, str], LogstoreMeta] = {}

    def logstore_keys(self) -> list[tuple[str, str]]:
        return sorted(self.logstores)

    def group_keys(self) -> list[tuple[str, str, str]]:
        return [(p, ls, g) for (p, ls), m in self.logstores.items() for g in m.groups]

    def shard_rows(self) -> list[tuple[str, str, int, str, int, int, int]]:
        return [(p, ls, s.shard_id, s.status, s.bytes_stored, s.begin_seq, s.end_seq)
                for (p, ls), m in self.logstores.items() for s in m.shards.values()]

    def group_snapshot(self, project: str, logstore: str,
                       group: str) -> tuple[GroupMeta, dict[int, ShardMeta], dict[int, Checkpoint]]:
        meta = self.logstores[(project, logstore)]
        g = meta.groups[group]
        return g, dict(meta.shards), dict(g.checkpoints)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_state_text_values() -> None:
    store = _Store()
    ls = LogstoreMeta("proj", "app", 30, {}, 0, 0)
    ls.shards = {0: ShardMeta(1, 0, "readwrite", 0, 1, 0, begin_seq=2, end_seq=10, bytes_stored=800),
                 1: ShardMeta(2, 1, "readonly", 1, 2, 0, begin_seq=0, end_seq=4, bytes_stored=40)}
    ls.groups = {"g1": GroupMeta("g1", 30, False, {0: Checkpoint("x", 7, "c", 0), 1: Checkpoint("y", 0, "c", 0)}),
                 "g2": GroupMeta("g2", 30, False)}
    store.logstores[("proj", "app")] = ls
    store.logstores[("proj", "empty")] = LogstoreMeta("proj", "empty", 30, {}, 0, 0)
    got = _samples(state_text(take_state(store), {("proj", "app", "g1"): 2}))
    base = (("logstore", "app"), ("project", "proj"))
    assert got[("sluice_hub_shard_bytes", base + (("shard", "0"), ("status", "readwrite")))] == 800
    assert got[("sluice_hub_shard_log_groups", base + (("shard", "0"),))] == 8
    lag = "sluice_hub_consumer_lag_log_groups"
    assert got[(lag, (("group", "g1"),) + base + (("shard", "0"),))] == 3  # 10 - 7
    assert got[(lag, (("group", "g1"),) + base + (("shard", "1"),))] == 4
    assert got[(lag, (("group", "g2"),) + base + (("shard", "0"),))] == 8  # no checkpoint: from begin
    assert got[("sluice_hub_consumers", (("group", "g1"),) + base)] == 2
    assert got[("sluice_hub_consumers", (("group", "g2"),) + base)] == 0
    assert got[("sluice_hub_consumer_groups", (("logstore", "empty"), ("project", "proj")))] == 0
    assert len(got) == 2 + 2 + 4 + 2 + 2


def test_counter_text_matches_prometheus_client() -> None:
    from prometheus_client import generate_latest

    reg = CollectorRegistry()
    c = Counter("sluice_hub_logs_written", "Logs accepted by PutLogs", ["project", "logstore"], registry=reg)
    c.labels("p", "a").inc(50)
    c.labels("p", 'we"ird\\').inc(2.5)
    theirs = {k: v for k, v in _samples(generate_latest(reg).decode()).items() if not k[0].endswith("_created")}
    ours = _samples(counter_text("sluice_hub_logs_written", "Logs accepted by PutLogs", c, ("project", "logstore")))
    assert ours == theirs
    assert escape_label("a\nb") == "a\\nb"


def test_cached_text_follows_changes() -> None:
    """With the caches of a running hub: an unchanged logstore or counter is reused, a changed one rewritten."""
    store = _Store()
    ls = LogstoreMeta("p", "app", 30, {}, 0, 0)
    ls.shards = {0: ShardMeta(1, 0, "readwrite", 0, 1, 0, end_seq=3, bytes_stored=30)}
    ls.groups = {"gg": GroupMeta("gg", 30, False, {0: Checkpoint("x", 1, "c", 0)})}
    store.logstores[("p", "app")] = ls
    cache: dict = {}
    first = state_text(take_state(store), {("p", "app", "gg"): 1}, cache)
    assert state_text(take_state(store), {("p", "app", "gg"): 1}, cache) == first
    ls.shards[0].end_seq = 5
    ls.groups["gg"].checkpoints[0] = Checkpoint("y", 4, "c", 0)
    got = _samples(state_text(take_state(store), {("p", "app", "gg"): 2}, cache))
    base = (("logstore", "app"), ("project", "p"))
    assert got[("sluice_hub_shard_log_groups", base + (("shard", "0"),))] == 5
    assert got[("sluice_hub_consumer_lag_log_groups", (("group", "gg"),) + base + (("shard", "0"),))] == 1
    assert got[("sluice_hub_consumers", (("group", "gg"),) + base)] == 2
    reg = CollectorRegistry()
    c = Counter("n", "h", ["project", "logstore"], registry=reg)
    c.labels("p", "a").inc(1)
    heads: dict = {}
    names = ("project", "logstore")
    assert counter_text("n", "h", c, names, heads) == counter_text("n", "h", c, names, heads)
    c.labels("p", "a").inc(1)
    assert _samples(counter_text("n", "h", c, names, heads))[("n_total", (("logstore", "a"), ("project", "p")))] == 2


class _Coordinators:
    def __init__(self) -> None:
        self.members: dict[tuple[str, str, str], int] = {}

    def member_counts(self, now: float) -> dict[tuple[str, str, str], int]:
        return dict(self.members)


def _families(text: str) -> list[str]:
    names = [fam.name for fam in text_string_to_metric_families(text)]
    assert len(names) == len(set(names)), "a family's lines must be contiguous"
    return names


def test_kept_lines_follow_every_kind_of_change() -> None:
    """HubMetrics keeps the previous scrape's lines (CounterLines, StateLines) and rewrites what changed: after
    each of many random changes (writes, retention, splits, status changes, logstores and groups created and
    deleted, checkpoints, live consumers) its text parses and holds exactly the samples a fresh render of the
    same state (counter_text + state_text) holds."""
    import random

    from sluice.hub.metrics import HubMetrics

    rng = random.Random(19)
    store, coords = _Store(), _Coordinators()
    metrics = HubMetrics(store, coords)  # type: ignore[arg-type]
    uid = iter(range(1, 10**6))

    def new_logstore(name: str) -> None:
        ls = LogstoreMeta("p", name, 30, {}, 0, 0)
        ls.shards = {i: ShardMeta(next(uid), i, "readwrite", 0, 1, 0) for i in range(rng.choice((1, 2, 3, 4)))}
        store.logstores[("p", name)] = ls

    def fresh() -> dict:
        names = ("project", "logstore")
        return _samples(counter_text("sluice_hub_logs_written", "Logs accepted by PutLogs", metrics.logs_in, names)
                        + counter_text("sluice_hub_raw_bytes_written",
                                       "Uncompressed LogGroup bytes accepted by PutLogs", metrics.raw_in, names)
                        + state_text(take_state(store), coords.members))

    for i in range(120):  # ~300 shards: more than one block of lines (metrics_text._SHIFT)
        new_logstore(f"ls{i}")
    for step in range(240):
        names = sorted(n for _, n in store.logstores)
        ls = store.logstores[("p", rng.choice(names))]
        kind = rng.randrange(9)
        if kind <= 2:  # a write
            shard = rng.choice(list(ls.shards.values()))
            shard.end_seq += 1
            shard.bytes_stored += rng.randrange(1, 500)
            metrics.logs_in.labels("p", ls.name).inc(rng.randrange(1, 9))
            metrics.raw_in.labels("p", ls.name).inc(rng.randrange(1, 900))
        elif kind == 3:  # retention
            shard = rng.choice(list(ls.shards.values()))
            shard.begin_seq = min(shard.end_seq, shard.begin_seq + 1)
            shard.bytes_stored //= 2
        elif kind == 4:  # a split: the shard read-only, two new ones
            shard = rng.choice(list(ls.shards.values()))
            shard.status = "readonly"
            for _ in range(2):
                sid = max(ls.shards) + 1
                ls.shards[sid] = ShardMeta(next(uid), sid, "readwrite", 0, 1, 0)
        elif kind == 5:  # a logstore created or deleted, or both at once (the same number of shards)
            if rng.random() < 0.3 and len(names) > 3:
                first = store.logstores[("p", names[0])]
                del store.logstores[("p", first.name)]
                store.logstores[("p", f"new{step}")] = LogstoreMeta("p", f"new{step}", 30, {}, 0, 0, shards={
                    s.shard_id: ShardMeta(next(uid), s.shard_id, "readwrite", 0, 1, 0, end_seq=2)
                    for s in first.shards.values()}, groups={"g": GroupMeta("g", 30, False)})
            elif rng.random() < 0.5 and len(names) > 3:
                del store.logstores[("p", ls.name)]
                for key in [k for k in coords.members if k[1] == ls.name]:
                    del coords.members[key]
            else:
                new_logstore(f"new{step}")
        elif kind == 6:  # a group created or deleted
            if ls.groups and rng.random() < 0.4:
                gone = rng.choice(sorted(ls.groups))
                del ls.groups[gone]
                coords.members.pop(("p", ls.name, gone), None)
            else:
                ls.groups[f"g{step}"] = GroupMeta(f"g{step}", 30, False)
        elif kind == 7 and ls.groups:  # a checkpoint
            g = ls.groups[rng.choice(sorted(ls.groups))]
            sid = rng.choice(sorted(ls.shards))
            g.checkpoints[sid] = Checkpoint("c", rng.randrange(0, ls.shards[sid].end_seq + 1), "c1", 0)
        elif kind == 8 and ls.groups:  # consumers come and go
            coords.members[("p", ls.name, rng.choice(sorted(ls.groups)))] = rng.randrange(0, 4)
        if step % 6 == 0 or step > 234:
            text = metrics.render_text(coords.member_counts(0)).decode()
            _families(text)
            got = {k: v for k, v in _samples(text).items() if not k[0].startswith("sluice_hub_requests")
                   and k[0] not in ("sluice_hub_received_bytes_total", "sluice_hub_sent_bytes_total")
                   and not k[0].endswith("_created")}
            assert got == fresh(), f"step {step}"


def test_an_unchanged_hub_reuses_its_text() -> None:
    """Nothing changed since the last scrape: the per-logstore families are the same bytes, not written again."""
    from sluice.hub.metrics_text import CounterLines, StateLines

    store = _Store()
    for i in range(50):
        ls = LogstoreMeta("p", f"ls{i}", 30, {}, 0, 0)
        ls.shards = {0: ShardMeta(i + 1, 0, "readwrite", 0, 1, 0, end_seq=i, bytes_stored=10 * i)}
        store.logstores[("p", ls.name)] = ls
    state = StateLines()
    first = state.parts(store, {})
    assert state.parts(store, {}) is first
    store.logstores[("p", "ls7")].shards[0].end_seq += 1
    second = state.parts(store, {})
    assert second is not first
    assert _samples(b"".join(second).decode())[("sluice_hub_shard_log_groups",
                                      (("logstore", "ls7"), ("project", "p"), ("shard", "0")))] == 8
    reg = CollectorRegistry()
    c = Counter("n", "h", ["project", "logstore"], registry=reg)
    c.labels("p", "a").inc(1)
    lines = CounterLines("n", "h", c, ("project", "logstore"))
    once = lines.parts()
    assert lines.parts() is once
    c.labels("p", "b").inc(2)
    assert _samples(lines.text().decode()) == {("n_total", (("logstore", "a"), ("project", "p"))): 1.0,
                                               ("n_total", (("logstore", "b"), ("project", "p"))): 2.0}
