"""Ingest rates for the console (replaces rates.py): a short ring buffer of counters sampled from memory every few seconds.

Why sample instead of counting on the write path: PutLogs already updates the hub's Prometheus counters
(``logs_in``, ``raw_in`` per logstore) and the store keeps ``bytes_stored`` and ``end_seq`` per shard in memory, so
a sample is a walk over in-memory metadata (no disk read) and the hot path pays nothing.
Rates are differences between samples; with ``keep`` samples every ``interval`` seconds the console can draw the
last ``keep * interval`` seconds (10 minutes by default) and nothing grows without bound.

Cost (#19.3): taking a sample walks every logstore and shard, so it runs on a worker thread every ``interval``
seconds, never on the event loop and never per request. Reading is proportional to what is asked about:
a sample is indexed by project, and keeps per-project totals, so a logstore's rate or chart is a few dict
lookups per sample, a project's walks its own logstores, and the overview walks projects, not logstores. Table
rates are taken between the oldest sample within the last minute and the newest (at most ``interval`` old).

Per logstore the rates are exact ingest (uncompressed LogGroup bytes and logs accepted by PutLogs, counters
that only go up). Per shard they come from ``bytes_stored`` and ``end_seq``: bytes and LogGroups appended,
clamped at zero because retention lowers ``bytes_stored``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, TypeVar

__all__ = ["DEFAULT_INTERVAL", "DEFAULT_KEEP", "Rate", "RateSampler", "Sample", "counter_value", "store_shard_counters"]

log = logging.getLogger("sluice.hub.console")

K = TypeVar("K")
_Pair = tuple[float, float]

DEFAULT_INTERVAL = 5.0
DEFAULT_KEEP = 120
RATE_WINDOW = 60.0  # table rates are averaged over about the last minute
_ZERO: _Pair = (0.0, 0.0)


@dataclass(frozen=True)
class Sample:
    wall: float  # time.time(), for the chart's x axis
    mono: float  # time.monotonic(), for differences
    logstores: dict[str, dict[str, _Pair]]  # project -> logstore -> (raw bytes in, logs in)
    projects: dict[str, _Pair]  # project -> the sums over its logstores
    shards: dict[int, tuple[int, int]]  # shard uid -> (bytes stored, end_seq)

    def logstore(self, project: str, logstore: str) -> _Pair | None:
        by_ls = self.logstores.get(project)
        return None if by_ls is None else by_ls.get(logstore)


@dataclass(frozen=True)
class Rate:
    bytes_per_s: float
    units_per_s: float  # logs per second for a logstore, LogGroups per second for a shard


def _children(counter: Any) -> Iterable[tuple[tuple[str, ...], float]]:
    """(label values, value) of every child of a labelled prometheus Counter.

    Reads the children directly (``_metrics``, prometheus-client's own table, stable since 0.4): ``collect()``
    would build a sample object per child, ~10x the cost at thousands of logstores. Falls back to
    ``collect()`` if a future version drops the table."""
    table = getattr(counter, "_metrics", None)
    if isinstance(table, dict):
        with counter._lock:
            items = list(table.items())
        for labels, child in items:
            yield labels, child._value.get()
        return
    for family in counter.collect():  # pragma: no cover - other prometheus-client versions
        for s in family.samples:
            if s.name.endswith("_total"):
                yield (s.labels["project"], s.labels["logstore"]), s.value


def counter_value(counter: Any, labels: tuple[str, ...]) -> float:
    """One child's value now, 0 if it has none (without creating it, which ``labels()`` would)."""
    table = getattr(counter, "_metrics", None)
    if isinstance(table, dict):
        child = table.get(labels)
        return 0.0 if child is None else float(child._value.get())
    return next((v for k, v in _children(counter) if k == labels), 0.0)  # pragma: no cover


def store_shard_counters(store: Any) -> Callable[[], dict[int, tuple[int, int]]]:
    """The ``shards`` reader for a store: (bytes stored, end_seq) of every shard (``Store.shard_counters``)."""
    def read() -> dict[int, tuple[int, int]]:
        return store.shard_counters()
    return read


def _rate(old: _Pair | None, new: _Pair | None, seconds: float) -> Rate | None:
    if new is None or seconds <= 0:
        return None
    old = old or _ZERO  # created since the older sample: everything it holds arrived in between
    return Rate(max(0.0, new[0] - old[0]) / seconds, max(0.0, new[1] - old[1]) / seconds)


def _rates(old: Mapping[K, _Pair], new: Mapping[K, _Pair], seconds: float) -> dict[K, Rate]:
    """Per key of ``new``: its rate since ``old``."""
    out = {}
    for key, value in new.items():
        r = _rate(old.get(key), value, seconds)
        if r is not None:
            out[key] = r
    return out


class RateSampler:
    """Owns the ring buffer and the task that fills it. ``shards`` returns {uid: (bytes stored, end_seq)} for
    every shard (called on a worker thread; it takes the store's lock itself); ``raw_in`` and ``logs_in`` are
    the hub's (project, logstore)-labelled PutLogs counters. Reads may run on any thread (they copy the ring
    first); samples are appended on the event loop."""

    def __init__(self, shards: Callable[[], dict[int, tuple[int, int]]], raw_in: Any, logs_in: Any,
                 interval: float = DEFAULT_INTERVAL, keep: int = DEFAULT_KEEP) -> None:
        self._read_shards = shards
        self.raw_in = raw_in
        self.logs_in = logs_in
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=keep)
        self._task: asyncio.Task[None] | None = None

    def take(self) -> Sample:
        """Read the counters now (memory only; O(logstores + shards): worker thread, or start-up)."""
        logstores: dict[str, dict[str, _Pair]] = {}
        for (project, ls), raw in _children(self.raw_in):
            logstores.setdefault(project, {})[ls] = (raw, 0.0)
        for (project, ls), logs in _children(self.logs_in):
            by_ls = logstores.setdefault(project, {})
            by_ls[ls] = (by_ls.get(ls, _ZERO)[0], logs)
        projects = {p: (sum(v[0] for v in by_ls.values()), sum(v[1] for v in by_ls.values()))
                    for p, by_ls in logstores.items()}
        return Sample(time.time(), time.monotonic(), logstores, projects, self._read_shards())

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.samples.append(self.take())
        self._task = asyncio.create_task(self._sample_routine())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _sample_routine(self) -> None:
        """One sample per interval, taken on a worker thread, until cancelled; a failed sample is logged and
        skipped, never fatal."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.samples.append(await asyncio.to_thread(self.take))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the console's rates must not take the hub down
                log.exception("console rate sample failed")

    # ------------------------------------------------------------------ reading (O(what is asked about))
    def _window(self) -> tuple[Sample, Sample] | None:
        """The oldest kept sample within the rate window, and the newest: the pair table rates are taken over."""
        samples = tuple(self.samples)  # copied in one step: readers may run on a worker thread
        if len(samples) < 2:
            return None
        new = samples[-1]
        base = next(s for s in samples if new.mono - s.mono <= RATE_WINDOW or s is new)
        if new.mono - base.mono < 1.0:  # less than a second of history tells nothing
            return None
        return base, new

    def logstore_rate(self, project: str, logstore: str) -> Rate | None:
        """Over about the last minute; None until there is history, idle (zero) for a logstore not written."""
        pair = self._window()
        if pair is None:
            return None
        old, new = pair
        return _rate(old.logstore(project, logstore), new.logstore(project, logstore) or _ZERO, new.mono - old.mono)

    def project_rates(self, project: str) -> dict[str, Rate] | None:
        """Per logstore of ``project`` written to since the hub started; None until there is history."""
        pair = self._window()
        if pair is None:
            return None
        old, new = pair
        return _rates(old.logstores.get(project, {}), new.logstores.get(project, {}), new.mono - old.mono)

    def project_rate(self, project: str) -> Rate | None:
        pair = self._window()
        if pair is None:
            return None
        old, new = pair
        return _rate(old.projects.get(project), new.projects.get(project, _ZERO), new.mono - old.mono)

    def shard_rates(self, uids: Iterable[int]) -> dict[int, Rate] | None:
        pair = self._window()
        if pair is None:
            return None
        old, new = pair
        seconds = new.mono - old.mono
        out = {}
        for uid in uids:
            r = _rate(old.shards.get(uid), new.shards.get(uid), seconds)  # type: ignore[arg-type]
            if r is not None:
                out[uid] = r
        return out

    def series(self, projects: Iterable[str], logstore: str | None = None) -> list[tuple[float, float, float]]:
        """Per interval of the ring buffer: (end time, bytes/s, logs/s) summed over ``projects`` (the
        principal's, or one), or over one logstore of the one project given."""
        wanted = list(projects)
        out = []
        samples = tuple(self.samples)
        for old, new in zip(samples, samples[1:]):
            seconds = new.mono - old.mono
            nbytes = nlogs = 0.0
            for p in wanted:
                if logstore is None:
                    r = _rate(old.projects.get(p), new.projects.get(p), seconds)
                else:
                    r = _rate(old.logstore(p, logstore), new.logstore(p, logstore), seconds)
                if r is not None:
                    nbytes += r.bytes_per_s
                    nlogs += r.units_per_s
            out.append((new.wall, nbytes, nlogs))
        return out
