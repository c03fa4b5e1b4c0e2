"""Every benchmark still runs (at --quick sizes), so none rots; figures are not judged here (bench/ does that)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hub", "groups", "consumer", "pipelines", "forward", "query", "attack", "scale",
                                  "scale_ops"])
def test_bench_quick_run(name: str, tmp_path: Path) -> None:
    """`python bench/<name>.py --quick` exits 0, prints its table and writes a JSON result with rows."""
    env = {**os.environ, "SLUICE_BENCH_RESULTS": str(tmp_path)}
    out = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--quick"], capture_output=True, text=True,
                         timeout=300, env=env, cwd=BENCH.parent)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    results = list(tmp_path.glob(f"{name}-*.json"))
    assert len(results) == 1, out.stdout[-2000:]
    data = json.loads(results[0].read_text())
    assert data["rows"] and data["environment"]["python"]
    assert (tmp_path / "RESULTS.md").read_text().count(f"| {name} |") == 1
