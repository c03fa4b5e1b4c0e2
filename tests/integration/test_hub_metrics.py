"""GET /metrics: Prometheus text that prometheus-client parses, with values matching the traffic sent."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from sluice.client import Client
from sluice.testing import HubProcess, free_port


def _scrape(hub: HubProcess, token: str | None) -> tuple[int, str]:
    req = urllib.request.Request(hub.url + "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_match_traffic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Requests by API, logs written, bytes stored and consumer lag are what the test produced."""
    hub = HubProcess(tmp_path / "data", host="127.0.0.1", port=free_port(), extra_args=["--metrics-token", "tok"])
    hub.start()
    try:
        with Client(hub.url, hub.access_key_id, hub.access_key_secret) as c:
            c.create_project("metrics")
            c.create_logstore("metrics", "app", shard_count=1)
            for i in range(5):
                c.put_logs("metrics", "app", [{"i": str(i * 10 + j)} for j in range(10)])
            c.create_consumer_group("metrics", "app", "g1", 10)
            c.update_checkpoint("metrics", "app", "g1", 0, c.get_cursor("metrics", "app", 0, "begin"), force=True)
            # move the checkpoint past two of the five groups
            cursor = c.get_cursor("metrics", "app", 0, "begin")
            r = c.pull_logs("metrics", "app", 0, cursor, count=2)
            c.update_checkpoint("metrics", "app", "g1", 0, r.next_cursor, force=True)
        assert _scrape(hub, None)[0] == 401 and _scrape(hub, "wrong")[0] == 401
        status, text = _scrape(hub, "tok")
        assert status == 200
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for fam in text_string_to_metric_families(text) for s in fam.samples}
        assert samples[("sluice_hub_requests_total", (("api", "PutLogs"), ("status", "200")))] == 5
        assert samples[("sluice_hub_logs_written_total", (("logstore", "app"), ("project", "metrics")))] == 50
        assert samples[("sluice_hub_shard_log_groups", (("logstore", "app"), ("project", "metrics"), ("shard", "0")))] == 5
        assert samples[("sluice_hub_consumer_lag_log_groups",
                        (("group", "g1"), ("logstore", "app"), ("project", "metrics"), ("shard", "0")))] == 3
        assert samples[("sluice_hub_shard_bytes",
                        (("logstore", "app"), ("project", "metrics"), ("shard", "0"), ("status", "readwrite")))] > 0
    finally:
        hub.close()
