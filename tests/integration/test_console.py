"""The hub's web console (/console), checked in headless Chromium against a real hub process.

Data is made with the official SDK (PutLogs, consumer-group heartbeats, checkpoints), then the pages are read
the way a person would: sign in, follow links, read the tables. Every page must load without console errors,
show what the SDK produced (owners and lag per shard, a log written while the tail is open), and a screenshot
of each page is kept as a test artifact (SLUICE_TEST_ARTIFACTS, default test-artifacts/console/).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
from typing import Any, Iterator
from urllib.parse import urlencode, urlsplit

import pytest
from aliyun.log import LogItem, PutLogsRequest

from sluice.testing import HubProcess
from tests._browser import ConsoleErrors, artifacts_dir, chromium
from tests.conftest import unique

SHOTS = artifacts_dir("console")
VIEWPORT = {"width": 1280, "height": 860}
WAIT_MS = 15_000  # a deadline for the page to show data, not a speed goal


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, ConsoleErrors]]:
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    errors = ConsoleErrors(pg)
    yield pg, errors
    context.close()


def _sign_in(pg: Any, hub: HubProcess, secret: str | None = None) -> None:
    pg.goto(hub.url + "/console/")
    assert urlsplit(pg.url).path == "/console/login", "an unsigned visitor is sent to the sign-in form"
    pg.fill("input[name=key_id]", hub.access_key_id)
    pg.fill("input[name=secret]", secret or hub.access_key_secret)
    pg.click("form.login button[type=submit]")
    pg.wait_for_load_state()


def _cell(pg: Any, table: str, row_attr: str, key: str | int, column: str) -> str:
    return str(pg.locator(f'table.{table} tr[{row_attr}="{key}"] td.{column}').inner_text()).strip()


def _seq(cursor: str) -> int:
    return int(base64.b64decode(cursor))


def _put(sdk: Any, project: str, logstore: str, shard_key: str, logs: list[dict[str, str]]) -> None:
    items = [LogItem(contents=list(log.items())) for log in logs]
    sdk.put_logs(PutLogsRequest(project, logstore, "console-test", "10.0.0.1", items, hashKey=shard_key))


def _settle_owners(sdk: Any, project: str, logstore: str, group: str, consumers: list[str]) -> dict[int, str]:
    """Heartbeat each consumer, reporting what it was granted (as a real consumer does), until a round changes
    nothing and every shard has a holder; return shard -> consumer as the hub's answers said."""
    held: dict[str, list[int]] = {c: [] for c in consumers}
    for _ in range(10):
        before = dict(held)
        for c in consumers:
            held[c] = sorted(sdk.heart_beat(project, logstore, group, c, held[c]).get_shards())
        owners = {s: c for c, shards in held.items() for s in shards}
        if held == before and len(owners) == 2 and all(held.values()):
            return owners
    raise AssertionError(f"the group did not settle: {held}")


def test_sign_in_is_required(page: tuple[Any, ConsoleErrors], hub: HubProcess) -> None:
    """Without a session every page leads to the sign-in form; a wrong secret is refused; the right key signs in
    and signing out ends the session."""
    pg, errors = page
    pg.goto(hub.url + "/console/p/anything")
    assert urlsplit(pg.url).path == "/console/login"
    pg.screenshot(path=str(SHOTS / "login.png"))
    _sign_in(pg, hub, secret="not-the-secret")
    assert "Wrong AccessKeyId or AccessKeySecret" in pg.locator("p.error").inner_text()
    assert urlsplit(pg.url).path == "/console/login"
    pg.fill("input[name=secret]", hub.access_key_secret)
    pg.click("form.login button[type=submit]")
    pg.wait_for_load_state()
    assert urlsplit(pg.url).path == "/console/"
    assert hub.access_key_id in pg.locator("header .who").inner_text()
    cookie = next(c for c in pg.context.cookies() if c["name"] == "sluice_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    pg.click("header .who button")
    pg.wait_for_load_state()
    assert urlsplit(pg.url).path == "/console/login"
    pg.goto(hub.url + "/console/")
    assert urlsplit(pg.url).path == "/console/login", "after signing out the old session no longer works"
    assert errors.errors == []


def test_console_pages(page: tuple[Any, ConsoleErrors], hub: HubProcess, sdk: Any, project: str) -> None:
    """Overview, project, logstore, group and tail pages show the hub's real state: stored groups per shard,
    the consumers the SDK registered by heartbeat as owners, lag from the checkpoints it set, and a log written
    while the tail is open."""
    pg, errors = page
    logstore, group = "app", "billing"
    sdk.create_logstore(project, logstore, ttl=7, shard_count=2)
    low, high = "0" * 32, "8" + "0" * 31  # hash keys in shard 0's and shard 1's ranges
    for i in range(6):
        _put(sdk, project, logstore, low, [{"n": str(i), "k": str(k)} for k in range(3)])
    for i in range(4):
        _put(sdk, project, logstore, high, [{"n": str(i), "k": str(k)} for k in range(3)])
    ends = {s: _seq(sdk.get_cursor(project, logstore, s, "end").get_cursor()) for s in (0, 1)}
    assert ends == {0: 6, 1: 4}

    sdk.create_consumer_group(project, logstore, group, 60)
    owners = _settle_owners(sdk, project, logstore, group, ["worker-a", "worker-b"])
    # shard 0: consumed 2 of 6 groups (lag 4 groups, 12 logs); shard 1: consumed to its end (lag 0)
    begin0 = sdk.get_cursor(project, logstore, 0, "begin").get_cursor()
    after_two = sdk.pull_logs(project, logstore, 0, begin0, count=2).get_next_cursor()
    sdk.update_check_point(project, logstore, group, 0, after_two, consumer=owners[0], force_success=False)
    end1 = sdk.get_cursor(project, logstore, 1, "end").get_cursor()
    sdk.update_check_point(project, logstore, group, 1, end1, consumer=owners[1], force_success=False)

    _sign_in(pg, hub)
    # overview
    assert urlsplit(pg.url).path == "/console/"
    row = pg.locator(f'table.projects tr[data-project="{project}"]')
    assert row.locator("td").nth(1).inner_text() == "1" and row.locator("td").nth(2).inner_text() == "2"
    assert row.locator("td").nth(4).inner_text() == "10"  # log groups stored
    # attached, not visible: once two samples exist the first child is a zero-height grid line
    pg.locator("#chart svg *").first.wait_for(state="attached", timeout=WAIT_MS)  # the chart script drew something
    pg.screenshot(path=str(SHOTS / "overview.png"), full_page=True)

    # project
    row.locator("a").click()
    pg.wait_for_load_state()
    assert urlsplit(pg.url).path == f"/console/p/{project}"
    assert _cell(pg, "logstores", "data-logstore", logstore, "logs-in") == "30"
    assert pg.locator(f'table.logstores tr[data-logstore="{logstore}"] td').nth(1).inner_text() == "2 / 2"
    pg.screenshot(path=str(SHOTS / "project.png"), full_page=True)

    # logstore: shards with their sequence ranges, the group with its live consumers
    pg.locator(f'table.logstores tr[data-logstore="{logstore}"] a').click()
    pg.wait_for_load_state()
    for sid, end in ends.items():
        assert _cell(pg, "shards", "data-shard", sid, "end") == str(end)
        assert _cell(pg, "shards", "data-shard", sid, "status") == "readwrite"
    assert _cell(pg, "groups", "data-group", group, "consumers") == "2"
    assert _cell(pg, "groups", "data-group", group, "lag") == "4"
    pg.screenshot(path=str(SHOTS / "logstore.png"), full_page=True)

    # group: owners and lag per shard, consumers with what they hold
    pg.locator(f'table.groups tr[data-group="{group}"] a').click()
    pg.wait_for_load_state()
    for sid in (0, 1):
        assert _cell(pg, "lag", "data-shard", sid, "owner") == owners[sid]
    assert _cell(pg, "lag", "data-shard", 0, "lag-groups") == "4"
    assert _cell(pg, "lag", "data-shard", 0, "lag-logs") == "12"
    assert _cell(pg, "lag", "data-shard", 1, "lag-groups") == "0"
    assert _cell(pg, "lag", "data-shard", 1, "lag-logs") == "0"
    assert "seq 2" in _cell(pg, "lag", "data-shard", 0, "checkpoint")
    for sid, consumer in owners.items():
        assert _cell(pg, "consumers", "data-consumer", consumer, "held") == str(sid)
    pg.screenshot(path=str(SHOTS / "group.png"), full_page=True)

    # tail: a filter, then a matching and a non-matching log written while the page is open
    token = unique("needle")
    pg.goto(hub.url + f"/console/p/{project}/{logstore}/tail")
    pg.fill("#tail-q", token)
    pg.click("#tail-form button[type=submit]")
    # (locators, not wait_for_function: the console's CSP forbids the eval that a string predicate needs)
    pg.locator("#tail-status", has_text=re.compile(r"^following")).wait_for(timeout=WAIT_MS)
    assert pg.locator("#tail-rows tr").count() == 0, "no stored log matches the fresh token"
    _put(sdk, project, logstore, high, [{"msg": "unrelated line"}])
    _put(sdk, project, logstore, low, [{"msg": f"payment failed {token}", "level": "error"}])
    rows = pg.locator("#tail-rows tr")
    rows.first.wait_for(timeout=WAIT_MS)
    pg.locator("#tail-status", has_text=" 1 shown").wait_for(timeout=WAIT_MS)
    text = rows.first.inner_text()
    assert token in text and "level=error" in text and "10.0.0.1" in text
    assert "unrelated" not in pg.locator("#tail-rows").inner_text()
    pg.screenshot(path=str(SHOTS / "tail.png"), full_page=True)
    assert errors.errors == []


def _request(hub: HubProcess, method: str, path: str, *, cookie: str = "", body: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = f"sluice_console={cookie}"
    data = None
    if body is not None:
        data = urlencode(body).encode()
        h["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _login_cookie(hub: HubProcess) -> str:
    status, headers, _ = _request(hub, "POST", "/console/login",
                                  body={"key_id": hub.access_key_id, "secret": hub.access_key_secret})
    assert status == 303
    match = re.match(r"sluice_console=([^;]+)", headers["set-cookie"])
    assert match
    return match.group(1)


def test_bad_input_is_answered_not_crashed(hub: HubProcess, sdk: Any, project: str) -> None:
    """Bad parameters, unknown pages, forged cookies and cross-site posts get clear errors (SLS-style JSON on
    /console/api), and the hub keeps serving the SLS API."""
    sdk.create_logstore(project, "bad", ttl=1, shard_count=1)
    cookie = _login_cookie(hub)
    api = f"/console/api/tail?project={project}&logstore=bad"
    cases = {
        api + "&q=%28&regex=1": (400, "ParameterInvalid", "regular expression"),
        api + "&cursor=zz": (400, "ParameterInvalid", "tail cursor"),
        api + "&back=-3": (400, "ParameterInvalid", "back"),
        api + "&regex=maybe": (400, "ParameterInvalid", "regex"),
        api + "&q=" + "x" * 300: (400, "ParameterInvalid", "longer than"),
        "/console/api/tail?project=" + project: (400, "ParameterInvalid", "required"),
        "/console/api/tail?project=no-such-project&logstore=bad": (404, "ProjectNotExist", "may not read"),
        f"/console/api/tail?project={project}&logstore=nope": (404, "LogStoreNotExist", "nope"),
        "/console/api/rates?logstore=bad": (400, "ParameterInvalid", "project"),
        "/console/api/nothing": (404, "RouteNotFound", "no console page"),
    }
    for path, (status, code, words) in cases.items():
        got, headers, body = _request(hub, "GET", path, cookie=cookie)
        err = json.loads(body)
        assert (got, err["errorCode"]) == (status, code), (path, got, body)
        assert words in err["errorMessage"], (path, err)
    # pages answer with an error page, not a traceback
    for path, status in {f"/console/p/{project}/bad/g/none": 404, "/console/p/x/y/z/w/v/u": 404,
                         "/console/static/../../etc/passwd": 404, "/console/static/nope.js": 404}.items():
        got, headers, body = _request(hub, "GET", path, cookie=cookie)
        assert got == status and headers["content-type"].startswith("text/html"), (path, got)
        assert b"Traceback" not in body
    assert _request(hub, "POST", f"/console/p/{project}", cookie=cookie)[0] == 405
    got, _, body = _request(hub, "POST", "/console/login", body={"key_id": "x", "secret": "y" * 40_000})
    assert got == 400 and b"PostBodyTooLarge" in body
    # a good request with the same cookie still works, and returns the (empty) tail
    got, _, body = _request(hub, "GET", api, cookie=cookie)
    assert got == 200 and json.loads(body)["logs"] == [] and json.loads(body)["cursor"] == "0:0"
    # sessions: none, forged, tampered expiry -> refused
    sid, expires, mac = cookie.split(".")
    for bad in ("", "garbage", f"{sid}.{int(expires) + 3600}.{mac}", f"{sid}.{expires}.{'0' * 64}"):
        got, _, body = _request(hub, "GET", api, cookie=bad)
        assert got == 401 and json.loads(body)["errorCode"] == "Unauthorized"
        got, headers, _ = _request(hub, "GET", "/console/", cookie=bad)
        assert got == 303 and headers["location"].startswith("/console/login")
    # sign-in from another origin is refused (login CSRF); an off-site "next" is not followed
    got, _, _ = _request(hub, "POST", "/console/login", headers={"Origin": "http://evil.example"},
                         body={"key_id": hub.access_key_id, "secret": hub.access_key_secret})
    assert got == 403
    got, headers, _ = _request(hub, "POST", "/console/login", body={"key_id": hub.access_key_id,
                                                                     "secret": hub.access_key_secret,
                                                                     "next": "https://evil.example/"})
    assert got == 303 and headers["location"] == "/console/"
    # sign-out ends the session on the server: the same cookie is refused afterwards
    assert _request(hub, "POST", "/console/logout", cookie=cookie)[0] == 303
    assert _request(hub, "GET", api, cookie=cookie)[0] == 401
    assert project in [p["projectName"] for p in sdk.list_project().get_projects()]


def test_console_is_open_without_auth(browser: Any, tmp_path: Any) -> None:
    """With --no-auth the console needs no sign-in, like the API, and says so."""
    hub = HubProcess(tmp_path / "data", access_key=None)
    hub.start()
    try:
        context = browser.new_context(viewport=VIEWPORT)
        pg = context.new_page()
        errors = ConsoleErrors(pg)
        pg.goto(hub.url + "/console/login")
        assert urlsplit(pg.url).path == "/console/"
        assert "--no-auth" in pg.locator("header .who").inner_text()
        assert "no projects yet" in pg.locator("table.projects").inner_text()
        context.close()
        assert errors.errors == []
    finally:
        hub.close()


def test_console_shows_only_readable_projects(browser: Any, tmp_path: Any) -> None:
    """A key limited to some projects sees only those in the console; another project's pages and JSON answer
    exactly as for a project that does not exist."""
    from aliyun.log import LogClient

    hub = HubProcess(tmp_path / "data", extra_args=["--access-key", "viewer:viewer-secret:seen-proj:ro"])
    hub.start()
    try:
        admin = LogClient(hub.endpoint, hub.access_key_id, hub.access_key_secret)
        for name in ("seen-proj", "hidden-proj"):
            admin.create_project(name, "")
            admin.create_logstore(name, "app", ttl=1, shard_count=1)
        context = browser.new_context(viewport=VIEWPORT)
        pg = context.new_page()
        errors = ConsoleErrors(pg)
        pg.goto(hub.url + "/console/")
        pg.fill("input[name=key_id]", "viewer")
        pg.fill("input[name=secret]", "viewer-secret")
        pg.click("form.login button[type=submit]")
        pg.wait_for_load_state()
        listed = pg.locator("table.projects tr[data-project]").evaluate_all(
            "rows => rows.map(r => r.dataset.project)")
        assert listed == ["seen-proj"]
        assert errors.errors == []
        cookie = next(c["value"] for c in context.cookies() if c["name"] == "sluice_console")
        context.close()
        for path in ("/console/p/hidden-proj", "/console/p/hidden-proj/app", "/console/p/no-such-proj"):
            status, _, body = _request(hub, "GET", path, cookie=cookie)
            assert status == 404 and b"does not exist or this access key may not read it" in body, path
        for path in ("/console/api/tail?project=hidden-proj&logstore=app", "/console/api/rates?project=hidden-proj"):
            status, _, body = _request(hub, "GET", path, cookie=cookie)
            assert status == 404 and json.loads(body)["errorCode"] == "ProjectNotExist", path
        assert _request(hub, "GET", "/console/p/seen-proj/app", cookie=cookie)[0] == 200
    finally:
        hub.close()
