"""A real rsyslogd for tests and benchmarks: started on free loopback ports with a config written here.

``Rsyslog(tmp, udp=True, tcp=True, tls=(ca_file, cert_file, key_file))`` writes ``rsyslog.conf`` with its
own ``workDirectory``, listeners (imudp, imtcp; TLS through a second imtcp instance with rsyslog's OpenSSL
stream driver ``ossl``), and one ``omfile`` action writing every message as a JSON line (rsyslog's
parsed view: reported time, hostname, app-name, msgid, facility, severity, msg) to ``messages.jsonl``.

``rsyslogd`` missing is a failure, not a skip: ``scripts/test.sh`` installs it (Debian ``rsyslog`` and
``rsyslog-openssl``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

RSYSLOGD = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)

_TEMPLATE = """template(name="sluicejson" type="list" option.jsonf="on") {
  property(outname="reported" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="facility" name="syslogfacility-text" format="jsonf")
  property(outname="severity" name="syslogseverity-text" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="input" name="inputname" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}
"""


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_rsyslogd() -> str:
    if RSYSLOGD is None:
        raise AssertionError("rsyslogd is not installed: scripts/test.sh installs it (apt-get install rsyslog "
                             "rsyslog-openssl)")
    return RSYSLOGD


class Rsyslog:
    def __init__(self, directory: Path, *, udp: bool = False, tcp: bool = False,
                 tls: tuple[Path, Path, Path] | None = None, max_message_size: int = 65536,
                 count_only: bool = False) -> None:
        self.binary = require_rsyslogd()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "work").mkdir(exist_ok=True)
        self.out = self.dir / "messages.jsonl"
        self.udp_port = _free_port(socket.SOCK_DGRAM) if udp else None
        self.tcp_port = _free_port() if tcp else None
        self.tls_port = _free_port() if tls else None
        self.tls = tls
        self.count_only = count_only  # write one byte per message (benchmarks count, tests read)
        self.max_message_size = max_message_size
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "rsyslogd.log"

    def config(self) -> str:
        lines = [f'global(workDirectory="{self.dir / "work"}" maxMessageSize="{self.max_message_size}"']
        if self.tls:
            ca, cert, key = self.tls
            lines[0] += (f' defaultNetstreamDriverCAFile="{ca}" defaultNetstreamDriverCertFile="{cert}"'
                         f' defaultNetstreamDriverKeyFile="{key}"')
        lines[0] += ")"
        if self.udp_port:
            lines += ['module(load="imudp")', f'input(type="imudp" address="127.0.0.1" port="{self.udp_port}")']
        if self.tcp_port or self.tls_port:
            lines.append('module(load="imtcp" maxSessions="200")')
        if self.tcp_port:
            lines.append(f'input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}" name="tcp")')
        if self.tls_port:
            lines.append(f'input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" name="tls" '
                         'streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")')
        lines.append(_TEMPLATE)
        lines.append('template(name="sluicecount" type="string" string=".")')
        lines.append(f'action(type="omfile" file="{self.out}" template="{"sluicecount" if self.count_only else "sluicejson"}"'
                     ' asyncWriting="off" flushOnTXEnd="on")')
        return "\n".join(lines) + "\n"

    def start(self) -> "Rsyslog":
        conf = self.dir / "rsyslog.conf"
        conf.write_text(self.config())
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen([self.binary, "-n", "-f", str(conf), "-i", str(self.dir / "rsyslogd.pid")],
                                         stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "TZ": "UTC"})
        deadline = time.monotonic() + 15
        ports = [p for p in (self.tcp_port, self.tls_port) if p]
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"rsyslogd exited with {self.proc.returncode}:\n{self.log_text()}")
            if all(self._listening(p) for p in ports) and (not self.udp_port or self._udp_bound(self.udp_port)):
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"rsyslogd did not listen within 15 s:\n{self.log_text()}")
            time.sleep(0.05)

    @staticmethod
    def _listening(port: int) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    @staticmethod
    def _udp_bound(port: int) -> bool:
        try:
            rows = Path("/proc/net/udp").read_text().splitlines()[1:]
        except OSError:
            return True
        return any(int(r.split()[1].split(":")[1], 16) == port for r in rows)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def messages(self) -> list[dict[str, Any]]:
        """Every message written so far, as rsyslog parsed it (a partly written last line is left out)."""
        try:
            text = self.out.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def count(self) -> int:
        """Messages written so far (``count_only``: one byte each)."""
        try:
            return self.out.stat().st_size
        except FileNotFoundError:
            return 0

    def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if len(msgs) >= count or time.monotonic() > deadline:
                return msgs
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "Rsyslog":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
