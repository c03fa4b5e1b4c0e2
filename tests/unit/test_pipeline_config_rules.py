"""Job-file validation (line-numbered errors, ${VAR}) and monitor rule counting (no I/O, explicit clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.pipelines.config import load_job, parse_duration
from sluice.pipelines.monitor.alerters import dingtalk_sign
from sluice.pipelines.monitor.scan import Scanner
from sluice.pipelines.monitor.state import partial_records
from sluice.pipelines.monitor.windows import Evaluator
from sluice.wire.batch import Batch
from sluice.wire.cursor import encode_cursor
from sluice.wire.errors import ConfigError
from sluice.wire.loggroup import LogGroup, frame_groups

GOOD = """\
sources:
  - endpoint: http://127.0.0.1:8080
    access_key_id: ${AK}
    access_key_secret: ${SK:-default-secret}
    project: demo
    logstores: [app]
group: monitor
monitor:
  rules:
    - name: http-5xx
      field: status
      regex: "^5\\\\d\\\\d$"
      threshold: 3
      window: 60s
    - name: errors
      keyword: ERROR
  dedup: 5m
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "job.yaml"
    p.write_text(text)
    return p


def test_good_file_and_env_substitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """${VAR} comes from the environment, ${VAR:-x} has a default; durations parse."""
    monkeypatch.setenv("AK", "my-id")
    job = load_job(_write(tmp_path, GOOD))
    assert job.sources[0].access_key_id == "my-id" and job.sources[0].access_key_secret == "default-secret"
    assert job.monitor is not None and job.monitor.dedup == 300 and job.monitor.rules[0].window == 60


@pytest.mark.parametrize("edit,expect", [
    (lambda t: t, "environment variable AK is not set"),
    (lambda t: t.replace("threshold: 3", "treshold: 3"), ":13: monitor.rules.0.treshold"),
    (lambda t: t.replace('regex: "^5\\\\d\\\\d$"', 'regex: "(["'), "regex is invalid"),
    (lambda t: t.split("monitor:\n")[0], "needs a job"),
    (lambda t: t.replace("window: 60s", "window: soon"), "not a duration"),
])
def test_bad_files_name_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit, expect: str) -> None:  # type: ignore[no-untyped-def]
    """Every problem is a ConfigError that says where (file:line) and what."""
    if "AK is not set" not in expect:
        monkeypatch.setenv("AK", "x")
    else:
        monkeypatch.delenv("AK", raising=False)
    with pytest.raises(ConfigError) as exc:
        load_job(_write(tmp_path, edit(GOOD)))
    assert expect in str(exc.value) and "job.yaml" in str(exc.value)


def test_parse_duration() -> None:
    assert parse_duration("250ms") == 0.25 and parse_duration("5m") == 300 and parse_duration(7) == 7


def _batch(logs: list[dict[str, str]], t: int = 1700000000, seq: int = 0) -> Batch:
    g = LogGroup()
    g.Topic = "t"
    for d in logs:
        entry = g.Logs.add()
        entry.Time = t
        for k, v in d.items():
            c = entry.Contents.add()
            c.Key, c.Value = k, v
    raw = frame_groups([g.SerializeToString()])
    return Batch(project="p", logstore="l", shard=0, cursor=encode_cursor(seq), next_cursor=encode_cursor(seq + 1),
                 count=1, raw=raw)


class _Engine:
    """The consumer's scanner and the evaluator back to back, as one process sees them (no state logstore):
    windows are in log time, so the "clock" is the logs' own time."""

    def __init__(self, job) -> None:  # type: ignore[no-untyped-def]
        self.scanner = Scanner(job.monitor)
        self.ev = Evaluator(job.monitor, "g")
        self.ev.apply_shards({"shards": {"src": [0]}})
        self.seq = 0

    def scan(self, logs: list[dict[str, str]], t: int) -> list[dict]:  # type: ignore[type-arg]
        batch = _batch(logs, t, self.seq)
        self.seq += 1
        entries, wm = self.scanner.scan(batch)
        fired = []
        for _, body in partial_records("src", 0, self.seq - 1, self.seq, wm, entries):
            fired += self.ev.apply_partial(body)
        return fired


def test_threshold_window_and_dedup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An alert fires when matches within the window reach the threshold, once per dedup period (log time)."""
    monkeypatch.setenv("AK", "x")
    job = load_job(_write(tmp_path, GOOD))
    assert job.monitor is not None
    engine = _Engine(job)
    t = 1700000010  # 10 s into a 60 s window
    assert engine.scan([{"status": "500"}, {"status": "200"}, {"status": "503"}], t) == []  # 2 < threshold 3
    alerts = engine.scan([{"status": "502"}], t + 1)
    assert [a["rule"] for a in alerts] == ["http-5xx"] and alerts[0]["count"] == 3 and alerts[0]["samples"]
    assert (alerts[0]["from"], alerts[0]["to"]) == (t, t + 1)
    assert engine.scan([{"status": "500"}] * 5, t + 2) == []  # deduplicated
    assert [a["rule"] for a in engine.scan([{"status": "500"}] * 3, t + 400)] == ["http-5xx"]
    # the window forgets old matches
    engine2 = _Engine(job)
    engine2.scan([{"status": "500"}, {"status": "500"}], t)
    assert engine2.scan([{"status": "500"}], t + 100) == []


def test_keyword_rule_prefilters_raw_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A keyword rule matches anywhere in the log; groups without the bytes are never parsed."""
    monkeypatch.setenv("AK", "x")
    job = load_job(_write(tmp_path, GOOD))
    assert job.monitor is not None
    scanner = Scanner(job.monitor)
    quiet = _batch([{"msg": "all good"}])
    assert scanner.scan(quiet)[0] == [] and "_full" not in quiet.LogGroups[0].__dict__
    engine = _Engine(job)
    alerts = engine.scan([{"msg": "an ERROR happened"}], 1700000000)
    assert [a["rule"] for a in alerts] == ["errors"]


def test_dingtalk_signature() -> None:
    """DingTalk: base64(HMAC-SHA256(secret, "ts\\nsecret")), URL-encoded (a known vector)."""
    import base64
    import hashlib
    import hmac
    import urllib.parse
    expected = urllib.parse.quote_plus(base64.b64encode(
        hmac.new(b"SECabc", b"1700000000000\nSECabc", hashlib.sha256).digest()).decode())
    assert dingtalk_sign("SECabc", 1700000000000) == expected


# ---------------------------------------------------------------------------------------------- forward
FORWARD = """\
sources:
  - endpoint: http://127.0.0.1:8080
    project: demo
    logstores: [app]
group: to-siem
forward:
  fields: [status, msg]
  splunk_hec:
    url: https://127.0.0.1:8088
    token: ${HEC_TOKEN:-abc}
    index: main
    gzip: true
    ack: true
    ack_timeout: 2m
  syslog:
    host: 127.0.0.1
    port: 6514
    protocol: tls
    format: rfc5424
    framing: octet-counting
    facility: local0
    app_name: sluice
"""


def test_forward_file_is_valid(tmp_path: Path) -> None:
    """The issue's example parses; defaults fill in (ports per protocol, UDP and TCP size limits)."""
    job = load_job(_write(tmp_path, FORWARD))
    assert job.forward is not None and job.forward.splunk_hec is not None and job.forward.syslog is not None
    assert job.forward.splunk_hec.token == "abc" and job.forward.splunk_hec.ack_timeout == 120
    assert job.forward.syslog.effective_port == 6514 and job.forward.syslog.effective_max_size == 8192
    udp = load_job(_write(tmp_path, FORWARD.replace("protocol: tls", "protocol: udp").replace("    port: 6514\n", "")))
    assert udp.forward is not None and udp.forward.syslog is not None
    assert (udp.forward.syslog.effective_port, udp.forward.syslog.effective_max_size) == (514, 2048)


@pytest.mark.parametrize("edit,expect", [
    (lambda t: t.replace("protocol: tls", "protocol: tpc"), ":18: forward.syslog.protocol"),
    (lambda t: t.replace("facility: local0", "facility: local9"), ":21: forward.syslog.facility"),
    (lambda t: t.replace("framing: octet-counting", "framing: octets"), ":20: forward.syslog.framing"),
    (lambda t: t.replace("url: https://127.0.0.1:8088", "url: 127.0.0.1:8088"), "is not an http(s) URL"),
    (lambda t: t.replace("    gzip: true\n", "    gzip: true\n    tls_verify: /no/such/ca.pem\n"),
     "CA bundle '/no/such/ca.pem' does not exist"),
    (lambda t: t.replace("    ack: true\n", "    akc: true\n"), ":13: forward.splunk_hec.akc"),
    (lambda t: t.replace("app_name: sluice", "app_name: two words"), "app_name is 1-48 printable ASCII"),
    (lambda t: t.split("  splunk_hec:")[0], "forward needs a sink"),
    (lambda t: t.replace("port: 6514", "port: 6514\n    tls_cert: /etc/hostname").replace("protocol: tls", "protocol: tcp"),
     "need protocol: tls"),
    (lambda t: t + "dispatch:\n  routes:\n    - {match: {topic: a}, to: {logstore: b}}\n", "one job per file"),
])
def test_bad_forward_files_name_the_line(tmp_path: Path, edit, expect: str) -> None:  # type: ignore[no-untyped-def]
    """Sink settings are as strict as the rest: unknown keys, bad enums, missing files name the line."""
    with pytest.raises(ConfigError) as exc:
        load_job(_write(tmp_path, edit(FORWARD)))
    assert expect in str(exc.value) and "job.yaml" in str(exc.value), str(exc.value)


def test_ack_tracker_moves_the_checkpoint_over_the_acknowledged_prefix_only() -> None:
    """Acknowledgements out of order: the checkpoint advances only when every earlier batch is done."""
    from sluice.pipelines.forward import AckTracker

    moved: list[tuple[str, int]] = []
    t = AckTracker(lambda cursor, groups: moved.append((cursor, groups)))
    a, b, c = t.add("c1", 2, 1), t.add("c2", 1, 3), t.add("c3", 1, 5)
    b()
    c()
    assert moved == [] and t.pending == 3
    a()
    assert moved == [] and t.pending == 3  # one of batch 1's two pieces is still out
    a()
    assert moved == [("c3", 9)] and t.pending == 0 and t.empty.is_set()
    t.add("c4", 0, 1)  # a batch with nothing to send is done at once, in order
    assert moved[-1] == ("c4", 1)


def _group_batch(fields: list[dict[str, str]], *, time_ns: int = 0) -> Batch:
    g = LogGroup()
    g.Topic, g.Source = "nginx", "10.0.0.7"
    tag = g.LogTags.add()
    tag.Key, tag.Value = "env", "prod"
    for i, d in enumerate(fields):
        entry = g.Logs.add()
        entry.Time = 1700000000 + i
        entry.Time_ns = time_ns
        for k, v in d.items():
            c = entry.Contents.add()
            c.Key, c.Value = k, v
    return Batch(project="p", logstore="l", shard=0, cursor="MA==", next_cursor="MQ==", count=1,
                 raw=frame_groups([g.SerializeToString()]))


def _syslog(**overrides: object):  # type: ignore[no-untyped-def]
    from sluice.pipelines.config import Syslog
    from sluice.pipelines.forward.syslog_format import SyslogFormatter
    return SyslogFormatter(Syslog.model_validate({"host": "127.0.0.1", **overrides}), local_hostname="me")


def test_syslog_rfc5424_and_3164_lines() -> None:
    """PRI, the log's own time (microseconds from Time_ns), source as host, topic as MSGID, JSON body."""
    import json
    f = _syslog(facility="local0")
    tail = f.header_tail("nginx", "10.0.0.7")
    fields = {"status": "500", "__topic__": "nginx"}
    line = f.format(1700000000, 123456789, fields, tail)[0]
    assert line == b'<134>1 2023-11-14T22:13:20.123456Z 10.0.0.7 sluice - nginx - ' + json.dumps(
        fields, separators=(",", ":")).encode()
    assert f.frame is not None and f.frame(b"abc") == b"3 abc"
    g = _syslog(format="rfc3164", facility="auth", severity_field="level", template="{status} {__tag__:env} {x}")
    out = g.format(1700000000, 0, {"status": "500", "level": "ERROR", "__tag__:env": "prod"}, g.header_tail("", ""))
    assert out == [b"<35>Nov 14 22:13:20 me sluice: 500 prod -"]


def test_syslog_oversize_truncates_or_splits_on_character_boundaries() -> None:
    """Over max_message_size: cut at a UTF-8 boundary, or the body split over messages with one header."""
    long = {"m": "é" * 400}  # 800 bytes of two-byte characters
    cut = _syslog(protocol="udp", max_message_size=480, template="{m}")
    (msg,) = cut.format(1700000000, 0, long, cut.header_tail("t", "h"))
    assert len(msg) <= 480 and msg.decode()  # still valid UTF-8
    split = _syslog(protocol="udp", max_message_size=480, template="{m}", oversize="split")
    parts = split.format(1700000000, 0, long, split.header_tail("t", "h"))
    head = parts[0][:parts[0].index(b"h sluice - t - ") + len(b"h sluice - t - ")]
    assert len(parts) == 2 and all(len(p) <= 480 and p.startswith(head) for p in parts)
    assert b"".join(p[len(head):] for p in parts).decode() == "é" * 400


def test_hec_events_carry_log_time_fields_and_envelope() -> None:
    """One HEC event per log: the log's time, its group's source as host, fields + topic/source/tags."""
    import json

    from sluice.pipelines.config import SplunkHec
    from sluice.pipelines.forward.events import FieldSelection
    from sluice.pipelines.forward.hec import HecSink, event_url

    assert event_url("https://h:8088") == "https://h:8088/services/collector/event"
    assert event_url("https://h:8088/services/collector/raw") == "https://h:8088/services/collector/raw"
    sink = HecSink(SplunkHec(url="http://127.0.0.1:1", token="t", index="main"), FieldSelection(exclude=["secret"]))
    pieces = sink.encode(_group_batch([{"a": "1", "secret": "x"}, {"a": "2"}], time_ns=250_000_000))
    decoder = json.JSONDecoder()
    text, events, pos = pieces[0].data.decode(), [], 0
    while pos < len(text):
        obj, pos = decoder.raw_decode(text, pos)
        events.append(obj)
    assert pieces[0].events == 2 and [e["time"] for e in events] == [1700000000.25, 1700000001.25]
    assert events[0] == {"time": 1700000000.25, "host": "10.0.0.7", "source": "sls:p/l", "sourcetype": "sls",
                         "index": "main", "event": {"a": "1", "__topic__": "nginx", "__source__": "10.0.0.7",
                                                    "__tag__:env": "prod"}}
