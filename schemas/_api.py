"""The bodies of keel's HTTP API (`/v1`): what clients send and what they get back."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from schemas._agent import AgentSpec
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


class ApiErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str


class ApiError(msgspec.Struct, frozen=True, kw_only=True):
    error: ApiErrorDetail
