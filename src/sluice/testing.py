"""Run a real hub process for tests: ours, and users' own tests of their SLS programs.

``HubProcess`` starts ``python -m sluice hub`` on a loopback address with its own data directory, waits
until it answers (with a deadline, no fixed sleep), and can stop, SIGKILL and restart it on the same data.
On port 80 of a bare IPv4 address the official SDK reaches it with endpoint ``"127.0.0.x"`` and no tricks;
on any other port use ``HTTP_PROXY=http://host:port`` (see docs/addressing.md).

``tls=(cert, key)`` serves https (``url`` becomes ``https://...``); ``keys_file`` passes ``--keys-file``
(with or without the default ``access_key``); with neither a key nor a keys file the hub runs ``--no-auth``.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["HubProcess", "free_port", "loopback_address"]

DEFAULT_KEY_ID = "sluice-test-id"
DEFAULT_KEY_SECRET = "sluice-test-secret"


def _address_block() -> tuple[int, int]:
    """(first, size) of the 127.0.0.x addresses this process hands out.

    Under pytest-xdist each worker gets a block of its own: a hub that a test SIGKILLs and restarts leaves its
    address free for a moment, and a hub of another worker must not take it then (its clients would talk to
    a stranger's hub). Within the block, and outside xdist, the start depends on the pid so that child
    processes (benchmarks run by a test) do not begin where their parent did."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else -1
    if 0 <= index < count <= 253:
        size = 253 // count
        return index * size, size
    return 0, 253


_block_first, _block_size = _address_block()
_next_address = [int(os.environ.get("SLUICE_TEST_ADDRESS_BASE", "0")) or (18 + os.getpid())]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def loopback_address() -> str:
    """A fresh 127.0.0.x address (x in 2..254), so each hub can own port 80 on its own address."""
    n = _next_address[0]
    _next_address[0] = n + 1
    return f"127.0.0.{2 + _block_first + n % _block_size}"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class HubProcess:
    """A hub subprocess. ``endpoint`` is what to give an SLS client; ``url`` is the plain base URL."""

    def __init__(self, data_dir: str | Path | None = None, *, host: str | None = None, port: int | None = None,
                 access_key: tuple[str, str] | None = (DEFAULT_KEY_ID, DEFAULT_KEY_SECRET),
                 extra_args: list[str] | None = None, log_path: str | Path | None = None,
                 tls: tuple[str | Path, str | Path] | None = None, keys_file: str | Path | None = None) -> None:
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sluice-hub-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        if host is None or port is None:
            host, port = self._pick_address(host, port)
        self.host, self.port = host, port
        self.access_key = access_key
        self.extra_args = list(extra_args or [])
        self.tls = (Path(tls[0]), Path(tls[1])) if tls else None
        self.keys_file = Path(keys_file) if keys_file else None
        self.log_path = Path(log_path) if log_path else self.data_dir.with_name(self.data_dir.name + ".hub.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def _pick_address(host: str | None, port: int | None) -> tuple[str, int]:
        if port is None and os.geteuid() == 0:
            for _ in range(253):
                h = host or loopback_address()
                if _port_free(h, 80):
                    return h, 80
                if host:
                    break
        h = host or "127.0.0.1"
        return h, port or free_port(h)

    @property
    def endpoint(self) -> str:
        """The endpoint string for the official SDK: the bare IP on port 80, else host:port (needs HTTP_PROXY);
        with TLS the https URL (the SDK then needs a DNS name the certificate covers, see docs/security.md)."""
        if self.tls:
            return self.url
        return self.host if self.port == 80 else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def access_key_id(self) -> str:
        return self.access_key[0] if self.access_key else ""

    @property
    def access_key_secret(self) -> str:
        return self.access_key[1] if self.access_key else ""

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "sluice", "hub", "--data-dir", str(self.data_dir),
               "--listen", f"{self.host}:{self.port}"]
        if self.access_key:
            cmd += ["--access-key", f"{self.access_key[0]}:{self.access_key[1]}"]
        if self.keys_file:
            cmd += ["--keys-file", str(self.keys_file)]
        if not self.access_key and not self.keys_file:
            cmd += ["--no-auth"]
        if self.tls:
            cmd += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        return cmd + self.extra_args

    def start(self, timeout: float = 30.0) -> "HubProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                conn = self._probe_connection()
                conn.request("GET", "/", headers={"Host": self.host})
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"hub did not become ready within {timeout}s:\n{self.log_tail()}")

    def _probe_connection(self) -> http.client.HTTPConnection:
        if not self.tls:
            return http.client.HTTPConnection(self.host, self.port, timeout=2)
        # Readiness only: the tests check verification themselves, with their own CA.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(self.host, self.port, timeout=2, context=ctx)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything; what was acknowledged must survive."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self, timeout: float = 30.0) -> "HubProcess":
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "HubProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
