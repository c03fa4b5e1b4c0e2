"""``sluice run`` / ``sluice check`` (issue 6: dispatch and monitor jobs from one YAML file) against real hubs.

Every job runs as its own process, ``python -m sluice run FILE --quiet``, exactly as a user starts it; the
credentials are never in the file but referenced as ``${VAR}`` and passed in the process environment.

* dispatch: routes by topic, by topic into another project, by a field regex, default drop, one target on a
  second hub with its own keys; >10,000 logs, exact counts per target; group-level routes forward the
  source group's bytes untouched (compared byte for byte).
* two processes of one dispatch job share a 4-shard source; one is SIGKILLed mid-stream: nothing is lost,
  duplicates only come from the killed process's uncommitted window.
* ``sluice check`` explains bad files with file:line; ``sluice run`` fails fast and clearly on a wrong
  secret or a missing logstore.
* monitor over two hubs ("two regions"): a field regex rule and keyword rules; alerts delivered to a real
  local HTTP server (generic webhook, and a DingTalk-style robot that verifies the signature and payload),
  to a real SMTP server (aiosmtpd) and to the process log; dedup, window/threshold, a webhook that always
  answers 500 holds back neither consumption nor the other alerters.
* SIGTERM: exit 0 with the checkpoints written; a restart of the same job consumes nothing twice.

Every wait is a poll with a deadline; every process started here is killed in a ``finally``/teardown.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sluice.client import Client
from sluice.testing import HubProcess, free_port
from sluice.wire.batch import LazyLogGroup
from tests._consumers import hash_key_for as _hash_key
from tests._jobs import CHECKPOINT_INTERVAL, JobProc, checkpoints as _checkpoints, wait_for as _wait_for
from tests.conftest import unique

FIVE_XX = re.compile(r"^5\d\d$")
HUB2_KEY = ("region2-id", "region2-secret-not-the-same")


# ---------------------------------------------------------------------------------------------- helpers
def _name(prefix: str) -> str:
    return unique(prefix).replace("-", "_")


def _render(text: str, **values: Any) -> str:
    """Fill ``@NAME@`` placeholders (``${VAR}`` is left for sluice: it reads the environment)."""
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    assert "@" not in re.sub(r"[\w.-]+@[\w.-]+", "", text), f"unfilled placeholder in:\n{text}"
    return text


def _pull_groups(client: Client, project: str, logstore: str) -> list[tuple[int, bytes]]:
    """Every stored LogGroup (shard, bytes), all shards, from the beginning."""
    out: list[tuple[int, bytes]] = []
    for s in client.list_shards(project, logstore):
        shard = s["shardID"]
        cursor = client.get_cursor(project, logstore, shard, "begin")
        while True:
            r = client.pull_logs(project, logstore, shard, cursor, count=1000)
            if r.count == 0:
                break
            out.extend((shard, bytes(b)) for b in r.group_bytes())
            cursor = r.next_cursor
    return out


def _ids(client: Client, project: str, logstore: str) -> Counter[str]:
    return Counter(str(d.get("id")) for _, g in _pull_groups(client, project, logstore)
                   for d in LazyLogGroup(g).logs())


def _sluice(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, float]:
    """Run a short sluice command; (exit code, stdout + stderr, seconds)."""
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "sluice", *args], capture_output=True, text=True, env=env,
                       timeout=timeout)
    return p.returncode, p.stdout + p.stderr, time.monotonic() - t0


@pytest.fixture(scope="module")
def hub2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A second hub ("another region"): its own address, port and access key."""
    proc = HubProcess(tmp_path_factory.mktemp("hub2") / "data", host="127.0.0.1", port=free_port(),
                      access_key=HUB2_KEY)
    proc.start()
    yield proc
    proc.close()


@pytest.fixture
def c1(client: Client) -> Client:
    """The first hub's client (conftest's ``client``), named beside ``c2``."""
    return client


@pytest.fixture
def c2(hub2: HubProcess) -> Iterator[Client]:
    c = Client(hub2.url, *HUB2_KEY, timeout=20)
    yield c
    c.close()


@pytest.fixture
def env(hub: HubProcess, hub2: HubProcess) -> dict[str, str]:
    """The environment of every sluice process: the keys the job files reference as ${VAR}."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "SLS_AK_ID": hub.access_key_id,
            "SLS_AK_KEY": hub.access_key_secret, "R2_AK_ID": HUB2_KEY[0], "R2_AK_KEY": HUB2_KEY[1]}


def _new_project(client: Client, prefix: str, logstores: dict[str, int]) -> str:
    name = unique(prefix)
    client.create_project(name, "test_pipelines")
    for ls, shards in logstores.items():
        client.create_logstore(name, ls, shard_count=shards)
    return name


# ---------------------------------------------------------------------------------------------- 1. dispatch
DISPATCH_YAML = r"""
sources:                              # one or more; each may be another endpoint (region)
  - endpoint: @URL@
    access_key_id: ${SLS_AK_ID}
    access_key_secret: ${SLS_AK_KEY}
    project: @PROJECT@
    logstores: [app, web]
group: @GROUP@
start: begin
heartbeat_interval: 1
dispatch:
  routes:                             # first match wins
    - match: {topic: ngnix}
      to: {logstore: nginx}           # endpoint/project/keys default to the source's
    - match: {topic: sql_audit}
      to: {project: @AUDIT@, logstore: sql}
    - match: {topic: remote}
      to: {endpoint: "@URL2@", access_key_id: "${R2_AK_ID}", access_key_secret: "${R2_AK_KEY}",
           project: @REMOTE@, logstore: remote}
    - match: {field: {status: "^5\\d\\d$"}}
      to: {logstore: errors}
  default: drop
"""

_STATUSES = ["200", "500", "404", "503", "302", "599", "5000", "x500", "200", "502"]


def _dispatch_data() -> list[tuple[str, str, list[dict[str, str]]]]:
    """(topic, source, logs) per LogGroup: 10,900 logs. ngnix logs carry 5xx statuses too (first match wins);
    some access groups are all-5xx (the field route forwards them whole), the rest are mixed."""
    plan = [("ngnix", 60), ("sql_audit", 40), ("remote", 20), ("access", 80), ("", 10), ("other", 8)]
    out = []
    for topic, groups in plan:
        for g in range(groups):
            logs = []
            for i in range(50):
                n = g * 50 + i
                d = {"id": f"{topic or 'none'}-{n}", "msg": f"request {n} " + "x" * (n % 40)}
                if topic != "other":
                    d["status"] = "503" if (topic == "access" and g < 5) else _STATUSES[n % len(_STATUSES)]
                logs.append(d)
            out.append((topic, f"10.0.0.{g % 4}", logs))
    return out


def test_dispatch_routes_exact_counts_second_hub_and_raw_bytes(
        hub: HubProcess, hub2: HubProcess, c1: Client, c2: Client, env: dict[str, str], tmp_path: Path,
        jobs: Callable[..., JobProc]) -> None:
    project = _new_project(c1, "dsp", {"app": 2, "web": 2, "nginx": 2, "errors": 1})
    audit = _new_project(c1, "aud", {"sql": 1})
    remote = _new_project(c2, "rem", {"remote": 2})
    data = _dispatch_data()
    assert sum(len(logs) for _, _, logs in data) > 10_000
    for k, (topic, source, logs) in enumerate(data):
        c1.put_logs(project, ("app", "web")[k % 2], logs, topic=topic, source=source,
                    tags={"env": "prod", "k": str(k)})

    expected = {
        "nginx": {d["id"] for t, _, logs in data if t == "ngnix" for d in logs},
        "sql": {d["id"] for t, _, logs in data if t == "sql_audit" for d in logs},
        "remote": {d["id"] for t, _, logs in data if t == "remote" for d in logs},
        "errors": {d["id"] for t, _, logs in data if t in ("access", "") for d in logs
                   if FIVE_XX.search(d["status"])},
    }
    assert len(expected["nginx"]) == 3000 and len(expected["errors"]) == 250 + 1500 + 200  # 5 whole groups, then 40%
    where = {"nginx": (c1, project), "sql": (c1, audit), "remote": (c2, remote), "errors": (c1, project)}

    def got() -> dict[str, Counter[str]]:
        return {t: _ids(c, p, t) for t, (c, p) in where.items()}

    config = tmp_path / "dispatch.yaml"
    config.write_text(_render(DISPATCH_YAML, URL=hub.url, URL2=hub2.url, PROJECT=project, AUDIT=audit,
                              REMOTE=remote, GROUP=_name("dispatch")))
    job = jobs(config, env)
    try:
        _wait_for(lambda: all(set(c) >= expected[t] for t, c in got().items()), 60,
                  "every routed log in its target", interval=0.5, alive=[job])
        time.sleep(1.5)  # nothing more may arrive: no duplicates, nothing from dropped logs
        final = got()
        for target, ids in final.items():
            assert set(ids) == expected[target], f"{target}: unexpected {sorted(set(ids) - expected[target])[:5]}"
            assert sum(ids.values()) == len(expected[target]), f"{target}: duplicates {ids.most_common(3)}"
        rc, took = job.terminate()
        assert rc == 0, job.output()[-3000:]
    finally:
        job.kill()

    # group-level routes forward the received bytes untouched: the target's groups ARE the source's groups
    source_groups = [g for ls in ("app", "web") for _, g in _pull_groups(c1, project, ls)]
    by_topic: dict[str, Counter[bytes]] = {}
    for g in source_groups:
        by_topic.setdefault(LazyLogGroup(g).Topic, Counter())[g] += 1
    assert Counter(g for _, g in _pull_groups(c1, project, "nginx")) == by_topic["ngnix"]
    assert Counter(g for _, g in _pull_groups(c1, audit, "sql")) == by_topic["sql_audit"]
    assert Counter(g for _, g in _pull_groups(c2, remote, "remote")) == by_topic["remote"]
    # the field route regroups per log but keeps each group's topic, source and tags
    for _, raw in _pull_groups(c1, project, "errors"):
        g = LazyLogGroup(raw)
        assert g.Topic in ("access", "") and g.Source.startswith("10.0.0.") and g.tags.get("env") == "prod"
        for d in g.logs():
            assert FIVE_XX.search(d["status"]) and d["id"].startswith(g.Topic or "none")


# ---------------------------------------------------------------------------------------------- 2. two processes
SHARE_YAML = r"""
sources:
  - endpoint: @URL@
    access_key_id: ${SLS_AK_ID}
    access_key_secret: ${SLS_AK_KEY}
    project: @PROJECT@
    logstores: [src]
group: @GROUP@
start: begin
heartbeat_interval: 1
dispatch:
  routes:
    - match: {topic: t}
      to: {logstore: dst}
"""


def test_two_processes_share_shards_and_sigkill_loses_nothing(
        hub: HubProcess, c1: Client, env: dict[str, str], tmp_path: Path, jobs: Callable[..., JobProc]) -> None:
    """Two ``sluice run`` of one job share a 4-shard source; one is SIGKILLed while logs stream in.

    Nothing is lost: the survivor takes the victim's shards (after the group timeout, 2 s) from the victim's
    last checkpoint. Duplicates are allowed only from the victim's uncommitted window: logs it had already
    forwarded but whose checkpoint it had not yet written (written every 2 s), so they are bounded by what
    was written to the victim's shards during the few seconds before the kill; the survivor's own shards
    see no duplicate at all."""
    shards = 4
    project = _new_project(c1, "share", {"src": shards, "dst": 2})
    group = _name("share")
    config = tmp_path / "share.yaml"
    config.write_text(_render(SHARE_YAML, URL=hub.url, PROJECT=project, GROUP=group))
    written: dict[str, tuple[int, float]] = {}  # id -> (shard, monotonic time written)
    seq = [0]

    def put(per_group: int, groups: int, pause: float = 0.0, on_group: Callable[[int], None] | None = None) -> None:
        for j in range(groups):
            shard = seq[0] % shards
            ids = [f"i{seq[0]}-{k}" for k in range(per_group)]
            t = time.monotonic()
            c1.put_logs(project, "src", [{"id": i, "n": str(k)} for k, i in enumerate(ids)], topic="t",
                        hash_key=_hash_key(shard, shards))
            for i in ids:
                written[i] = (shard, t)
            seq[0] += 1
            if on_group is not None:
                on_group(j)
            if pause:
                time.sleep(pause)

    a = jobs(config, env)
    b = jobs(config, env)
    try:
        # phase 1: a backlog, shared out while both processes join
        put(50, 120)
        _wait_for(lambda: set(_ids(c1, project, "dst")) >= set(written), 40, "phase 1 delivered",
                  interval=0.5, alive=[a, b])

        def shared() -> bool:
            put(5, shards)  # keep every shard moving so each owner writes its checkpoint
            owners = Counter(consumer for _, consumer in _checkpoints(c1, project, "src", group).values())
            return owners == Counter({a.consumer: 2, b.consumer: 2})
        _wait_for(shared, 30, "both processes each holding 2 of the 4 shards", interval=0.5, alive=[a, b])
        victim_shards = {s for s, (_, who) in _checkpoints(c1, project, "src", group).items() if who == b.consumer}

        # phase 2: a steady stream; SIGKILL b half-way
        killed_at = [0.0]

        def maybe_kill(j: int) -> None:
            if j == 300:
                b.proc.kill()
                killed_at[0] = time.monotonic()
        put(10, 600, pause=0.005, on_group=maybe_kill)
        assert b.proc.wait(5) == -signal.SIGKILL

        _wait_for(lambda: set(_ids(c1, project, "dst")) >= set(written), 40,
                  "every log delivered after the kill", interval=0.5, alive=[a])
        time.sleep(1.0)
        got = _ids(c1, project, "dst")
        rc, _ = a.terminate()
        assert rc == 0, a.output()[-3000:]
    finally:
        a.kill()
        b.kill()

    assert set(got) == set(written)  # nothing lost, nothing invented
    assert len(written) > 10_000
    dups = {i: n for i, n in got.items() if n > 1}
    window = CHECKPOINT_INTERVAL + 3.0  # the uncommitted checkpoint interval, plus processing and flush time
    in_window = {i for i, (s, t) in written.items() if s in victim_shards and t >= killed_at[0] - window}
    assert set(dups) <= in_window, (
        f"{len(set(dups) - in_window)} duplicates outside the victim's uncommitted window, e.g. "
        f"{[(i, written[i]) for i in sorted(set(dups) - in_window)[:5]]}, killed at {killed_at[0]}")
    assert sum(n - 1 for n in dups.values()) < 0.2 * len(written), f"{len(dups)} duplicated logs"


# ---------------------------------------------------------------------------------------------- 3. errors
CHECK_YAML = r"""sources:
  - endpoint: http://127.0.0.1:9
    access_key_id: ${SLS_AK_ID}
    access_key_secret: ${SLS_AK_KEY}
    project: demo
    logstores: [app, web]
group: dispatch
start: begin
dispatch:
  routes:
    - match: {topic: ngnix}
      to: {logstore: nginx}
    - match: {field: {status: "^5\\d\\d$"}}
      to: {logstore: errors}
  default: drop
"""

MONITOR_CHECK_YAML = r"""sources:
  - endpoint: http://127.0.0.1:9
    project: demo
    logstores: [web]
group: monitor
start: end
monitor:
  rules:
    - name: http-5xx
      field: status
      regex: "^5\\d\\d$"
      threshold: 1
      window: 60s
  alerters:
    - webhook: {url: http://127.0.0.1:9000/hook}
  dedup: 5m
"""

FORWARD_CHECK_YAML = r"""sources:
  - endpoint: http://127.0.0.1:9
    project: demo
    logstores: [web]
group: to-siem
forward:
  syslog: {host: 127.0.0.1, port: 6514, protocol: tcp}
"""


def _variant(base: str, old: str, new: str) -> tuple[str, int]:
    """``base`` with ``old`` replaced by ``new`` once; and the 1-based line where it is."""
    assert base.count(old) == 1, old
    return base.replace(old, new), base[:base.index(old)].count("\n") + 1


@pytest.mark.parametrize("case", ["typo-top", "typo-nested", "missing-env", "bad-regex", "no-job",
                                  "bad-duration", "rule-without-matcher"])
def test_check_explains_bad_files_with_line_numbers(case: str, env: dict[str, str], tmp_path: Path) -> None:
    if case == "typo-top":
        text, line = _variant(CHECK_YAML, "group: dispatch", "grup: dispatch")
        words = ["grup"]
    elif case == "typo-nested":
        text, line = _variant(CHECK_YAML, "to: {logstore: nginx}", "to: {logstor: nginx}")
        words = ["logstor"]
    elif case == "missing-env":
        text, line = _variant(CHECK_YAML, "${SLS_AK_KEY}", "${SLUICE_TEST_SURELY_UNSET}")
        words = ["SLUICE_TEST_SURELY_UNSET"]
    elif case == "bad-regex":
        text, line = _variant(CHECK_YAML, r'"^5\\d\\d$"', r'"^5(\\d"')
        words = ["regex"]
    elif case == "no-job":
        text = CHECK_YAML[:CHECK_YAML.index("dispatch:\n")]
        line, words = 1, ["dispatch", "monitor"]
    elif case == "bad-duration":
        text, line = _variant(MONITOR_CHECK_YAML, "window: 60s", "window: sixty seconds")
        words = ["duration"]
    else:
        text, line = _variant(MONITOR_CHECK_YAML, '      regex: "^5\\\\d\\\\d$"\n', "")
        line -= 2  # the error is on the rule (its "- name:" line)
        words = ["regex", "keyword"]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    rc, out, _ = _sluice("check", str(path), env=env)
    assert rc != 0, out
    assert f"{path}:{line}:" in out, f"expected {path}:{line}: in:\n{out}"
    for w in words:
        assert w in out, out
    assert "Traceback" not in out, out


def test_check_accepts_good_files_and_run_rejects_bad_ones(env: dict[str, str], tmp_path: Path) -> None:
    for name, text in (("dispatch.yaml", CHECK_YAML), ("monitor.yaml", MONITOR_CHECK_YAML),
                       ("forward.yaml", FORWARD_CHECK_YAML)):
        path = tmp_path / name
        path.write_text(text)
        rc, out, _ = _sluice("check", str(path), env=env)
        assert rc == 0 and f"OK: a {name.split('.')[0]} job" in out, out
    bad = tmp_path / "bad.yaml"
    bad.write_text(_variant(CHECK_YAML, "group: dispatch", "grup: dispatch")[0])
    rc, out, _ = _sluice("run", str(bad), "--quiet", env=env)
    assert rc != 0 and f"{bad}:7:" in out and "Traceback" not in out, out


RUN_YAML = r"""
sources:
  - endpoint: @URL@
    access_key_id: ${SLS_AK_ID}
    access_key_secret: ${SLS_AK_KEY}
    project: @PROJECT@
    logstores: [@LOGSTORES@]
group: @GROUP@
heartbeat_interval: 1
dispatch:
  routes:
    - match: {topic: t}
      to: {logstore: @TARGET@}
"""


@pytest.mark.parametrize("case", ["wrong-secret", "missing-source-logstore", "missing-project"])
def test_run_fails_fast_on_bad_credentials_or_missing_logstore(
        case: str, hub: HubProcess, c1: Client, env: dict[str, str], tmp_path: Path) -> None:
    project = _new_project(c1, "bad", {"app": 1, "dst": 1})
    logstores, words = "app", [project]
    run_env = dict(env)
    if case == "wrong-secret":
        run_env["SLS_AK_KEY"] = "not-the-secret"
        words += ["app", "Signature"]
    elif case == "missing-source-logstore":
        logstores = "app, nosuch_store"
        words += ["nosuch_store", "LogStoreNotExist"]
    else:
        project = unique("nosuch")
        words = [project, "ProjectNotExist"]
    config = tmp_path / "run.yaml"
    config.write_text(_render(RUN_YAML, URL=hub.url, PROJECT=project, LOGSTORES=logstores, GROUP=_name("bad"),
                              TARGET="dst"))
    rc, out, took = _sluice("run", str(config), "--quiet", env=run_env, timeout=60)
    assert rc != 0, out
    assert took < 15, f"took {took:.1f}s: a retry loop?\n{out}"
    for w in words:
        assert w in out, f"{w!r} not in:\n{out}"
    assert "Traceback" not in out, out


def test_run_fails_fast_on_missing_target_logstore(
        hub: HubProcess, c1: Client, env: dict[str, str], tmp_path: Path, jobs: Callable[..., JobProc]) -> None:
    """A dispatch target whose logstore does not exist stops `sluice run` at once, naming it (no retry loop)."""
    project = _new_project(c1, "badt", {"app": 1})
    c1.put_logs(project, "app", [{"id": "1"}], topic="t")
    config = tmp_path / "run.yaml"
    config.write_text(_render(RUN_YAML, URL=hub.url, PROJECT=project, LOGSTORES="app", GROUP=_name("badt"),
                              TARGET="nosuch_target"))
    job = jobs(config, env)
    try:
        job.proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
    finally:
        job.kill()
    out = job.output()
    assert job.proc.returncode not in (None, -signal.SIGKILL, 0), out
    assert "nosuch_target" in out and "Traceback" not in out, out


# ---------------------------------------------------------------------------------------------- 4. monitor
class Receiver:
    """A real HTTP server (aiohttp, own thread and loop): /hook records webhook posts, /fail always answers
    500, /robot/send is a DingTalk robot that verifies the signature like DingTalk does."""

    def __init__(self, ding_token: str, ding_secret: str) -> None:
        self.port = free_port()
        self.ding_token = ding_token
        self.ding_secret = ding_secret
        self.hooks: list[tuple[dict[str, str], Any]] = []  # (headers, body)
        self.failed_posts = 0
        self.robot: list[dict[str, Any]] = []  # {"ok": signature valid, "why": ..., "body": ...}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: Any = None

    async def _hook(self, request: Any) -> Any:
        from aiohttp import web
        self.hooks.append((dict(request.headers), await request.json()))
        return web.json_response({"ok": True})

    async def _fail(self, request: Any) -> Any:
        from aiohttp import web
        await request.read()
        self.failed_posts += 1
        return web.Response(status=500, text="receiver is down")

    async def _robot(self, request: Any) -> Any:
        from aiohttp import web
        raw_query = request.rel_url.raw_query_string
        q = urllib.parse.parse_qs(raw_query, keep_blank_values=True)  # how a server decodes it: %XX and '+'
        body = await request.json()
        why = ""
        ts, sign = q.get("timestamp", [""])[0], q.get("sign", [""])[0]
        if q.get("access_token") != [self.ding_token]:
            why = f"access_token {q.get('access_token')}"
        elif not ts.isdigit() or abs(int(ts) - time.time() * 1000) > 60_000:
            why = f"timestamp {ts!r} is not within a minute of now (ms)"
        else:
            digest = hmac.new(self.ding_secret.encode(), f"{ts}\n{self.ding_secret}".encode(), hashlib.sha256)
            expected = base64.b64encode(digest.digest()).decode()
            if sign != expected:
                why = f"sign {sign!r} != {expected!r} (raw query {raw_query})"
        self.robot.append({"ok": not why, "why": why, "body": body, "raw_query": raw_query})
        if why:
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    def start(self) -> "Receiver":
        from aiohttp import web

        async def setup() -> None:
            app = web.Application()
            app.router.add_post("/hook", self._hook)
            app.router.add_post("/fail", self._fail)
            app.router.add_post("/robot/send", self._robot)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self._thread.start()
        asyncio.run_coroutine_threadsafe(setup(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def hook_alerts(self) -> list[dict[str, Any]]:
        return [a for _, body in list(self.hooks) for a in body["alerts"]]


class Mailbox:
    """A real SMTP server (aiosmtpd) on 127.0.0.1; ``messages`` are parsed emails."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"

    def bodies(self) -> list[str]:
        return [m.get_body(("plain",)).get_content() for _, m in list(self.messages)]


MONITOR_YAML = r"""
sources:                              # one per region
  - endpoint: @URL1@
    access_key_id: ${SLS_AK_ID}
    access_key_secret: ${SLS_AK_KEY}
    project: @P1@
    logstores: [web]
  - endpoint: @URL2@
    access_key_id: ${R2_AK_ID}
    access_key_secret: ${R2_AK_KEY}
    project: @P2@
    logstores: [web]
group: @GROUP@
start: end
heartbeat_interval: 1
monitor:
  rules:
    - name: http-5xx
      field: status                   # only this field: a 500 elsewhere in the log does not count
      regex: "^5\\d\\d$"
      threshold: 3                    # alert when >= threshold matches ...
      window: 60s                     # ... within this window
      group_by: region
    - name: fatal
      keyword: "FATAL"                # the whole log
    - name: panic-burst
      keyword: "PANIC"
      threshold: 5                    # the test writes only 3
      window: 60s
    - name: slow-pair
      keyword: "SLOWQUERY"
      threshold: 2                    # the test writes 2, seconds apart
      window: 1s
    - name: latecomer
      keyword: "LATECOMER"
  alerters:
    - webhook: {url: "http://127.0.0.1:@PORT@/fail"}
    - webhook: {url: "http://127.0.0.1:@PORT@/hook", headers: {X-Token: "${HOOK_TOKEN}"}}
    - dingtalk: {url: "http://127.0.0.1:@PORT@/robot/send?access_token=${DING_TOKEN}", secret: "${DING_SECRET}", at_mobiles: ["1380000000"]}
    - email: {host: 127.0.0.1, port: @SMTP@, from: "sluice@example.com", to: ["oncall@example.com"]}
    - log: {}
  dedup: 5m                           # one alert per rule and key per period
"""


def test_monitor_two_regions_alerters_dedup_window_and_failing_alerter(
        hub: HubProcess, hub2: HubProcess, c1: Client, c2: Client, env: dict[str, str], tmp_path: Path,
        jobs: Callable[..., JobProc]) -> None:
    ding_token, ding_secret = "tok-" + os.urandom(6).hex(), "SEC" + os.urandom(24).hex()
    run_env = {**env, "DING_TOKEN": ding_token, "DING_SECRET": ding_secret, "HOOK_TOKEN": "hook-secret-1"}
    p1 = _new_project(c1, "mon", {"web": 2})
    p2 = _new_project(c2, "mon", {"web": 2})
    group = _name("monitor")
    regions = ((c1, p1, "cn-hangzhou", 0), (c2, p2, "cn-shanghai", 1))  # 5xx of a region go to one shard

    # before the job starts: with start: end, these are never looked at
    c2.put_logs(p2, "web", [{"msg": "FATAL before the start", "id": "old"}], hash_key=_hash_key(0, 2))

    receiver = Receiver(ding_token, ding_secret).start()
    mailbox = Mailbox()
    mailbox.controller.start()
    job: JobProc | None = None
    try:
        config = tmp_path / "monitor.yaml"
        config.write_text(_render(MONITOR_YAML, URL1=hub.url, URL2=hub2.url, P1=p1, P2=p2, GROUP=group,
                                  PORT=receiver.port, SMTP=mailbox.port))
        job = jobs(config, run_env)

        def ready() -> bool:  # every shard of both regions consumed (its checkpoint written): positioned at end
            for c, p, _, _ in regions:
                for s in range(2):
                    c.put_logs(p, "web", [{"status": "200", "msg": "warm-up"}], hash_key=_hash_key(s, 2))
            return all(cp for c, p, _, _ in regions for cp, _ in _checkpoints(c, p, "web", group).values()) and \
                all(len(_checkpoints(c, p, "web", group)) == 2 for c, p, _, _ in regions)
        _wait_for(ready, 30, "the monitor consuming every shard", interval=0.5, alive=[job])

        def five_xx(n: int) -> None:
            for c, p, region, shard in regions:
                for k in range(n):  # many matches, in several requests, mixed with non-matching logs
                    c.put_logs(p, "web", [{"status": str(500 + k % 4), "region": region, "path": f"/a/{k}"},
                                          {"status": "200", "region": region, "path": "/ok"}],
                               hash_key=_hash_key(shard, 2))

        # near misses for region cn-beijing: "500" elsewhere in the log, or a status that is not 3 digits
        c1.put_logs(p1, "web", [{"status": s, "region": "cn-beijing", "msg": "upstream said 500"}
                                for s in ("200", "5000", "x503", "50", "404") * 4], hash_key=_hash_key(1, 2))
        five_xx(10)
        c2.put_logs(p2, "web", [{"msg": f"FATAL: disk {k} full", "id": f"fatal-{k}"} for k in range(5)],
                    hash_key=_hash_key(1, 2))
        c1.put_logs(p1, "web", [{"msg": f"PANIC {k}"} for k in range(3)], hash_key=_hash_key(0, 2))
        c1.put_logs(p1, "web", [{"msg": "SLOWQUERY 1"}], hash_key=_hash_key(0, 2))

        want = {("http-5xx", "cn-hangzhou"), ("http-5xx", "cn-shanghai"), ("fatal", "")}

        def keys(alerts: list[dict[str, Any]]) -> set[tuple[str, str]]:
            return {(a["rule"], a["key"]) for a in alerts}
        _wait_for(lambda: keys(receiver.hook_alerts()) >= want, 20, "the webhook alerts", alive=[job])
        time.sleep(2.5)  # longer than the slow-pair window
        c1.put_logs(p1, "web", [{"msg": "SLOWQUERY 2"}], hash_key=_hash_key(0, 2))
        # after the alerts: more matches (deduplicated), and a new rule's match (consumption goes on even
        # though the /fail webhook keeps failing and retrying)
        five_xx(10)
        c2.put_logs(p2, "web", [{"msg": "FATAL again"}], hash_key=_hash_key(1, 2))
        c1.put_logs(p1, "web", [{"msg": "LATECOMER arrives", "id": "late"}], hash_key=_hash_key(1, 2))
        want.add(("latecomer", ""))
        _wait_for(lambda: keys(receiver.hook_alerts()) >= want, 20, "the latecomer alert", alive=[job])
        _wait_for(lambda: all(any(f'"rule": "{r}"' in b and f'"key": "{k}"' in b for b in mailbox.bodies())
                              for r, k in want), 20, "the emails", alive=[job])
        _wait_for(lambda: {r for r in ("http-5xx", "fatal", "latecomer")
                           if any(r in x["body"]["markdown"]["text"] for x in receiver.robot)} ==
                  {"http-5xx", "fatal", "latecomer"}, 20, "the DingTalk messages", alive=[job])
        time.sleep(1.5)  # time for any wrong extra alert to arrive
        assert receiver.failed_posts >= 2, "the failing webhook was not retried"
        rc, took = job.terminate()
        assert rc == 0, job.output()[-3000:]
        assert took < 15
    finally:
        if job is not None:
            job.kill()
        receiver.stop()
        mailbox.controller.stop()

    # exactly one alert per rule and key (dedup 5m), none below threshold or outside the window
    hook = receiver.hook_alerts()
    assert sorted((a["rule"], a["key"]) for a in hook) == sorted(want), hook
    for headers, _ in receiver.hooks:
        assert headers.get("X-Token") == "hook-secret-1"
    now = time.time()
    for a in hook:
        assert a["project"] in (p1, p2) and a["logstore"] == "web" and a["shard"] in (0, 1)
        assert a["count"] >= a["threshold"] and 1 <= len(a["samples"]) <= 3
        assert now - 600 < a["from"] <= a["to"] <= now + 5, a
        assert a["endpoint"] == (hub.url if a["project"] == p1 else hub2.url), a
    by_key = {(a["rule"], a["key"]): a for a in hook}
    for (c, p, region, shard) in regions:
        a = by_key[("http-5xx", region)]
        assert (a["project"], a["shard"], a["threshold"], a["count"], a["window_seconds"]) == (p, shard, 3, 3, 60)
        for s in a["samples"]:
            assert FIVE_XX.search(s["status"]) and s["region"] == region, s
    fatal = by_key[("fatal", "")]
    assert fatal["project"] == p2 and fatal["shard"] == 1
    assert all("FATAL" in s["msg"] and s.get("id") != "old" for s in fatal["samples"]), fatal
    assert by_key[("latecomer", "")]["samples"][0]["id"] == "late"

    # DingTalk: every message signed right, markdown, @mobiles
    assert receiver.robot and all(r["ok"] for r in receiver.robot), [r["why"] for r in receiver.robot]
    for r in receiver.robot:
        body = r["body"]
        assert body["msgtype"] == "markdown" and body["markdown"]["title"], body
        assert body["at"]["atMobiles"] == ["1380000000"] and "@1380000000" in body["markdown"]["text"], body
        assert "%" in r["raw_query"].split("sign=")[1], f"sign not URL-encoded: {r['raw_query']}"
    text = "\n".join(r["body"]["markdown"]["text"] for r in receiver.robot)
    assert "http-5xx" in text and "PANIC" not in text and "SLOWQUERY" not in text

    # email: one message per send, to the configured address, the alert in subject and body
    assert mailbox.messages
    for rcpt, msg in mailbox.messages:
        assert rcpt == ["oncall@example.com"] and msg["From"] == "sluice@example.com"
        assert "[sluice]" in msg["Subject"]
    mail_alerts = [a for b in mailbox.bodies() for a in json.loads(b[b.index("\n["):])]
    assert sorted((a["rule"], a["key"]) for a in mail_alerts) == sorted(want)

    # the failing webhook got the same alerts (and kept failing); the log alerter printed them
    out = job.output()
    assert "ALERT" in out and "http-5xx" in out and "webhook alerter failed" in out
    assert "panic-burst" not in out and "slow-pair" not in out


# ---------------------------------------------------------------------------------------------- 5. SIGTERM
def test_sigterm_exits_zero_after_committing_and_restart_consumes_nothing_twice(
        hub: HubProcess, c1: Client, env: dict[str, str], tmp_path: Path, jobs: Callable[..., JobProc]) -> None:
    shards = 2
    project = _new_project(c1, "term", {"src": shards, "dst": 1})
    group = _name("term")
    config = tmp_path / "term.yaml"
    config.write_text(_render(SHARE_YAML, URL=hub.url, PROJECT=project, GROUP=group))
    written: list[str] = []

    def put(groups: int, start: int) -> None:
        for j in range(start, start + groups):
            ids = [f"g{j}-{k}" for k in range(20)]
            c1.put_logs(project, "src", [{"id": i} for i in ids], topic="t", hash_key=_hash_key(j % shards, shards))
            written.extend(ids)
            time.sleep(0.003)

    first = jobs(config, env)
    try:
        put(100, 0)
        _wait_for(lambda: len(_ids(c1, project, "dst")) >= 1000, 30, "the first job consuming", alive=[first])
        # SIGTERM while logs are streaming in
        stream = threading.Thread(target=put, args=(150, 100))
        stream.start()
        time.sleep(0.3)
        rc, took = first.terminate()
        stream.join()
        assert rc == 0, first.output()[-3000:]
        assert took < 10, f"took {took:.1f}s to stop"
        assert "Traceback" not in first.output()
        delivered = _ids(c1, project, "dst")
        assert max(delivered.values()) == 1
        cps = _checkpoints(c1, project, "src", group)
        assert len(cps) == shards and all(cp for cp, _ in cps.values()), cps
        # the checkpoints cover exactly what was delivered: the restart resumes right after it
        second = jobs(config, env)
        put(50, 250)
        _wait_for(lambda: set(_ids(c1, project, "dst")) >= set(written), 30, "every log after the restart",
                  alive=[second])
        time.sleep(1.0)
        final = _ids(c1, project, "dst")
        rc, _ = second.terminate()
        assert rc == 0, second.output()[-3000:]
    finally:
        first.kill()
    assert set(final) == set(written) and len(written) == 6000
    dup = {i: n for i, n in final.items() if n > 1}
    assert not dup, f"{len(dup)} logs consumed twice across the graceful restart, e.g. {list(dup)[:5]}"
