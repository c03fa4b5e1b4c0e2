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
        assert samples.get("sluice_job_logs_in_total[]") == 10  # counted without parsing the logs
        assert samples.get("sluice_job_handler_seconds_count[('logstore', 'src'), ('project', 'runmetrics')]", 0) >= 1
        held = [v for k, v in samples.items() if k.startswith("sluice_job_shards_held[")]
        assert held == [2]
    finally:
        proc.terminate()
        proc.wait(30)


def _scrape(port: int) -> dict[str, float] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    return {s.name + str(sorted(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_forward_job_metrics_match_the_traffic(hub: HubProcess, tmp_path: Path) -> None:
    """A forward job into a HEC receiver that first answers 503: logs, bytes and groups in equal what was
    written; events out equal logs; sink retries equal the requests the receiver refused; handler and sink
    latency histograms count every batch and acknowledgement; lag per shard shows how old the data was
    when it was read (written 3 s before the job started) and drops to 0 once caught up."""
    from sluice.wire.loggroup import LogGroup, frame_groups
    from tests._hec_receiver import HecReceiver

    project = f"fwdmetrics{os.getpid() % 10000}"
    groups: list[bytes] = []
    with Client(hub.url, hub.access_key_id, hub.access_key_secret) as c:
        c.create_project(project)
        c.create_logstore(project, "src", shard_count=2)
        for j in range(12):
            g = LogGroup()
            g.Topic = "t"
            for k in range(25):
                entry = g.Logs.add()
                entry.Time = int(time.time())
                for key, value in (("id", f"{j}-{k}"), ("msg", "x" * (j + k))):
                    item = entry.Contents.add()
                    item.Key, item.Value = key, value
            raw = g.SerializeToString()
            groups.append(raw)
            c.put_log_group(project, "src", raw, hash_key=f"{(j % 2) << 127:032x}")
    logs = 12 * 25
    time.sleep(3.0)  # the data is 3 s old when the job reads it
    job = tmp_path / "fwd.yaml"
    with HecReceiver("tok") as receiver:
        job.write_text(f"""
sources:
  - {{endpoint: "{hub.url}", access_key_id: "${{AK}}", access_key_secret: "${{SK}}", project: {project}, logstores: [src]}}
group: fwd-metrics
heartbeat_interval: 1
forward:
  splunk_hec: {{url: "{receiver.url}", token: tok, gzip: false}}
""")
        receiver.fail(503, seconds=1.5, from_first_batch=True)
        port = free_port()
        env = {**os.environ, "AK": hub.access_key_id, "SK": hub.access_key_secret}
        proc = subprocess.Popen([sys.executable, "-m", "sluice", "run", str(job), "--quiet", "--metrics-port",
                                 str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 40
            samples: dict[str, float] = {}
            max_lag = 0.0
            while time.monotonic() < deadline:
                samples = _scrape(port) or samples
                lags = [v for k, v in samples.items() if k.startswith("sluice_job_lag_seconds[")]
                max_lag = max([max_lag, *lags])
                if len(lags) == 2 and max(lags) == 0 and samples.get("sluice_job_sink_events_total[('sink', 'splunk_hec')]") == logs:
                    break
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(30)
        refused = receiver.refused_batches
        assert len(receiver.events) == logs
    assert samples["sluice_job_logs_in_total[]"] == logs, samples
    assert samples["sluice_job_groups_in_total[]"] == 12
    assert samples["sluice_job_groups_out_total[]"] == 12
    assert samples["sluice_job_bytes_in_total[]"] == len(frame_groups(groups))
    assert samples["sluice_job_sink_events_total[('sink', 'splunk_hec')]"] == logs
    assert refused >= 1 and samples["sluice_job_sink_retries_total[('sink', 'splunk_hec')]"] == refused
    assert samples["sluice_job_sink_buffered_bytes[('sink', 'splunk_hec')]"] == 0
    labels = f"[('logstore', 'src'), ('project', '{project}')]"
    batches = samples[f"sluice_job_handler_seconds_count{labels}"]
    assert 2 <= batches <= 12 and samples[f"sluice_job_handler_seconds_sum{labels}"] > 0
    inf = str(sorted({"le": "+Inf", "logstore": "src", "project": project}.items()))
    assert samples[f"sluice_job_handler_seconds_bucket{inf}"] == batches
    acked = samples["sluice_job_sink_seconds_count[('sink', 'splunk_hec')]"]
    assert acked >= 2  # one per piece (at least one per batch)
    # the first piece waited out the 503s: its latency is over a second
    assert samples["sluice_job_sink_seconds_bucket[('le', '1.0'), ('sink', 'splunk_hec')]"] < acked
    assert 2.5 <= max_lag < 30, max_lag
