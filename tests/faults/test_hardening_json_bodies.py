"""JSON request bodies are bounded before they are parsed (#17 item 2's class: what a body makes the hub hold).

A heartbeat listing a million shard ids took 1-2 s of the event loop and 200 MB; every other JSON-bodied API
(CreateProject, CreateLogStore, CreateConsumerGroup, UpdateCheckPoint, ...) parsed bodies up to
``--max-put-bytes`` (10 MiB) on the event loop in the same way. Their bodies are a few hundred bytes, so a JSON
body over ``MAX_JSON_BODY`` is refused with 400 ``PostBodyTooLarge`` before parsing, and the hub's memory does not
grow with what such requests send.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

from sluice.client import Client
from sluice.hub.limits import MAX_JSON_BODY
from sluice.testing import HubProcess
from sluice.wire.signing import sign_request
from tests.conftest import unique


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _post(hub: HubProcess, project: str | None, path: str, params: list[tuple[str, str]], body: bytes,
          method: str = "POST") -> tuple[int, dict]:
    host = f"{project}.{hub.host}" if project else hub.host
    headers = {"x-log-apiversion": "0.6.0", "x-log-bodyrawsize": str(len(body)), "Content-Type": "application/json",
               "Host": host}
    headers.update(sign_request(method, path, params, headers, body, hub.access_key_id, hub.access_key_secret))
    query = "&".join(f"{k}={v}" for k, v in params)
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=60)
    try:
        conn.request(method, path + (f"?{query}" if query else ""), body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_hardening_large_json_bodies_are_refused_before_parsing(hub: HubProcess) -> None:
    project = unique("json")
    with Client(hub.url, hub.access_key_id, hub.access_key_secret) as c:
        c.create_project(project)
        c.create_logstore(project, "app", shard_count=1)
        c.create_consumer_group(project, "app", "grp", 30)
    big = json.dumps(list(range(1_200_000))).encode()  # ~9 MB: under --max-put-bytes, over MAX_JSON_BODY (4 MiB)
    assert MAX_JSON_BODY < len(big) < 10 << 20
    assert hub.proc is not None
    before = _rss_kib(hub.proc.pid)
    calls = [(None, "/", []), (project, "/logstores", []), (project, "/logstores/app/consumergroups", []),
             (project, "/logstores/app/consumergroups/grp", [("type", "checkpoint"), ("consumer", "c")])]
    for _ in range(3):
        for proj, path, params in calls:
            status, err = _post(hub, proj, path, params, big)
            assert (status, err.get("errorCode")) == (400, "PostBodyTooLarge"), (path, status, err)
            assert str(MAX_JSON_BODY) in err["errorMessage"]
    grown = _rss_kib(hub.proc.pid) - before
    assert grown < 80 << 10, f"hub RSS grew by {grown} KiB after refused JSON bodies"
    # small bodies work as before
    status, _ = _post(hub, project, "/logstores/app/consumergroups", [],
                      json.dumps({"consumerGroup": "grp2", "timeout": 30, "order": False}).encode())
    assert status == 200
