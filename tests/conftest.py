from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from session_store import EventStore
from tests.backends import (
    Backend,
    PostgresBackend,
    SqliteBackend,
    postgres_schema,
    require_postgres,
)
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


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend in turn (a folder whose tests need one store of its own overrides
    `store`)."""
    if request.param == "sqlite":
        return SqliteBackend(tmp_path)
    backend: PostgresBackend = request.getfixturevalue("postgres_backend")
    return backend


@pytest.fixture
async def store(store_backend: Backend) -> AsyncIterator[EventStore]:
    store = store_backend.make_store()
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


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
