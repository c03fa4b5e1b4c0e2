"""Monitor: rules over logs from many logstores (and regions), alerts within seconds."""

from __future__ import annotations

import time

from ...consumer import Processor, ShardContext
from ...wire.batch import Batch
from .alerters import AlertDispatcher
from .rules import Alert, RuleEngine

__all__ = ["MonitorProcessor", "RuleEngine", "AlertDispatcher", "Alert"]


class MonitorProcessor(Processor):
    """Scans each batch with the job's (shared) rule engine and publishes due alerts, then checkpoints.
    Alert delivery is asynchronous and isolated: a failing alerter never holds back consumption."""

    def __init__(self, engine: RuleEngine, dispatcher: AlertDispatcher, counters: dict[str, int]) -> None:
        self.engine = engine
        self.dispatcher = dispatcher
        self.counters = counters

    async def process(self, batch: Batch, ctx: ShardContext) -> str | None:
        for alert in self.engine.scan(batch, time.monotonic()):
            self.counters["alerts"] = self.counters.get("alerts", 0) + 1
            self.dispatcher.publish(alert)
        self.counters["groups_in"] = self.counters.get("groups_in", 0) + batch.count
        self.counters["bytes_in"] = self.counters.get("bytes_in", 0) + len(batch.raw)
        ctx.checkpoint()
        return None
