"""The hub's Prometheus metrics (``GET /metrics``, text format, prometheus-client).

Request counters are updated per request; everything about stored data and consumer groups is computed
at scrape time from the store and the coordinators (no bookkeeping on the hot path).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .coordinators import Coordinators
    from .store.base import Store

__all__ = ["HubMetrics"]


class _StateCollector(Collector):
    def __init__(self, store: "Store", coordinators: "Coordinators") -> None:
        self.store = store
        self.coordinators = coordinators

    def collect(self) -> Iterator[GaugeMetricFamily]:
        store = self.store
        stored = GaugeMetricFamily("sluice_hub_shard_bytes", "Bytes of LogGroups stored per shard",
                                   labels=["project", "logstore", "shard", "status"])
        groups = GaugeMetricFamily("sluice_hub_shard_log_groups", "LogGroups retained per shard",
                                   labels=["project", "logstore", "shard"])
        lag = GaugeMetricFamily("sluice_hub_consumer_lag_log_groups",
                                "LogGroups between a consumer group's checkpoint and the end of the shard",
                                labels=["project", "logstore", "group", "shard"])
        consumers = GaugeMetricFamily("sluice_hub_consumers", "Live consumers per consumer group",
                                      labels=["project", "logstore", "group"])
        ngroups = GaugeMetricFamily("sluice_hub_consumer_groups", "Consumer groups per logstore",
                                    labels=["project", "logstore"])
        now = time.monotonic()
        for ls in store.snapshot():  # copies of the containers: no lock held while the text is built
            project, name = ls.project, ls.name
            ngroups.add_metric([project, name], len(ls.groups))
            for s in ls.shards.values():
                stored.add_metric([project, name, str(s.shard_id), s.status], s.bytes_stored)
                groups.add_metric([project, name, str(s.shard_id)], s.end_seq - s.begin_seq)
            for g in ls.groups.values():
                coord = self.coordinators.get((project, name, g.name))
                consumers.add_metric([project, name, g.name], len(coord.members(now)) if coord else 0)
                for s in ls.shards.values():
                    cp = g.checkpoints.get(s.shard_id)
                    start = cp.seq if cp else s.begin_seq
                    lag.add_metric([project, name, g.name, str(s.shard_id)], max(0, s.end_seq - max(start, s.begin_seq)))
        yield from (stored, groups, lag, consumers, ngroups)


class HubMetrics:
    """The hub's registry. Request counters are labelled with the route table's API names (``routes.py``);
    the state gauges read the store and the coordinators, never the ``Hub``."""

    def __init__(self, store: "Store", coordinators: "Coordinators") -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("sluice_hub_requests", "Requests by API and HTTP status", ["api", "status"],
                                registry=self.registry)
        self.bytes_in = Counter("sluice_hub_received_bytes", "Request body bytes received (as sent, compressed)",
                                registry=self.registry)
        self.bytes_out = Counter("sluice_hub_sent_bytes", "Response body bytes sent (compressed)",
                                 registry=self.registry)
        self.logs_in = Counter("sluice_hub_logs_written", "Logs accepted by PutLogs", ["project", "logstore"],
                               registry=self.registry)
        self.raw_in = Counter("sluice_hub_raw_bytes_written", "Uncompressed LogGroup bytes accepted by PutLogs",
                              ["project", "logstore"], registry=self.registry)
        self.registry.register(_StateCollector(store, coordinators))

    def render(self) -> bytes:
        return generate_latest(self.registry)

