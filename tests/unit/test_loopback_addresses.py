"""Test hubs of different pytest-xdist workers never share a 127.0.0.x address (sluice.testing).

A hub that a test SIGKILLs and restarts leaves its address free for a moment; if another worker could
hand out that address, its hub would take it and the first test's clients would talk to a stranger's hub
(seen in CI as "Project soak does not exist" in both kill soaks)."""

from __future__ import annotations

import os
import subprocess
import sys


def _addresses(env: dict[str, str], n: int = 300) -> set[str]:
    code = f"from sluice.testing import loopback_address as a\nprint(' '.join(a() for _ in range({n})))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True,
                         capture_output=True, text=True).stdout
    return set(out.split())


def test_each_xdist_worker_has_addresses_of_its_own() -> None:
    blocks = [_addresses({"PYTEST_XDIST_WORKER": f"gw{k}", "PYTEST_XDIST_WORKER_COUNT": "4"}) for k in range(4)]
    for k, block in enumerate(blocks):
        assert len(block) == 253 // 4
        assert all(a.startswith("127.0.0.") and 2 <= int(a.rsplit(".", 1)[1]) <= 254 for a in block)
        for other in blocks[k + 1:]:
            assert not block & other


def test_outside_xdist_every_address_is_used() -> None:
    env = {"PYTEST_XDIST_WORKER": "", "PYTEST_XDIST_WORKER_COUNT": ""}
    assert len(_addresses(env)) == 253
