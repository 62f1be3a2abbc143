"""The sessions row as a projection of the log: pure, so tested without a database."""

from __future__ import annotations

import msgspec
import pytest

from schemas import (
    AgentSpec,
    ContextCompacted,
    Event,
    ManagedOrigin,
    ModelResponse,
    OutcomeEvaluated,
    SessionCreated,
    SessionForked,
    SessionStatus,
    Status,
    TextBlock,
    Usage,
    UserMessage,
    encode_event,
    event_type,
)
from session_store._hashing import GENESIS, chain_hash
from session_store._projection import (
    INPUT_GRACE_S,
    NO_CHANGE,
    NO_TALLY,
    Change,
    SessionRow,
    Tally,
    change_of,
)
from session_store._statements import UPDATE_HEAD
from session_store._tables import events, sessions

CREATED = SessionCreated(spec=AgentSpec(), title="triage", metadata={"team": "ops"})
USAGE = Usage(input_tokens=100, output_tokens=20, cache_read_tokens=5)
TURN = ModelResponse(
    content=[TextBlock(text="hi")], stop_reason="end_turn", usage=USAGE, cost_usd=0.25
)
LOG: list[Event] = [
    CREATED,
    UserMessage(text="hello"),
    SessionStatus(status="running"),
    TURN,
    SessionStatus(status="paused", reason="budget"),
    UserMessage(text="go on"),
    TURN,
]


def encoded(events: list[Event], at: float) -> list[tuple[str, float, str]]:
    return [(event_type(e), at, encode_event(e).decode()) for e in events]  # type: ignore[arg-type]


def project(
    row: SessionRow, events: list[Event], at: float, *, is_input: bool = False
) -> SessionRow:
    return row.project(encoded(events, at), change_of(events), at=at, is_input=is_input)[0]


def test_a_log_projects_onto_an_empty_row() -> None:
    row, chained = SessionRow(session_id="ses_1").project(
        encoded(LOG, 10.0), change_of(LOG), at=10.0
    )
    assert [r["seq"] for r in chained] == list(range(1, len(LOG) + 1))
    assert row.head_seq == len(LOG) and row.head_hash == chained[-1]["hash"]
    first = chained[0]
    assert first["hash"] == chain_hash(GENESIS, "ses_1", 1, first["type"], 10.0, first["data"])  # type: ignore[arg-type]
    assert (row.status, row.status_reason) == ("paused", "budget")
    assert (row.title, row.metadata) == ("triage", {"team": "ops"})
    assert row.tally == Tally(usage=USAGE + USAGE, cost_usd=0.5, turns=2)
    assert (row.updated_at, row.wake_at) == (10.0, None)


@pytest.mark.parametrize("split", range(1, len(LOG)))
def test_projecting_in_pieces_equals_projecting_the_whole(split: int) -> None:
    """Appends project onto the row the earlier ones left, as a replay would."""
    whole = project(SessionRow(session_id="ses_1"), LOG, 10.0)
    pieces = project(project(SessionRow(session_id="ses_1"), LOG[:split], 10.0), LOG[split:], 10.0)
    assert pieces == whole


def test_events_without_a_status_keep_the_row_status() -> None:
    start = SessionRow(session_id="ses_1", head_seq=4, status="waiting", status_reason="tools")
    row = project(start, [UserMessage(text="more")], 20.0)
    assert (row.head_seq, row.status, row.status_reason) == (5, "waiting", "tools")
    assert change_of([UserMessage(text="more")]) == NO_CHANGE


def test_input_leaves_a_timer_and_other_events_keep_it() -> None:
    row = project(SessionRow(session_id="ses_1"), [UserMessage(text="hi")], 20.0, is_input=True)
    assert row.wake_at == 20.0 + INPUT_GRACE_S
    assert project(row, [TURN], 21.0).wake_at == 20.0 + INPUT_GRACE_S


def test_a_locked_head_projects_what_the_appends_add() -> None:
    """Group commit does not read the totals: the head update adds the appends' tally."""
    head = SessionRow(session_id="ses_1", head_seq=7, head_hash=b"h" * 32, status="running")
    row = project(project(head, [TURN], 30.0), [TURN, SessionStatus(status="completed")], 30.0)
    update = row.head_update()
    assert (update["sid"], update["head_seq"], update["status"]) == ("ses_1", 10, "completed")
    assert (update["d_input_tokens"], update["d_cost_usd"], update["d_turns"]) == (200, 0.5, 2)
    assert (update["updated_at"], update["attention_at"]) == (30.0, None)


@pytest.mark.parametrize(
    ("status", "after"),
    [
        ("completed", "idle"),
        ("failed", "idle"),
        ("cancelled", "idle"),
        ("running", "idle"),
        ("paused", "paused"),
        ("waiting", "waiting"),
        ("idle", "idle"),
    ],
)
def test_a_fork_of_a_finished_or_running_session_starts_idle(status: Status, after: str) -> None:
    events: list[Event] = [CREATED, SessionStatus(status=status, reason="before")]
    events.append(SessionForked(parent_session_id="ses_parent", at_seq=2))
    row = project(SessionRow(session_id="ses_child"), events, 40.0).forked("ses_parent", 2)
    assert row.status == after
    if after != status:
        assert row.status_reason == "forked from ses_parent at seq 2"


def test_a_new_row_sets_every_column_and_says_what_get_session_reads() -> None:
    row = project(SessionRow(session_id="ses_1"), LOG, 50.0, is_input=True)
    values = row.new_row("acme", 49.0)
    # What a Managed Agents session alone names is left to the columns' null default, and
    # so is what a thread alone names (`create_thread` sets it).
    managed = {"agent_id", "agent_version", "environment_id"}
    thread = {"parent_session_id", "thread_of"}
    columns = {column.name for column in sessions.columns} - thread
    assert set(values) == columns - managed - {"archived_at"}
    origin = ManagedOrigin(agent_id="agent_1", agent_version=3, environment_id="env_1")
    made = msgspec.structs.replace(row, managed=origin).new_row("acme", 49.0)
    assert set(made) == columns - {"archived_at"}
    assert (made["agent_id"], made["agent_version"], made["environment_id"]) == (
        "agent_1",
        3,
        "env_1",
    )
    assert (values["lease_owner"], values["lease_epoch"], values["wake_at"]) == (
        None,
        0,
        50.0 + INPUT_GRACE_S,
    )
    assert values["metadata"] == '{"team":"ops"}' and values["turns"] == 2
    info = row.info("acme", 49.0)
    assert (info.created_at, info.updated_at, info.head_seq) == (49.0, 50.0, len(LOG))
    assert (info.usage, info.cost_usd, info.turns) == (USAGE + USAGE, 0.5, 2)


def test_a_change_names_the_last_status_the_totals_and_the_creation() -> None:
    assert change_of(LOG) == Change(
        status=("paused", "budget"),
        tally=Tally(usage=USAGE + USAGE, cost_usd=0.5, turns=2),
        created=CREATED,
    )
    assert change_of([]) == NO_CHANGE and NO_CHANGE.tally == NO_TALLY


def test_an_outcome_graders_spend_counts_in_the_totals_but_is_no_turn() -> None:
    graded = OutcomeEvaluated(
        outcome_id="outc_1", iteration=0, result="satisfied", usage=USAGE, cost_usd=0.1
    )
    assert change_of([TURN, graded]).tally == Tally(usage=USAGE + USAGE, cost_usd=0.35, turns=1)


def test_a_compactions_summary_spend_counts_in_the_totals_but_is_no_turn() -> None:
    summarized = ContextCompacted(
        up_to_seq=2, summary="so far", strategy="summary", usage=USAGE, cost_usd=0.1
    )
    handoff = ContextCompacted(up_to_seq=2, summary="so far", strategy="handoff")
    assert change_of([TURN, summarized, handoff]).tally == Tally(
        usage=USAGE + USAGE, cost_usd=0.35, turns=1
    )


def test_the_rows_are_what_the_group_commit_statements_bind() -> None:
    """Both append paths (SQLAlchemy's, and SQLite's raw fast path) bind these rows."""
    row, chained = SessionRow(session_id="ses_1").project(encoded(LOG, 1.0), NO_CHANGE, at=1.0)
    assert list(chained[0]) == [column.name for column in events.columns]
    assert set(row.head_update()) == set(UPDATE_HEAD.compile().params)
