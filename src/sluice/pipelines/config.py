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

__all__ = ["JobConfig", "load_job", "Source", "Target", "Route", "Rule", "parse_duration"]

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
    project: str
    logstores: list[str] = Field(min_length=1)

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
    window: float = 60.0
    group_by: str | None = None  # a field whose value keys dedup, e.g. host

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, v: Any) -> float:
        return parse_duration(v)

    @model_validator(mode="after")
    def _one_matcher(self) -> "Rule":
        if (self.regex is None) == (self.keyword is None):
            raise ValueError(f"rule {self.name!r} needs exactly one of regex or keyword")
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
    starttls: bool = False


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


class Monitor(_Model):
    rules: list[Rule] = Field(min_length=1)
    alerters: list[AlerterSpec] = Field(default_factory=lambda: [AlerterSpec(log={})])
    dedup: float = 300.0
    samples: int = 3

    @field_validator("dedup", mode="before")
    @classmethod
    def _dedup(cls, v: Any) -> float:
        return parse_duration(v)


class JobConfig(_Model):
    sources: list[Source] = Field(min_length=1)
    group: str
    consumer: str | None = None
    start: Union[str, int] = "begin"
    end: Union[str, int, None] = None
    heartbeat_interval: float = 3.0
    dispatch: Dispatch | None = None
    monitor: Monitor | None = None

    @model_validator(mode="after")
    def _one_job(self) -> "JobConfig":
        jobs = [k for k in ("dispatch", "monitor") if getattr(self, k) is not None]
        if not jobs:
            raise ValueError("the file needs a job: dispatch or monitor")
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
