"""The consumer's settings: one frozen dataclass passed down whole."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..wire.errors import ConfigError

__all__ = ["ConsumerConfig", "parse_start", "default_consumer_name"]

DEFAULT_HEARTBEAT_INTERVAL = 3.0
DEFAULT_CHECKPOINT_INTERVAL = 2.0
DEFAULT_MAX_IN_FLIGHT_BYTES = 256 << 20
DEFAULT_LONG_POLL = 25.0  # below the hub's 30 s ceiling; idle shards cost one request per 25 s
DEFAULT_MAX_POLL_INTERVAL = 2.0


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def parse_start(value: str | int | float | datetime | None) -> str:
    """A start (or end) position as GetCursor's ``from``: "begin", "end" or unix seconds.

    Accepts "begin"/"end", unix seconds (int/float or digits), ISO 8601, and the seeds' "2018-12-26 0:0:0"
    (read as UTC unless it carries an offset).
    """
    if value is None:
        return "begin"
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return str(int(dt.timestamp()))
    if isinstance(value, (int, float)):
        return str(int(value))
    text = str(value).strip()
    if text.lower() in ("begin", "end"):
        return text.lower()
    try:
        return str(int(float(text)))
    except ValueError:
        pass
    try:
        date, _, clock = text.replace("T", " ").partition(" ")
        y, m, d = (int(p) for p in date.split("-"))
        parts = [int(p) for p in clock.split(":")] if clock else [0, 0, 0]
        parts += [0] * (3 - len(parts))
        return str(int(datetime(y, m, d, parts[0], parts[1], parts[2], tzinfo=timezone.utc).timestamp()))
    except (ValueError, TypeError):
        pass
    try:
        dt = datetime.fromisoformat(text)
        return parse_start(dt)
    except ValueError:
        raise ConfigError(f"start position {value!r} is not begin, end, unix seconds or a date") from None


@dataclass(frozen=True)
class ConsumerConfig:
    """How one consumer follows one logstore in a consumer group.

    Durations are float seconds, sizes are bytes. ``start`` is used only for shards the group has no
    checkpoint for; ``end`` (a time) makes consumption bounded: each shard stops at the cursor of that time.
    ``query`` is an SPL statement the server evaluates on every pull (SLS's rule-based consumption; the hub
    evaluates it too): the handler gets only what it keeps, cursors and checkpoints still move over the raw
    data. A server that refuses it fails ``start()``; data a server returns without evaluating it is refused (the
    shard delivers nothing and logs the error on each retry): never unfiltered logs.
    """

    project: str
    logstore: str
    group: str
    consumer: str = field(default_factory=default_consumer_name)
    start: str = "begin"
    end: str | None = None
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    timeout: float | None = None  # group liveness timeout sent on create; default 2 x heartbeat_interval
    in_order: bool = False
    max_fetch_groups: int = 1000
    checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL
    max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES
    long_poll: float = DEFAULT_LONG_POLL  # hub only; SLS ignores it and we poll adaptively
    max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL
    compress_type: str = "lz4"
    retry_handler_errors: bool = True
    shutdown_grace: float = 30.0  # how long stop()/release waits for a running handler before cancelling it
    create_group: bool = True
    query: str | None = None

    def __post_init__(self) -> None:
        if not self.project or not self.logstore or not self.group:
            raise ConfigError("a consumer needs project, logstore and group")
        if self.heartbeat_interval <= 0:
            raise ConfigError("heartbeat_interval must be > 0")
        object.__setattr__(self, "start", parse_start(self.start))
        if self.query is not None and not isinstance(self.query, str):
            raise ConfigError("query must be an SPL statement (text)")
        object.__setattr__(self, "query", (self.query or "").strip() or None)
        if self.end is not None:
            object.__setattr__(self, "end", parse_start(self.end))

    @property
    def group_timeout(self) -> int:
        return int(self.timeout if self.timeout is not None else max(2 * self.heartbeat_interval, 2))
