"""One logical monitor, however many ``sluice run`` processes run the job (issue 18).

One data set, written live (log time = the time of writing, with nanoseconds) to a 4-shard logstore:
bursts of matches of several hosts, each burst spread over the 4 shards, some below the threshold, some
within the dedup period of an earlier burst of the same host. Four consumer groups read it at the same
time: one process; two processes; three processes of which the one holding the state shard (the
evaluator) is killed with SIGKILL half-way; and, after everything was written, a replay from begin by a
fresh group. Every group must raise exactly the alerts a brute-force evaluation of the rules in log time
gives (rule, key, window, from/to, count), each delivered (ids unique; no duplicate except across the
kill).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

from sluice.client import Client
from sluice.testing import HubProcess
from tests._jobs import JobProc, checkpoints, wait_for
from tests.conftest import unique
from tests.integration._monitor import Hook, alert_tuple, brute_force, evaluator_of, put_at

SHARDS = 4
WINDOW, DEDUP, THRESHOLD = 2, 6, 4
RULES = [{"name": "errors", "keyword": "ERROR", "threshold": THRESHOLD, "window": WINDOW, "group_by": "host"},
         {"name": "fatal", "keyword": "FATAL", "threshold": 1, "window": WINDOW}]

JOB = """
sources:
  - endpoint: {url}
    access_key_id: ${{SLS_AK_ID}}
    access_key_secret: ${{SLS_AK_KEY}}
    project: {project}
    logstores: [web]
group: {group}
start: begin
heartbeat_interval: 1
monitor:
  rules:
    - {{name: errors, keyword: ERROR, threshold: {threshold}, window: {window}s, group_by: host}}
    - {{name: fatal, keyword: FATAL, window: {window}s}}
  alerters:
    - webhook: {{url: "{hook}"}}
  dedup: {dedup}s
  lateness: 3s
"""

# (seconds after the start, host, matches): each burst's matches go one per shard
BURSTS = [(0.0, "h1", 4), (0.5, "h2", 4), (1.0, "h3", 3), (3.5, "h1", 4), (4.0, "h4", 4), (8.0, "h2", 4),
          (9.0, "h4", 4), (12.0, "h1", 4), (12.5, "h3", 4)]
FATALS = [2.0, 4.5, 10.0]
KILL_AT = 6.0


def _job(tmp: Path, hub: HubProcess, project: str, group: str, hook: Hook) -> Path:
    p = tmp / f"{group}.yaml"
    p.write_text(JOB.format(url=hub.url, project=project, group=group, hook=hook.url, threshold=THRESHOLD,
                            window=WINDOW, dedup=DEDUP))
    return p


def test_same_alerts_with_1_2_3_processes_a_kill_and_a_replay(
        hub: HubProcess, client: Client, tmp_path: Path, jobs: Callable[..., JobProc]) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SLS_AK_ID": hub.access_key_id,
           "SLS_AK_KEY": hub.access_key_secret}
    project = unique("mscale")
    client.create_project(project, "test_monitor_scale")
    client.create_logstore(project, "web", shard_count=SHARDS)
    groups = {n: unique(f"g{n}").replace("-", "_") for n in (1, 2, 3, 4)}
    hook = Hook().start()
    try:
        procs: dict[int, list[JobProc]] = {}
        for n in (1, 2, 3):
            config = _job(tmp_path, hub, project, groups[n], hook)
            procs[n] = [jobs(config, env) for _ in range(n)]
        running = [j for n in (1, 2, 3) for j in procs[n]]

        def ready() -> bool:  # every group consumes every shard, and has its evaluator
            for s in range(SHARDS):
                put_at(client, project, "web", s, SHARDS, time.time(), {"msg": "warm-up", "host": "w"})
            return all(len(checkpoints(client, project, "web", groups[n])) == SHARDS and
                       evaluator_of(client, project, groups[n]) for n in (1, 2, 3))
        wait_for(ready, 60, "every group consuming every shard", interval=0.5, alive=running)

        written: list[tuple[float, dict[str, str]]] = []
        base = (int(time.time()) // WINDOW + 1) * WINDOW + 0.2  # bursts start just after a window boundary
        events: list[tuple[float, str, Any]] = [(at, "burst", (host, n)) for at, host, n in BURSTS]
        events += [(at, "fatal", None) for at in FATALS] + [(KILL_AT, "kill", None)]
        victim: JobProc | None = None
        for at, what, arg in sorted(events, key=lambda e: e[0]):
            delay = base + at - time.time()
            if delay > 0:
                time.sleep(delay)
            if what == "burst":
                host, n = arg
                for k in range(n):
                    written.append(put_at(client, project, "web", k % SHARDS, SHARDS, time.time(),
                                          {"msg": f"ERROR {k} in {host}", "host": host}))
            elif what == "fatal":
                written.append(put_at(client, project, "web", 1, SHARDS, time.time(), {"msg": "FATAL: oom"}))
            else:  # SIGKILL the evaluator of the 3-process group
                holder = evaluator_of(client, project, groups[3])
                victim = next(j for j in procs[3] if j.consumer == holder)
                victim.proc.send_signal(signal.SIGKILL)
                assert victim.proc.wait(5) == -signal.SIGKILL
        assert victim is not None
        survivors = [j for j in running if j is not victim]

        expected = brute_force(written, RULES, DEDUP)
        assert len(expected) >= 6, expected  # the data set alerts (a burst cut by a window edge does not)

        def complete(n: int) -> bool:
            return {alert_tuple(a) for a in hook.of_group(groups[n])} >= expected

        def missing() -> str:
            return "; ".join(f"group {n} misses {sorted(expected - {alert_tuple(a) for a in hook.of_group(groups[n])})}"
                             f" has extra {sorted({alert_tuple(a) for a in hook.of_group(groups[n])} - expected)}"
                             for n in (1, 2, 3, 4))
        try:
            wait_for(lambda: all(complete(n) for n in (1, 2, 3)), 60, "every group's alerts", alive=survivors)
            # the replay: a fresh group from begin, after the fact
            replay = jobs(_job(tmp_path, hub, project, groups[4], hook), env)
            wait_for(lambda: complete(4), 60, "the replay's alerts", alive=[replay])
        except AssertionError as exc:
            raise AssertionError(f"{exc}; expected {sorted(expected)}; {missing()}") from None
        time.sleep(3)  # time for a wrong extra alert to arrive
        for j in survivors + [replay]:
            j.assert_alive()
    finally:
        hook.stop()

    for n in (1, 2, 3, 4):
        got = hook.of_group(groups[n])
        assert {alert_tuple(a) for a in got} == expected, (n, sorted({alert_tuple(a) for a in got} ^ expected))
        ids = [a["id"] for a in got]
        assert len(set(ids)) == len(expected)
        if n != 3:
            assert len(ids) == len(set(ids)), f"group {n}: an alert delivered twice without a crash"
        for a in got:
            assert a["window_end"] - a["window_start"] == WINDOW and a["project"] == project
            assert a["samples"] and all(("ERROR" if a["rule"] == "errors" else "FATAL") in s["msg"]
                                        for s in a["samples"])
    # each job alerts on its own: ids name the group
    assert len({a["id"] for a in hook.alerts}) == 4 * len(expected)
    # the killed process was the evaluator: a survivor took the state shard over from its snapshot
    assert any("state restored from the snapshot" in j.output() for j in procs[3] if j is not victim)
