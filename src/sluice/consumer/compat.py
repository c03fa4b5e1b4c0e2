"""Drop-in replacements for the official SDK's consumer classes (``aliyun.log.consumer``).

A program written for the SDK switches to sluice by changing its imports only::

    from sluice.consumer import *      # was: from aliyun.log.consumer import *
    from sluice.compat import *        # was: from aliyun.log import *   (LogClient, LogItem, ...)

Every public name of ``aliyun.log.consumer`` exists here with the SDK's signature (an unknown keyword is a
TypeError, as there), every ``LogHubConfig`` option is honoured or refused with a clear error (docs/consumer.md
lists each), the processor protocol is the SDK's (``initialize(shard)``, ``process(log_groups, tracker)``,
``shutdown(tracker)``) and so is the tracker (``save_check_point(persistent, cursor=None)``...).

Underneath runs ``AsyncConsumer``: every shard fetched concurrently with the next batch prefetched, long-poll
against the hub, quick handoffs. ``process`` receives SDK-shaped objects decoded from the pulled bytes in C
(``sdkobjects.py``); each processor call runs on the worker's thread pool (``worker_pool_size``, or the
``shared_executor``), as in the SDK, so blocking code in it is fine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from enum import Enum
from typing import Any, Callable

from ..client import AsyncClient
from ..client._async import PullResult
from ..wire import errors as E
from ..wire.batch import Batch
from .config import ConsumerConfig
from .memory import tune_allocator
from .processor import Processor, ShardContext
from ..client.compat import as_log_exception, sdk_time
from ..client.sdkobjects import SDKLogGroupList, flatten
from .worker import AsyncConsumer

__all__ = [
    "CursorPosition",
    "ConsumerStatus",
    "LogHubConfig",
    "ConsumerProcessorBase",
    "ConsumerProcessorAdaptor",
    "ConsumerJsonProcessorBase",
    "ConsumerWorker",
    "CheckPointTracker",
    "AUTH_VERSION_1",
    "AUTH_VERSION_4",
]

log = logging.getLogger("sluice.consumer")

AUTH_VERSION_1 = "v1"  # the SDK's constants (aliyun.log.auth)
AUTH_VERSION_4 = "v4"


class CursorPosition(Enum):
    BEGIN_CURSOR = "BEGIN_CURSOR"
    END_CURSOR = "END_CURSOR"
    SPECIAL_TIMER_CURSOR = "SPECIAL_TIMER_CURSOR"


class ConsumerStatus(Enum):
    INITIALIZING = "INITIALIZING"
    PROCESSING = "PROCESSING"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    SHUTDOWN_COMPLETE = "SHUTDOWN_COMPLETE"


class LogHubConfig:
    """The SDK's ``LogHubConfig``: same positional and keyword parameters; an unknown keyword is a TypeError.

    Defaults that differ from the SDK's, and why: ``heartbeat_interval`` None means sluice's 3 s (shards move
    within seconds when a consumer dies) instead of 20 s; ``data_fetch_interval`` is the longest pause between
    empty fetches against SLS (against a hub, fetches long-poll and never pause) instead of the main-loop
    period. ``consumer_group_time_out`` (set after construction, as the SDK allows) is honoured."""

    def __init__(self, endpoint: str, access_key_id: str, access_key: str, project: str, logstore: str,
                 consumer_group_name: str, consumer_name: str, cursor_position: CursorPosition | None = None,
                 heartbeat_interval: float | None = None, data_fetch_interval: float | None = None,
                 in_order: bool = False, cursor_start_time: Any = None, security_token: str | None = None,
                 max_fetch_log_group_size: int | None = None, worker_pool_size: int | None = None,
                 shared_executor: concurrent.futures.Executor | None = None, cursor_end_time: Any = None,
                 credentials_refresher: Callable[[], Any] | None = None, auth_version: str = AUTH_VERSION_1,
                 region: str = "", query: str | None = None, accept_compress_type: str | None = None,
                 processor: str | None = None) -> None:
        self.endpoint = endpoint
        self.accessKeyId = access_key_id
        self.accessKey = access_key
        self.project = project
        self.logstore = logstore
        self.consumer_group_name = consumer_group_name
        self.consumer_name = consumer_name
        self.cursor_position = cursor_position or CursorPosition.SPECIAL_TIMER_CURSOR
        self.heartbeat_interval = heartbeat_interval
        self.data_fetch_interval = data_fetch_interval
        self.in_order = in_order
        self.cursor_start_time = cursor_start_time or "begin"
        self.securityToken = security_token
        self.max_fetch_log_group_size = max_fetch_log_group_size or 1000
        self.worker_pool_size = worker_pool_size or 2
        self.shared_executor = shared_executor
        self.consumer_group_time_out: float | None = None
        self.cursor_end_time = cursor_end_time or None
        self.credentials_refresher = credentials_refresher
        self.auth_version = auth_version
        self.region = region
        self.query = query.strip() if isinstance(query, str) and query.strip() else None
        self.accept_compress_type = accept_compress_type
        self.processor = processor or None
        if not 0 < self.max_fetch_log_group_size <= 1000:
            raise E.ConfigError(f"max_fetch_log_group_size must be 1..1000, not {max_fetch_log_group_size}")
        if self.worker_pool_size < 1:
            raise E.ConfigError(f"worker_pool_size must be >= 1, not {worker_pool_size}")
        if auth_version not in (AUTH_VERSION_1, AUTH_VERSION_4):
            raise E.ConfigError(f"auth_version must be {AUTH_VERSION_1!r} or {AUTH_VERSION_4!r}, not {auth_version!r}")
        if auth_version == AUTH_VERSION_4 and not region:
            raise E.ConfigError("auth_version v4 needs region=")
        if accept_compress_type not in (None, "lz4", "zstd", "deflate"):
            raise E.ConfigError(f"accept_compress_type must be lz4, zstd or deflate, not {accept_compress_type!r}")

    def to_consumer_config(self) -> ConsumerConfig:
        if self.cursor_position == CursorPosition.BEGIN_CURSOR:
            start = "begin"
        elif self.cursor_position == CursorPosition.END_CURSOR:
            start = "end"
        else:
            start = sdk_time(self.cursor_start_time)
        kwargs: dict[str, Any] = {}
        if self.heartbeat_interval:
            kwargs["heartbeat_interval"] = float(self.heartbeat_interval)
        if self.data_fetch_interval:
            kwargs["max_poll_interval"] = float(self.data_fetch_interval)
        if self.consumer_group_time_out:
            kwargs["timeout"] = float(self.consumer_group_time_out)
        return ConsumerConfig(project=self.project, logstore=self.logstore, group=self.consumer_group_name,
                              consumer=self.consumer_name, start=start,
                              end=sdk_time(self.cursor_end_time) if self.cursor_end_time else None,
                              in_order=self.in_order, max_fetch_groups=self.max_fetch_log_group_size,
                              compress_type=self.accept_compress_type or "lz4", **kwargs)


class _GroupClientInfo:
    """What the SDK's tracker exposes as ``consumer_group_client`` (its names: mproject, mlogstore...)."""

    def __init__(self, option: LogHubConfig) -> None:
        self.mproject = option.project
        self.mlogstore = option.logstore
        self.mconsumer_group = option.consumer_group_name
        self.mconsumer = option.consumer_name


class CheckPointTracker:
    """The SDK's checkpoint tracker (``ConsumerCheckpointTracker``), over a ``ShardContext``. Callable from
    the processor's thread. A checkpoint saved with ``persistent=False`` is written within the consumer's
    checkpoint interval (2 s; the SDK: up to 60 s) and always when the shard is released."""

    def __init__(self, ctx: ShardContext, loop: asyncio.AbstractEventLoop, option: LogHubConfig) -> None:
        self._ctx = ctx
        self._loop = loop
        self.shard_id = ctx.shard
        self.consumer_name = option.consumer_name
        self.consumer_group_client = _GroupClientInfo(option)

    @property
    def cursor(self) -> str:
        return self._ctx.cursor

    def get_cursor(self) -> str:
        return self._ctx.cursor

    def set_cursor(self, cursor: str) -> None:
        self._ctx.cursor = cursor

    def get_check_point(self) -> str:
        return self._ctx.pending or self._ctx.committed

    def set_memory_check_point(self, cursor: str) -> None:
        self._ctx.checkpoint(cursor)

    def set_persistent_check_point(self, cursor: str) -> None:
        self._ctx.committed = cursor

    def save_check_point(self, persistent: bool, cursor: str | None = None) -> None:
        """Mark the checkpoint (default: the next cursor of the batch being processed); ``persistent``
        writes it to the server before returning."""
        self._ctx.checkpoint(cursor)
        if persistent:
            self.flush_check_point()

    def flush_check_point(self) -> None:
        asyncio.run_coroutine_threadsafe(self._ctx.flush(), self._loop).result()

    def flush_check(self) -> None:
        """The SDK flushes here once a minute; sluice's consumer writes marked checkpoints on its own."""


class ConsumerProcessorBase:
    """Subclass and implement ``process(log_groups, check_point_tracker)`` (and optionally ``initialize``
    and ``shutdown``), exactly as with the SDK."""

    def __init__(self) -> None:
        self.shard_id = -1
        self.last_check_time = 0.0
        self.checkpoint_timeout = 3

    def initialize(self, shard: int) -> None:
        self.shard_id = shard

    def process(self, log_groups: Any, check_point_tracker: CheckPointTracker) -> Any:
        raise NotImplementedError("not create method process")

    def save_checkpoint(self, tracker: CheckPointTracker, force: bool = False) -> None:
        now = time.time()
        timeout = getattr(self, "checkpoint_timeout", 3)
        try:
            if force or now - getattr(self, "last_check_time", 0) > timeout:
                self.last_check_time = now
                tracker.save_check_point(True)
            else:
                tracker.save_check_point(False)
        except Exception as exc:  # noqa: BLE001 - the SDK logs a failed checkpoint and goes on
            log.warning("Fail to store checkpoint for shard %s, error: %s", self.shard_id, exc)

    def shutdown(self, check_point_tracker: CheckPointTracker) -> None:
        self.save_checkpoint(check_point_tracker, force=True)


class ConsumerJsonProcessorBase(ConsumerProcessorBase):
    """``process(flattern_json_list, check_point_tracker)`` receives the SDK's flattened logs: one dict per
    log with ``__time__``, ``__topic__``, ``__source__``, ``__tag__:<key>`` and the fields."""

    def process(self, flattern_json_list: list[dict[str, Any]], check_point_tracker: CheckPointTracker) -> Any:
        raise NotImplementedError("not create method process")


class ConsumerProcessorAdaptor(ConsumerProcessorBase):
    """``ConsumerWorker(ConsumerProcessorAdaptor, option, args=(func,))``: ``func(shard_id, log_groups)``;
    returning exactly ``False`` leaves the checkpoint where it was."""

    def __init__(self, func: Callable[[int, Any], Any]) -> None:
        super().__init__()
        self.func = func

    def process(self, log_groups: Any, check_point_tracker: CheckPointTracker) -> Any:
        ret = self.func(self.shard_id, log_groups)
        if isinstance(ret, bool) and not ret:
            return None
        self.save_checkpoint(check_point_tracker)
        return None


class _SDKProcessor(Processor):
    """Runs an SDK-style processor's methods on the worker's executor, with SDK-shaped arguments."""

    def __init__(self, worker: "ConsumerWorker") -> None:
        self._worker = worker
        self._proc: Any = None
        self._tracker: CheckPointTracker | None = None
        self._json = False

    def _run(self, fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
        return asyncio.get_running_loop().run_in_executor(self._worker.executor, fn, *args)

    async def initialize(self, ctx: ShardContext) -> None:
        w = self._worker
        self._proc = w.make_processor(*w.process_args, **w.process_kwargs)
        self._json = isinstance(self._proc, ConsumerJsonProcessorBase)
        self._tracker = CheckPointTracker(ctx, asyncio.get_running_loop(), w.option)
        await self._run(self._proc.initialize, ctx.shard)

    async def process(self, batch: Batch, ctx: ShardContext) -> str | None:
        groups = SDKLogGroupList.of(batch)
        result = await self._run(self._process, groups)
        return result if isinstance(result, str) and result else None

    def _process(self, groups: SDKLogGroupList) -> Any:
        return self._proc.process(flatten(groups) if self._json else groups, self._tracker)

    async def shutdown(self, ctx: ShardContext) -> None:
        if self._proc is not None:
            await self._run(self._proc.shutdown, self._tracker)


class _SPLClient(AsyncClient):
    """The worker's client when the config has an SPL ``query``/``processor``: every pull carries it, as the
    SDK sends it, and an answer that shows the server did not evaluate it (data without the
    ``x-log-rawdatacount`` header SLS sends with filtered data) stops the consumer instead of delivering
    unfiltered logs."""

    query: str | None = None
    processor: str | None = None
    on_unfiltered: Callable[[str], None] | None = None

    async def pull_logs(self, *args: Any, **kwargs: Any) -> PullResult:  # type: ignore[override]
        kwargs.update(query=self.query, processor=self.processor)  # the config's, whatever the worker passes
        result = await super().pull_logs(*args, **kwargs)
        if result.count and result.raw_count_before_query < 0:
            if self.on_unfiltered is not None:
                self.on_unfiltered(f"{self.endpoint} returned data for the SPL query without evaluating it")
            return PullResult(result.project, result.logstore, result.shard, result.cursor, result.cursor, 0,
                              b"", 0)
        return result


class ConsumerWorker(threading.Thread):
    """The SDK's ``ConsumerWorker``: a thread running one consumer of one logstore.

    ``ConsumerWorker(ProcessorClass, consumer_option=LogHubConfig(...), args=(...), kwargs={...})``;
    ``start(join=False)``: setting up (consumer group, SPL check) happens before ``start`` returns, and a
    failure there raises from ``start``; with ``join=True`` it blocks until the worker stops, and Ctrl-C
    shuts it down cleanly (checkpoints written, shards released) and returns, as the SDK does.
    ``shutdown()`` returns once every shard is released and checkpointed.
    """

    def __init__(self, make_processor: Callable[..., Any], consumer_option: LogHubConfig,
                 args: tuple[Any, ...] | None = None, kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(name=f"sluice-consumer-{consumer_option.consumer_name}", daemon=True)
        self.option = consumer_option
        self.make_processor = make_processor
        self.process_args = tuple(args or ())
        self.process_kwargs = dict(kwargs or {})
        self.config = consumer_option.to_consumer_config()  # bad options raise here, as in the SDK's constructor
        self._own_executor = consumer_option.shared_executor is None
        self._executor: concurrent.futures.Executor | None = consumer_option.shared_executor
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: AsyncConsumer | None = None
        self._ready = threading.Event()
        self.shut_down_flag = False
        self.error: BaseException | None = None

    @property
    def executor(self) -> concurrent.futures.Executor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(self.option.worker_pool_size,
                                                                   thread_name_prefix="sluice-processor")
        return self._executor

    def _client(self) -> AsyncClient:
        o = self.option
        spl = o.query is not None or o.processor is not None
        client = (_SPLClient if spl else AsyncClient)(
            o.endpoint, o.accessKeyId, o.accessKey, security_token=o.securityToken,
            auth_version=o.auth_version or AUTH_VERSION_1, region=o.region or None,
            credentials_provider=o.credentials_refresher)
        if isinstance(client, _SPLClient):
            client.query, client.processor, client.on_unfiltered = o.query, o.processor, self._unfiltered
        return client

    def _unfiltered(self, why: str) -> None:
        if self.error is None:
            self.error = E.ConfigError(f"{why}; stopping (the SDK's query/processor options need a server that "
                                       f"evaluates SPL)")
            log.error("%s", self.error)
        if self._consumer is not None:
            asyncio.ensure_future(self._consumer.stop())

    def run(self) -> None:
        import uvloop  # noqa: PLC0415 - ~20% less CPU per request than asyncio's loop (bench/consumer.py)
        # A program switched by its imports cannot call tune_allocator() itself; a consumer process is what
        # it is for (page faults were 8-12% of a busy consumer's CPU: docs/consumer.md)
        tune_allocator()
        try:
            uvloop.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported through .error and start()
            if self.error is None:
                self.error = exc
            if self._ready.is_set():
                log.exception("consumer %s stopped on an error", self.option.consumer_name)
        finally:
            self._ready.set()
            if self._own_executor and self._executor is not None:
                self._executor.shutdown(wait=False)

    async def _main(self) -> None:
        o = self.option
        client = self._client()
        self._loop = asyncio.get_running_loop()
        self._consumer = AsyncConsumer(client, self.config, processor=lambda: _SDKProcessor(self))
        try:
            if isinstance(client, _SPLClient):
                await self._check_spl(client)
            await self._consumer.start()  # creates (or updates) the consumer group
            self._ready.set()
            await self._consumer.run()
        finally:
            await client.aclose()

    async def _check_spl(self, client: "_SPLClient") -> None:
        """Refuse at start a query the server cannot evaluate: ask it once (on the first shard, count 1) and
        judge by its answer: an SLS error is the server's refusal."""
        o = self.option
        shards = await client.list_shards(o.project, o.logstore)
        if not shards:
            return
        shard = int(shards[0]["shardID"])
        cursor = await client.get_cursor(o.project, o.logstore, shard, "begin")
        what = f"query {o.query!r}" if o.query else f"processor {o.processor!r}"
        try:
            await client.pull_logs(o.project, o.logstore, shard, cursor, count=1)
        except E.SLSError as exc:
            raise E.ConfigError(f"{o.endpoint} refused the SPL {what}: {exc.error_code}: {exc} (the consumer "
                                f"would read unfiltered data; a server that evaluates SPL is needed)") from None
        if self.error is not None:
            raise self.error

    def start(self, join: bool = False) -> None:  # type: ignore[override]
        super().start()
        self._ready.wait()
        if self.error is not None and not self.is_alive():
            if isinstance(self.error, (E.SLSError, E.TransportError)):  # as the SDK's constructor raises them
                raise as_log_exception(self.error) from self.error
            raise self.error
        if join:
            try:
                while self.is_alive():
                    self.join(timeout=1)
            except KeyboardInterrupt:
                log.info("*** try to exit ****")
                self.shutdown()

    def shutdown(self) -> None:
        """Stop: release every shard (processors' ``shutdown`` run, checkpoints written), leave the group."""
        self.shut_down_flag = True
        if not self.is_alive() and not self._ready.is_set():
            return  # never started
        self._ready.wait(30)
        loop, consumer = self._loop, self._consumer
        if loop is not None and consumer is not None and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(consumer.stop(), loop).result(timeout=90)
            except Exception:  # noqa: BLE001 - the loop may already be gone
                pass
        if threading.current_thread() is not self:
            self.join(timeout=60)

    def shutdown_and_wait(self) -> None:
        self.shutdown()
