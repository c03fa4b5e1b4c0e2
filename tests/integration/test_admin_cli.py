"""`sluice admin`: manage projects, logstores, shards and groups against a real hub."""

from __future__ import annotations

import json
import subprocess
import sys

from sluice.testing import HubProcess


def _admin(hub: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    keys = ["--endpoint", hub.url, "--access-key-id", hub.access_key_id, "--access-key-secret",
            hub.access_key_secret]
    return subprocess.run([sys.executable, "-m", "sluice", "admin", args[0], *keys, *args[1:]],
                          capture_output=True, text=True, timeout=60)


def test_admin_round_trip(hub: HubProcess) -> None:
    """Create, list, split, merge and delete through the CLI; errors are one clear line, exit non-zero."""
    assert _admin(hub, "create-project", "admin-proj").returncode == 0
    assert "admin-proj" in json.loads(_admin(hub, "projects").stdout)
    assert _admin(hub, "create-logstore", "admin-proj", "events", "--shards", "2", "--ttl", "3").returncode == 0
    assert json.loads(_admin(hub, "logstores", "admin-proj").stdout) == ["events"]
    split = json.loads(_admin(hub, "split-shard", "admin-proj", "events", "0").stdout)
    assert [s["shardID"] for s in split] == [0, 2, 3] and split[0]["status"] == "readonly"
    merged = json.loads(_admin(hub, "merge-shard", "admin-proj", "events", "2").stdout)
    assert merged[0]["shardID"] == 4
    statuses = {s["shardID"]: s["status"] for s in json.loads(_admin(hub, "shards", "admin-proj", "events").stdout)}
    assert statuses == {0: "readonly", 1: "readwrite", 2: "readonly", 3: "readonly", 4: "readwrite"}
    assert json.loads(_admin(hub, "groups", "admin-proj", "events").stdout) == []
    bad = _admin(hub, "logstores", "no-such-project")
    assert bad.returncode != 0 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
    assert _admin(hub, "delete-logstore", "admin-proj", "events", "--yes").returncode == 0
    assert json.loads(_admin(hub, "logstores", "admin-proj").stdout) == []
