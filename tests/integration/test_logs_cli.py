"""Every sluice process logs one line per event; ``--log-format json`` makes each line a JSON object."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from sluice import __version__
from sluice.testing import free_port


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "sluice", "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and __version__ in out.stdout


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sluice", "--log-format", "json", "hub", "--data-dir",
                             str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}", "--no-auth"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while "listening" not in proc.stdout.readline():
            assert time.monotonic() < deadline and proc.poll() is None, "the hub did not start"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "the hub logged nothing"
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "pid"} <= set(r) for r in records)
    messages = [r["message"] for r in records if r["logger"] == "sluice.hub"]
    assert any("listening" in m for m in messages) and any("stopping" in m for m in messages), messages
    assert all(r["time"].endswith("Z") and r["level"] in ("DEBUG", "INFO", "WARNING", "ERROR") for r in records)
