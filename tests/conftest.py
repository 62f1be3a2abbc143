from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.backends import PostgresBackend, SqliteBackend, postgres_schema, require_postgres
from tests.browser import artifacts_dir, chromium
from tests.nats_server import NatsServer


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> SqliteBackend:
    return SqliteBackend(tmp_path)


@pytest.fixture
def postgres_backend() -> Iterator[PostgresBackend]:
    require_postgres()
    for schema in postgres_schema():
        yield PostgresBackend(schema)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real nats-server with JetStream, on a free loopback port, for one test."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (tests/browser.py): a skip where it is missing, a failure in CI."""
    async with chromium() as running:
        yield running


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where a test leaves its screenshots: KEEL_TEST_ARTIFACTS, else tmp_path/artifacts."""
    return artifacts_dir(tmp_path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What did not run, and the one command that would run it: a green run that skipped
    keel's drills should say so plainly."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("what did not run")
        for reason, count in reasons.most_common():
            terminalreporter.write_line(f"{count} tests skipped: {reason}")
