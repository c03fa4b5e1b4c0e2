"""``sluice run`` forward jobs into a Splunk HEC-protocol receiver (tests/_hec_receiver.py), issue 7.

* batches of concatenated JSON events, gzip, indexer acknowledgement over a channel: every log arrives
  once, with its own time, host (the group's source), source, sourcetype, index and fields; checkpoints
  end at the shards' ends after a graceful stop.
* the receiver answers 503 for a while: the job backs off, its checkpoints do not pass what was not
  accepted, and once it recovers every log arrives.
* a refused token stops ``sluice run`` at once with HEC's message and a non-zero exit, before consuming;
  a token revoked while running stops it the same way, checkpoints left at the last accepted event.
* (slow) ``sluice run`` SIGKILLed while forwarding, then restarted: every log arrives at least once;
  duplicates are only logs that arrived in the killed process's uncommitted window, and are counted.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sluice.client import Client
from sluice.testing import HubProcess
from sluice.wire.cursor import decode_cursor
from tests._hec_receiver import HecReceiver
from tests.conftest import unique
from tests._forward_data import put_logs
from tests._jobs import CHECKPOINT_INTERVAL, JobProc, checkpoints as _checkpoints, wait_for as _wait_for

TOKEN = "00000000-1111-2222-3333-444444444444"


@pytest.fixture
def receiver() -> Iterator[HecReceiver]:
    with HecReceiver(TOKEN, ack=True) as r:
        yield r


def hec_yaml(hub: HubProcess, project: str, group: str, url: str, *, token: str = "${HEC_TOKEN}",
             extra: str = "") -> str:
    return (f"sources:\n  - endpoint: {hub.url}\n    access_key_id: ${{SLS_AK_ID}}\n"
            f"    access_key_secret: ${{SLS_AK_KEY}}\n    project: {project}\n    logstores: [app]\n"
            f"group: {group}\nstart: begin\nheartbeat_interval: 1\nforward:\n  splunk_hec:\n"
            f"    url: {url}\n    token: {token}\n{extra}")


def _ids(events: list[dict[str, Any]]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for e in events:
        i = e["event"]["id"]
        seen[i] = seen.get(i, 0) + 1
    return seen


def _new(client: Client, prefix: str, shards: int) -> str:
    project = unique(prefix)
    client.create_project(project)
    client.create_logstore(project, "app", shard_count=shards)
    return project


def _at_end(client: Client, project: str, group: str, shards: int) -> bool:
    cps = _checkpoints(client, project, "app", group)
    return len(cps) == shards and all(cps[s][0] == client.get_cursor(project, "app", s, "end") for s in range(shards))


def test_batches_gzip_and_indexer_acks_every_log_once(hub: HubProcess, client: Client, env: dict[str, str],
                                                      tmp_path: Path, jobs: Callable[..., JobProc],
                                                      receiver: HecReceiver) -> None:
    """1,500 logs, 2 shards, gzip, ack: true: each log is one event, exactly once, with its own time."""
    project = _new(client, "hec", 2)
    expected = put_logs(client, project, "app", groups=75, per_group=20, shards=2)
    group = unique("hec")
    config = tmp_path / "job.yaml"
    config.write_text(hec_yaml(hub, project, group, receiver.url, extra=(
        "    index: main\n    sourcetype: sls:access\n    gzip: true\n    ack: true\n    ack_poll_interval: 0.2\n")))
    job = jobs(config, {**env, "HEC_TOKEN": TOKEN})
    _wait_for(lambda: len(receiver.events) >= len(expected), 45, "every event at the receiver", alive=[job])
    _wait_for(lambda: _at_end(client, project, group, 2), 20, "checkpoints at the end", alive=[job])
    rc, _ = job.terminate()
    assert rc == 0 and "Traceback" not in job.output(), job.output()[-3000:]
    events = receiver.snapshot()
    seen = _ids(events)
    assert set(seen) == set(expected) and max(seen.values()) == 1
    for e in events:
        want = expected[e["event"]["id"]]
        assert e["event"] == want["fields"]
        assert e["time"] == pytest.approx(want["sec"] + want["ns"] // 1000 / 1e6, abs=1e-6)
        assert (e["host"], e["source"], e["sourcetype"], e["index"]) == (
            want["fields"]["__source__"], f"sls:{project}/app", "sls:access", "main")
    assert receiver.gzip_requests == receiver.requests - receiver.refused >= 1
    assert receiver.max_batch > 20, "events are batched across log groups"
    assert receiver.ack_polls >= 1


def test_receiver_503_then_recovers_nothing_lost(hub: HubProcess, client: Client, env: dict[str, str],
                                                 tmp_path: Path, jobs: Callable[..., JobProc]) -> None:
    """While HEC answers 503 the job backs off and keeps its place; when it recovers, everything arrives."""
    with HecReceiver(TOKEN) as receiver:
        project = _new(client, "hec503", 2)
        group = unique("h503")
        config = tmp_path / "job.yaml"
        config.write_text(hec_yaml(hub, project, group, receiver.url, extra="    gzip: false\n"))
        receiver.fail(503, seconds=4.0)
        job = jobs(config, {**env, "HEC_TOKEN": TOKEN})
        expected = put_logs(client, project, "app", groups=30, per_group=20, shards=2)
        _wait_for(lambda: receiver.refused >= 3, 10, "the job retrying against 503", alive=[job])
        # nothing accepted, so no checkpoint may have moved past the beginning
        begin = {s: client.get_cursor(project, "app", s, "begin") for s in range(2)}
        cps = _checkpoints(client, project, "app", group)
        assert all(cp in ("", begin[s]) for s, (cp, _) in cps.items()), cps
        assert not receiver.events
        _wait_for(lambda: len(receiver.events) >= len(expected), 45, "every event after recovery", alive=[job])
        _wait_for(lambda: _at_end(client, project, group, 2), 20, "checkpoints at the end", alive=[job])
        rc, _ = job.terminate()
    assert rc == 0, job.output()[-3000:]
    seen = _ids(receiver.snapshot())
    assert set(seen) == set(expected)
    assert "code 9: Server is busy" in job.output() and "retrying" in job.output()


def test_bad_token_stops_with_a_clear_error(hub: HubProcess, client: Client, env: dict[str, str],
                                            tmp_path: Path, jobs: Callable[..., JobProc],
                                            receiver: HecReceiver) -> None:
    """A refused token: `sluice run` exits non-zero at once, HEC's reason in its message; revoked while
    running: the job stops the same way and its checkpoints stay at what was accepted."""
    project = _new(client, "hectok", 1)
    put_logs(client, project, "app", groups=5, per_group=10, shards=1)
    config = tmp_path / "bad.yaml"
    config.write_text(hec_yaml(hub, project, unique("tok"), receiver.url, token="not-the-token"))
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "sluice", "run", str(config), "--quiet"], capture_output=True,
                       text=True, env=env, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode not in (0, -signal.SIGKILL), out
    assert "token was refused" in out and "code 4: Invalid token" in out and "Traceback" not in out, out
    assert time.monotonic() - t0 < 20 and not receiver.events

    group = unique("revoke")
    config = tmp_path / "good.yaml"
    config.write_text(hec_yaml(hub, project, group, receiver.url, extra="    ack: true\n"))
    job = jobs(config, {**env, "HEC_TOKEN": TOKEN})
    _wait_for(lambda: len(receiver.events) >= 50, 30, "the first logs", alive=[job])
    _wait_for(lambda: _at_end(client, project, group, 1), 20, "checkpoint at the end", alive=[job])
    accepted = client.get_cursor(project, "app", 0, "end")
    receiver.token = "revoked"
    put_logs(client, project, "app", groups=3, per_group=10, shards=1, start=100)
    rc = job.proc.wait(30)
    out = job.output()
    assert rc not in (0, -signal.SIGKILL), out
    assert "code 4: Invalid token" in out and "Traceback" not in out, out
    assert _checkpoints(client, project, "app", group)[0][0] == accepted


@pytest.mark.slow
def test_sigkill_while_forwarding_then_restart(hub: HubProcess, client: Client, env: dict[str, str],
                                               tmp_path: Path, jobs: Callable[..., JobProc],
                                               receiver: HecReceiver) -> None:
    """SIGKILL mid-stream, restart: every log arrives at least once; each duplicate first arrived within
    the killed process's uncommitted window (checkpoint interval + ack polling + margin before the kill)."""
    shards = 2
    project = _new(client, "heckill", shards)
    group = unique("kill")
    config = tmp_path / "job.yaml"
    config.write_text(hec_yaml(hub, project, group, receiver.url, extra="    ack: true\n    ack_poll_interval: 0.2\n"))
    expected: dict[str, Any] = {}
    stop = threading.Event()

    def stream() -> None:
        j = 0
        while not stop.is_set() and j < 400:
            expected.update(put_logs(client, project, "app", groups=2, per_group=25, shards=shards, start=j))
            j += 2
            time.sleep(0.05)  # a stream of ~10 s

    first = jobs(config, {**env, "HEC_TOKEN": TOKEN})
    writer = threading.Thread(target=stream)
    writer.start()
    try:
        _wait_for(lambda: len(receiver.events) >= 3000 and all(
            cp for cp, _ in _checkpoints(client, project, "app", group).values()) and len(
            _checkpoints(client, project, "app", group)) == shards, 60, "the first job forwarding and checkpointing",
            alive=[first])
        first.proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        assert first.proc.wait(5) == -signal.SIGKILL
        cps_at_kill = _checkpoints(client, project, "app", group)
        time.sleep(1.0)
        second = jobs(config, {**env, "HEC_TOKEN": TOKEN})
        writer.join()
        _wait_for(lambda: set(_ids(receiver.snapshot())) >= set(expected), 60, "every log after the restart",
                  alive=[second])
        rc, _ = second.terminate()
        assert rc == 0, second.output()[-3000:]
    finally:
        stop.set()
        writer.join()
    arrivals = receiver.arrivals()
    seen = _ids([e for _, e in arrivals])
    assert set(seen) == set(expected) and len(expected) == 10000
    first_arrival: dict[str, float] = {}
    for t, e in arrivals:
        first_arrival.setdefault(e["event"]["id"], t)
    dups = {i for i, n in seen.items() if n > 1}
    window = CHECKPOINT_INTERVAL + 0.2 + 3.0
    outside = {i for i in dups if first_arrival[i] < killed_at - window}
    assert not outside, f"{len(outside)} duplicates first arrived before the uncommitted window"
    in_window = sum(1 for t, _ in arrivals if killed_at - window <= t <= killed_at)
    assert len(dups) <= in_window, (len(dups), in_window)
    # every duplicate lies after the checkpoint the killed process had written
    assert all(cp for cp, _ in cps_at_kill.values()), cps_at_kill
    print(f"SIGKILL: {len(dups)} duplicates of {len(expected)} logs "
          f"({in_window} arrived in the {window:.1f}s window before the kill); "
          f"checkpoints at kill: {[decode_cursor(cp) for cp, _ in cps_at_kill.values()]}")
