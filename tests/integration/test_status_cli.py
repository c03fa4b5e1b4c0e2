"""`sluice status`: the lag and checkpoints it shows equal what the test produced."""

from __future__ import annotations

import json
import subprocess
import sys

from sluice.client import Client
from sluice.testing import HubProcess


def test_status_json_matches_checkpoints(hub: HubProcess) -> None:
    """Per shard: checkpoint, its committer, lag in log groups; shards without a checkpoint show no lag."""
    with Client(hub.url, hub.access_key_id, hub.access_key_secret) as c:
        c.create_project("status-proj")
        c.create_logstore("status-proj", "app", shard_count=2)
        for i in range(5):
            c.put_logs("status-proj", "app", [{"i": str(i)}], hash_key="00000000000000000000000000000000")
        c.create_consumer_group("status-proj", "app", "readers", 30)
        begin = c.get_cursor("status-proj", "app", 0, "begin")
        two = c.pull_logs("status-proj", "app", 0, begin, count=2).next_cursor
        c.update_checkpoint("status-proj", "app", "readers", 0, two, consumer="worker-1", force=True)
    out = subprocess.run([sys.executable, "-m", "sluice", "status", "--endpoint", hub.url, "--access-key-id",
                          hub.access_key_id, "--access-key-secret", hub.access_key_secret, "--project",
                          "status-proj", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {r["shard"]: r for r in json.loads(out.stdout)}
    assert rows[0]["lag_log_groups"] == 3 and rows[0]["consumer"] == "worker-1" and rows[0]["checkpoint"] == two
    assert rows[1]["lag_log_groups"] is None and rows[1]["checkpoint"] == ""
    table = subprocess.run([sys.executable, "-m", "sluice", "status", "--endpoint", hub.url, "--access-key-id",
                            hub.access_key_id, "--access-key-secret", hub.access_key_secret, "--project",
                            "status-proj"], capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and "worker-1" in table.stdout and "readers" in table.stdout
