"""The job file of ``sluice run``: YAML -> validated models, with errors that name the file's line.

Credentials never need to be in the file: ``${VAR}`` is replaced by the environment variable ``VAR``
(``${VAR:-default}`` gives a default); a missing variable is an error naming the line. Models are
pydantic (strict about unknown keys, so a typo is an error, not a silently ignored setting).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..wire.errors import ConfigError

__all__ = ["JobConfig", "load_job", "Source", "Target", "Route", "Rule", "parse_duration", "Forward", "SplunkHec",
           "Syslog", "SYSLOG_FACILITIES", "SYSLOG_SEVERITIES"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from 60, "60s", "5m", "1h", "250ms"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 5m, 1h)")
    scale = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return float(m.group(1)) * scale


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Model):
    endpoint: str
    access_key_id: str = ""
    access_key_secret: str = ""
    security_token: str | None = None
    # keys that rotate: a JSON/YAML file (STS's AccessKeyId/AccessKeySecret/SecurityToken) kept current by
    # something else; read at start and again when a request fails authentication (pipelines/clients.py)
    credentials_file: str | None = None
    project: str
    logstores: list[str] = Field(min_length=1)
    # https endpoints: the certificate is verified against the system store (or SSL_CERT_FILE) unless a
    # CA bundle is given; tls_verify: false turns verification off (never do that across a network)
    ca_bundle: str | None = None
    tls_verify: bool = True
    # an SPL statement the server evaluates on every pull (e.g. "* | where status = '500'"): the job sees only
    # what it keeps; the hub and SLS both evaluate it, a server that cannot is refused at start
    query: str | None = None

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("endpoint is empty")
        return v.strip()


class Target(_Model):
    """Where dispatched logs go; endpoint, project and keys default to the source's."""

    logstore: str
    project: str | None = None
    endpoint: str | None = None
    access_key_id: str | None = None
    access_key_secret: str | None = None
    credentials_file: str | None = None  # default: the source's, when the target uses the source's keys
    ca_bundle: str | None = None  # default: the source's, when the target is on the source's endpoint
    tls_verify: bool | None = None


class Match(_Model):
    """All given conditions must hold. topic/source are exact strings; tags and field values are regexes."""

    topic: str | None = None
    source: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    field: dict[str, str] = Field(default_factory=dict)

    @field_validator("tags", "field")
    @classmethod
    def _regexes(cls, v: dict[str, str]) -> dict[str, str]:
        for k, pattern in v.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"regex for {k!r} is invalid: {exc}") from None
        return v

    @property
    def is_group_level(self) -> bool:
        return not self.field


class Route(_Model):
    match: Match
    to: Target


class Dispatch(_Model):
    routes: list[Route] = Field(min_length=1)
    default: Union[Literal["drop"], Target] = "drop"


class Rule(_Model):
    name: str
    field: str | None = None
    regex: str | None = None
    keyword: str | None = None
    threshold: int = Field(default=1, ge=1)
    window: float = 60.0  # log time; windows are aligned to multiples of ``slide`` (default: the window)
    slide: float | None = None  # sliding (hopping) windows: a new window every ``slide`` seconds
    group_by: str | None = None  # a field whose value keys dedup, e.g. host

    @field_validator("window", "slide", mode="before")
    @classmethod
    def _window(cls, v: Any) -> float | None:
        if v is None:
            return None
        d = parse_duration(v)
        if d < 1 or d != int(d):
            raise ValueError("windows are whole seconds, at least 1s")
        return d

    @property
    def step(self) -> float:
        """How far apart consecutive windows start: the window (tumbling) or the slide."""
        return self.slide or self.window

    @model_validator(mode="after")
    def _one_matcher(self) -> "Rule":
        if (self.regex is None) == (self.keyword is None):
            raise ValueError(f"rule {self.name!r} needs exactly one of regex or keyword")
        if self.slide is not None and (self.slide > self.window or self.window % self.slide):
            raise ValueError(f"rule {self.name!r}: window must be a whole multiple of slide")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"rule {self.name!r}: regex is invalid: {exc}") from None
        return self


class Webhook(_Model):
    url: str
    headers: dict[str, str] = Field(default_factory=dict)


class DingTalk(_Model):
    url: str
    secret: str | None = None
    at_mobiles: list[str] = Field(default_factory=list)
    per_minute: int = 20  # the robot's limit; beyond it alerts are merged, not lost


class Email(_Model):
    host: str
    port: int = 25
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password: str | None = None
    starttls: bool = False  # kept for old files: the same as tls: starttls
    # none | starttls (upgrade a plain connection, port 25/587) | implicit (TLS from the first byte, port 465);
    # default: implicit on port 465, else starttls when starttls: true, else none
    tls: Literal["none", "starttls", "implicit"] | None = None
    ca_bundle: str | None = None  # PEM CA certificates to verify the server against (default: system store)
    tls_verify: bool = True
    timeout: float = 15.0

    @property
    def tls_mode(self) -> str:
        if self.tls is not None:
            return self.tls
        if self.port == 465:
            return "implicit"
        return "starttls" if self.starttls else "none"


class AlerterSpec(_Model):
    webhook: Webhook | None = None
    dingtalk: DingTalk | None = None
    email: Email | None = None
    log: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "AlerterSpec":
        given = [k for k in ("webhook", "dingtalk", "email", "log") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("each alerter is exactly one of webhook, dingtalk, email, log")
        return self


class MonitorState(_Model):
    """Where the job's processes meet: a logstore with one shard (created by the job if missing) that
    carries partial counts, watermarks, delivery marks and snapshots (docs/pipelines.md)."""

    project: str | None = None  # default: the first source's project (on the first source's endpoint)
    logstore: str | None = None  # default: sluice-monitor-<group>
    ttl: int = Field(default=7, ge=1, le=3650)  # days the records are kept


class Monitor(_Model):
    rules: list[Rule] = Field(min_length=1)
    alerters: list[AlerterSpec] = Field(default_factory=lambda: [AlerterSpec(log={})])
    dedup: float = 300.0  # log time: one alert per rule and key per period
    samples: int = Field(default=3, ge=0, le=100)
    lateness: float = 5.0  # allowed lateness: how far behind the watermark a log may arrive and still count
    state: MonitorState = Field(default_factory=MonitorState)
    delivery_attempts: int = Field(default=0, ge=0)  # per alert and alerter; 0: until delivered
    retry_max_interval: float = 60.0  # back-off between attempts doubles from 1 s up to this

    @field_validator("dedup", "lateness", "retry_max_interval", mode="before")
    @classmethod
    def _dedup(cls, v: Any) -> float:
        d = parse_duration(v)
        if d < 0:
            raise ValueError("must be >= 0")
        return d

    @model_validator(mode="after")
    def _unique_names(self) -> "Monitor":
        names = [r.name for r in self.rules]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"rule names must be unique: {', '.join(sorted(dup))}")
        return self


# ------------------------------------------------------------------------------------------------ forward
SYSLOG_FACILITIES = {name: code for code, name in enumerate(
    ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
     "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3", "local4", "local5",
     "local6", "local7"])}
SYSLOG_SEVERITIES = {name: code for code, name in enumerate(
    ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"])}
DEFAULT_FORWARD_BUFFER_BYTES = 64 << 20  # per sink: events handed over but not yet acknowledged


def _tls_verify(v: Any) -> bool | str:
    """``true``/``false`` or the path of a CA bundle (which must exist: a typo is caught at check time)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip():
        if not Path(v).is_file():
            raise ValueError(f"CA bundle {v!r} does not exist")
        return v
    raise ValueError("tls_verify is true, false or the path of a CA bundle")


class SplunkHec(_Model):
    """Splunk's HTTP Event Collector. Sizes are bytes, durations seconds (or "30s")."""

    url: str
    token: str
    index: str | None = None
    sourcetype: str | None = "sls"
    source: str | None = None  # default: "sls:<project>/<logstore>"
    gzip: bool = True
    gzip_level: int = Field(default=1, ge=1, le=9)  # level 1: ~5x smaller JSON at a third of level 6's CPU
    ack: bool = False
    ack_timeout: float = 300.0  # resend a batch whose indexer ack has not come within this time
    ack_poll_interval: float = 0.5
    tls_verify: Union[bool, str] = True
    batch_bytes: int = Field(default=1 << 20, ge=1024)  # uncompressed JSON per POST
    max_in_flight: int = Field(default=4, ge=1, le=64)
    timeout: float = 30.0
    max_buffer_bytes: int = Field(default=DEFAULT_FORWARD_BUFFER_BYTES, ge=1 << 16)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        from urllib.parse import urlsplit
        parts = urlsplit(v.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.strip()

    @field_validator("token")
    @classmethod
    def _token(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("token is empty")
        return v.strip()

    @field_validator("tls_verify", mode="before")
    @classmethod
    def _verify(cls, v: Any) -> bool | str:
        return _tls_verify(v)

    @field_validator("ack_timeout", "ack_poll_interval", "timeout", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        d = parse_duration(v)
        if d <= 0:
            raise ValueError("must be > 0")
        return d


class Syslog(_Model):
    """A syslog receiver (rsyslog, syslog-ng, a SIEM's collector) over UDP, TCP or TLS."""

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)  # default 514 (udp, tcp), 6514 (tls)
    protocol: Literal["udp", "tcp", "tls"] = "tcp"
    format: Literal["rfc5424", "rfc3164"] = "rfc5424"
    framing: Literal["octet-counting", "newline"] = "octet-counting"
    facility: str = "local0"
    severity: str = "info"
    severity_field: str | None = None  # a field whose value (error, WARN, 3...) sets the severity per log
    app_name: str = "sluice"
    hostname: str | None = None  # default: the log group's source, else this machine's name
    template: str | None = None  # "{status} {path}"; default: the event's fields as JSON
    max_message_size: int | None = Field(default=None, ge=480)  # default 2048 (udp), 8192 (tcp, tls)
    oversize: Literal["truncate", "split"] = "truncate"
    tls_verify: Union[bool, str] = True
    tls_cert: str | None = None  # client certificate (mutual TLS)
    tls_key: str | None = None
    tls_server_name: str | None = None
    timeout: float = 10.0  # connect timeout
    max_buffer_bytes: int = Field(default=DEFAULT_FORWARD_BUFFER_BYTES, ge=1 << 16)

    @field_validator("facility")
    @classmethod
    def _facility(cls, v: str) -> str:
        if v not in SYSLOG_FACILITIES:
            raise ValueError(f"facility {v!r} is not one of {', '.join(SYSLOG_FACILITIES)}")
        return v

    @field_validator("severity")
    @classmethod
    def _severity(cls, v: str) -> str:
        if v not in SYSLOG_SEVERITIES:
            raise ValueError(f"severity {v!r} is not one of {', '.join(SYSLOG_SEVERITIES)}")
        return v

    @field_validator("app_name")
    @classmethod
    def _app_name(cls, v: str) -> str:
        if not v or len(v) > 48 or any(not 33 <= ord(ch) <= 126 for ch in v):
            raise ValueError("app_name is 1-48 printable ASCII characters without spaces")
        return v

    @field_validator("tls_verify", mode="before")
    @classmethod
    def _verify(cls, v: Any) -> bool | str:
        return _tls_verify(v)

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _exists(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).is_file():
            raise ValueError(f"{v!r} does not exist")
        return v

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, v: Any) -> float:
        return parse_duration(v)

    @model_validator(mode="after")
    def _consistent(self) -> "Syslog":
        if self.protocol != "tls" and (self.tls_cert or self.tls_key or self.tls_server_name):
            raise ValueError("tls_cert, tls_key and tls_server_name need protocol: tls")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.protocol == "udp" and self.max_message_size is not None and self.max_message_size > 65507:
            raise ValueError("a UDP datagram holds at most 65507 bytes")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (6514 if self.protocol == "tls" else 514)

    @property
    def effective_max_size(self) -> int:
        return self.max_message_size or (2048 if self.protocol == "udp" else 8192)


class Forward(_Model):
    """Forward each log as one event to a SIEM; with both sinks, a checkpoint waits for both."""

    splunk_hec: SplunkHec | None = None
    syslog: Syslog | None = None
    fields: list[str] | None = None  # only these log fields (topic, source, tags and time are always sent)
    exclude_fields: list[str] = Field(default_factory=list)
    drain_timeout: float = 10.0  # on release/stop: how long to wait for the sinks to acknowledge what they hold

    @field_validator("drain_timeout", mode="before")
    @classmethod
    def _drain(cls, v: Any) -> float:
        return parse_duration(v)

    @model_validator(mode="after")
    def _a_sink(self) -> "Forward":
        if self.splunk_hec is None and self.syslog is None:
            raise ValueError("forward needs a sink: splunk_hec, syslog or both")
        return self


class JobConfig(_Model):
    sources: list[Source] = Field(min_length=1)
    group: str
    consumer: str | None = None
    start: Union[str, int] = "begin"
    end: Union[str, int, None] = None
    heartbeat_interval: float = 3.0
    dispatch: Dispatch | None = None
    monitor: Monitor | None = None
    forward: Forward | None = None

    @model_validator(mode="after")
    def _one_job(self) -> "JobConfig":
        jobs = [k for k in ("dispatch", "monitor", "forward") if getattr(self, k) is not None]
        if not jobs:
            raise ValueError("the file needs a job: dispatch, monitor or forward")
        if len(jobs) > 1:
            raise ValueError(f"one job per file: {' and '.join(jobs)} given")
        return self


def _substitute(text: str, path: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = os.environ.get(name, default)
        if value is None:
            line = text.count("\n", 0, m.start()) + 1
            raise ConfigError(f"{path}:{line}: environment variable {name} is not set (referenced as ${{{name}}})")
        return value
    return _VAR.sub(repl, text)


def _line_map(node: yaml.Node, path: tuple[Any, ...] = (), out: dict[tuple[Any, ...], int] | None = None
              ) -> dict[tuple[Any, ...], int]:
    out = {} if out is None else out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out[path + (k.value,)] = k.start_mark.line + 1
            _line_map(v, path + (k.value,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, path + (i,), out)
    return out


def load_job(path: str | Path) -> JobConfig:
    """Read, substitute and validate a job file; every problem is a ConfigError naming file:line."""
    p = Path(path)
    try:
        raw = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror}") from None
    text = _substitute(raw, str(p))
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the file must be a mapping with sources, group and a job")
    lines = _line_map(node) if node is not None else {}
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
            where = ".".join(str(x) for x in loc) or "(top)"
            problems.append(f"{p}:{line or '?'}: {where}: {err['msg']}")
        raise ConfigError("\n".join(problems)) from None
