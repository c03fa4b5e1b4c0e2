"""Logs -> syslog messages (RFC 5424 or RFC 3164) and their framing. Pure, no I/O.

* RFC 5424: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - MSG``. TIMESTAMP is the log's own time in
  UTC, with microseconds when the producer sent nanoseconds; HOSTNAME the group's source (or
  ``hostname``); MSGID the topic (RFC 5424 allows 32 printable ASCII characters, else ``-``). No
  structured data: the whole event is in MSG.
* RFC 3164: ``<PRI>Mmm dd hh:mm:ss HOSTNAME APP-NAME: MSG``, the time in UTC (3164 has no zone field).
* MSG is the event's fields as JSON (topic, source and tags included), or the ``template`` with
  ``{field}`` replaced by the field's value (``-`` when missing; ``{{`` and ``}}`` are braces).
* PRI is facility * 8 + severity; ``severity_field`` picks the severity per log from a field holding a
  name (``error``, ``WARN``, ``critical``...) or a digit 0-7, else ``severity``.
* Size: a message longer than ``max_message_size`` bytes (header included) is cut at a UTF-8 character
  boundary (``truncate``), or its MSG is sent as consecutive messages with the same header (``split``).
* Framing on TCP/TLS: octet counting (RFC 6587: ``LEN SP MSG``), or a trailing newline (raw newlines
  inside MSG are then replaced by spaces, so one log stays one message). UDP sends one message per
  datagram, unframed (RFC 5426).
"""

from __future__ import annotations

import re
import socket
import time
from typing import Callable, Iterator

from ..config import SYSLOG_FACILITIES, SYSLOG_SEVERITIES, Syslog
from .events import json_encoder

__all__ = ["SyslogFormatter", "Template", "severity_of"]

_SEVERITY_NAMES = {
    "emerg": 0, "emergency": 0, "panic": 0, "alert": 1, "crit": 2, "critical": 2, "fatal": 2, "err": 3,
    "error": 3, "warn": 4, "warning": 4, "notice": 5, "info": 6, "information": 6, "informational": 6,
    "debug": 7, "trace": 7, **{str(i): i for i in range(8)}}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_NOT_PRINTABLE = re.compile(r"[^\x21-\x7e]")


def severity_of(value: str | None, default: int) -> int:
    if value is None:
        return default
    return _SEVERITY_NAMES.get(value.strip().lower(), default)


class Template:
    """``"{status} {path}"`` -> a renderer of a fields dict. Field names may contain ``:`` (``{__tag__:host}``)."""

    _PART = re.compile(r"\{\{|\}\}|\{([^{}]+)\}")

    def __init__(self, text: str) -> None:
        self.parts: list[tuple[bool, str]] = []  # (is_field, literal or name)
        pos = 0
        for m in self._PART.finditer(text):
            if m.start() > pos:
                self.parts.append((False, text[pos:m.start()]))
            token = m.group(0)
            self.parts.append((False, token[0]) if token in ("{{", "}}") else (True, m.group(1).strip()))
            pos = m.end()
        if pos < len(text):
            self.parts.append((False, text[pos:]))

    def render(self, fields: dict[str, str]) -> str:
        get = fields.get
        return "".join(get(v, "-") if is_field else v for is_field, v in self.parts)


def _header_token(value: str, limit: int) -> str:
    """A HOSTNAME/APP-NAME/MSGID header token: printable ASCII, no spaces, at most ``limit`` characters."""
    value = _NOT_PRINTABLE.sub("_", value)[:limit]
    return value or "-"


class SyslogFormatter:
    """Formats the events of a log group; one formatter per sink (it caches timestamps and headers)."""

    def __init__(self, config: Syslog, *, local_hostname: str | None = None) -> None:
        self.config = config
        self.facility = SYSLOG_FACILITIES[config.facility]
        self.default_severity = SYSLOG_SEVERITIES[config.severity]
        self.max_size = config.effective_max_size
        self.is_5424 = config.format == "rfc5424"
        self.app = config.app_name if self.is_5424 else _header_token(config.app_name, 32)
        self.fallback_host = _header_token(config.hostname or local_hostname or socket.gethostname(), 255)
        self.fixed_host = _header_token(config.hostname, 255) if config.hostname else None
        self.template = Template(config.template) if config.template else None
        self.frame: Callable[[bytes], bytes] | None = None
        if config.protocol != "udp":
            self.frame = _octet_count if config.framing == "octet-counting" else _newline
        self._json = json_encoder()
        self._pri = f"<{self.facility * 8 + self.default_severity}>{'1 ' if self.is_5424 else ''}"
        self._ts_second = self._ts_minute = -1
        self._ts_prefix = self._ts_text = ""

    # --- timestamps, cached per minute and second (logs of a group are mostly in the same few seconds)
    def _timestamp(self, sec: int, ns: int) -> str:
        if sec != self._ts_second:
            minute = sec // 60
            if minute != self._ts_minute:
                t = time.gmtime(minute * 60)
                if self.is_5424:
                    self._ts_prefix = "%04d-%02d-%02dT%02d:%02d:" % t[:5]
                else:
                    self._ts_prefix = "%s %2d %02d:%02d:" % (_MONTHS[t.tm_mon - 1], t.tm_mday, t.tm_hour, t.tm_min)
                self._ts_minute = minute
            self._ts_text = "%s%02d" % (self._ts_prefix, sec - minute * 60)
            self._ts_second = sec
        if not self.is_5424:
            return self._ts_text
        return f"{self._ts_text}.{ns // 1000:06d}Z" if ns else self._ts_text + "Z"

    def header_tail(self, topic: str, source: str) -> str:
        """Everything after the timestamp, fixed for a group: `` HOST APP - MSGID - `` (or `` HOST APP: ``)."""
        host = self.fixed_host or (_header_token(source, 255) if source else self.fallback_host)
        if self.is_5424:
            return f" {host} {self.app} - {_header_token(topic, 32) if topic else '-'} - "
        return f" {host} {self.app}: "

    def framed_text(self, sec: int, ns: int, fields: dict[str, str], tail: str) -> str:
        """TCP/TLS fast path: one log -> its framed message(s) as text, to be joined and encoded once per
        piece (the common ASCII line costs no per-message encode; others fall back to ``format``)."""
        if self.config.severity_field is None:
            if sec != self._ts_second:
                self._timestamp(sec, 0)  # refreshes the per-second cache
            if not self.is_5424:
                ts = self._ts_text
            elif ns:
                ts = f"{self._ts_text}.{ns // 1000:06d}Z"
            else:
                ts = self._ts_text + "Z"
            line = self._pri + ts + tail + (self.template.render(fields) if self.template is not None
                                            else self._json(fields))
            if len(line) <= self.max_size and line.isascii():
                if self.frame is _octet_count:
                    return f"{len(line)} {line}"
                if "\n" not in line:
                    return line + "\n"
        assert self.frame is not None
        return "".join(self.frame(m).decode() for m in self.format(sec, ns, fields, tail))

    def message(self, fields: dict[str, str]) -> str:
        return self.template.render(fields) if self.template is not None else self._json(fields)

    def format(self, sec: int, ns: int, fields: dict[str, str], tail: str) -> list[bytes]:
        """One log -> one message (or several, when ``split`` and too long), unframed."""
        sev = self.default_severity
        if self.config.severity_field is not None:
            sev = severity_of(fields.get(self.config.severity_field), sev)
        head = f"<{self.facility * 8 + sev}>{'1 ' if self.is_5424 else ''}{self._timestamp(sec, ns)}{tail}"
        msg = self.message(fields)
        if self.frame is _newline and "\n" in msg:
            msg = msg.replace("\r\n", " ").replace("\n", " ")
        line = head + msg
        if len(line) <= self.max_size and line.isascii():
            return [line.encode()]
        data = line.encode()
        if len(data) <= self.max_size:
            return [data]
        return list(self._oversize(head.encode(), msg.encode()))

    def _oversize(self, head: bytes, msg: bytes) -> Iterator[bytes]:
        room = self.max_size - len(head)
        if room <= 0:  # a header alone over the limit (a huge hostname): send it cut
            yield _cut_utf8(head + msg, self.max_size)
            return
        if self.config.oversize == "truncate":
            yield head + _cut_utf8(msg, room)
            return
        while msg:
            part = _cut_utf8(msg, room) or msg[:room]
            yield head + part
            msg = msg[len(part):]


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """``data`` cut to at most ``limit`` bytes without splitting a UTF-8 character."""
    if len(data) <= limit:
        return data
    end = limit
    while end > 0 and (data[end] & 0xC0) == 0x80:  # a continuation byte: back up to the character start
        end -= 1
    return data[:end]


def _octet_count(msg: bytes) -> bytes:
    return b"%d %s" % (len(msg), msg)


def _newline(msg: bytes) -> bytes:
    return msg + b"\n"
