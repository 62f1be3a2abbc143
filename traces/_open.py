"""What the projection keeps between events: the spans begun and not yet ended, and what
the session runs as its spans name it."""

from __future__ import annotations

import msgspec

from schemas import ModelSpec, ThreadOrigin, Usage
from traces._spans import SpanEvent


class Agent(msgspec.Struct, frozen=True, kw_only=True):
    """The session as its spans name it: its id, title, Managed Agents agent, model, and,
    for a thread, where it came from."""

    session_id: str
    title: str = ""
    agent_id: str = ""
    model: ModelSpec = ModelSpec()
    thread: ThreadOrigin | None = None

    @property
    def conversation_id(self) -> str:
        """`gen_ai.conversation.id`: the session at the top of the tree, so a receiver's
        conversation is a session with all its threads, and its totals are the session's."""
        return self.session_id if self.thread is None else self.thread.root_session_id


class Place(msgspec.Struct, frozen=True, kw_only=True):
    """Where a span goes: its trace and its parent (None: it is the root)."""

    trace_id: str
    parent_span_id: str | None


class OpenTurn(msgspec.Struct, kw_only=True):
    trace_id: str
    span_id: str
    first_seq: int
    start_ns: int
    model_calls: int = 0
    tool_calls: int = 0
    usage: Usage = Usage()
    cost_usd: float = 0.0
    events: list[SpanEvent] = msgspec.field(default_factory=list)


class OpenCall(msgspec.Struct, kw_only=True):
    place: Place
    name: str
    requested_ns: int
    dispatched_ns: int | None = None
    attempt: int = 0
    sandbox_id: str = ""
    dispatches: list[SpanEvent] = msgspec.field(default_factory=list)


class OpenApproval(msgspec.Struct, kw_only=True):
    place: Place
    span_id: str
    tool: str
    start_ns: int
    expires_at: float


class OpenEvaluation(msgspec.Struct, kw_only=True):
    place: Place
    span_id: str
    start_ns: int
