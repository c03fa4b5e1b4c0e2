"""The hub's settings, one frozen dataclass passed down whole (CLI flags map onto its fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..wire.errors import ConfigError

__all__ = ["HubConfig", "parse_access_key", "parse_listen"]

DEFAULT_PORT = 8080
DEFAULT_GROUP_QUOTA = 30  # SLS allows 30 consumer groups per logstore today (10 when the seeds were written)
DEFAULT_MAX_PUT_BYTES = 10 << 20  # uncompressed LogGroup per PutLogs (SLS documents 5-10 MB)
DEFAULT_MAX_PUT_LOGS = 40960
DEFAULT_MAX_PULL_BYTES = 4 << 20  # a PullLogs response stops after this many raw bytes (at least one group);
# 4 MiB, not more: lz4 (de)compression of bigger buffers ran 3-6x slower here (fresh pages every time)
DEFAULT_MAX_PULL_COUNT = 1000  # SLS: count is 0..1000 LogGroups
DEFAULT_MAX_WAIT = 30.0  # long-poll ceiling for sluice's own consumer, seconds
DEFAULT_TTL_INTERVAL = 60.0


@dataclass(frozen=True)
class HubConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    access_keys: dict[str, str] = field(default_factory=dict)
    no_auth: bool = False
    sync_full: bool = False
    hostnames: tuple[str, ...] = ("localhost",)
    region: str = "sluice-local"
    group_quota: int = DEFAULT_GROUP_QUOTA
    max_put_bytes: int = DEFAULT_MAX_PUT_BYTES
    max_put_logs: int = DEFAULT_MAX_PUT_LOGS
    max_pull_bytes: int = DEFAULT_MAX_PULL_BYTES
    max_wait: float = DEFAULT_MAX_WAIT
    ttl_interval: float = DEFAULT_TTL_INTERVAL
    max_skew: float | None = 900.0
    metrics_token: str | None = None

    def __post_init__(self) -> None:
        if not self.access_keys and not self.no_auth:
            raise ConfigError(
                "the hub needs at least one --access-key ID:SECRET, or --no-auth to accept unsigned requests")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"--listen port {self.port} is out of range")
        if self.group_quota < 1:
            raise ConfigError("--group-quota must be at least 1")
        if self.max_put_bytes < 1024 or self.max_put_logs < 1:
            raise ConfigError("--max-put-bytes must be >= 1024 and --max-put-logs >= 1")


def parse_access_key(value: str) -> tuple[str, str]:
    key_id, sep, secret = value.partition(":")
    if not sep or not key_id or not secret:
        raise ConfigError(f"--access-key must look like ID:SECRET, got {value!r}")
    return key_id, secret


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, DEFAULT_PORT
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise ConfigError(f"--listen must look like HOST:PORT, got {value!r}") from None
