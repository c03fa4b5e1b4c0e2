"""Any number of shards under a fixed descriptor budget (#17.3).

The hub runs under ``prlimit --nofile=256`` (a quarter of the common ``ulimit -n 1024``) and one log is
written to, then pulled from, each of 1,000 shards. Before the fix the hub kept one open file per written
shard forever and answered 500 ``Too many open files`` to everyone past ~250 shards; now write descriptors
live in an LRU (``--max-open-segments``, default 128; 64 here) and the OS refusing a resource is ServerBusy.
"""

from __future__ import annotations

import os
from pathlib import Path

from sluice.client import Client, RetryPolicy
from sluice.testing import HubProcess
from tests._consumers import hash_key_for
from tests.faults._figures import record

NOFILE = 256
LOGSTORES, SHARDS = 4, 250


class LimitedHub(HubProcess):
    def command(self) -> list[str]:
        return ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--", *super().command()]


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_thousand_shards_under_256_descriptors(tmp_path: Path) -> None:
    with LimitedHub(tmp_path / "data", log_path=tmp_path / "hub.log", extra_args=["--max-open-segments", "64"]) as hub:
        assert hub.proc is not None
        c = Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=20, retry=RetryPolicy(attempts=1))
        c.create_project("wide")
        for ls in range(LOGSTORES):
            c.create_logstore("wide", f"ls{ls}", shard_count=SHARDS)
        peak = 0
        for ls in range(LOGSTORES):
            for shard in range(SHARDS):
                c.put_logs("wide", f"ls{ls}", [{"ls": str(ls), "shard": str(shard)}],
                           hash_key=hash_key_for(shard, SHARDS))
            peak = max(peak, _fds(hub.proc.pid))
        for ls in range(LOGSTORES):
            for shard in range(SHARDS):
                res = c.pull_logs("wide", f"ls{ls}", shard, c.get_cursor("wide", f"ls{ls}", shard, "begin"))
                assert res.count == 1
                fields = {x.Key: x.Value for x in next(iter(res.log_groups())).Logs[0].Contents}
                assert fields == {"ls": str(ls), "shard": str(shard)}
            peak = max(peak, _fds(hub.proc.pid))
        c.close()
        assert peak < NOFILE, peak
        record("storage_descriptors", shards=LOGSTORES * SHARDS, nofile=NOFILE, max_open_segments=64, peak_fds=peak)
