"""The fault suite's figures (kills survived, logs checked, duplicates seen...), kept for docs/guarantees.md.

Each test appends one JSON line to ``$SLUICE_TEST_ARTIFACTS/faults.jsonl`` (default ``test-artifacts/``
in the repository, which git ignores) and prints it, so a CI log shows the figures too.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

__all__ = ["record"]


def record(test: str, **figures: object) -> None:
    root = Path(os.environ.get("SLUICE_TEST_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts")
    root.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures})
    with open(root / "faults.jsonl", "a", encoding="utf-8") as f:
        f.write(line + "\n")
    print(line)
