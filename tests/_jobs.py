"""Shared by the pipeline tests: ``sluice run`` as a subprocess, waiting with a deadline, and reading a
group's checkpoints."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from sluice.client import Client
from sluice.wire.errors import ConsumerGroupNotExist

__all__ = ["CHECKPOINT_INTERVAL", "JobProc", "checkpoints", "wait_for"]

CHECKPOINT_INTERVAL = 2.0  # what `sluice run` uses (ConsumerConfig's default; the job file does not set it)


def wait_for(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.2,
              alive: list["JobProc"] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        for j in alive or []:
            j.assert_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def checkpoints(client: Client, project: str, logstore: str, group: str) -> dict[int, tuple[str, str]]:
    """shard -> (checkpoint, consumer that wrote it); {} while the job has not created the group yet."""
    try:
        entries = client.get_checkpoints(project, logstore, group)
    except ConsumerGroupNotExist:
        return {}
    return {e["shard"]: (e["checkpoint"], e.get("consumer", "")) for e in entries}


class JobProc:
    """One ``sluice run FILE --quiet`` process; stdout and stderr go to ``log``."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config = config
        self.log = log
        with open(log, "ab") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "sluice", "run", str(config), "--quiet"],
                                         stdout=f, stderr=subprocess.STDOUT, env=env)

    @property
    def consumer(self) -> str:
        """The consumer name the job uses by default: host-pid."""
        return f"{socket.gethostname()}-{self.proc.pid}"

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def assert_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"sluice run exited with {self.proc.returncode}:\n{self.output()[-4000:]}")

    def terminate(self, timeout: float = 20) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took to exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"sluice run did not exit within {timeout}s of SIGTERM:\n{self.output()[-4000:]}")
        return rc, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
