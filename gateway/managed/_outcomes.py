"""Outcomes as the Managed Agents API shows them, folded from keel's `outcome.*` events.

Each `outcome.defined` is an entry of `Session.outcome_evaluations`; each evaluation the
brain records is a `span.outcome_evaluation_start`, `_ongoing` heartbeats and an `_end` with
its result. The API's `result` of an outcome not being evaluated says whether the agent is
working on it now: `running`, else `pending` (not started yet, or stopped by a guard until
more input). An outcome the user interrupted while it was not being evaluated ends with no
span, as nothing was being evaluated.

Pure: the ids of the events come from the projection (`_projection`), times from the log.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas import (
    OutcomeDefined,
    OutcomeEvaluated,
    OutcomeEvaluationOngoing,
    OutcomeEvaluationStarted,
    Usage,
)

# The `result` of an outcome the agent works on (not an evaluation's: those are the log's).
_WORKING = "working"
_EVALUATING = "evaluating"


def span_usage(usage: Usage) -> dict[str, int]:
    """Token usage as a span's `model_usage` / `usage` carries it."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }


class OutcomeView(msgspec.Struct, kw_only=True):
    outcome_id: str
    description: str
    # The revision cycle it is on, from 0.
    iteration: int = 0
    result: str = _WORKING
    explanation: str | None = None
    completed_at: str | None = None
    # The id of its open evaluation's `span.outcome_evaluation_start`.
    start_id: str | None = None

    @property
    def open(self) -> bool:
        return self.result in (_WORKING, _EVALUATING)

    def resource(self, *, working: bool) -> dict[str, Any]:
        """As `Session.outcome_evaluations` lists it; `working`: the session is running."""
        result = self.result
        if result == _WORKING:
            result = "running" if working else "pending"
        return {
            "type": "outcome_evaluation",
            "outcome_id": self.outcome_id,
            "description": self.description,
            "iteration": self.iteration,
            "result": result,
            "explanation": self.explanation,
            "completed_at": self.completed_at,
        }


class Outcomes:
    """A session's outcomes, in the order they were defined."""

    def __init__(self) -> None:
        self.views: dict[str, OutcomeView] = {}

    def copy(self) -> Outcomes:
        other = Outcomes()
        other.views = {key: msgspec.structs.replace(v) for key, v in self.views.items()}
        return other

    def open(self) -> OutcomeView | None:
        """The outcome still worked on or evaluated: there is at most one, the latest."""
        latest = next(reversed(self.views.values()), None)
        return latest if latest is not None and latest.open else None

    def resources(self, *, working: bool) -> list[dict[str, Any]]:
        return [view.resource(working=working) for view in self.views.values()]

    def defined(self, event: OutcomeDefined) -> dict[str, Any]:
        """The fields of its `user.define_outcome`."""
        self.views[event.outcome_id] = OutcomeView(
            outcome_id=event.outcome_id, description=event.description
        )
        return {
            "outcome_id": event.outcome_id,
            "description": event.description,
            "rubric": {"type": "text", "content": event.rubric},
            "max_iterations": event.max_iterations,
        }

    def started(self, event: OutcomeEvaluationStarted, start_id: str) -> dict[str, Any] | None:
        """The fields of its `span.outcome_evaluation_start` (None: no such outcome)."""
        view = self.views.get(event.outcome_id)
        if view is None:
            return None
        view.result, view.iteration, view.start_id = _EVALUATING, event.iteration, start_id
        return {"outcome_id": event.outcome_id, "iteration": event.iteration}

    def ongoing(self, event: OutcomeEvaluationOngoing) -> dict[str, Any] | None:
        if event.outcome_id not in self.views:
            return None
        return {"outcome_id": event.outcome_id, "iteration": event.iteration}

    def evaluated(self, event: OutcomeEvaluated, at: str) -> dict[str, Any] | None:
        """The fields of its `span.outcome_evaluation_end` (None: nothing was evaluated)."""
        view = self.views.get(event.outcome_id)
        if view is None:
            return None
        start_id, view.start_id = view.start_id, None
        view.explanation = event.explanation or None
        if event.result == "needs_revision":
            view.result, view.iteration = _WORKING, event.iteration + 1
        else:
            view.result, view.completed_at = event.result, at
        if start_id is None:
            return None
        return {
            "outcome_evaluation_start_id": start_id,
            "outcome_id": event.outcome_id,
            "iteration": event.iteration,
            "result": event.result,
            "explanation": event.explanation,
            "usage": span_usage(event.usage),
        }
