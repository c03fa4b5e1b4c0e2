"""One official-SDK ConsumerWorker in its own process, for tests that kill or stop consumers.

Run from the repository root::

    python -m tests.integration._sdk_worker --endpoint 127.0.0.5 --key-id ID --key-secret SECRET \
        --project p --logstore ls --group g --consumer c1 --out /tmp/c1.jsonl

It consumes with the SDK unchanged (``ConsumerWorker`` + a ``ConsumerProcessorBase`` subclass) and appends
one JSON line per event to ``--out``, flushed after every batch, so a SIGKILL loses nothing that was
processed:

* ``{"ev": "init", "consumer": c, "shard": s, "t": ...}`` when the SDK initialises a shard consumer,
* ``{"ev": "log", "consumer": c, "shard": s, "id": "...", "t": ...}`` for every processed log (its ``id`` content),
* ``{"ev": "shutdown", "consumer": c, "shard": s, "t": ...}`` after the shard's final checkpoint flush.

``t`` is ``time.time()`` (comparable across processes on one machine). SIGTERM or SIGINT shuts the worker
down gracefully (``worker.shutdown()``, which flushes every shard's checkpoint); SIGKILL is a crash.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import IO, Any

from aliyun.log.consumer import ConsumerProcessorBase, ConsumerWorker, CursorPosition, LogHubConfig


class _Sink:
    """The output file, shared by the worker's pool threads."""

    def __init__(self, path: str, consumer: str) -> None:
        self._fh: IO[str] = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self.consumer = consumer

    def write(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            for rec in records:
                self._fh.write(json.dumps({"consumer": self.consumer, **rec}) + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


class RecordingProcessor(ConsumerProcessorBase):
    """Records every processed log's id, then checkpoints the SDK's usual way (persisted at most every
    ``checkpoint_timeout`` seconds, forced at shutdown)."""

    def __init__(self, sink: _Sink, checkpoint_timeout: float) -> None:
        super().__init__()
        self.sink = sink
        self.checkpoint_timeout = checkpoint_timeout

    def initialize(self, shard: int) -> None:
        super().initialize(shard)
        self.sink.write([{"ev": "init", "shard": shard, "t": time.time()}])

    def process(self, log_groups: Any, check_point_tracker: Any) -> None:
        now = time.time()
        records = []
        for group in log_groups.LogGroups:
            for log in group.Logs:
                ident = next((c.Value for c in log.Contents if c.Key == "id"), None)
                records.append({"ev": "log", "shard": self.shard_id, "id": ident, "t": now})
        self.sink.write(records)
        self.save_checkpoint(check_point_tracker)

    def shutdown(self, check_point_tracker: Any) -> None:
        super().shutdown(check_point_tracker)
        self.sink.write([{"ev": "shutdown", "shard": self.shard_id, "t": time.time()}])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--key-id", required=True)
    ap.add_argument("--key-secret", required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--logstore", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--consumer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--heartbeat", type=int, default=1, help="heartbeat_interval, seconds")
    ap.add_argument("--fetch", type=float, default=0.2, help="data_fetch_interval, seconds")
    ap.add_argument("--timeout", type=int, default=4, help="the group timeout sent on create/update")
    ap.add_argument("--checkpoint-timeout", type=float, default=3.0)
    ap.add_argument("--in-order", action="store_true")
    args = ap.parse_args(argv)

    option = LogHubConfig(args.endpoint, args.key_id, args.key_secret, args.project, args.logstore, args.group,
                          args.consumer, cursor_position=CursorPosition.BEGIN_CURSOR,
                          heartbeat_interval=args.heartbeat, data_fetch_interval=args.fetch, in_order=args.in_order)
    option.consumer_group_time_out = args.timeout  # what the SDK sends as the group timeout (default 2 x heartbeat)
    sink = _Sink(args.out, args.consumer)
    worker = ConsumerWorker(RecordingProcessor, option, args=(sink, args.checkpoint_timeout))
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.start()
    sink.write([{"ev": "started", "shard": -1, "t": time.time()}])
    while not stop.is_set() and worker.is_alive():
        stop.wait(0.2)
    worker.shutdown()
    worker.join(60)
    sink.write([{"ev": "stopped", "shard": -1, "t": time.time()}])
    sink.close()
    return 0 if not worker.is_alive() else 1


if __name__ == "__main__":
    sys.exit(main())
