"""Attacks through the web console (issue #17 items 1, 4, 8 and 11).

1. A read-only key's live tail with a catastrophic regex (``(a+)+$`` on ``aaaa...!``) used to hold the hub for
   seconds to hours; patterns now run on RE2 (linear time), and patterns RE2 cannot run are a clear 400.
4. One tail poll on a 64-shard logstore decoded 512 KiB per shard (1.6 GB peak); a poll now scans a bounded
   number of bytes, keeps a bounded page and goes on from where it stopped at the next poll (nothing skipped),
   and it holds the hub's in-flight byte budget while it runs (503 when the budget is full).
8. A non-ASCII cookie gave a 500 and a traceback in the log; now it is treated as no session.
11. Sign-in failures are throttled per key and per address; one key's sign-ins never end another key's session.

Latencies during these attacks are measured by ``bench/attack.py``, not asserted here.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from sluice.client import Client
from sluice.hub.console.tail import MAX_SCAN_BYTES
from sluice.testing import HubProcess
from tests._consumers import hash_key_for
from tests.conftest import unique


def _request(hub: HubProcess, method: str, path: str, *, cookie: str = "", body: dict[str, str] | None = None,
             timeout: float = 30, raw_cookie: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=timeout)
    headers: dict[str, str] = {}
    if cookie:
        headers["Cookie"] = f"sluice_console={cookie}"
    data = None
    if body is not None:
        data = urlencode(body).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.putrequest(method, path)
        for k, v in headers.items():
            conn.putheader(k, v)
        if raw_cookie is not None:
            conn.putheader("Cookie", raw_cookie)  # bytes go out as they are
        if data is not None:
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _login(hub: HubProcess, key_id: str | None = None, secret: str | None = None) -> str:
    status, headers, _ = _request(hub, "POST", "/console/login", body={
        "key_id": key_id or hub.access_key_id, "secret": secret or hub.access_key_secret})
    assert status == 303, status
    match = re.match(r"sluice_console=([^;]+)", headers["set-cookie"])
    assert match
    return match.group(1)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _tail(hub: HubProcess, cookie: str, project: str, logstore: str, **params: str) -> tuple[int, dict]:
    qs = urlencode({"project": project, "logstore": logstore, **params})
    status, _, body = _request(hub, "GET", f"/console/api/tail?{qs}", cookie=cookie)
    return status, json.loads(body)


def test_attack_catastrophic_regex_runs_in_linear_time(hub: HubProcess) -> None:
    """``(a+)+$`` over a 40-character line (2^40 backtracking steps with Python's re) is answered at once,
    and the hub answers other keys' requests meanwhile; an RE2-unsupported pattern is a clear 400."""
    project = unique("re")
    with Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=30) as c:
        c.create_project(project)
        c.create_logstore(project, "app", shard_count=1)
        c.put_logs(project, "app", [{"msg": "a" * 40 + "!"}, {"msg": "aaa"}])
        cookie = _login(hub)
        answers: dict[str, object] = {}

        def attack() -> None:
            answers["tail"] = _tail(hub, cookie, project, "app", q="(a+)+$", regex="1", back="10")

        t = threading.Thread(target=attack)
        t.start()
        answers["list"] = c.list_projects()  # another request while the tail runs
        t.join(25)
        assert not t.is_alive(), "the tail poll did not finish: the regex backtracks"
        status, data = answers["tail"]  # type: ignore[misc]
        assert status == 200
        assert data["logs"] == [] and data["scanned"] == 2  # no line ends in a run of a's
        status, data = _tail(hub, cookie, project, "app", q="^msg=(a+)+ ", regex="1", back="10")
        assert [f for log in data["logs"] for f in log["fields"]] == [["msg", "aaa"]]
        for bad in (r"(a)\1", "(?=a)"):
            status, err = _tail(hub, cookie, project, "app", q=bad, regex="1")
            assert (status, err["errorCode"]) == (400, "ParameterInvalid"), err
            assert "RE2" in err["errorMessage"]


def test_attack_tail_poll_on_many_shards_is_bounded(tmp_path: Path) -> None:
    """64 shards x 512 KiB: each poll scans at most MAX_SCAN_BYTES (plus one LogGroup per shard), RSS stays
    bounded, and successive polls cover every log exactly once. With a full in-flight budget a poll waits,
    then gets 503 ServerBusy, and works again once the budget frees."""
    hub = HubProcess(tmp_path / "data", extra_args=["--max-inflight-bytes", str(16 << 20),
                                                    "--inflight-wait", "0.5"])
    hub.start()
    try:
        shards, groups, per_group = 64, 8, 64
        value = "v" * 1000
        with Client(hub.url, hub.access_key_id, hub.access_key_secret, timeout=60) as c:
            c.create_project("wide")
            c.create_logstore("wide", "app", shard_count=shards)
            n = 0
            for shard in range(shards):
                for _ in range(groups):
                    c.put_logs("wide", "app", [{"i": str(n + k), "pad": value} for k in range(per_group)],
                               hash_key=hash_key_for(shard, shards))
                    n += per_group
        total = shards * groups * per_group  # 32,768 logs, ~33 MB stored
        cookie = _login(hub)
        assert hub.proc is not None
        idle = _rss_kib(hub.proc.pid)
        cursor, seen, polls = "", 0, 0
        per_poll_limit = MAX_SCAN_BYTES // 1000 + shards * per_group  # the bytes, plus one group per shard
        while seen < total:
            params = {"cursor": cursor} if cursor else {"back": "1000"}
            status, data = _tail(hub, cookie, "wide", "app", q="i=", **params)
            assert status == 200, data
            assert data["scanned"] <= per_poll_limit, data["scanned"]
            assert len(data["logs"]) <= 500
            seen += data["scanned"]
            cursor = data["cursor"]
            polls += 1
            assert polls < 100, "polls do not make progress"
        assert seen == total, "every log scanned exactly once over the polls"
        assert polls > 1, "one poll scanned everything: the scan is not bounded"
        grown = _rss_kib(hub.proc.pid) - idle
        assert grown < 200 << 10, f"hub RSS grew by {grown} KiB during tail polls"

        # Fill the in-flight budget with a body that never arrives: 10 MiB of 16 MiB held.
        sock = socket.create_connection((hub.host, hub.port))
        sock.sendall(b"POST /logstores/app/shards/lb HTTP/1.1\r\nHost: wide." + hub.host.encode() +
                     b"\r\nContent-Type: application/x-protobuf\r\nContent-Length: " + str(10 << 20).encode() +
                     b"\r\n\r\n" + b"\0" * 1000)
        time.sleep(0.5)
        status, err = _tail(hub, cookie, "wide", "app", back="1")
        assert (status, err["errorCode"]) == (503, "ServerBusy"), err
        sock.close()
        time.sleep(0.5)
        status, data = _tail(hub, cookie, "wide", "app", back="1")
        assert status == 200, data
    finally:
        hub.close()


def test_attack_non_ascii_cookie_is_a_clean_refusal(hub: HubProcess) -> None:
    """A cookie with non-ASCII bytes is no session: a sign-in redirect or 401 JSON, never a 500 or traceback."""
    for path, expected in (("/console/", 303), ("/console/api/rates", 401)):
        for raw in ("sluice_console=\u00e9t\u00e9.1.2".encode("latin-1"), "sluice_console=\u00e9".encode("utf-8"),
                    b"sluice_console=" + bytes(range(0x80, 0xff))):
            status, _, body = _request(hub, "GET", path, raw_cookie=raw)
            assert status == expected, (path, raw, status, body[:200])
            assert b"Traceback" not in body
    assert "Traceback" not in hub.log_tail(200)
    assert "console error" not in hub.log_tail(200)


def test_attack_sign_in_is_throttled_and_sessions_are_per_key(tmp_path: Path) -> None:
    """Wrong secrets for a key are refused 429 after a burst (before the secret is even checked), and the
    right secret is refused too while throttled; a flood of sign-ins by one key never ends another key's
    session."""
    hub = HubProcess(tmp_path / "data", extra_args=["--access-key", "viewer:VIEWER-SECRET::ro"])
    hub.start()
    try:
        victim = _login(hub)  # the admin key's session
        statuses = [_request(hub, "POST", "/console/login", body={"key_id": "viewer", "secret": f"guess{i}"})[0]
                    for i in range(30)]
        assert statuses[0] == 200 and 429 in statuses, statuses
        assert statuses.count(200) <= 12, statuses  # the burst, and maybe a refill
        status, _, body = _request(hub, "POST", "/console/login", body={"key_id": "viewer", "secret": "VIEWER-SECRET"})
        assert status == 429 and b"too many failed sign-ins" in body, (status, body[:300])
        # made-up key ids share one bucket and count against the address
        statuses = [_request(hub, "POST", "/console/login", body={"key_id": f"nobody{i}", "secret": "x"})[0]
                    for i in range(30)]
        assert 429 in statuses
        # the admin key's session is still valid, and sign-ins by another key cannot end it
        status, _, _ = _request(hub, "GET", "/console/api/rates", cookie=victim)
        assert status == 200
    finally:
        hub.close()
    # sessions per key: a second hub so this address has no throttle history
    hub = HubProcess(tmp_path / "data2", extra_args=["--access-key", "viewer:VIEWER-SECRET::ro"])
    hub.start()
    try:
        victim = _login(hub)
        for _ in range(150):  # more than a key's session cap
            _login(hub, "viewer", "VIEWER-SECRET")
        status, _, _ = _request(hub, "GET", "/console/api/rates", cookie=victim)
        assert status == 200, "another key's sign-ins ended this session"
    finally:
        hub.close()


@pytest.mark.parametrize("path", ["/console/api/tail?project=x&logstore=y&q=" + quote("\u00e9" * 3)])
def test_hardening_non_ascii_query_is_answered(hub: HubProcess, path: str) -> None:
    """A non-ASCII filter is just text: answered (404 for a project that does not exist), never a 500."""
    cookie = _login(hub)
    status, _, body = _request(hub, "GET", path, cookie=cookie)
    assert status in (200, 400, 404), (status, body[:200])
