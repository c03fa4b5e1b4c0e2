"""Headless Chromium for tests: Debian's ``/usr/bin/chromium`` driven by Playwright (no downloaded browser).

A missing browser or Playwright is a failure with a message saying how to install them, never a skip: the
console is part of the hub, and a suite that silently stops checking it would pass on a broken console.
``ConsoleErrors`` collects what the page reports (``console`` messages of type error and uncaught page errors),
so a test can assert a page loaded cleanly.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

CHROMIUM = os.environ.get("SLUICE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
_INSTALL = "bash scripts/test.sh installs both (apt-get install chromium; pip install playwright via the [test] extra)"


def artifacts_dir(kind: str) -> Path:
    """Where screenshots go: $SLUICE_TEST_ARTIFACTS/<kind>, default test-artifacts/<kind> in the checkout."""
    base = os.environ.get("SLUICE_TEST_ARTIFACTS")
    root = Path(base) if base else Path(__file__).resolve().parents[1] / "test-artifacts"
    path = root / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless browser; fails the test (not skips) when Chromium or Playwright is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"playwright is not installed ({exc}); {_INSTALL}", pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}; {_INSTALL}", pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


class ConsoleErrors:
    """Errors a page reported: console messages of type 'error' and uncaught exceptions ('pageerror')."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _on_console(self, msg: Any) -> None:
        if msg.type == "error":
            self.errors.append(f"console.{msg.type}: {msg.text} ({msg.location.get('url', '')})")
