"""What a brain knows about a session: exactly what folding its log yields, nothing more."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import msgspec

from schemas import (
    AgentSpec,
    BudgetName,
    ContentBlock,
    IterationEnd,
    OutcomeResult,
    ProtectedFileChange,
    Status,
    ThreadOrigin,
    Usage,
)

# Bump when SessionState or fold changes meaning: snapshots of another version are ignored
# (the store keys snapshots by this), so a new reducer replays from the log instead.
STATE_VERSION: Final = 9

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
    # The workspace it started from (a roster sharing the coordinator's), else None.
    base_checkpoint: str | None = None


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


class Iterations(msgspec.Struct, kw_only=True):
    """Where a session with context resets is (`iteration.*`, `workspace.*` events): the
    iteration under way, how the one before it ended, and the test ratchet's baseline."""

    # The iteration under way, from 1; 0 before the first started.
    number: int = 0
    started_seq: int = 0
    # Past `started_seq`: the iteration ended and the next has not started yet.
    ended_seq: int = 0
    end_reason: IterationEnd | None = None
    end_detail: str = ""
    # The session's turns and tokens when it started: its limits count from there.
    turns_at_start: int = 0
    tokens_at_start: int = 0
    # The user's messages: the goal every iteration's fresh context restates.
    requests: list[str] = []
    # The protected files as the iteration started (path -> sha256), and where the log holds
    # the bytes of each version it recorded (sha256 -> the seq of its `iteration.started`),
    # to put a changed one back. Not the bytes themselves: a snapshot stays small.
    protected: dict[str, str] = {}
    content_seqs: dict[str, int] = {}
    # The latest check of the protected files, and what it found changed, until restored.
    checked_seq: int = 0
    changes: list[ProtectedFileChange] = []
    # What the harness undid during the iteration, for the next one's fresh context.
    undone: list[str] = []


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
    # Context resets (`AgentSpec.context_resets`): untouched in a session without them.
    iterations: Iterations = msgspec.field(default_factory=Iterations)
    # Events of a newer writer this reader could not decode; replay goes on past them.
    unknown_events: int = 0
    # The size in tokens of the context the next request would send: the last response's
    # reported input, plus an estimate of what came after (brain/compaction.py).
    context_tokens: int = 0
    # The session's first input, which a compaction's handoff carries forward.
    task: str = ""
    # This session is a thread of another (spawned by its call), and the threads it spawned.
    thread: ThreadOrigin | None = None
    threads: dict[str, ChildThread] = {}


_STATE_ENCODER: Final = msgspec.msgpack.Encoder()
_STATE_DECODER: Final = msgspec.msgpack.Decoder(SessionState)
_MESSAGE_DECODER: Final = msgspec.msgpack.Decoder(Message)


def encode_state(state: SessionState) -> bytes:
    return _STATE_ENCODER.encode(state)


def decode_state(data: bytes, messages: Sequence[bytes] = ()) -> SessionState:
    """A state from `encode_state`, or from `encode_state_parts` (its header, then its
    messages in order)."""
    state = _STATE_DECODER.decode(data)
    if messages:
        state.messages = [_MESSAGE_DECODER.decode(message) for message in messages]
    return state


def encode_state_parts(state: SessionState) -> tuple[bytes, list[bytes]]:
    """A state as a header (everything but the conversation) and one part per message: a
    message once written rarely changes (only a newer response reduces an older tool
    output), so a store that keeps parts by content writes what changed since the last
    snapshot, not the whole conversation again."""
    header = _STATE_ENCODER.encode(msgspec.structs.replace(state, messages=[]))
    return header, [_STATE_ENCODER.encode(message) for message in state.messages]
