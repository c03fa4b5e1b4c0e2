"""The console's search page (#21) in headless Chromium: query box, time range, histogram, results table."""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest
from aliyun.log import IndexConfig, IndexKeyConfig, IndexLineConfig, LogItem, PutLogsRequest

from sluice.testing import HubProcess
from tests._browser import ConsoleErrors, artifacts_dir, chromium
from tests.conftest import unique

SHOTS = artifacts_dir("console")
WAIT_MS = 15_000  # a deadline for the page to show data, not a speed goal


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _sign_in(pg: Any, hub: HubProcess) -> None:
    pg.goto(hub.url + "/console/login")
    pg.fill("input[name=key_id]", hub.access_key_id)
    pg.fill("input[name=secret]", hub.access_key_secret)
    pg.click("form.login button[type=submit]")
    pg.wait_for_load_state()


def _until(check: Any) -> None:
    """Poll from Python (the page's CSP forbids the string evaluation wait_for_function would use)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not check():
        assert time.monotonic() < deadline, "the page did not get there in time"
        time.sleep(0.05)


def test_search_page(browser: Any, hub: HubProcess, sdk: Any, project: str) -> None:
    ls = unique("web")
    sdk.create_logstore(project, ls, shard_count=2)
    sdk.create_index(project, ls, IndexConfig(line_config=IndexLineConfig(token_list=[" ", ","]),
                                              key_config_list={"status": IndexKeyConfig(index_type="long")}))
    now = int(time.time())
    items = [LogItem(timestamp=now - i, contents=[("status", "500" if i % 3 == 0 else "200"),
                                                    ("msg", f"<b>request {i}</b>")]) for i in range(30)]
    sdk.put_logs(PutLogsRequest(project, ls, "web", "10.0.0.1", items))
    deadline = time.monotonic() + 10
    while sdk.get_log(project, ls, now - 100, now + 100, query="*").get_count() < 30:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    context = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    errors = ConsoleErrors(pg)
    try:
        _sign_in(pg, hub)
        pg.goto(f"{hub.url}/console/p/{project}/{ls}")
        pg.click("text=Search")
        pg.wait_for_selector("#search-status[data-total]", timeout=WAIT_MS)
        assert pg.locator("#search-rows tr").count() == 30
        assert pg.get_attribute("#search-status", "data-total") == "30"
        # a search: 10 logs have status 500; the histogram's bars add up to them
        pg.fill("#search-q", "status: 500")
        pg.select_option("#search-range", "1h")
        pg.click("#search-form button[type=submit]")
        _until(lambda: pg.get_attribute("#search-status", "data-total") == "10")
        assert pg.locator("#search-rows tr").count() == 10
        bars = pg.eval_on_selector_all("#search-histogram rect", "rs => rs.map(r => +r.dataset.count)")
        assert sum(bars) == 10 and len(bars) > 1
        # log text is shown as text, never as markup
        assert "<b>request" in pg.locator("#search-rows td.log").first.inner_text()
        assert pg.locator("#search-rows b").count() == 0
        # SQL after the bar: a table of the result columns
        pg.fill("#search-q", "* | select status, count(*) as c group by status order by status")
        pg.click("#search-form button[type=submit]")
        _until(lambda: pg.locator("#search-head th").all_inner_texts() == ["status", "c"])
        cells = pg.eval_on_selector_all("#search-rows td", "tds => tds.map(t => t.textContent)")
        assert cells == ["200", "20", "500", "10"]
        pg.screenshot(path=str(SHOTS / "search.png"), full_page=True)
        # an invalid query shows SLS's error in the page, not a broken page
        pg.fill("#search-q", "status >")
        pg.click("#search-form button[type=submit]")
        pg.wait_for_selector("#search-status.error", timeout=WAIT_MS)
        assert "ParameterInvalid" in pg.inner_text("#search-status")
        assert [e for e in errors.errors if "400" not in e] == []  # the failed fetch is the only error logged
    finally:
        context.close()
