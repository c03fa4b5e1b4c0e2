"""Shared benchmark plumbing: environment capture, JSON results, a printed table, the RESULTS.md line."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# SLUICE_BENCH_RESULTS redirects output (the test suite's smoke runs write to a temporary directory).
RESULTS = Path(os.environ.get("SLUICE_BENCH_RESULTS") or Path(__file__).parent / "results")


def byte_compile_sluice() -> None:
    """Write sluice's bytecode (``__pycache__``) once, before any process is measured.

    pip byte-compiles what it installs, so the SDK's modules load from ``.pyc``; an editable checkout of sluice
    has none, and where ``PYTHONDONTWRITEBYTECODE`` is set (as on our CI machines) every process would compile
    sluice's sources again at import: ~0.2 CPU-s per consumer process that no installed sluice pays, counted
    against sluice in every CPU comparison. ``scripts/_venv.sh`` does the same at set-up; this covers a
    checkout set up by hand. Already-current files are only checked (a few ms)."""
    import compileall

    import sluice

    compileall.compile_dir(str(Path(sluice.__file__).parent), quiet=1, workers=1)


if "--child" not in sys.argv:  # a measured child process must not pay for the check
    byte_compile_sluice()


def environment() -> dict[str, Any]:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, check=False).stdout.strip()
    except OSError:
        sha = ""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"git": sha, "python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu,
            "cores": os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def report(name: str, rows: list[dict[str, Any]], *, summary: str, extra: dict[str, Any] | None = None) -> Path:
    """Print rows as a table, write results/<name>-<time>.json, append a line to results/RESULTS.md."""
    RESULTS.mkdir(exist_ok=True)
    env = environment()
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    print("  ".join("-" * widths[c] for c in cols))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in cols))
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps({"benchmark": name, "environment": env, "rows": rows, **(extra or {})}, indent=2))
    with open(RESULTS / "RESULTS.md", "a") as f:
        f.write(f"| {env['time']} | {name} | {env['git']} | {summary} |\n")
    print(f"\nwrote {path}")
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return "" if v is None else str(v)
