"""A session's log as webhook events, in the shapes of the SDK's `BetaWebhookEvent`.

A webhook says that something happened to a session (`data.type`, `data.id`), not what:
the receiver fetches the session for that. They are folded from the same projection as the
session's events (`_projection`), so a status is the status a stream shows:

    session.created                 the session's first event
    session.status_run_started      session.status_running
    session.status_idled            session.status_idle, whatever stopped it; and after it
      session.requires_action         when it waits on a confirmation or a client's result
      session.budget_reached          when its budget stopped it
    session.status_terminated       session.status_terminated
    session.updated / .archived     its title or metadata changed / it was archived
    session.outcome_evaluation_ended  span.outcome_evaluation_end: a grader's verdict
    session.deleted                 it was deleted (sent from the delete's tombstone)

An event's id names its place in the log (`event_<session>_<seq>_<part>`), so a retry or
another gateway sends the same event under the same id, and receivers dedupe by it.
`created_at` is when the log recorded it. keel's tenant is the organization and the
workspace both.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.managed._projection import Projection, rfc3339
from schemas import Recorded, SessionArchived, SessionCreated

# Every `data.type` keel sends, as an endpoint's `event_types` may name them.
WEBHOOK_TYPES: Final = (
    "session.created",
    "session.status_run_started",
    "session.status_idled",
    "session.requires_action",
    "session.budget_reached",
    "session.status_terminated",
    "session.updated",
    "session.archived",
    "session.deleted",
    "session.outcome_evaluation_ended",
)
_BY_STOP_REASON: Final = {
    "requires_action": "session.requires_action",
    "budget_reached": "session.budget_reached",
}


class WebhookEvents:
    """Folds one session's log, event by event, into its webhook events."""

    def __init__(self, session_id: str, tenant: str) -> None:
        self.session_id = session_id
        self.tenant = tenant
        self.projection = Projection()

    @property
    def seq(self) -> int:
        """The last seq folded."""
        return self.projection.seq

    def of(self, record: Recorded) -> list[dict[str, Any]]:
        projected = self.projection.project(record)
        match record.event:
            case SessionCreated():
                types = ["session.created"]
            case SessionArchived():
                types = ["session.archived"]
            case _:
                types = [kind for event in projected for kind in _types_of(event)]
        return [
            webhook_event(self.session_id, self.tenant, f"{record.seq}_{part}", kind, record.at)
            for part, kind in enumerate(types)
        ]


def deleted_event(session_id: str, tenant: str, at: float) -> dict[str, Any]:
    return webhook_event(session_id, tenant, "deleted", "session.deleted", at)


def webhook_event(session_id: str, tenant: str, place: str, kind: str, at: float) -> dict[str, Any]:
    return {
        "type": "event",
        "id": f"event_{session_id}_{place}",
        "created_at": rfc3339(at),
        "data": {
            "type": kind,
            "id": session_id,
            "organization_id": tenant,
            "workspace_id": tenant,
        },
    }


def _types_of(event: dict[str, Any]) -> list[str]:
    match event["type"]:
        case "session.status_running":
            return ["session.status_run_started"]
        case "session.status_idle":
            also = _BY_STOP_REASON.get(event["stop_reason"]["type"])
            return ["session.status_idled", *([also] if also else [])]
        case "session.status_terminated":
            return ["session.status_terminated"]
        case "session.updated":
            return ["session.updated"]
        case "span.outcome_evaluation_end":
            return ["session.outcome_evaluation_ended"]
        case _:
            return []
