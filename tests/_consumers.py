"""Shared by the consumer tests and the fault suite: a sluice consumer as its own process, and hash keys
that place a write on a chosen shard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sluice.client import Client
from sluice.testing import HubProcess

__all__ = ["SteadyProducer", "WorkerProc", "hash_key_for", "WORKER"]

WORKER = Path(__file__).parent / "integration" / "_sluice_worker.py"
KEY_SPACE = 1 << 128


def hash_key_for(shard: int, shards: int) -> str:
    """A hash key inside shard ``shard`` of a fresh logstore of ``shards`` shards (so tests control placement)."""
    return f"{shard * KEY_SPACE // shards:032x}"


class WorkerProc:
    """One ``_sluice_worker.py`` consumer process; its handled batches are JSON lines in ``out``."""

    def __init__(self, hub: HubProcess, project: str, logstore: str, group: str, name: str, tmp: Path,
                 endpoint: str | None = None, **opts: Any) -> None:
        """``endpoint`` overrides the hub's URL (e.g. a fault-injecting proxy in front of it)."""
        self.name = name
        self.out = tmp / f"{name}.jsonl"
        self.log = tmp / f"{name}.log"
        args = [sys.executable, str(WORKER), "--endpoint", endpoint or hub.url, "--key-id", hub.access_key_id,
                "--key-secret", hub.access_key_secret, "--project", project, "--logstore", logstore,
                "--group", group, "--consumer", name, "--out", str(self.out)]
        for k, v in opts.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def records(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        out = []
        for line in self.out.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut by SIGKILL
                pass
        return out

    def batches(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if "ids" in r]

    def ids(self) -> list[str]:
        return [i for b in self.batches() for i in b["ids"]]

    def has_event(self, event: str) -> bool:
        return any(r.get("event") == event for r in self.records())

    def terminate(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class SteadyProducer(threading.Thread):
    """Writes ids ``0, 1, 2, ...`` (field ``id``) in groups of ``per_group`` until ``stop`` is set; group j
    goes to shard j % shards, so ids rise within every shard. ``written`` counts acknowledged ids."""

    def __init__(self, hub: HubProcess, project: str, logstore: str, *, shards: int, per_group: int = 20,
                 pause: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.hub, self.project, self.logstore = hub, project, logstore
        self.shards, self.per_group, self.pause = shards, per_group, pause
        self.written = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Client(self.hub.url, self.hub.access_key_id, self.hub.access_key_secret, timeout=10) as c:
                j = 0
                while not self.stop.is_set():
                    logs = [{"id": str(i)} for i in range(self.written, self.written + self.per_group)]
                    c.put_logs(self.project, self.logstore, logs, hash_key=hash_key_for(j % self.shards, self.shards))
                    self.written += self.per_group
                    j += 1
                    time.sleep(self.pause)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test through finish()
            self.error = exc

    def finish(self, timeout: float = 30) -> int:
        """Stop, wait, re-raise a write error; the number of ids written."""
        self.stop.set()
        self.join(timeout)
        if self.error is not None:
            raise self.error
        return self.written
