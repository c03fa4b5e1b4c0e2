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
