"""Pages in a real headless Chromium (Debian's `chromium`, driven by Playwright over the
DevTools protocol; Playwright's own browser builds are never downloaded): skipped where the
browser is missing, unless CI demands it (`KEEL_REQUIRE_CHROMIUM=1`), where it fails.

A `Watched` page records what would mean the page is broken or unsafe: uncaught errors,
console errors, and Content-Security-Policy violations (reported by the browser's own
`securitypolicyviolation` event, listened for by a script the DevTools protocol injects,
which the page's policy does not govern). Screenshots go to the test artifacts directory:
`KEEL_TEST_ARTIFACTS` when set (CI keeps it), else `artifacts/` in the test's tmp path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, ViewportSize, async_playwright

VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
_WATCH_CSP = """
document.addEventListener("securitypolicyviolation", (e) => {
  (window.__cspViolations ||= []).push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


def chromium_path() -> str:
    """The system Chromium, or a skip (a failure under KEEL_REQUIRE_CHROMIUM=1)."""
    path = os.environ.get("KEEL_CHROMIUM") or shutil.which("chromium")
    if path is None:
        if os.environ.get("KEEL_REQUIRE_CHROMIUM") == "1":
            pytest.fail("Chromium is required here (KEEL_REQUIRE_CHROMIUM=1) but is not installed")
        pytest.skip("Chromium is not installed; to run these: apt-get install chromium")
    return path


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable)
        try:
            yield browser
        finally:
            await browser.close()


class Watched:
    """A page and what went wrong on it."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    @classmethod
    async def open(cls, browser: Browser) -> Watched:
        page = await browser.new_page(viewport=VIEWPORT)
        await page.add_init_script(_WATCH_CSP)
        return cls(page)

    async def problems(self) -> list[str]:
        """Errors and CSP violations so far (none on a page that works as written)."""
        violations: list[Any] = await self.page.evaluate("window.__cspViolations ?? []")
        return self.errors + [f"CSP violation: {v}" for v in violations]

    async def screenshot(self, directory: Path, name: str) -> Path:
        path = directory / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


def artifacts_dir(tmp_path: Path) -> Path:
    root = os.environ.get("KEEL_TEST_ARTIFACTS")
    directory = Path(root) if root else tmp_path / "artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory
