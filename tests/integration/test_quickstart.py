"""README's first command runs `sluice quickstart`: it must work end to end and say what happened."""

import subprocess
import sys


def test_quickstart_runs_end_to_end() -> None:
    """The quickstart starts a hub, writes and reads logs, runs a dispatch and a monitor job, stops."""
    out = subprocess.run([sys.executable, "-m", "sluice", "quickstart"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "read back 1000 logs" in out.stdout
    assert "routed the 100 ERROR logs" in out.stdout
    assert "raised 1 alert" in out.stdout
    assert "hub stopped" in out.stdout
