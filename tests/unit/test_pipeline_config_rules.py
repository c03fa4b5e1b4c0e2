"""Job-file validation (line-numbered errors, ${VAR}) and monitor rule counting (no I/O, explicit clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.pipelines.config import load_job, parse_duration
from sluice.pipelines.monitor.alerters import dingtalk_sign
from sluice.pipelines.monitor.rules import RuleEngine
from sluice.wire.batch import Batch
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


def _batch(logs: list[dict[str, str]]) -> Batch:
    g = LogGroup()
    g.Topic = "t"
    for d in logs:
        entry = g.Logs.add()
        entry.Time = 1700000000
        for k, v in d.items():
            c = entry.Contents.add()
            c.Key, c.Value = k, v
    raw = frame_groups([g.SerializeToString()])
    return Batch(project="p", logstore="l", shard=0, cursor="MA==", next_cursor="MQ==", count=1, raw=raw)


def test_threshold_window_and_dedup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An alert fires when matches within the window reach the threshold, once per dedup period."""
    monkeypatch.setenv("AK", "x")
    job = load_job(_write(tmp_path, GOOD))
    assert job.monitor is not None
    engine = RuleEngine(job.monitor)
    two = _batch([{"status": "500"}, {"status": "200"}, {"status": "503"}])
    assert engine.scan(two, now=0.0) == []  # 2 < threshold 3
    alerts = engine.scan(_batch([{"status": "502"}]), now=1.0)
    assert [a.rule for a in alerts] == ["http-5xx"] and alerts[0].count == 3 and alerts[0].samples
    assert engine.scan(_batch([{"status": "500"}] * 5), now=2.0) == []  # deduplicated
    assert [a.rule for a in engine.scan(_batch([{"status": "500"}] * 3), now=400.0)] == ["http-5xx"]
    # the window forgets old matches
    engine2 = RuleEngine(job.monitor)
    engine2.scan(_batch([{"status": "500"}, {"status": "500"}]), now=0.0)
    assert engine2.scan(_batch([{"status": "500"}]), now=100.0) == []


def test_keyword_rule_prefilters_raw_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A keyword rule matches anywhere in the log; groups without the bytes are never parsed."""
    monkeypatch.setenv("AK", "x")
    job = load_job(_write(tmp_path, GOOD))
    assert job.monitor is not None
    engine = RuleEngine(job.monitor)
    quiet = _batch([{"msg": "all good"}])
    assert engine.scan(quiet, now=0.0) == [] and "_full" not in quiet.LogGroups[0].__dict__
    alerts = engine.scan(_batch([{"msg": "an ERROR happened"}]), now=0.0)
    assert [a.rule for a in alerts] == ["errors"]


def test_dingtalk_signature() -> None:
    """DingTalk: base64(HMAC-SHA256(secret, "ts\\nsecret")), URL-encoded (a known vector)."""
    import base64
    import hashlib
    import hmac
    import urllib.parse
    expected = urllib.parse.quote_plus(base64.b64encode(
        hmac.new(b"SECabc", b"1700000000000\nSECabc", hashlib.sha256).digest()).decode())
    assert dingtalk_sign("SECabc", 1700000000000) == expected
