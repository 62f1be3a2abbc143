"""What a brain knows about a session: exactly what folding its log yields, nothing more."""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from schemas import (
    AgentSpec,
    BudgetName,
    ContentBlock,
    OutcomeResult,
    Status,
    ThreadOrigin,
    Usage,
)

# Bump when SessionState or fold changes meaning: snapshots of another version are ignored
# (the store keys snapshots by this), so a new reducer replays from the log instead.
STATE_VERSION: Final = 6

# How many recent tool-call signatures the state keeps for loop detection.
RECENT_CALLS: Final = 16

# `thread`: a call the brain runs itself (spawning a thread, messaging one), announced in the
# log; its result is the thread's reply (`brain.threads`).
CallPhase = Literal[
    "requested", "awaiting_approval", "approved", "denied", "expired", "dispatched", "thread"
]


class ToolCall(msgspec.Struct, kw_only=True):
    """A tool call that has no `tool.result` yet."""

    call_id: str
    name: str
    input: dict[str, object]
    idempotent: bool
    requested_seq: int
    phase: CallPhase = "requested"
    approval_expires_at: float | None = None
    attempt: int = 0
    sandbox_id: str = ""
    # When it was last dispatched: where a brain starts looking for its outcome.
    dispatched_at: float = 0.0
    # The thread a `thread` call spawned or messaged.
    thread_id: str = ""


class ChildThread(msgspec.Struct, kw_only=True):
    """A thread this session spawned, and how much of its spend the session counted."""

    agent_name: str
    call_id: str
    usage: Usage = Usage()
    cost_usd: float = 0.0
    turns: int = 0


class Message(msgspec.Struct, kw_only=True):
    """One conversation turn; `seq` is the event that opened it (compaction cuts by seq), or,
    for input the model had not seen, the response it was moved after."""

    role: Literal["user", "assistant"]
    content: list[ContentBlock]
    seq: int
    # The seq of the event each block of a user turn came from, so input that arrived
    # while the model was thinking can be moved after the response it did not see.
    block_seqs: list[int] = []


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    passed: bool
    judge: str
    detail: str
    seq: int


class DefinedOutcome(msgspec.Struct, kw_only=True):
    """What the worker was asked to produce (`outcome.defined`), and how its evaluations by
    the grader went so far."""

    outcome_id: str
    description: str
    rubric: str
    max_iterations: int
    defined_seq: int
    # The evaluation cycle it is on, from 0: one more after each `needs_revision`.
    iteration: int = 0
    # The seqs of the latest evaluation's start and end: started after it ended means the
    # grader is at it (or was, when a brain died).
    started_seq: int = 0
    ended_seq: int = 0
    result: OutcomeResult | None = None

    @property
    def open(self) -> bool:
        """Still worked on or evaluated: no evaluation has ended it."""
        return self.result in (None, "needs_revision")

    @property
    def evaluating(self) -> bool:
        return self.started_seq > self.ended_seq


class SessionState(msgspec.Struct, kw_only=True):
    session_id: str
    seq: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    spec: AgentSpec | None = None
    title: str = ""
    status: Status = "idle"
    status_reason: str = ""
    # The seq of the last status change and of the last user message: a session that went
    # idle after its latest input waits for more (`AgentSpec.turn_end == "idle"`).
    status_seq: int = 0
    input_seq: int = 0
    forked_from: str | None = None
    forked_at_seq: int | None = None
    # Conversation: a compaction summary, then the messages after it (roles alternate).
    summary: str = ""
    compacted_through: int = 0
    messages: list[Message] = []
    open_calls: dict[str, ToolCall] = {}
    # The newest workspace checkpoint a tool result names: where a new sandbox starts.
    checkpoint: str | None = None
    # The sandbox the latest call was dispatched to, until a result says it was lost.
    sandbox_id: str | None = None
    calls_finished: int = 0
    recent_calls: list[str] = []
    usage: Usage = Usage()
    cost_usd: float = 0.0
    turns: int = 0
    # User input arrived that the model has not answered yet.
    pending_input: bool = False
    interrupted: bool = False
    budget_reached: BudgetName | None = None
    loop_detected: str | None = None
    verdict: Verdict | None = None
    # The latest outcome defined, if any (one is worked on at a time).
    outcome: DefinedOutcome | None = None
    # Events of a newer writer this reader could not decode; replay goes on past them.
    unknown_events: int = 0
    # This session is a thread of another (spawned by its call), and the threads it spawned.
    thread: ThreadOrigin | None = None
    threads: dict[str, ChildThread] = {}


_STATE_ENCODER: Final = msgspec.msgpack.Encoder()
_STATE_DECODER: Final = msgspec.msgpack.Decoder(SessionState)


def encode_state(state: SessionState) -> bytes:
    return _STATE_ENCODER.encode(state)


def decode_state(data: bytes) -> SessionState:
    return _STATE_DECODER.decode(data)
