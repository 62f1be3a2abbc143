"""The Managed Agents view of outcomes and budgets, folded from keel's log: pure, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.managed._event_ids import message_id_after
from gateway.managed._projection import Projection, budget_view
from gateway.managed._webhook_events import WebhookEvents
from schemas import (
    AgentSpec,
    Budgets,
    Event,
    OutcomeDefined,
    OutcomeEvaluated,
    OutcomeEvaluationOngoing,
    OutcomeEvaluationStarted,
    Recorded,
    SessionCreated,
    Usage,
    UserInterrupt,
    event_type,
)

DEFINED = OutcomeDefined(outcome_id="outc_1", description="a haiku", rubric="`moon`")
STARTED = OutcomeEvaluationStarted(outcome_id="outc_1", iteration=0)


def projected(*events: Event) -> tuple[Projection, list[dict[str, Any]]]:
    projection = Projection()
    out: list[dict[str, Any]] = []
    log = [SessionCreated(spec=AgentSpec(budgets=Budgets(max_cost_usd=2.5))), *events]
    for seq, event in enumerate(log, start=1):
        record = Recorded(seq=seq, at=1_800_000_000.0 + seq, type=event_type(event), event=event)
        out.extend(projection.project(record))
    return projection, out


def test_an_evaluation_is_a_span_with_heartbeats_and_the_graders_spend_in_the_usage() -> None:
    graded = OutcomeEvaluated(
        outcome_id="outc_1",
        iteration=0,
        result="satisfied",
        explanation="it names the moon",
        usage=Usage(input_tokens=40, output_tokens=4),
        cost_usd=0.01,
    )
    projection, out = projected(
        DEFINED, STARTED, OutcomeEvaluationOngoing(outcome_id="outc_1", iteration=0), graded
    )
    assert [(e["id"], e["type"]) for e in out] == [
        ("sevt_2_0", "user.define_outcome"),
        ("sevt_3_0", "span.outcome_evaluation_start"),
        ("sevt_4_0", "span.outcome_evaluation_ongoing"),
        ("sevt_5_0", "span.outcome_evaluation_end"),
        ("sevt_5_1", "session.usage"),
    ]
    end, usage = out[3], out[4]
    assert end["outcome_evaluation_start_id"] == "sevt_3_0"
    assert (end["result"], end["explanation"], end["usage"]["input_tokens"]) == (
        "satisfied",
        "it names the moon",
        40,
    )
    assert usage["usage"]["list_cost"]["amount"] == "1.000000"
    assert usage["budget"] == {
        "type": "limit",
        "max_list_cost": {"amount": "250", "currency": "USD"},
    }
    [resource] = projection.outcomes.resources(working=False)
    assert resource["result"] == "satisfied" and resource["completed_at"] == "2027-01-15T08:00:05Z"


@pytest.mark.parametrize(("working", "result"), [(True, "running"), (False, "pending")])
def test_an_outcome_not_being_evaluated_is_running_only_while_the_session_runs(
    working: bool, result: str
) -> None:
    projection, _ = projected(DEFINED)
    [resource] = projection.outcomes.resources(working=working)
    assert (resource["result"], resource["iteration"]) == (result, 0)
    assert projection.outcomes.open() is not None
    _, evaluating = projected(DEFINED, STARTED)
    assert evaluating[-1]["type"] == "span.outcome_evaluation_start"


def test_an_interrupt_ends_the_open_span_and_an_outcome_with_none_ends_without_one() -> None:
    interrupted = OutcomeEvaluated(outcome_id="outc_1", iteration=0, result="interrupted")
    _, out = projected(DEFINED, STARTED, UserInterrupt(), interrupted)
    assert [e["type"] for e in out[-3:]] == [
        "user.interrupt",
        "span.outcome_evaluation_end",
        "session.usage",
    ]
    assert out[-2]["result"] == "interrupted"
    projection, out = projected(DEFINED, UserInterrupt(), interrupted)
    assert out[-1]["type"] == "user.interrupt"
    assert projection.outcomes.open() is None
    assert projection.outcomes.resources(working=False)[0]["result"] == "interrupted"


@pytest.mark.parametrize(
    ("usd", "cents"), [(None, None), (0.01, "1"), (25.0, "2500"), (0.015, "1.5"), (0.0, "0")]
)
def test_a_budget_is_shown_in_cents_as_it_was_given(usd: float | None, cents: str | None) -> None:
    view = budget_view(AgentSpec(budgets=Budgets(max_cost_usd=usd)))
    assert (view and view["max_list_cost"]["amount"]) == cents


def test_a_preview_names_the_message_of_the_response_recorded_next() -> None:
    assert message_id_after(41) == "sevt_42_1"


def test_a_graders_verdict_is_a_webhook_and_its_heartbeats_are_not() -> None:
    graded = OutcomeEvaluated(
        outcome_id="outc_1", iteration=0, result="needs_revision", explanation="no moon"
    )
    log = [
        SessionCreated(spec=AgentSpec()),
        DEFINED,
        STARTED,
        OutcomeEvaluationOngoing(outcome_id="outc_1", iteration=0),
        graded,
    ]
    webhooks = WebhookEvents("ses_1", "acme")
    sent = []
    for seq, event in enumerate(log, start=1):
        record = Recorded(seq=seq, at=1_800_000_000.0 + seq, type=event_type(event), event=event)
        sent.extend(webhooks.of(record))
    assert [(w["id"], w["data"]["type"]) for w in sent] == [
        ("event_ses_1_1_0", "session.created"),
        ("event_ses_1_5_0", "session.outcome_evaluation_ended"),
    ]
