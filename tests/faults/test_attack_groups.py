"""Attacks on the consumer-group coordinator (issue #17 items 2 and 5).

Item 5: checkpoint ownership is the hub's grant. A consumer that timed out and came back, or one that merely
lists a shard in its heartbeat, cannot move that shard's checkpoint once another consumer owns it, forced or
not; shown with signed API calls and with two official-SDK ``ConsumerWorker`` processes, one of them frozen
with SIGSTOP past the group timeout and then resumed (checkpoints never move back).

Item 2: what a heartbeat makes the coordinator hold is bounded: the body (bytes, and only shard ids that
exist), the consumer name, consumers per group, the group timeout range. Each refusal is a clear SLS error.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aliyun.log import LogClient

from sluice.client import Client
from sluice.hub.groups import MAX_CONSUMER_NAME, MAX_CONSUMERS, MAX_HEARTBEAT_BYTES
from sluice.testing import HubProcess
from sluice.wire import errors as E
from sluice.wire.cursor import decode_cursor, encode_cursor
from tests._consumers import SteadyProducer
from tests.conftest import unique

REPO_ROOT = Path(__file__).resolve().parents[2]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _error(fn, *args, **kwargs) -> E.SLSError:  # type: ignore[no-untyped-def]
    with pytest.raises(E.SLSError) as exc:
        fn(*args, **kwargs)
    return exc.value


def test_attack_stale_or_unassigned_consumer_cannot_move_a_checkpoint(hub: HubProcess) -> None:
    """The issue's sequence: A times out, B takes shard 0 and commits seq 9; A comes back listing shard 0 and
    commits 5 forced, then 1 unforced; C, never granted shard 0, lists it and commits 0. Before the fix every
    one of these moved the checkpoint back; now each is 400 ConsumerNotMatch and the checkpoint stays at 9."""
    p, ls, g = unique("atk"), "app", "grp"
    with Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=10) as c:
        c.create_project(p)
        c.create_logstore(p, ls, shard_count=1)
        for i in range(12):
            c.put_logs(p, ls, [{"i": str(i)}])
        c.create_consumer_group(p, ls, g, 1)  # 1 s timeout: A times out quickly

        def stored() -> int:
            return decode_cursor(str(c.get_checkpoints(p, ls, g, 0)[0]["checkpoint"]))

        assert c.heartbeat(p, ls, g, "A", []) == [0]
        c.update_checkpoint(p, ls, g, 0, encode_cursor(3), consumer="A")
        assert stored() == 3
        time.sleep(1.3)  # A is silent past the timeout
        assert c.heartbeat(p, ls, g, "B", []) == [0]
        c.update_checkpoint(p, ls, g, 0, encode_cursor(9), consumer="B", force=True)
        assert stored() == 9

        assert c.heartbeat(p, ls, g, "A", [0]) == []  # back, still listing shard 0: told to let go
        for seq, force in ((5, True), (1, False), (11, True)):  # forward moves too: only the owner moves it
            err = _error(c.update_checkpoint, p, ls, g, 0, encode_cursor(seq), consumer="A", force=force)
            assert (err.error_code, err.http_status) == ("ConsumerNotMatch", 400), err
            assert stored() == 9
        assert c.heartbeat(p, ls, g, "C", [0]) == []  # merely lists it, never granted
        for force in (False, True):
            err = _error(c.update_checkpoint, p, ls, g, 0, encode_cursor(0), consumer="C", force=force)
            assert err.error_code == "ConsumerNotMatch"
        err = _error(c.update_checkpoint, p, ls, g, 0, encode_cursor(0), consumer="", force=True)
        assert err.error_code == "ConsumerNotMatch"
        assert stored() == 9

        c.update_checkpoint(p, ls, g, 0, encode_cursor(10), consumer="B")  # the owner still commits
        c.update_checkpoint(p, ls, g, 0, encode_cursor(4), consumer="B")  # and may rewind on purpose
        assert stored() == 4
        # Once nobody owns the shard (B gone for good), a forced commit is SLS's operator reset and is stored.
        time.sleep(1.3)
        c.heartbeat(p, ls, g, "A", [])  # A's beat expires B; A is granted shard 0 and becomes its owner
        c.update_checkpoint(p, ls, g, 0, encode_cursor(6), consumer="A")
        assert stored() == 6


def test_attack_heartbeat_bodies_and_membership_are_bounded(hub: HubProcess) -> None:
    """A million shard ids in a heartbeat (before: +200 MB RSS kept for the group's timeout and 1-2 s of a
    stalled loop each) is refused by size; ids that do not exist are never held or granted; consumer names,
    consumers per group and the group timeout are bounded with clear errors."""
    p, ls, g = unique("atk"), "app", "big"
    with Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=30) as c:
        c.create_project(p)
        c.create_logstore(p, ls, shard_count=2)
        err = _error(c.create_consumer_group, p, ls, g, 86401)
        assert err.error_code == "ParameterInvalid" and "86400" in str(err)
        c.create_consumer_group(p, ls, g, 86400)
        assert hub.proc is not None
        before = _rss_kib(hub.proc.pid)
        huge = list(range(1_000_000))
        for _ in range(5):
            err = _error(c.heartbeat, p, ls, g, "flood", huge)
            assert (err.error_code, err.http_status) == ("PostBodyTooLarge", 400)
            assert str(MAX_HEARTBEAT_BYTES) in str(err)
        # under the byte bound, made-up ids are dropped: only the logstore's shards 0 and 1 exist
        bogus = list(range(2, 6000))
        assert len(json.dumps(bogus)) < MAX_HEARTBEAT_BYTES
        assert c.heartbeat(p, ls, g, "c0", bogus) == [0, 1]
        assert c.heartbeat(p, ls, g, "c0", [0, 1, *bogus]) == [0, 1]
        grown = _rss_kib(hub.proc.pid) - before
        assert grown < 60 << 10, f"hub RSS grew by {grown} KiB after refused heartbeat floods"

        err = _error(c.heartbeat, p, ls, g, "x" * (MAX_CONSUMER_NAME + 1), [])
        assert err.error_code == "ParameterInvalid"
        err = _error(c.heartbeat, p, ls, g, "bad", {"not": "a list"})  # type: ignore[arg-type]
        assert err.error_code == "ParameterInvalid"

        for i in range(1, MAX_CONSUMERS):  # c0 is the first
            c.heartbeat(p, ls, g, f"c{i}", [])
        err = _error(c.heartbeat, p, ls, g, "one-too-many", [])
        assert (err.error_code, err.http_status) == ("ConsumerQuotaExceed", 400)
        assert set(c.heartbeat(p, ls, g, "c0", [0, 1])) <= {0, 1}  # members already in keep beating


def _sdk_worker(hub: HubProcess, project: str, logstore: str, group: str, consumer: str, out: Path,
                err: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tests.integration._sdk_worker", "--endpoint", hub.endpoint,
           "--key-id", hub.access_key_id, "--key-secret", hub.access_key_secret, "--project", project,
           "--logstore", logstore, "--group", group, "--consumer", consumer, "--out", str(out),
           "--heartbeat", "1", "--fetch", "0.2", "--timeout", "3", "--checkpoint-timeout", "0.5"]
    with open(err, "wb") as fh:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=fh)


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow  # two SDK worker processes, one frozen past its timeout: ~25 s
def test_attack_sigstopped_sdk_worker_never_moves_checkpoints_back(hub: HubProcess, sdk: LogClient,
                                                                    tmp_path: Path) -> None:
    """Two official-SDK ConsumerWorkers share a 2-shard logstore under a steady producer. One is frozen with
    SIGSTOP past the group timeout (the other takes both shards and commits on), then resumed: it keeps its
    stale in-memory checkpoints and flushes them (forced, as the SDK does). Before the fix shards went back
    (74 -> 40); now every sampled checkpoint is at or after the previous one, on every shard."""
    project, logstore, group = unique("stop"), "events", "grp"
    sdk.create_project(project, "")
    sdk.create_logstore(project, logstore, ttl=7, shard_count=2)
    producer = SteadyProducer(hub, project, logstore, shards=2, per_group=5, pause=0.02)
    a = _sdk_worker(hub, project, logstore, group, "a", tmp_path / "a.jsonl", tmp_path / "a.err")
    b: subprocess.Popen[bytes] | None = None
    samples: dict[int, list[int]] = {0: [], 1: []}
    stop = threading.Event()

    def sample() -> None:
        client = LogClient(hub.endpoint, hub.access_key_id, hub.access_key_secret)
        while not stop.is_set():
            try:
                for cp in client.get_check_point(project, logstore, group).get_consumer_group_check_points():
                    if cp["checkpoint"]:
                        samples[int(cp["shard"])].append(decode_cursor(cp["checkpoint"]))
            except Exception:  # noqa: BLE001 - the group may not exist yet
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        producer.start()
        sampler.start()
        _wait(lambda: all(samples[s] for s in (0, 1)), 30, "worker a to commit on both shards")
        b = _sdk_worker(hub, project, logstore, group, "b", tmp_path / "b.jsonl", tmp_path / "b.err")
        time.sleep(4)  # b joins; a hands one shard over
        a.send_signal(signal.SIGSTOP)
        stopped_at = {s: len(samples[s]) for s in (0, 1)}
        time.sleep(8)  # past the 3 s timeout: b takes both shards and moves their checkpoints on
        moved = {s: max(samples[s][stopped_at[s]:], default=-1) for s in (0, 1)}
        a.send_signal(signal.SIGCONT)
        time.sleep(6)  # a wakes with stale checkpoints and flushes them
        assert a.poll() is None and b.poll() is None
    finally:
        stop.set()
        producer.finish()
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        sampler.join(5)
    for shard, seqs in samples.items():
        assert moved[shard] > samples[shard][stopped_at[shard] - 1], f"shard {shard} did not move while a was stopped"
        back = [(x, y) for x, y in zip(seqs, seqs[1:]) if y < x]
        assert back == [], f"shard {shard}'s checkpoint moved back: {back[:5]}"
