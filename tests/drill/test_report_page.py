"""A drill report's page (`keel drill --html`), made by the drill's own code from faults and
violations whose text is hostile (the drill quotes logs and error messages), opened in a
real headless Chromium. The page of a real drill's report is checked the same way in
test_drill.py (the broken brain's).

Screenshot: `drill-report.png` in KEEL_TEST_ARTIFACTS, else in `artifacts/` under the test's
tmp path (tests/browser.py).
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser

from drill import FaultKind, InjectedFault, Report, Violation, render_html
from drill._report import figures_by_kind
from tests.drill.report_page import check_report_page

HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="alert(1)"> & "quotes"'


def hostile_report() -> Report:
    recoveries: list[tuple[FaultKind, float | None]] = [
        ("brain_kill", 0.8),
        ("brain_kill", 1.4),
        ("brain_kill", 4.6),
        ("hands_kill", 0.2),
        ("nats_restart", 2.5),
        ("gateway_kill", None),  # nothing was committed after it
    ]
    faults = [
        InjectedFault(number=i, kind=kind, at=1_700_000_000.0 + 3 * i, took_s=0.01, recovery_s=r)
        for i, (kind, r) in enumerate(recoveries)
    ]
    faults[3].detail = HOSTILE
    violations = [
        Violation(
            kind="outcomes",
            session_id="ses_1",
            seq=17,
            call_id="ses_1:t2:0",
            detail="tool.result recorded twice: " + HOSTILE,
        ),
        Violation(kind="not_settled", session_id="ses_<b>2</b>", detail="running\nno lease"),
    ]
    return Report(
        ok=False,
        seed=42,
        target=f"keel up in /tmp/{HOSTILE}",
        faults_asked=6,
        duration_s=31.5,
        faults_per_minute=11.4,
        by_kind=figures_by_kind(faults),
        sessions=3,
        statuses={"completed": 2, "running": 1},
        events=120,
        tool_calls=15,
        stream_reconnects=2,
        violations=violations,
        faults=faults,
        notes=[HOSTILE],
    )


async def test_the_report_page_shows_figures_and_violations_as_text_only(
    tmp_path: Path, browser: Browser, artifacts: Path
) -> None:
    report = hostile_report()
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    await check_report_page(browser, report, page, artifacts, "drill-report")
