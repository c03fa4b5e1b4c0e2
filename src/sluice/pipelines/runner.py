"""``sluice run``: start one consumer per (source, logstore) of a job file on one event loop, show a live
status line, stop gracefully (checkpoints written, group left) on SIGTERM/SIGINT.

Before consuming, every source is checked once (credentials, project, logstore): a wrong key or a missing
logstore is reported clearly and the run exits non-zero instead of retrying forever.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any, Callable

from ..consumer import AsyncConsumer, ByteBudget, ConsumerConfig, Processor
from ..consumer.config import default_consumer_name
from ..wire.errors import ConfigError, SLSError, SluiceError
from .clients import ClientPool
from .config import JobConfig
from .dispatch import DispatchProcessor, Router
from .monitor import AlertDispatcher, MonitorProcessor, RuleEngine
from .monitor.alerters import build_alerter

__all__ = ["Job", "run_job"]

log = logging.getLogger("sluice.pipelines")


class Job:
    def __init__(self, config: JobConfig) -> None:
        self.config = config
        self.clients = ClientPool()
        self.counters: dict[str, int] = {}
        self.consumers: list[AsyncConsumer] = []
        self.dispatcher: AlertDispatcher | None = None
        self.engine: RuleEngine | None = None
        self.started = time.monotonic()

    async def check(self) -> None:
        """Fail fast and clearly on bad credentials or a missing project/logstore, for every source and
        every dispatch target (a missing target would otherwise be retried forever)."""
        checks: list[tuple[str, str, str, str, str, str | None]] = []
        for src in self.config.sources:
            for ls in src.logstores:
                checks.append(("source", src.endpoint, src.access_key_id, src.access_key_secret, f"{src.project}/{ls}",
                               src.security_token))
            if self.config.dispatch is not None:
                router = Router(self.config.dispatch, src)
                targets = [t for _, t in router.routes] + ([router.default] if router.default else [])
                for t in targets:
                    checks.append(("target", t.endpoint, t.access_key_id, t.access_key_secret,
                                   f"{t.project}/{t.logstore}", None))
        for kind, endpoint, key_id, secret, where, token in dict.fromkeys(checks):
            client = self.clients.get(endpoint, key_id, secret, token)
            project, logstore = where.split("/", 1)
            try:
                await client.get_logstore(project, logstore)
            except SLSError as exc:
                raise ConfigError(f"{kind} {endpoint} {where}: {exc.error_code}: {exc}") from None
            except SluiceError as exc:
                raise ConfigError(f"{kind} {endpoint} {where}: cannot connect: {exc}") from None

    async def start(self) -> None:
        c = self.config
        budget = ByteBudget(256 << 20)
        if c.monitor is not None:
            self.engine = RuleEngine(c.monitor)
            self.dispatcher = AlertDispatcher([build_alerter(a) for a in c.monitor.alerters])
            await self.dispatcher.start()
        consumer_name = c.consumer or default_consumer_name()
        for src in c.sources:
            client = self.clients.get(src.endpoint, src.access_key_id, src.access_key_secret, src.security_token)
            for ls in src.logstores:
                make: Callable[[], Processor]
                if c.dispatch is not None:
                    router = Router(c.dispatch, src)
                    make = lambda router=router: DispatchProcessor(router, self.clients, self.counters)  # noqa: E731
                else:
                    assert self.engine is not None and self.dispatcher is not None
                    engine, dispatcher = self.engine, self.dispatcher
                    make = lambda: MonitorProcessor(engine, dispatcher, self.counters)  # noqa: E731
                cfg = ConsumerConfig(project=src.project, logstore=ls, group=c.group, consumer=consumer_name,
                                     start=str(c.start), end=None if c.end is None else str(c.end),
                                     heartbeat_interval=c.heartbeat_interval)
                consumer = AsyncConsumer(client, cfg, processor=make, budget=budget)
                await consumer.start()
                self.consumers.append(consumer)

    def status(self) -> dict[str, Any]:
        shards = sum(len(c.shards) for c in self.consumers)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {"consumers": len(self.consumers), "shards": shards, **self.counters,
                "mb_per_s": self.counters.get("bytes_in", 0) / 1e6 / elapsed,
                "matched": self.engine.matched if self.engine else 0}

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.consumers), return_exceptions=True)
        if self.dispatcher is not None:
            await self.dispatcher.aclose()
        await self.clients.aclose()

    @property
    def finished(self) -> bool:
        return bool(self.consumers) and all(c._stopping.is_set() for c in self.consumers)


class _JobCollector:
    """Prometheus view of a running job, read at scrape time (no bookkeeping on the data path)."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counters = dict(self.job.counters)
        for key, help_text in (("groups_in", "LogGroups consumed"), ("bytes_in", "Raw bytes consumed"),
                               ("groups_out", "LogGroups written to dispatch targets"),
                               ("alerts", "Alerts raised by monitor rules")):
            yield CounterMetricFamily(f"sluice_job_{key}", help_text, value=counters.get(key, 0))
        shards = GaugeMetricFamily("sluice_job_shards_held", "Shards held per logstore",
                                   labels=["project", "logstore", "group"])
        errors = CounterMetricFamily("sluice_job_errors", "Fetch and handler errors (retried)",
                                     labels=["project", "logstore"])
        for c in self.job.consumers:
            cfg = c.config
            shards.add_metric([cfg.project, cfg.logstore, cfg.group], len(c.shards))
            errors.add_metric([cfg.project, cfg.logstore], c.stats["errors"])
        yield shards
        yield errors
        if self.job.dispatcher is not None:
            sent = CounterMetricFamily("sluice_job_alerts_sent", "Alerts delivered per alerter", labels=["alerter"])
            failed = CounterMetricFamily("sluice_job_alerts_failed", "Alerts given up per alerter", labels=["alerter"])
            for name, n in self.job.dispatcher.sent.items():
                sent.add_metric([name], n)
            for name, n in self.job.dispatcher.failed.items():
                failed.add_metric([name], n)
            yield sent
            yield failed


def serve_metrics(job: Job, port: int, host: str = "127.0.0.1") -> None:
    """Expose the job's metrics at http://host:port/metrics (prometheus-client's own HTTP server)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(_JobCollector(job))  # type: ignore[arg-type]
    start_http_server(port, addr=host, registry=registry)


async def run_job(config: JobConfig, *, status: Callable[[dict[str, Any]], None] | None = None,
                  stop: asyncio.Event | None = None, metrics_port: int | None = None) -> None:
    job = Job(config)
    if metrics_port is not None:
        serve_metrics(job, metrics_port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await job.check()
        await job.start()
        while not stop.is_set() and not job.finished:
            if status is not None:
                status(job.status())
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
        log.info("stopping: writing checkpoints and leaving the group")
    finally:
        await job.stop()
        if status is not None:
            status(job.status())
