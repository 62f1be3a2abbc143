"""The bodies of keel's HTTP API (`/v1`): what clients send and what they get back."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from schemas._agent import AgentSpec
from schemas._content import Usage
from schemas._events import (
    ApprovalDenied,
    ApprovalGranted,
    Status,
    UserInterrupt,
    UserMessage,
)

# The largest seq the API takes: past it no log can reach, and databases overflow.
MAX_SEQ: Final = 2**62

# What a client may append to a session's log: input, never the agent's own events.
UserInput = UserMessage | UserInterrupt | ApprovalGranted | ApprovalDenied


class CreateSession(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    spec: AgentSpec = AgentSpec()
    title: str = ""
    metadata: dict[str, str] = {}
    # The first user message, so one request starts the agent.
    message: str | None = None


class ForkSession(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # The last seq of the parent's log the fork keeps.
    at_seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]


class SessionView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: Status
    status_reason: str
    head_seq: int
    created_at: float
    updated_at: float
    title: str = ""
    metadata: dict[str, str] = {}
    # Totals over the session's model responses so far.
    usage: Usage = Usage()
    cost_usd: float = 0.0
    turns: int = 0


class SessionList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[SessionView]
    # Pass back as `cursor` for the next page; absent on the last page.
    next_cursor: str | None = None


class PostEvents(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    events: Annotated[list[UserInput], msgspec.Meta(min_length=1, max_length=1000)]


class PostedEvents(msgspec.Struct, frozen=True, kw_only=True):
    head_seq: int


class EventView(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: float
    type: str
    # The event's body as stored (its `type` repeated inside).
    data: dict[str, Any]


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[EventView]
    # Pass back as `after` for the next page; absent when the log has no more yet.
    next_after: int | None = None


class ApiErrorDetail(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    # The error's class as the Anthropic SDKs read it (`exc.type`): invalid_request_error,
    # authentication_error, not_found_error, conflict_error, ...
    type: str
    message: str
    # keel's own finer name for it (`not_found`, `too_large`, ...).
    code: str
    # Read by the SDKs as `exc.error_code` and the like.
    details: dict[str, Any] | None = None


class ApiError(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="error"):
    """`{"type": "error", "error": {...}}`, the body the Anthropic SDKs parse."""

    error: ApiErrorDetail


class ChainCheck(msgspec.Struct, frozen=True, kw_only=True):
    """The hash chain re-walked: `bad_seq` is the first edited, missing or reordered seq."""

    ok: bool
    checked: int
    head_seq: int
    bad_seq: int | None = None
    problem: str = ""


class AuditView(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    chain: ChainCheck
    # The seq the state was folded to.
    at_seq: int
    # What a brain knows of the session after folding events 1..at_seq; None when no brain
    # answered (`state_error` says why).
    state: dict[str, Any] | None = None
    state_error: str = ""
    # The newest snapshot at or before `at_seq`, and whether it plus the tail after it folds
    # to the same state as the full replay (None when there is no such snapshot).
    snapshot_seq: int | None = None
    snapshot_matches: bool | None = None
