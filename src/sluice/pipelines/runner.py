"""``sluice run``: start one consumer per (source, logstore) of a job file on one event loop, show a live
status line, stop gracefully (checkpoints written, group left) on SIGTERM/SIGINT.

Before consuming, every source is checked once (credentials, project, logstore), and so is every forward
sink that can be (a HEC token): a wrong key, a missing logstore or a refused token is reported clearly and
the run exits non-zero instead of retrying forever. A sink that fails permanently while running (a token
revoked) stops the job the same way, with its checkpoints at the last acknowledged event.

With ``--metrics-port`` each processor is wrapped by ``_Metered``, which times it, counts what it was
given and samples each shard's lag; without it nothing is added to the data path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Callable


from .._signals import stop_on_signals
from ..consumer import AsyncConsumer, ByteBudget, ConsumerConfig, Processor
from ..consumer.config import default_consumer_name
from ..wire.batch import Batch
from ..wire.errors import ConfigError, SLSError, SluiceError
from .clients import ClientPool
from .config import JobConfig
from .dispatch import DispatchProcessor, Router
from .forward import ForwardProcessor, Sink, build_sinks
from .monitor import MonitorRuntime

__all__ = ["Job", "run_job"]

log = logging.getLogger("sluice.pipelines")


if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


class Job:
    def __init__(self, config: JobConfig, *, metrics: bool = False) -> None:
        self.config = config
        self.clients = ClientPool()
        self.counters: dict[str, int] = {}
        self.consumers: list[AsyncConsumer] = []
        self.monitor: MonitorRuntime | None = None
        self.sinks: list[Sink] = build_sinks(config.forward) if config.forward is not None else []
        self.failure: str | None = None
        self.on_failure: Callable[[], None] | None = None
        self.metrics = JobMetrics(self) if metrics else None
        self.started = time.monotonic()
        for sink in self.sinks:
            sink.on_failure = self._sink_failed
            if self.metrics is not None:
                sink.stats.latency_observer = self.metrics.sink_seconds.labels(sink.kind).observe

    def _sink_failed(self, message: str) -> None:
        self.failure = message
        if self.on_failure is not None:
            self.on_failure()

    async def check(self) -> None:
        """Fail fast and clearly on bad credentials or a missing project/logstore, for every source and
        every dispatch target (a missing target would otherwise be retried forever)."""
        checks: list[tuple[str, str, str, str, str, str | None, str | None, bool, str | None]] = []
        for src in self.config.sources:
            for ls in src.logstores:
                checks.append(("source", src.endpoint, src.access_key_id, src.access_key_secret, f"{src.project}/{ls}",
                               src.security_token, src.ca_bundle, src.tls_verify, src.credentials_file))
            if self.config.dispatch is not None:
                router = Router(self.config.dispatch, src)
                targets = [t for _, t in router.routes] + ([router.default] if router.default else [])
                for t in targets:
                    checks.append(("target", t.endpoint, t.access_key_id, t.access_key_secret,
                                   f"{t.project}/{t.logstore}", t.security_token, t.ca_bundle, t.tls_verify,
                                   t.credentials_file))
        for kind, endpoint, key_id, secret, where, token, ca_bundle, tls_verify, cfile in dict.fromkeys(checks):
            client = self.clients.get(endpoint, key_id, secret, token, ca_bundle=ca_bundle, tls_verify=tls_verify,
                                      credentials_file=cfile)
            project, logstore = where.split("/", 1)
            try:
                await client.get_logstore(project, logstore)
            except SLSError as exc:
                raise ConfigError(f"{kind} {endpoint} {where}: {exc.error_code}: {exc}") from None
            except SluiceError as exc:
                raise ConfigError(f"{kind} {endpoint} {where}: cannot connect: {exc}") from None
        for sink in self.sinks:
            await sink.preflight()

    async def start(self) -> None:
        c = self.config
        budget = ByteBudget(256 << 20)
        for sink in self.sinks:
            await sink.start()
        consumer_name = c.consumer or default_consumer_name()
        if c.monitor is not None:
            self.monitor = MonitorRuntime(c, self.clients, self.counters, consumer_name)
            await self.monitor.start()
        for src in c.sources:
            client = self.clients.get(src.endpoint, src.access_key_id, src.access_key_secret, src.security_token,
                                      ca_bundle=src.ca_bundle, tls_verify=src.tls_verify,
                                      credentials_file=src.credentials_file)
            for ls in src.logstores:
                make: Callable[[], Processor]
                if c.dispatch is not None:
                    router = Router(c.dispatch, src)
                    make = lambda router=router: DispatchProcessor(router, self.clients, self.counters)  # noqa: E731
                elif c.forward is not None:
                    sinks, drain = self.sinks, c.forward.drain_timeout
                    make = lambda: ForwardProcessor(sinks, self.counters, drain)  # noqa: E731
                else:
                    assert self.monitor is not None
                    make = lambda m=self.monitor, cl=client, p=src.project, ls=ls: m.processor(cl, p, ls)  # noqa: E731
                cfg = ConsumerConfig(project=src.project, logstore=ls, group=c.group, consumer=consumer_name,
                                     start=str(c.start), end=None if c.end is None else str(c.end),
                                     heartbeat_interval=c.heartbeat_interval, query=src.query)
                if self.metrics is not None:
                    make = self.metrics.wrap(make, client, src.project, ls)
                consumer = AsyncConsumer(client, cfg, processor=make, budget=budget)
                await consumer.start()
                self.consumers.append(consumer)

    def status(self) -> dict[str, Any]:
        shards = sum(len(c.shards) for c in self.consumers)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {"consumers": len(self.consumers), "shards": shards, **self.counters,
                "mb_per_s": self.counters.get("bytes_in", 0) / 1e6 / elapsed,
                "matched": self.monitor.matched() if self.monitor else 0}

    async def stop(self) -> None:
        for sink in self.sinks:  # processors waiting for buffer space return now; held events still drain
            sink.halt()
        await asyncio.gather(*(c.stop() for c in self.consumers), return_exceptions=True)
        if self.monitor is not None:  # after the data consumers: their last partial counts are written
            await self.monitor.aclose()
        for sink in self.sinks:  # after the consumers: their shards drained the sinks on release
            await sink.aclose()
        await self.clients.aclose()

    @property
    def finished(self) -> bool:
        return bool(self.consumers) and all(c._stopping.is_set() for c in self.consumers)


LAG_SAMPLE_INTERVAL = 2.0  # seconds between GetCursorTime samples per shard (one small request at most)


class _ShardLag:
    """Lag of one shard, in seconds behind the hub: when a batch is handed to the processor, the receive
    time of its first group (GetCursorTime of its cursor, sampled at most every LAG_SAMPLE_INTERVAL s,
    off the data path) is compared with the clock. While a batch is stuck in the processor (a SIEM is
    down, a target refuses) the lag keeps growing; a shard whose processor has been idle for two sample
    intervals is caught up (the consumer long-polls for new data) and shows 0."""

    __slots__ = ("lag", "busy_since", "last_done", "sampled_at", "sampling")

    def __init__(self) -> None:
        self.lag = 0.0
        self.busy_since: float | None = None
        self.last_done = 0.0
        self.sampled_at = -LAG_SAMPLE_INTERVAL
        self.sampling = False

    def value(self, now: float) -> float:
        if self.busy_since is not None:
            return self.lag + (now - self.busy_since)
        if now - self.last_done > 2 * LAG_SAMPLE_INTERVAL:
            return 0.0
        return self.lag


class JobMetrics:
    """The job's histograms (in a job-local registry) and per-shard lag; counters stay in ``job.counters``."""

    def __init__(self, job: Job) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.job = job
        self.registry: CollectorRegistry = CollectorRegistry()
        self.handler_seconds = Histogram("sluice_job_handler_seconds", "Time the job's processor took per batch",
                                         ["project", "logstore"], registry=self.registry)
        self.sink_seconds = Histogram(
            "sluice_job_sink_seconds", "From handing events to a sink to its acknowledgement (queueing, "
            "retries and HEC indexer acks included)", ["sink"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
        self.lag: dict[tuple[str, str, int], _ShardLag] = {}
        self.registry.register(_JobCollector(job, self))  # type: ignore[arg-type]

    def wrap(self, make: Callable[[], Processor], client: Any, project: str, logstore: str) -> Callable[[], Processor]:
        return lambda: _Metered(make(), self, client, project, logstore)


class _Metered(Processor):
    """Delegates to the job's processor; times ``process``, counts logs it did not count itself, samples lag."""

    def __init__(self, inner: Processor, metrics: JobMetrics, client: Any, project: str, logstore: str) -> None:
        self.inner = inner
        self.metrics = metrics
        self.client = client
        self.project, self.logstore = project, logstore
        self.histogram = metrics.handler_seconds.labels(project, logstore)
        self.counts_logs = isinstance(inner, ForwardProcessor)  # it counts the events it builds
        self.lag: _ShardLag | None = None

    async def initialize(self, ctx: Any) -> None:
        self.lag = self.metrics.lag.setdefault((self.project, self.logstore, ctx.shard), _ShardLag())
        await self.inner.initialize(ctx)

    async def process(self, batch: Batch, ctx: Any) -> str | None:
        lag = self.lag
        assert lag is not None
        t0 = time.monotonic()
        lag.busy_since = t0
        if not lag.sampling and t0 - lag.sampled_at >= LAG_SAMPLE_INTERVAL:
            lag.sampling = True
            lag.sampled_at = t0
            asyncio.ensure_future(self._sample(lag, batch, time.time()))
        counters = self.metrics.job.counters
        if not self.counts_logs:
            counters["logs_in"] = counters.get("logs_in", 0) + batch.log_count()
        try:
            return await self.inner.process(batch, ctx)
        finally:
            t1 = time.monotonic()
            lag.busy_since = None
            lag.last_done = t1
            self.histogram.observe(t1 - t0)

    async def _sample(self, lag: _ShardLag, batch: Batch, now: float) -> None:
        try:
            received = await self.client.get_cursor_time(batch.project, batch.logstore, batch.shard, batch.cursor)
            lag.lag = max(0.0, now - received)
        except SluiceError as exc:
            log.debug("shard %d: lag not sampled: %s", batch.shard, exc)
        finally:
            lag.sampling = False

    async def shutdown(self, ctx: Any) -> None:
        await self.inner.shutdown(ctx)


class _JobCollector:
    """Prometheus view of a running job's counters, read at scrape time (no bookkeeping on the data path)."""

    def __init__(self, job: Job, metrics: JobMetrics | None = None) -> None:
        self.job = job
        self.metrics = metrics

    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counters = dict(self.job.counters)
        for key, help_text in (("groups_in", "LogGroups consumed"), ("bytes_in", "Raw bytes consumed"),
                               ("logs_in", "Logs consumed"),
                               ("groups_out", "LogGroups written to dispatch targets, or forwarded and "
                                              "acknowledged by every sink"),
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
        if self.metrics is not None:
            lag = GaugeMetricFamily("sluice_job_lag_seconds", "Seconds the shard's processing is behind the hub "
                                    "(receive time of the batch in hand; 0 when caught up)",
                                    labels=["project", "logstore", "shard"])
            now = time.monotonic()
            for (project, logstore, shard), st in sorted(self.metrics.lag.items()):
                lag.add_metric([project, logstore, str(shard)], st.value(now))
            yield lag
        if self.job.sinks:
            families = {key: CounterMetricFamily(f"sluice_job_sink_{key}", help_text, labels=["sink"])
                        for key, help_text in (("events", "Events acknowledged by the sink"),
                                               ("bytes", "Bytes acknowledged by the sink (before compression)"),
                                               ("requests", "Requests sent (HEC POSTs)"),
                                               ("retries", "Sends retried (timeouts, 429/5xx, reconnects)"),
                                               ("errors", "Send errors seen (each retried, or fatal)"))}
            buffered = GaugeMetricFamily("sluice_job_sink_buffered_bytes", "Bytes handed to the sink and not yet "
                                         "acknowledged", labels=["sink"])
            for sink in self.job.sinks:
                st = sink.stats
                for key, fam in families.items():
                    fam.add_metric([sink.kind], getattr(st, key))
                buffered.add_metric([sink.kind], sink.buffered)
            yield from families.values()
            yield buffered
        if self.job.monitor is not None:
            mon = self.job.monitor
            sent = CounterMetricFamily("sluice_job_alerts_sent", "Alerts delivered per alerter", labels=["alerter"])
            failed = CounterMetricFamily("sluice_job_alerts_failed", "Alerts given up per alerter", labels=["alerter"])
            attempts = CounterMetricFamily("sluice_job_alert_attempts_failed", "Failed alert delivery attempts "
                                           "per alerter (each is retried)", labels=["alerter"])
            for fam, key in ((sent, "sent"), (failed, "failed"), (attempts, "attempts_failed")):
                for name, n in mon.stats[key].items():
                    fam.add_metric([name], n)
            yield sent
            yield failed
            yield attempts
            yield CounterMetricFamily("sluice_job_monitor_late_logs", "Matches dropped because their window had "
                                      "closed (older than the watermark by more than the allowed lateness)",
                                      value=mon.late)


def serve_metrics(job: Job, port: int, host: str = "127.0.0.1") -> None:
    """Expose the job's metrics at http://host:port/metrics (prometheus-client's own HTTP server)."""
    from prometheus_client import start_http_server

    metrics = job.metrics or JobMetrics(job)
    start_http_server(port, addr=host, registry=metrics.registry)


async def run_job(config: JobConfig, *, status: Callable[[dict[str, Any]], None] | None = None,
                  stop: asyncio.Event | None = None, metrics_port: int | None = None) -> None:
    """Run a job until ``stop``, a signal, or (with ``end``) the end; a sink that fails for good stops it
    and is raised as a ConfigError (the CLI exits non-zero with its message)."""
    job = Job(config, metrics=metrics_port is not None)
    if metrics_port is not None:
        serve_metrics(job, metrics_port)
    stop = stop or asyncio.Event()
    job.on_failure = stop.set
    stop_on_signals(stop)
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
    if job.failure is not None:
        raise ConfigError(f"forward {job.failure}")
