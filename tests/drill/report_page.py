"""What a drill report's page must show, read back from it in a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser

from drill import Report
from tests.browser import Watched

NONE = "\N{EN DASH}"


def seconds(value: float | None) -> str:
    return NONE if value is None else f"{value:.2f} s"


async def check_report_page(
    browser: Browser, report: Report, page_path: Path, artifacts: Path, name: str
) -> None:
    """Opens the page `keel drill --html` wrote for `report`: every figure and violation is
    there as text, the recovery bars carry the report's values, nothing ran, nothing was
    blocked; a screenshot `name`.png goes to `artifacts`."""
    watched = await Watched.open(browser)
    page = watched.page
    await page.goto(page_path.as_uri())
    verdict = "no violations" if report.ok else f"{len(report.violations)} violations"
    assert await page.text_content("header .verdict") == verdict
    assert f"seed {report.seed}" in await page.title()

    kinds = await page.eval_on_selector_all(
        "#kinds tbody tr", "(rows) => rows.map((r) => [...r.cells].map((c) => c.textContent))"
    )
    assert kinds == [
        [
            kind,
            str(f.count),
            seconds(f.recovery_p50_s),
            seconds(f.recovery_p99_s),
            seconds(f.recovery_max_s),
        ]
        for kind, f in report.by_kind.items()
    ]
    bars = await page.eval_on_selector_all(
        "#recovery-chart rect",
        "(bars) => bars.map((b) => [b.dataset.kind, b.getAttribute('class'), b.dataset.seconds])",
    )
    expected = [
        [kind, which, value]
        for kind, f in report.by_kind.items()
        for which, value in (("p99", f.recovery_p99_s), ("p50", f.recovery_p50_s))
        if value is not None
    ]
    assert [bar[:2] for bar in bars] == [bar[:2] for bar in expected]
    assert [float(bar[2]) for bar in bars] == pytest.approx([bar[2] for bar in expected])

    violations = await page.eval_on_selector_all(
        "#violations tbody tr",
        "(rows) => rows.map((r) => [...r.cells].map((c) => c.textContent))",
    )
    assert violations == [
        [v.kind, v.session_id, NONE if v.seq is None else str(v.seq), v.call_id or NONE, v.detail]
        for v in report.violations
    ]
    assert await page.locator("#faults tbody tr").count() == len(report.faults)
    # The report's text stayed text: the page has no script, image or frame of any origin.
    assert await page.locator("script, img, iframe, object, embed").count() == 0

    await watched.screenshot(artifacts, name)
    assert await watched.problems() == []
