"""`sluice run --metrics-port`: the job's counters, scraped and parsed, match the data it processed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sluice.client import Client
from sluice.testing import HubProcess, free_port


def test_run_exposes_job_metrics(hub: HubProcess, tmp_path: Path) -> None:
    """groups in/out and shards held are visible while a dispatch job runs."""
    with Client(hub.url, hub.access_key_id, hub.access_key_secret) as c:
        c.create_project("runmetrics")
        c.create_logstore("runmetrics", "src", shard_count=2)
        c.create_logstore("runmetrics", "dst", shard_count=1)
        for i in range(10):
            c.put_logs("runmetrics", "src", [{"i": str(i)}], topic="t")
    job = tmp_path / "job.yaml"
    job.write_text(f"""
sources:
  - {{endpoint: "{hub.url}", access_key_id: "${{AK}}", access_key_secret: "${{SK}}", project: runmetrics, logstores: [src]}}
group: metrics-job
heartbeat_interval: 1
dispatch:
  routes:
    - match: {{topic: t}}
      to: {{logstore: dst}}
""")
    port = free_port()
    env = {**os.environ, "AK": hub.access_key_id, "SK": hub.access_key_secret}
    proc = subprocess.Popen([sys.executable, "-m", "sluice", "run", str(job), "--quiet", "--metrics-port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        samples: dict[str, float] = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    text = resp.read().decode()
            except OSError:
                time.sleep(0.2)
                continue
            samples = {s.name + str(sorted(s.labels.items())): s.value
                       for fam in text_string_to_metric_families(text) for s in fam.samples}
            if samples.get("sluice_job_groups_out_total[]") == 10:
                break
            time.sleep(0.2)
        assert samples.get("sluice_job_groups_in_total[]") == 10, samples
        assert samples.get("sluice_job_groups_out_total[]") == 10
        held = [v for k, v in samples.items() if k.startswith("sluice_job_shards_held[")]
        assert held == [2]
    finally:
        proc.terminate()
        proc.wait(30)
