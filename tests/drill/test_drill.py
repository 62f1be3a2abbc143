"""`keel drill` as its users run it: against `keel up` on SQLite, against separate processes
on PostgreSQL (a cluster of the test's own, so its server can be restarted and lost), and
against a brain broken on purpose, which the drill must catch.

Each drill is small (a dozen faults or fewer) to keep CI quick; `--faults 200` is measured
by hand (docs/design-notes.md, Drills).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from playwright.async_api import Browser

from drill import FAULT_KINDS, FaultKind, Report, StoreControl, plan_faults
from hands import LocalBackend
from session_store import open_store
from tests.drill.processes import KeelUp, SeparateProcesses, drill
from tests.drill.report_page import check_report_page
from tests.hands.processes import remove_sandboxes
from tests.outages.servers import PostgresServer
from tests.sandboxes import local_backend

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture
def sandboxes() -> LocalBackend:
    """The local sandbox backend, or a skip (a failure in CI) where it cannot run."""
    backend = local_backend()
    assert isinstance(backend, LocalBackend)
    return backend


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()  # fails, never skips, without PostgreSQL's binaries
    server.start()
    try:
        yield server
    finally:
        server.remove()


def read_report(path: Path) -> Report:
    return msgspec.json.decode(path.read_bytes(), type=Report)


def test_a_drill_against_keel_up_on_sqlite_finds_nothing(
    tmp_path: Path, sandboxes: LocalBackend
) -> None:
    up = KeelUp(tmp_path / "keel")
    try:
        ran = drill(
            # Seed 0 draws each of keel up's six kinds of fault among its twelve.
            *("--data-dir", str(up.data_dir), "--faults", "12", "--seed", "0"),
            *("--sessions", "2", "--report", str(tmp_path / "report.json")),
        )
    finally:
        up.stop()
    assert ran.returncode == 0, ran.stdout + ran.stderr + up.logs()
    report = read_report(tmp_path / "report.json")
    assert report.ok and not report.violations
    assert len(report.faults) == 12 and report.seed == 0
    # keel up's SQLite has no server to restart: no store fault is drawn.
    assert set(report.by_kind) == set(FAULT_KINDS) - {"store_restart", "store_loss"}
    assert report.sessions >= 2 and set(report.statuses) == {"completed"}
    assert report.stream_reconnects > 0  # the gateway died under the open streams
    assert "no violations" in ran.stdout


def test_the_same_seed_draws_the_same_faults() -> None:
    kinds: set[FaultKind] = {"brain_kill", "gateway_kill", "nats_restart"}
    first = plan_faults(7, 20, kinds, (0.5, 2.0))
    assert first == plan_faults(7, 20, kinds, (0.5, 2.0))
    assert first != plan_faults(8, 20, kinds, (0.5, 2.0))


async def test_a_drill_catches_a_brain_that_records_a_result_twice(
    tmp_path: Path, sandboxes: LocalBackend, browser: Browser, artifacts: Path
) -> None:
    up = KeelUp(tmp_path / "keel", env={"KEEL_BROKEN": "result_twice"})
    try:
        ran = await asyncio.to_thread(
            drill,
            *("--data-dir", str(up.data_dir), "--faults", "2", "--seed", "3"),
            *("--sessions", "1", "--report", str(tmp_path / "report.json")),
            *("--html", str(tmp_path / "report.html")),
        )
    finally:
        await asyncio.to_thread(up.stop)  # it runs an event loop of its own
    assert ran.returncode == 1, ran.stdout + ran.stderr + up.logs()
    report = read_report(tmp_path / "report.json")
    twice = [v for v in report.violations if v.kind == "outcomes"]
    assert twice and not report.ok, report.violations
    # Named where it happened: the session, the seq of the second result, the call.
    assert all(v.session_id and v.seq and v.call_id for v in twice)
    assert "VIOLATIONS" in ran.stdout and f"call {twice[0].call_id}" in ran.stdout
    # Its page, as a user opens it (a screenshot: drill-report-broken-brain.png, in
    # KEEL_TEST_ARTIFACTS or tmp_path/artifacts).
    await check_report_page(
        browser, report, tmp_path / "report.html", artifacts, "drill-report-broken-brain"
    )


def test_a_drill_against_separate_processes_on_postgres_finds_nothing(
    tmp_path: Path, sandboxes: LocalBackend, postgres: PostgresServer
) -> None:
    async def api_key() -> str:
        store = open_store(postgres.url)
        try:
            await store.migrate()
            return (await store.create_api_key("acme")).key
        finally:
            await store.close()

    store = StoreControl(stop=postgres.stop_command(), start=postgres.start_command())
    deployment = SeparateProcesses(tmp_path, postgres.url, asyncio.run(api_key()), store)
    deployment.start()
    try:
        ran = drill(
            # Seed 524 draws each of the eight kinds of fault once, and no hands host or NATS
            # dies right after a sandbox does, while its replacement is being provisioned:
            # that costs a session 120 s today (docs/design-notes.md, Drills), too long
            # for CI; `keel drill --faults 200` meets it and passes all the same.
            *("--deployment", str(deployment.write_config()), "--faults", "8", "--seed", "524"),
            *("--sessions", "2", "--report", str(tmp_path / "report.json")),
        )
    finally:
        deployment.stop()
        asyncio.run(remove_sandboxes(tmp_path / "hands", sandboxes))
    assert ran.returncode == 0, ran.stdout + ran.stderr + deployment.logs()
    report = read_report(tmp_path / "report.json")
    assert report.ok and len(report.faults) == 8
    assert set(report.by_kind) == set(FAULT_KINDS)
    assert report.sessions >= 2 and set(report.statuses) == {"completed"}
