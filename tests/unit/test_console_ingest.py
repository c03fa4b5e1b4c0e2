"""Console ingest rates (hub/console/ingest.py): rates and chart series per logstore, project and overview,
read from indexed samples (no sample taken per request)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from sluice.hub.console.ingest import Rate, RateSampler, Sample, counter_value


def _sampler() -> tuple[RateSampler, Counter, Counter, dict[int, tuple[int, int]]]:
    reg = CollectorRegistry()
    raw = Counter("raw", "raw", ["project", "logstore"], registry=reg)
    logs = Counter("logs", "logs", ["project", "logstore"], registry=reg)
    shards: dict[int, tuple[int, int]] = {1: (0, 0), 2: (0, 0)}
    return RateSampler(lambda: dict(shards), raw, logs, interval=5.0, keep=4), raw, logs, shards


def _advance(s: RateSampler, seconds: float) -> None:
    """Take a sample as if ``seconds`` passed since the last one."""
    new = s.take()
    last = s.samples[-1] if s.samples else None
    mono = (last.mono + seconds) if last else new.mono
    wall = (last.wall + seconds) if last else new.wall
    s.samples.append(Sample(wall, mono, new.logstores, new.projects, new.shards))


def test_rates_per_logstore_project_and_shard() -> None:
    s, raw, logs, shards = _sampler()
    _advance(s, 0)
    assert s.logstore_rate("p", "a") is None and s.project_rates("p") is None  # no history yet
    raw.labels("p", "a").inc(1000)
    logs.labels("p", "a").inc(10)
    raw.labels("p", "b").inc(500)
    raw.labels("q", "a").inc(9999)
    shards[1] = (1000, 4)
    _advance(s, 10)
    assert s.logstore_rate("p", "a") == Rate(100.0, 1.0)
    assert s.logstore_rate("p", "never") == Rate(0.0, 0.0)  # idle, not unknown
    assert s.project_rates("p") == {"a": Rate(100.0, 1.0), "b": Rate(50.0, 0.0)}
    assert s.project_rate("p") == Rate(150.0, 1.0)
    assert s.shard_rates([1, 2, 3]) == {1: Rate(100.0, 0.4), 2: Rate(0.0, 0.0)}


def test_series_by_scope() -> None:
    s, raw, logs, _ = _sampler()
    _advance(s, 0)
    raw.labels("p", "a").inc(50)
    raw.labels("p", "b").inc(100)
    raw.labels("q", "c").inc(1000)
    _advance(s, 5)
    raw.labels("p", "a").inc(50)
    _advance(s, 5)
    assert [b for _, b, _ in s.series(["p"], "a")] == [10.0, 10.0]
    assert [b for _, b, _ in s.series(["p"])] == [30.0, 10.0]
    assert [b for _, b, _ in s.series(["p", "q"])] == [230.0, 10.0]
    assert [b for _, b, _ in s.series([])] == [0.0, 0.0]
    # the ring keeps `keep` samples: older intervals drop off
    for _ in range(5):
        _advance(s, 5)
    assert len(s.series(["p"])) == 3


def test_counter_value_reads_without_creating_a_child() -> None:
    _, raw, _, _ = _sampler()
    raw.labels("p", "a").inc(7)
    assert counter_value(raw, ("p", "a")) == 7.0
    assert counter_value(raw, ("p", "zz")) == 0.0
    assert ("p", "zz") not in raw._metrics  # type: ignore[attr-defined]


def test_less_than_a_second_of_history_is_no_rate() -> None:
    s, _, _, _ = _sampler()
    _advance(s, 0)
    _advance(s, 0.5)
    assert s.logstore_rate("p", "a") is None
