"""The hub's settings, one frozen dataclass passed down whole (CLI flags map onto its fields).

Also the access-key table: ``--access-key ID:SECRET[:PROJECT,...][:ro]`` and the ``--keys-file`` YAML
(docs/security.md), parsed here into ``AccessKey`` values so that ``auth.py`` only decides.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..wire.errors import ConfigError

__all__ = ["AccessKey", "HubConfig", "cli_fields", "load_keys_file", "parse_access_key", "parse_key_spec",
           "parse_listen"]

log = logging.getLogger("sluice.hub")

DEFAULT_PORT = 8080
DEFAULT_GROUP_QUOTA = 30  # SLS allows 30 consumer groups per logstore today (10 when the seeds were written)
DEFAULT_MAX_PUT_BYTES = 10 << 20  # uncompressed LogGroup per PutLogs (SLS documents 5-10 MB)
DEFAULT_MAX_PUT_LOGS = 40960
DEFAULT_MAX_PULL_BYTES = 4 << 20  # a PullLogs response stops after this many raw bytes (at least one group);
# 4 MiB, not more: lz4 (de)compression of bigger buffers ran 3-6x slower here (fresh pages every time)
DEFAULT_MAX_PULL_COUNT = 1000  # SLS: count is 0..1000 LogGroups
DEFAULT_MAX_WAIT = 30.0  # long-poll ceiling for sluice's own consumer, seconds
DEFAULT_TTL_INTERVAL = 60.0
DEFAULT_MAX_OPEN_SEGMENTS = 128  # store/segments.py's LRU of write descriptors; well under `ulimit -n 1024`
DEFAULT_MAX_OPEN_INDEXES = 64  # #21: query/indexer.py's LRU of open DuckDB index files (docs/query.md)
# Memory bounds (docs/security.md): request bodies held at once (compressed body + declared raw size), how
# long a request may wait for room before 503 ServerBusy, how long a body may take to arrive after its
# headers, and how long a connection may sit idle (also bounds a client that never finishes its headers).
DEFAULT_MAX_INFLIGHT_BYTES = 256 << 20
DEFAULT_INFLIGHT_WAIT = 5.0
DEFAULT_BODY_TIMEOUT = 60.0
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_MAX_SKEW = 900.0  # SLS refuses a signed request more than 15 minutes off the server's clock


def _cli(default: Any, help: str) -> Any:
    """A field that ``sluice hub`` offers as ``--<field-name>`` with this help text: the CLI reads the option
    list, the default and the type from here (one source: cli.py repeats none of them)."""
    return field(default=default, metadata={"cli_help": help})


def cli_fields() -> list[tuple[str, Any, str]]:
    """(field name, default, help) of every HubConfig field ``sluice hub`` offers as an option, in order."""
    from dataclasses import fields

    return [(f.name, f.default, f.metadata["cli_help"]) for f in fields(HubConfig) if "cli_help" in f.metadata]


@dataclass(frozen=True)
class AccessKey:
    """One key the hub accepts. ``projects`` None means every project (and, unless read-only, the right
    to create and delete projects); ``security_token`` makes it an STS-style temporary key: requests must
    carry that token (``x-acs-security-token``, signed); ``expires`` (unix seconds) ends the key."""

    key_id: str
    secret: str = field(repr=False)
    projects: frozenset[str] | None = None
    read_only: bool = False
    security_token: str | None = field(default=None, repr=False)
    expires: float | None = None

    def __post_init__(self) -> None:
        if not self.key_id or not self.secret:
            raise ConfigError("an access key needs a non-empty id and secret")
        if self.projects is not None and not self.projects:
            raise ConfigError(f"access key {self.key_id!r}: an empty project list would allow nothing; "
                              f"leave it out (or use '*') for every project")


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
    group_quota: int = _cli(DEFAULT_GROUP_QUOTA, "Consumer groups allowed per logstore.")
    max_put_bytes: int = _cli(DEFAULT_MAX_PUT_BYTES, "Largest uncompressed PutLogs body.")
    max_put_logs: int = _cli(DEFAULT_MAX_PUT_LOGS, "Most logs in one PutLogs request.")
    max_pull_bytes: int = DEFAULT_MAX_PULL_BYTES
    max_wait: float = DEFAULT_MAX_WAIT
    ttl_interval: float = _cli(DEFAULT_TTL_INTERVAL, "Seconds between retention passes.")
    max_skew: float | None = _cli(DEFAULT_MAX_SKEW, "Seconds a signed request's time may differ from the hub's "
                                  "clock (SLS: 15 min); older requests, replays included, get RequestTimeTooSkewed.")
    metrics_token: str | None = None
    keys: tuple[AccessKey, ...] = ()  # scoped keys (--access-key with projects/ro, --keys-file)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_inflight_bytes: int = _cli(DEFAULT_MAX_INFLIGHT_BYTES, "Request-body bytes held at once over all "
                                   "connections; beyond, requests wait, then 503.")
    inflight_wait: float = _cli(DEFAULT_INFLIGHT_WAIT, "Seconds a request may wait for --max-inflight-bytes room "
                                "before 503 ServerBusy.")
    body_timeout: float = _cli(DEFAULT_BODY_TIMEOUT, "Seconds a request body may take to arrive after its headers; "
                               "then RequestTimeout and close.")
    idle_timeout: float = _cli(DEFAULT_IDLE_TIMEOUT, "Seconds an idle connection (or one that never finishes its "
                               "headers) stays open.")
    max_open_segments: int = _cli(DEFAULT_MAX_OPEN_SEGMENTS, "Segment files kept open for writing (least recently "
                                  "written closed first): the data's descriptor budget, whatever the number of shards.")
    max_open_indexes: int = _cli(DEFAULT_MAX_OPEN_INDEXES, "Search index files (one DuckDB per indexed logstore) "
                                 "kept open (least recently used closed first, reopened on demand; one in use "
                                 "is never closed).")

    def __post_init__(self) -> None:
        if not self.access_keys and not self.keys and not self.no_auth:
            raise ConfigError("the hub needs at least one --access-key ID:SECRET (or --keys-file), or --no-auth "
                              "to accept unsigned requests")
        self.key_table()  # duplicate ids are an error
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together (the certificate chain and its private key)")
        if self.max_inflight_bytes < self.max_put_bytes:
            raise ConfigError(f"--max-inflight-bytes ({self.max_inflight_bytes}) must be at least --max-put-bytes "
                              f"({self.max_put_bytes}), or the largest allowed request could never be read")
        for name in ("inflight_wait", "body_timeout", "idle_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be a number of seconds >= 0, got {value}")
        if self.max_skew is not None and not (math.isfinite(self.max_skew) and self.max_skew > 0):
            raise ConfigError(f"--max-skew must be a number of seconds > 0, got {self.max_skew}")
        if self.body_timeout <= 0 or self.idle_timeout <= 0:
            raise ConfigError("--body-timeout and --idle-timeout must be > 0 (a slow client must be cut off)")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"--listen port {self.port} is out of range")
        if self.group_quota < 1:
            raise ConfigError("--group-quota must be at least 1")
        if self.max_open_segments < 1:
            raise ConfigError("--max-open-segments must be at least 1")
        if self.max_open_indexes < 1:
            raise ConfigError("--max-open-indexes must be at least 1")
        if self.max_put_bytes < 1024 or self.max_put_logs < 1:
            raise ConfigError("--max-put-bytes must be >= 1024 and --max-put-logs >= 1")

    def key_table(self) -> dict[str, AccessKey]:
        """Every accepted key by id: ``access_keys`` (unrestricted) and ``keys``."""
        table: dict[str, AccessKey] = {}
        for key in [AccessKey(i, s) for i, s in self.access_keys.items()] + list(self.keys):
            if key.key_id in table:
                raise ConfigError(f"access key {key.key_id!r} is configured twice")
            table[key.key_id] = key
        return table


def parse_access_key(value: str) -> tuple[str, str]:
    key_id, sep, secret = value.partition(":")
    if not sep or not key_id or not secret:
        raise ConfigError(f"--access-key must look like ID:SECRET, got {value!r}")
    return key_id, secret


def parse_key_spec(value: str) -> AccessKey:
    """``ID:SECRET[:PROJECT,...][:ro|rw]``: no project list (or ``*``) means every project. A secret that
    contains ':' cannot be given this way; use --keys-file."""
    parts = value.split(":")
    if len(parts) < 2 or len(parts) > 4 or not parts[0] or not parts[1]:
        raise ConfigError(f"--access-key must look like ID:SECRET[:PROJECT,...][:ro], got {_redact(value)!r} "
                          f"(a secret containing ':' goes in --keys-file)")
    key_id, secret, *rest = parts
    read_only = False
    if rest and rest[-1] in ("ro", "rw"):
        read_only = rest.pop() == "ro"
    if len(rest) > 1:
        raise ConfigError(f"--access-key {key_id}: expected ID:SECRET[:PROJECT,...][:ro], got {len(parts)} fields")
    names = [p.strip() for p in (rest[0] if rest else "").split(",") if p.strip()]
    projects = None if not names or names == ["*"] else frozenset(names)
    return AccessKey(key_id, secret, projects, read_only)


def _redact(spec: str) -> str:
    """The spec without its secret, for error messages (they end up in logs)."""
    parts = spec.split(":")
    return ":".join([parts[0], "***", *parts[2:]]) if len(parts) > 1 else spec


def load_keys_file(path: Path) -> tuple[AccessKey, ...]:
    """Read a keys file (YAML: ``keys: [{id, secret, projects?, read_only?, security_token?, expires?}]``).

    The file holds secrets, so a copy readable by other users is reported (a warning, not an error: a
    container's mounted secret is often 0644 and the container is the boundary)."""
    import yaml

    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"--keys-file {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH) and os.name == "posix":
        log.warning("keys file %s is readable by other users (mode %o); chmod 600 it", path, mode & 0o777)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--keys-file {path}: not valid YAML: {exc}") from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"--keys-file {path}: expected a top-level 'keys:' list with at least one key")
    return tuple(_key_entry(path, i, e) for i, e in enumerate(entries))


_ENTRY_FIELDS = {"id", "secret", "projects", "read_only", "security_token", "expires"}


def _key_entry(path: Path, index: int, entry: Any) -> AccessKey:
    where = f"--keys-file {path}: keys[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with id and secret")
    unknown = set(entry) - _ENTRY_FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_ENTRY_FIELDS)}")
    key_id, secret = entry.get("id"), entry.get("secret")
    if not isinstance(key_id, str) or not key_id or not isinstance(secret, str) or not secret:
        raise ConfigError(f"{where}: 'id' and 'secret' must be non-empty strings")
    projects = entry.get("projects")
    if projects is None or projects == "*":
        scope = None
    elif isinstance(projects, list) and projects and all(isinstance(p, str) and p for p in projects):
        scope = None if projects == ["*"] else frozenset(projects)
    else:
        raise ConfigError(f"{where}.projects: expected a non-empty list of project names, or '*' for all")
    read_only = entry.get("read_only", False)
    if not isinstance(read_only, bool):
        raise ConfigError(f"{where}.read_only: expected true or false")
    token = entry.get("security_token")
    if token is not None and (not isinstance(token, str) or not token):
        raise ConfigError(f"{where}.security_token: expected a non-empty string")
    return AccessKey(key_id, secret, scope, read_only, token, _expiry(where, entry.get("expires")))


def _expiry(where: str, value: Any) -> float | None:
    """``expires``: an ISO 8601 time (YAML may already have made it a datetime) or unix seconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{where}.expires: expected an ISO 8601 time or unix seconds")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{where}.expires: {value!r} is not an ISO 8601 time") from None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    raise ConfigError(f"{where}.expires: expected an ISO 8601 time or unix seconds")


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, DEFAULT_PORT
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise ConfigError(f"--listen must look like HOST:PORT, got {value!r}") from None
