"""``sluice admin checkpoint`` (issue 18): show a group's checkpoints; reset them to begin, end or a time
per logstore or shard, refused while the group's consumers are alive, printed only with --dry-run; and a
monitor replayed from begin with it raises the live run's alerts again, with the same ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from sluice.client import Client
from sluice.testing import HubProcess
from tests._jobs import JobProc, wait_for
from tests.conftest import unique
from tests.integration._monitor import FATAL_JOB, Hook, alert_tuple, evaluator_of, put_at

def _admin(hub: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    keys = ["--endpoint", hub.url, "--access-key-id", hub.access_key_id, "--access-key-secret",
            hub.access_key_secret]
    return subprocess.run([sys.executable, "-m", "sluice", "admin", "checkpoint", args[0], *keys, *args[1:]],
                          capture_output=True, text=True, timeout=60)


def _show(hub: HubProcess, project: str, group: str) -> dict[int, str]:
    p = _admin(hub, "show", project, group, "--logstore", "web", "--json")
    assert p.returncode == 0, p.stderr
    return {r["shard"]: r["checkpoint"] for r in json.loads(p.stdout)}


def test_checkpoint_show_reset_and_monitor_replay(hub: HubProcess, client: Client, tmp_path: Path,
                                                  jobs: Callable[..., JobProc]) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SLS_AK_ID": hub.access_key_id,
           "SLS_AK_KEY": hub.access_key_secret}
    project = unique("mreplay")
    client.create_project(project, "test_monitor_replay")
    client.create_logstore(project, "web", shard_count=2)
    group = unique("rep").replace("-", "_")
    hook = Hook().start()
    config = tmp_path / "job.yaml"
    config.write_text(FATAL_JOB.format(url=hub.url, project=project, group=group, hook=hook.url, extra=""))
    try:
        job = jobs(config, env)
        wait_for(lambda: bool(evaluator_of(client, project, group)) or
                 (put_at(client, project, "web", 0, 2, time.time(), {"msg": "warm-up"}) and False), 30,
                 "the evaluator", interval=0.5, alive=[job])
        for i, host in enumerate(("a", "b", "c")):
            put_at(client, project, "web", i % 2, 2, time.time(), {"msg": f"FATAL {host}", "host": host})
        wait_for(lambda: len(hook.alerts) >= 3, 30, "the live alerts", alive=[job])
        live = {alert_tuple(a): a["id"] for a in hook.alerts}
        ends = {s: client.get_cursor(project, "web", s, "end") for s in (0, 1)}
        wait_for(lambda: _show(hub, project, group) == ends, 20, "the checkpoints at the end", alive=[job])

        # while the job runs: refused, nothing changed
        refused = _admin(hub, "reset", project, group, "--to", "begin", "--logstore", "web")
        assert refused.returncode != 0 and "look alive" in refused.stderr and "Traceback" not in refused.stderr
        assert _show(hub, project, group) == ends
        rc, _ = job.terminate()
        assert rc == 0

        # dry runs: what would change, per logstore or per shard, to begin, end or a time; nothing changes
        dry = _admin(hub, "reset", project, group, "--to", "begin", "--logstore", "web", "--dry-run", "--json")
        assert dry.returncode == 0 and "nothing changed" in dry.stderr, dry.stderr
        assert {r["shard"]: r["new"] for r in json.loads(dry.stdout)} == {0: "MA==", 1: "MA=="}
        one = _admin(hub, "reset", project, group, "--to", "begin", "--logstore", "web", "--shard", "1", "--dry-run",
                     "--json")
        assert {r["shard"]: r["new"] for r in json.loads(one.stdout)} == {0: None, 1: "MA=="}
        later = _admin(hub, "reset", project, group, "--to", str(int(time.time()) + 3600), "--logstore", "web",
                       "--dry-run", "--json")
        assert {r["shard"]: r["new"] for r in json.loads(later.stdout)} == ends
        text = _admin(hub, "reset", project, group, "--to", "begin", "--logstore", "web", "--dry-run")
        assert "-> MA==" in text.stdout
        assert _show(hub, project, group) == ends

        # the reset itself (the job stopped a moment ago: its last checkpoints are recent)
        time.sleep(1.5)
        done = _admin(hub, "reset", project, group, "--to", "begin", "--logstore", "web", "--alive-within", "1",
                      "--monitor-state")
        assert done.returncode == 0, done.stderr
        assert "reset 2 checkpoint(s)" in done.stderr and "deleted the monitor state logstore" in done.stderr
        assert _show(hub, project, group) == {0: "MA==", 1: "MA=="}

        # the replay: the same alerts, the same ids
        hook.alerts.clear()
        replay = jobs(config, env)
        wait_for(lambda: len(hook.alerts) >= 3, 40, "the replayed alerts", alive=[replay])
        time.sleep(2)
        assert {alert_tuple(a): a["id"] for a in hook.alerts} == live
        rc, _ = replay.terminate()
        assert rc == 0
    finally:
        hook.stop()
