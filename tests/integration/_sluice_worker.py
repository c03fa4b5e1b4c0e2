"""Run one sluice ``AsyncConsumer`` as its own process, for the consumer-group tests.

    python tests/integration/_sluice_worker.py --endpoint URL --key-id ID --key-secret SECRET \\
        --project P --logstore LS --group G --consumer NAME --out FILE [--start begin] [--end T] ...

Every handled batch appends one JSON line to ``--out`` and flushes it before the handler returns (so before
the batch can be checkpointed): ``{"t": <unix time>, "pid": ..., "shard": ..., "cursor": ...,
"next": ..., "ids": [<the "id" field of each log>]}``. Lifecycle lines: ``{"event": "started"}`` once the
consumer started, ``{"event": "stopped"}`` after a graceful stop. SIGTERM/SIGINT stop it gracefully
(``stop()``: shards released, checkpoints written, group left); SIGKILL is the crash case.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import time

from sluice.client import AsyncClient
from sluice.consumer import AsyncConsumer, ConsumerConfig
from sluice.wire.batch import Batch


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    for name in ("endpoint", "key-id", "key-secret", "project", "logstore", "group", "consumer", "out"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--start", default="begin")
    p.add_argument("--end", default=None)
    p.add_argument("--heartbeat", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--checkpoint-interval", type=float, default=0.5)
    p.add_argument("--long-poll", type=float, default=None, help="hub long-poll wait (default: the library's)")
    p.add_argument("--client-timeout", type=float, default=10.0, help="per-request timeout, seconds")
    p.add_argument("--handler-delay", type=float, default=0.0, help="seconds each batch takes to handle")
    return p.parse_args(argv)


async def _main(a: argparse.Namespace) -> None:
    out = open(a.out, "a", encoding="utf-8")

    def emit(record: dict[str, object]) -> None:
        out.write(json.dumps(record) + "\n")
        out.flush()

    async def handle(batch: Batch) -> None:
        if a.handler_delay:
            await asyncio.sleep(a.handler_delay)
        ids = [str(log.get("id", "")) for log in batch.logs()]
        emit({"t": time.time(), "pid": os.getpid(), "shard": batch.shard, "cursor": batch.cursor,
              "next": batch.next_cursor, "ids": ids})

    config = ConsumerConfig(project=a.project, logstore=a.logstore, group=a.group, consumer=a.consumer,
                            start=a.start, end=a.end, heartbeat_interval=a.heartbeat, timeout=a.timeout,
                            checkpoint_interval=a.checkpoint_interval,
                            **({} if a.long_poll is None else {"long_poll": a.long_poll}))
    client = AsyncClient(a.endpoint, a.key_id, a.key_secret, timeout=a.client_timeout)
    consumer = AsyncConsumer(client, config, handler=handle)
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stopping.append(asyncio.ensure_future(consumer.stop())))
    try:
        await consumer.start()
        emit({"event": "started", "pid": os.getpid(), "t": time.time()})
        await consumer.run()
        for task in stopping:
            await task
        emit({"event": "stopped", "pid": os.getpid(), "t": time.time()})
    finally:
        await client.aclose()
        out.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    asyncio.run(_main(_args()))
