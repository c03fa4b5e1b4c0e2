"""`sluice put` writes stdin lines (JSON or text) into a logstore; `sluice tail` prints them back, filtered."""

from __future__ import annotations

import json
import subprocess
import sys

from sluice.client import Client
from sluice.testing import HubProcess


def test_put_then_tail(hub: HubProcess) -> None:
    """Lines go in as logs (JSON objects as fields, text as `content`); tail --from begin --grep finds them."""
    with Client(hub.url, hub.access_key_id, hub.access_key_secret) as c:
        c.create_project("cli-proj")
        c.create_logstore("cli-proj", "lines", shard_count=2)
    args = ["--endpoint", hub.url, "--access-key-id", hub.access_key_id, "--access-key-secret",
            hub.access_key_secret, "--project", "cli-proj", "--logstore", "lines"]
    lines = "\n".join([json.dumps({"level": "ERROR", "n": "1"}), "plain text line", json.dumps({"level": "INFO"})])
    put = subprocess.run([sys.executable, "-m", "sluice", "put", *args, "--topic", "cli"], input=lines + "\n",
                         capture_output=True, text=True, timeout=60)
    assert put.returncode == 0 and "wrote 3 logs" in put.stderr, put.stderr
    out = subprocess.run([sys.executable, "-m", "sluice", "tail", *args, "--from", "begin", "--no-follow", "--json"],
                         capture_output=True, text=True, timeout=60)
    logs = [json.loads(x) for x in out.stdout.splitlines()]
    assert sorted(str(x.get("level", x.get("content"))) for x in logs) == ["ERROR", "INFO", "plain text line"]
    assert all(x["__topic__"] == "cli" for x in logs)
    grep = subprocess.run([sys.executable, "-m", "sluice", "tail", *args, "--from", "begin", "--no-follow",
                           "--grep", "^ERR"], capture_output=True, text=True, timeout=60)
    assert grep.returncode == 0 and grep.stdout.count("\n") == 1 and "level=ERROR" in grep.stdout
