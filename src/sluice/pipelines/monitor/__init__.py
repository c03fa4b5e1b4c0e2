"""Monitor: rules over logs from many logstores (and regions), alerts within seconds, in log time, as one
logical monitor however many processes run the job.

* scan.py: each process matches the batches of the shards it holds and sums matches per rule, key and
  window bucket (log time);
* state.py: those partial counts go to the job's state logstore (one shard) before the batch is
  checkpointed; the process holding the state shard evaluates them;
* windows.py: the evaluator (event-time windows, watermarks, allowed lateness, log-time dedup);
* outbox.py / alerters.py: at-least-once delivery with ids.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from ...client import AsyncClient
from ...consumer import AsyncConsumer, ConsumerConfig, Processor, ShardContext
from ...consumer.config import parse_start
from ...wire.batch import Batch
from ...wire.cursor import decode_cursor
from ...wire.errors import ConfigError, LogStoreNotExist, SLSError
from ..config import JobConfig
from .alerters import build_alerter
from .outbox import Outbox
from .scan import Scanner
from .state import EvaluatorProcessor, StateWriter, _Watch, default_state_logstore, partial_records
from .windows import Evaluator

__all__ = ["MonitorRuntime", "MonitorProcessor", "Evaluator", "Scanner", "Outbox"]


class MonitorProcessor(Processor):
    """One held source shard: match each batch, write its partial counts to the state logstore (waiting
    until they are stored when there is a match), then checkpoint the batch."""

    def __init__(self, runtime: "MonitorRuntime", src: str, client: AsyncClient, project: str,
                 logstore: str) -> None:
        self.runtime = runtime
        self.src = src
        self.client = client
        self.project = project
        self.logstore = logstore
        self.watch: _Watch | None = None

    async def initialize(self, ctx: ShardContext) -> None:
        rt = self.runtime
        self.watch = _Watch(self.src, ctx.shard, self.client, self.project, self.logstore, rt.config.group,
                            str(rt.start_position), ctx)
        rt.writer.watch(self.watch)

    async def process(self, batch: Batch, ctx: ShardContext) -> str | None:
        rt, w = self.runtime, self.watch
        assert w is not None
        w.busy, w.idle = True, False
        try:
            entries, wm = rt.scanner.scan(batch)
            start, nxt = decode_cursor(batch.cursor), decode_cursor(batch.next_cursor)
            if entries:
                await rt.writer.put(partial_records(self.src, batch.shard, start, nxt, wm, entries))
            elif wm != -math.inf:
                rt.writer.note_watermark(self.src, batch.shard, start, nxt, wm)
            c = rt.counters
            c["groups_in"] = c.get("groups_in", 0) + batch.count
            c["bytes_in"] = c.get("bytes_in", 0) + len(batch.raw)
            ctx.checkpoint()
        finally:
            w.busy = False
            w.last_active = time.monotonic()
        return None

    async def shutdown(self, ctx: ShardContext) -> None:
        self.runtime.writer.unwatch(self.src, ctx.shard)


class MonitorRuntime:
    """What a monitor job adds to ``sluice run``: the scanner, the state writer, and a consumer of the
    state logstore (same group) whose holder evaluates and alerts."""

    def __init__(self, config: JobConfig, clients: Any, counters: dict[str, int], consumer_name: str) -> None:
        assert config.monitor is not None
        self.config = config
        self.spec = config.monitor
        self.counters = counters
        self.consumer_name = consumer_name
        self.start_position = parse_start(str(config.start))
        src0 = config.sources[0]
        self.state_client: AsyncClient = clients.get(src0.endpoint, src0.access_key_id, src0.access_key_secret,
                                                     src0.security_token, ca_bundle=src0.ca_bundle,
                                                     tls_verify=src0.tls_verify,
                                                     credentials_file=src0.credentials_file)
        st = self.spec.state
        self.state_project = st.project or src0.project
        self.state_logstore = st.logstore or default_state_logstore(config.group)
        self.writer = StateWriter(self.state_client, self.state_project, self.state_logstore, config.group)
        self.scanner = Scanner(self.spec)
        self.sources: dict[str, tuple[AsyncClient, str, str]] = {}
        for src in config.sources:
            client = clients.get(src.endpoint, src.access_key_id, src.access_key_secret, src.security_token,
                                 ca_bundle=src.ca_bundle, tls_verify=src.tls_verify,
                                 credentials_file=src.credentials_file)
            for ls in src.logstores:
                self.sources[self.source_id(client, src.project, ls)] = (client, src.project, ls)
        self.stats: dict[str, dict[str, int]] = {"sent": {}, "failed": {}, "attempts_failed": {}}
        self.alerters = [build_alerter(a) for a in self.spec.alerters]
        for a in self.alerters:
            for k in self.stats:
                self.stats[k].setdefault(a.name, 0)
        self.evaluator: EvaluatorProcessor | None = None
        self.consumer: AsyncConsumer | None = None

    @staticmethod
    def source_id(client: AsyncClient, project: str, logstore: str) -> str:
        return f"{client.endpoint}|{project}|{logstore}"

    @property
    def sent(self) -> dict[str, int]:
        return self.stats["sent"]

    @property
    def failed(self) -> dict[str, int]:
        return self.stats["failed"]

    @property
    def late(self) -> int:
        ev = self.evaluator.ev if self.evaluator is not None else None
        return ev.late if ev is not None else 0

    def processor(self, client: AsyncClient, project: str, logstore: str) -> MonitorProcessor:
        return MonitorProcessor(self, self.source_id(client, project, logstore), client, project, logstore)

    def _outbox(self) -> Outbox:
        def delivered(ids: list[str], index: int, gave_up: bool) -> None:
            self.writer.queue("d", {"ids": ids, "a": index, "failed": gave_up})
        return Outbox(self.alerters, attempts=self.spec.delivery_attempts,
                      max_interval=self.spec.retry_max_interval, on_delivered=delivered, stats=self.stats)

    def _on_state(self, evaluator: EvaluatorProcessor | None) -> None:
        self.evaluator = evaluator

    async def start(self) -> None:
        try:
            await self.writer.ensure(self.spec.state.ttl)
        except SLSError as exc:
            raise ConfigError(f"monitor state {self.state_project}/{self.state_logstore}: {exc.error_code}: "
                              f"{exc}") from None
        self.writer.start()
        c = self.config
        cfg = ConsumerConfig(project=self.state_project, logstore=self.state_logstore, group=c.group,
                             consumer=self.consumer_name, start="begin", heartbeat_interval=c.heartbeat_interval)
        self.consumer = AsyncConsumer(
            self.state_client, cfg,
            processor=lambda: EvaluatorProcessor(self.spec, c.group, self.writer, self._outbox, self.sources,
                                                 self.counters, self._on_state))
        for attempt in range(30):  # SLS: a logstore just created takes a few seconds to accept consumer groups
            try:
                await self.state_client.create_consumer_group(self.state_project, self.state_logstore, c.group,
                                                              cfg.group_timeout)
                break
            except LogStoreNotExist:
                if attempt == 29:
                    raise
                await asyncio.sleep(1.0)
            except SLSError as exc:
                if exc.error_code != "ConsumerGroupAlreadyExist":
                    raise
                break
        await self.consumer.start()

    async def stop_evaluator(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def aclose(self) -> None:
        await self.stop_evaluator()
        await self.writer.aclose()

    def matched(self) -> int:
        return self.scanner.matched
