"""The hub's Prometheus metrics (``GET /metrics``, text format).

Request counters are updated per request; everything about stored data and consumer groups is computed
at scrape time from the store and the coordinators (no bookkeeping on the hot path).

A scrape is built off the event loop (#19.3): ``render`` takes the live consumer counts on the loop (the
coordinators are not thread-safe; one number per group), then writes the text on a worker thread. The
request counters (a few series) go through prometheus-client; the per-logstore PutLogs counters and the
per-shard and per-group state, thousands of series on a big hub, are written directly (``metrics_text.py``:
~10x cheaper than prometheus-client's sample objects), and kept between scrapes line by line: a scrape compares
the hub's rows with the previous scrape's and writes again only what changed (at 10,000 shards ~4 ms of CPU
in-process when a few logstores changed, was ~30 ms writing every line from cached pieces).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Mapping

from prometheus_client import CollectorRegistry, Counter, generate_latest

from .metrics_text import CounterLines, GroupKey, StateLines, _pause

if TYPE_CHECKING:
    from .coordinators import Coordinators
    from .store.base import Store

__all__ = ["HubMetrics"]

_LS = ("project", "logstore")


class HubMetrics:
    """The hub's counters and the scrape. Request counters are labelled with the route table's API names
    (``routes.py``); the state gauges read the store and the coordinators, never the ``Hub``."""

    def __init__(self, store: "Store", coordinators: "Coordinators") -> None:
        self.store = store
        self.coordinators = coordinators
        self.registry = CollectorRegistry()
        self.requests = Counter("sluice_hub_requests", "Requests by API and HTTP status", ["api", "status"],
                                registry=self.registry)
        self.bytes_in = Counter("sluice_hub_received_bytes", "Request body bytes received (as sent, compressed)",
                                registry=self.registry)
        self.bytes_out = Counter("sluice_hub_sent_bytes", "Response body bytes sent (compressed)",
                                 registry=self.registry)
        # Per logstore: in a registry of their own, written by CounterLines (not prometheus-client's writer).
        self._per_logstore = CollectorRegistry()
        self.logs_in = Counter("sluice_hub_logs_written", "Logs accepted by PutLogs", list(_LS),
                               registry=self._per_logstore)
        self.raw_in = Counter("sluice_hub_raw_bytes_written", "Uncompressed LogGroup bytes accepted by PutLogs",
                              list(_LS), registry=self._per_logstore)
        # The previous scrape's text, line by line (metrics_text.py); one scrape at a time writes it.
        self._lock = threading.Lock()
        self._counters = [CounterLines("sluice_hub_logs_written", "Logs accepted by PutLogs", self.logs_in, _LS),
                          CounterLines("sluice_hub_raw_bytes_written",
                                       "Uncompressed LogGroup bytes accepted by PutLogs", self.raw_in, _LS)]
        self._state = StateLines()

    async def render(self, executor: Executor | None = None) -> bytes:
        """The scrape: consumer counts on the loop, the rest on ``executor`` (a worker thread)."""
        members = self.coordinators.member_counts(time.monotonic())
        return await asyncio.get_running_loop().run_in_executor(executor, self.render_text, members)

    def render_text(self, members: Mapping[GroupKey, int]) -> bytes:
        """Any thread: the whole text, given the live consumers per group.

        The cyclic garbage collector is paused meanwhile: the text is ~60,000 short-lived strings and tuples
        at 10,000 shards (freed by reference counting, no cycles), and their allocations triggered full
        collections over the whole hub's objects, which doubled or tripled a scrape's CPU (70-180 ms vs ~30)."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._text(members)
        finally:
            if was_enabled:
                gc.enable()

    def _text(self, members: Mapping[GroupKey, int]) -> bytes:
        with self._lock:
            parts = [generate_latest(self.registry)]
            for counter in self._counters:
                parts += counter.parts()
                _pause()  # let the event loop in between the phases
            parts += self._state.parts(self.store, members)
            return b"".join(parts)  # the one copy of the body (~0.3 ms at 10,000 shards)
