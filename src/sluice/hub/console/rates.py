"""Ingest rates for the console: a short ring buffer of counters sampled from memory every few seconds.

Why sample instead of counting on the write path: PutLogs already updates the hub's Prometheus counters
(``logs_in``, ``raw_in`` per logstore) and the store keeps ``bytes_stored`` and ``end_seq`` per shard in memory, so
a sample is a walk over in-memory metadata (no disk read, no lock held for long) and the hot path pays nothing.
Rates are differences between samples; with ``keep`` samples every ``interval`` seconds the console can draw the
last ``keep * interval`` seconds (10 minutes by default) and nothing grows without bound.

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
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, TypeVar

if TYPE_CHECKING:
    from .parts import ConsoleParts

__all__ = ["DEFAULT_INTERVAL", "DEFAULT_KEEP", "Rate", "RateSampler", "Sample"]

log = logging.getLogger("sluice.hub.console")

K = TypeVar("K")

DEFAULT_INTERVAL = 5.0
DEFAULT_KEEP = 120
RATE_WINDOW = 60.0  # table rates are averaged over about the last minute


@dataclass(frozen=True)
class Sample:
    wall: float  # time.time(), for the chart's x axis
    mono: float  # time.monotonic(), for differences
    logstores: dict[tuple[str, str], tuple[float, float]]  # (project, logstore) -> (raw bytes in, logs in)
    shards: dict[int, tuple[int, int]]  # shard uid -> (bytes stored, end_seq)


@dataclass(frozen=True)
class Rate:
    bytes_per_s: float
    units_per_s: float  # logs per second for a logstore, LogGroups per second for a shard


def _counter_values(counter: object) -> dict[tuple[str, str], float]:
    """The ``_total`` sample of every (project, logstore) child of a labelled prometheus Counter."""
    out: dict[tuple[str, str], float] = {}
    for family in counter.collect():  # type: ignore[attr-defined]
        for s in family.samples:
            if s.name.endswith("_total"):
                out[(s.labels["project"], s.labels["logstore"])] = s.value
    return out


def _rate(old: tuple[float, float] | None, new: tuple[float, float] | None, seconds: float) -> Rate | None:
    if new is None or seconds <= 0:
        return None
    old = old or (0.0, 0.0)  # created since the older sample: everything it holds arrived in between
    return Rate(max(0.0, new[0] - old[0]) / seconds, max(0.0, new[1] - old[1]) / seconds)


def _rates(old: Mapping[K, tuple[float, float]], new: Mapping[K, tuple[float, float]],
           seconds: float) -> dict[K, Rate]:
    """Per key of ``new``: its rate since ``old``."""
    out = {}
    for key, value in new.items():
        r = _rate(old.get(key), value, seconds)
        if r is not None:
            out[key] = r
    return out


class RateSampler:
    """Owns the ring buffer and the task that fills it. Runs on the event loop only."""

    def __init__(self, hub: "ConsoleParts", interval: float = DEFAULT_INTERVAL, keep: int = DEFAULT_KEEP) -> None:
        self.hub = hub
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=keep)
        self._task: asyncio.Task[None] | None = None

    def take(self) -> Sample:
        """Read the counters now (memory only)."""
        store = self.hub.store
        raw = _counter_values(self.hub.metrics.raw_in)
        logs = _counter_values(self.hub.metrics.logs_in)
        shards = {s.uid: (s.bytes_stored, s.end_seq) for ls in store.snapshot() for s in ls.shards.values()}
        logstores = {key: (raw.get(key, 0.0), logs.get(key, 0.0)) for key in raw.keys() | logs.keys()}
        return Sample(time.time(), time.monotonic(), logstores, shards)

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
        """One sample per interval until cancelled; a failed sample is logged and skipped, never fatal."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.samples.append(self.take())
            except Exception:  # noqa: BLE001 - the console's rates must not take the hub down
                log.exception("console rate sample failed")

    # ------------------------------------------------------------------ reading
    def _window(self) -> tuple[Sample, Sample] | None:
        """The oldest kept sample within the rate window, and a fresh one: the pair table rates are taken over."""
        if not self.samples:
            return None
        now = self.take()
        base = next((s for s in self.samples if now.mono - s.mono <= RATE_WINDOW), self.samples[-1])
        if now.mono - base.mono < 1.0:  # less than a second of history tells nothing
            return None
        return base, now

    def logstore_rates(self) -> dict[tuple[str, str], Rate] | None:
        """Rates over about the last minute per logstore written to since the hub started; None until there
        is a second of history."""
        pair = self._window()
        return None if pair is None else _rates(pair[0].logstores, pair[1].logstores, pair[1].mono - pair[0].mono)

    def shard_rates(self) -> dict[int, Rate] | None:
        pair = self._window()
        return None if pair is None else _rates(pair[0].shards, pair[1].shards, pair[1].mono - pair[0].mono)

    def series(self, include: Callable[[str, str], bool]) -> list[tuple[float, float, float]]:
        """Per interval of the ring buffer: (end time, bytes/s, logs/s) summed over the logstores ``include``
        accepts (the principal's projects, one project, or one logstore)."""
        out = []
        samples = list(self.samples)
        for old, new in zip(samples, samples[1:]):
            seconds = new.mono - old.mono
            nbytes = nlogs = 0.0
            for key in _keys(new.logstores, include):
                r = _rate(old.logstores.get(key), new.logstores[key], seconds)
                if r is not None:
                    nbytes += r.bytes_per_s
                    nlogs += r.units_per_s
            out.append((new.wall, nbytes, nlogs))
        return out


def _keys(logstores: dict[tuple[str, str], tuple[float, float]],
          include: Callable[[str, str], bool]) -> Iterable[tuple[str, str]]:
    return (key for key in logstores if include(*key))
