"""``sluice run`` forward jobs into a real rsyslogd (issue 7): UDP, TCP with octet counting, TLS.

Each test starts its own ``rsyslogd -n -f <conf>`` (tests/_rsyslog.py) on free loopback ports, writing
every message it parses to a JSON-lines file; the job runs as ``python -m sluice run FILE``. Checked on
what rsyslog itself parsed: every log arrives exactly once, with the log's own time (microseconds when the
producer sent nanoseconds), its source as HOSTNAME, topic as MSGID, facility and severity, and its fields,
topic, source and tags in the JSON message. A graceful stop writes checkpoints at the end of each shard.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import trustme
from prometheus_client.parser import text_string_to_metric_families

from sluice.client import Client
from sluice.testing import HubProcess, free_port
from tests._rsyslog import Rsyslog, require_rsyslogd
from tests.conftest import unique
from tests._forward_data import put_logs
from tests._jobs import JobProc, checkpoints as _checkpoints, wait_for as _wait_for

def job_yaml(hub: HubProcess, project: str, group: str, syslog: str) -> str:
    return (f"sources:\n  - endpoint: {hub.url}\n    access_key_id: ${{SLS_AK_ID}}\n"
            f"    access_key_secret: ${{SLS_AK_KEY}}\n    project: {project}\n    logstores: [app]\n"
            f"group: {group}\nstart: begin\nheartbeat_interval: 1\nforward:\n  syslog:\n{syslog}")


def _epoch(reported: str) -> float:
    return datetime.fromisoformat(reported.replace("Z", "+00:00")).timestamp()


def _check_5424(msgs: list[dict[str, Any]], expected: dict[str, dict[str, Any]], input_name: str) -> None:
    """Exactly once each, with the event's own time (to the microsecond), host, app, msgid and JSON fields."""
    seen: dict[str, int] = {}
    for m in msgs:
        fields = json.loads(m["msg"])
        eid = fields["id"]
        seen[eid] = seen.get(eid, 0) + 1
        want = expected[eid]
        assert fields == want["fields"], m
        assert (m["version"], m["hostname"], m["app"], m["msgid"], m["input"]) == (
            "1", want["fields"]["__source__"], "sluice", want["fields"]["__topic__"], input_name), m
        assert (m["facility"], m["severity"]) == ("local0", "info"), m
        assert abs(_epoch(m["reported"]) - (want["sec"] + want["ns"] // 1000 / 1e6)) < 1e-6, (m, want)
        if want["ns"]:
            assert m["reported"].split(".")[1].startswith(f"{want['ns'] // 1000:06d}"), m
    assert set(seen) == set(expected), f"missing: {sorted(set(expected) - set(seen))[:5]}"
    dups = {k: n for k, n in seen.items() if n > 1}
    assert not dups, f"{len(dups)} logs arrived more than once, e.g. {list(dups)[:5]}"


def _run_to_completion(job: JobProc, rsyslog: Rsyslog, count: int, client: Client, project: str,
                       group: str, shards: int) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []

    def arrived() -> bool:
        msgs[:] = rsyslog.messages()
        return len(msgs) >= count
    _wait_for(arrived, 45, f"{count} messages in rsyslog", alive=[job])
    # let the checkpoints catch up with the acknowledgements, then stop gracefully
    _wait_for(lambda: len(_checkpoints(client, project, "app", group)) == shards, 20, "checkpoints", alive=[job])
    rc, took = job.terminate()
    assert rc == 0, job.output()[-3000:]
    assert "Traceback" not in job.output(), job.output()[-3000:]
    time.sleep(0.3)
    msgs = rsyslog.messages()
    # the final checkpoints are the shards' ends: a restart would forward nothing again
    ends = {s: client.get_cursor(project, "app", s, "end") for s in range(shards)}
    assert {s: cp for s, (cp, _) in _checkpoints(client, project, "app", group).items()} == ends
    return msgs


def test_tcp_octet_counting_rfc5424(hub: HubProcess, client: Client, env: dict[str, str], tmp_path: Path,
                                    jobs: Callable[..., JobProc]) -> None:
    """TCP, RFC 5424, octet counting (RFC 6587): 1,200 logs from 2 shards arrive once each, exactly."""
    project = unique("fwdtcp")
    client.create_project(project)
    client.create_logstore(project, "app", shard_count=2)
    expected = put_logs(client, project, "app", groups=60, per_group=20, shards=2)
    with Rsyslog(tmp_path / "rsyslog", tcp=True) as rsyslog:
        group = unique("tcp")
        config = tmp_path / "job.yaml"
        config.write_text(job_yaml(hub, project, group, f"    host: 127.0.0.1\n    port: {rsyslog.tcp_port}\n"
                                   "    protocol: tcp\n    format: rfc5424\n    framing: octet-counting\n"
                                   "    facility: local0\n    app_name: sluice\n"))
        msgs = _run_to_completion(jobs(config, env), rsyslog, len(expected), client, project, group, 2)
    _check_5424(msgs, expected, "tcp")


def test_tls_with_a_test_ca(hub: HubProcess, client: Client, env: dict[str, str], tmp_path: Path,
                            jobs: Callable[..., JobProc]) -> None:
    """TLS (rsyslog's ossl driver, a certificate from a test CA that the job verifies): every log once."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(files[0]))
    cert.cert_chain_pems[0].write_to_path(str(files[1]))
    cert.private_key_pem.write_to_path(str(files[2]))
    project = unique("fwdtls")
    client.create_project(project)
    client.create_logstore(project, "app", shard_count=2)
    expected = put_logs(client, project, "app", groups=20, per_group=15, shards=2)
    with Rsyslog(tmp_path / "rsyslog", tls=files) as rsyslog:
        group = unique("tls")
        config = tmp_path / "job.yaml"
        config.write_text(job_yaml(hub, project, group, f"    host: 127.0.0.1\n    port: {rsyslog.tls_port}\n"
                                   f"    protocol: tls\n    tls_verify: {files[0]}\n"))
        msgs = _run_to_completion(jobs(config, env), rsyslog, len(expected), client, project, group, 2)
    _check_5424(msgs, expected, "tls")


def test_udp_rfc3164_template_severity_and_truncation(hub: HubProcess, client: Client, env: dict[str, str],
                                                      tmp_path: Path, jobs: Callable[..., JobProc]) -> None:
    """UDP with RFC 3164, a message template and severity from a field; a log longer than
    max_message_size arrives once, cut to the limit (UDP is at-most-once on the wire, but on loopback at
    this rate nothing is dropped)."""
    project = unique("fwdudp")
    client.create_project(project)
    client.create_logstore(project, "app", shard_count=1)
    levels = ["error", "WARN", "debug", "bogus"]
    expected = put_logs(client, project, "app", groups=10, per_group=20, shards=1,
                        extra=lambda i: {"level": levels[i % 4], **({"blob": "x" * 3000} if i == 7 else {})})
    with Rsyslog(tmp_path / "rsyslog", udp=True) as rsyslog:
        group = unique("udp")
        config = tmp_path / "job.yaml"
        config.write_text(job_yaml(hub, project, group, f"    host: 127.0.0.1\n    port: {rsyslog.udp_port}\n"
                                   "    protocol: udp\n    format: rfc3164\n    facility: local3\n"
                                   "    app_name: slsfwd\n    severity_field: level\n    max_message_size: 1024\n"
                                   "    template: \"id={id} status={status} env={__tag__:env} missing={nope} "
                                   "blob={blob}\"\n"))
        msgs = _run_to_completion(jobs(config, env), rsyslog, len(expected), client, project, group, 1)
    severity = {"error": "err", "WARN": "warning", "debug": "debug", "bogus": "info"}
    seen: dict[str, int] = {}
    for m in msgs:
        text = m["msg"].strip()
        eid = text.split()[0].removeprefix("id=")
        seen[eid] = seen.get(eid, 0) + 1
        want = expected[eid]["fields"]
        assert (m["hostname"], m["app"], m["facility"], m["input"]) == (want["__source__"], "slsfwd", "local3",
                                                                        "imudp"), m
        assert m["severity"] == severity[want["level"]], m
        # RFC 3164 carries seconds (UTC); rsyslog runs with TZ=UTC and supplies the year
        assert _epoch(m["reported"]) % 86400 == expected[eid]["sec"] % 86400, m
        if eid == "e7":
            assert text.startswith(f"id=e7 status={want['status']} env={want['__tag__:env']} missing=- blob=xxx")
            assert len(m["msg"].encode()) < 1024 and not text.endswith("x" * 3000), len(text)
        else:
            assert text == (f"id={eid} status={want['status']} env={want['__tag__:env']} missing=- blob=-"), m
    assert set(seen) == set(expected) and max(seen.values()) == 1


def test_tcp_receiver_restart_loses_nothing(hub: HubProcess, client: Client, env: dict[str, str], tmp_path: Path,
                                            jobs: Callable[..., JobProc]) -> None:
    """rsyslog killed while logs stream in, then restarted on the same port: the job reconnects and sends
    again what the dead connection did not deliver; every log arrives (duplicates allowed, no loss)."""
    require_rsyslogd()
    project = unique("fwdre")
    client.create_project(project)
    client.create_logstore(project, "app", shard_count=1)
    expected = put_logs(client, project, "app", groups=20, per_group=50, shards=1)
    first = Rsyslog(tmp_path / "r1", tcp=True).start()
    port = first.tcp_port
    group = unique("re")
    config = tmp_path / "job.yaml"
    config.write_text(job_yaml(hub, project, group, f"    host: 127.0.0.1\n    port: {port}\n"))
    job = jobs(config, env)
    second: Rsyslog | None = None
    try:
        _wait_for(lambda: len(first.messages()) >= 1000, 30, "the first rsyslog receiving", alive=[job])
        first.kill()
        more = put_logs(client, project, "app", groups=20, per_group=50, shards=1, start=20)
        time.sleep(1.5)  # the job notices, backs off and keeps the new logs waiting
        job.assert_alive()
        second = Rsyslog(tmp_path / "r2", tcp=True)
        second.tcp_port = port
        second.start()
        _wait_for(lambda: {json.loads(m["msg"])["id"] for m in second.messages()} >= set(more), 45,
                  "the logs written while rsyslog was down", alive=[job])
        rc, _ = job.terminate()
        assert rc == 0
    finally:
        first.stop()
        if second is not None:
            second.stop()
    got = [json.loads(m["msg"])["id"] for m in first.messages() + second.messages()]
    assert set(got) == set(expected) | set(more)
    assert "connection lost" in job.output() or "cannot connect" in job.output()


def test_receiver_down_bounded_buffer_then_catch_up(hub: HubProcess, client: Client, env: dict[str, str],
                                                    tmp_path: Path, jobs: Callable[..., JobProc]) -> None:
    """Nothing listening: the job retries, holds at most its buffer (plus one piece) and moves no
    checkpoint; when rsyslog comes up on that port every log arrives once, and SIGTERM exits 0."""
    project = unique("fwddown")
    client.create_project(project)
    client.create_logstore(project, "app", shard_count=1)
    expected = put_logs(client, project, "app", groups=40, per_group=100, shards=1,
                        extra=lambda i: {"pad": "p" * 200})
    receiver = Rsyslog(tmp_path / "rsyslog", tcp=True)
    group = unique("down")
    config = tmp_path / "job.yaml"
    config.write_text(job_yaml(hub, project, group, f"    host: 127.0.0.1\n    port: {receiver.tcp_port}\n"
                               "    max_buffer_bytes: 65536\n"))
    metrics_port = free_port()
    job = JobProc.__new__(JobProc)  # JobProc's helpers, with --metrics-port added to the command
    job.config, job.log = config, tmp_path / "job.log"
    with open(job.log, "ab") as f:
        job.proc = subprocess.Popen([sys.executable, "-m", "sluice", "run", str(config), "--quiet", "--metrics-port",
                                     str(metrics_port)], stdout=f, stderr=subprocess.STDOUT, env=env)
    try:
        buffered: list[float] = []

        def scrape() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
                    text = resp.read().decode()
            except OSError:
                return False
            for fam in text_string_to_metric_families(text):
                for s in fam.samples:
                    if s.name == "sluice_job_sink_buffered_bytes":
                        buffered.append(s.value)
                    if s.name == "sluice_job_sink_retries_total" and s.value >= 3:
                        return bool(buffered) and buffered[-1] > 0
            return False
        _wait_for(scrape, 30, "the job retrying with a full buffer", alive=[job])
        assert 0 < max(buffered) <= 65536 + (256 << 10), buffered
        assert not _checkpoints(client, project, "app", group).get(0, ("", ""))[0] or \
            _checkpoints(client, project, "app", group)[0][0] == client.get_cursor(project, "app", 0, "begin")
        receiver.start()
        _wait_for(lambda: len(receiver.messages()) >= len(expected), 60, "every log after rsyslog came up",
                  alive=[job])
        _wait_for(lambda: _checkpoints(client, project, "app", group)[0][0] == client.get_cursor(
            project, "app", 0, "end"), 20, "the checkpoint at the end", alive=[job])
        rc, _ = job.terminate()
        assert rc == 0, job.output()[-3000:]
    finally:
        job.kill()
        receiver.stop()
    seen: dict[str, int] = {}
    for m in receiver.messages():
        i = json.loads(m["msg"])["id"]
        seen[i] = seen.get(i, 0) + 1
    assert set(seen) == set(expected) and max(seen.values()) == 1
