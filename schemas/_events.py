"""Every event a session log can hold.

Events are frozen msgspec Structs tagged by a literal `type` (so renaming a class never breaks a
stored log). Each carries a schema version `v`; new fields always get defaults, and decoding
ignores fields it does not know, so an older reader can replay a newer writer's log.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from schemas._agent import AgentSpec
from schemas._content import AssistantBlock, BlobRef, StopReason, Usage

Status = Literal["idle", "running", "waiting", "paused", "completed", "failed", "cancelled"]
TERMINAL_STATUSES: Final[frozenset[str]] = frozenset({"completed", "failed", "cancelled"})
# The reason of the `idle` a session that idles between turns goes to when the model ends
# its turn (`AgentSpec.turn_end`).
END_TURN: Final = "end_turn"
# Why a session is `waiting`: on its tools running, on an approval, or on the results of
# calls its client runs (custom tools, a self-hosted environment's tools). The last two wait
# on the user: the Managed Agents API shows them as idle, requiring action.
WAITING_FOR_TOOLS: Final = "waiting for tool outcomes"
WAITING_FOR_APPROVAL: Final = "waiting for an approval"
WAITING_FOR_CLIENT: Final = "waiting for the client's tool results"

Outcome = Literal["ok", "error", "unknown"]
BudgetName = Literal["tokens", "cost", "turns", "wall_clock"]
# How an evaluation of a defined outcome ended. `needs_revision` sends the worker back; the
# others end the outcome: `max_iterations_reached` when its last evaluation still found the
# work short, `failed` when the grader could not grade it, `interrupted` by the user.
OutcomeResult = Literal[
    "satisfied", "needs_revision", "max_iterations_reached", "failed", "interrupted"
]


class _EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Events carry no version: new fields get defaults, so every reader decodes every
    writer's events. A breaking change would add a version field (absent meaning the
    first) and an upcaster on read, when one is needed."""


class ManagedOrigin(msgspec.Struct, frozen=True, kw_only=True):
    """Where a session made through the Managed Agents API came from: the agent version
    its spec was made of, and its environment."""

    agent_id: str
    agent_version: int
    environment_id: str


class ThreadOrigin(msgspec.Struct, frozen=True, kw_only=True):
    """Where a thread came from: the session whose call spawned it, that call, the roster
    name of the agent it runs, and the session at the top of the tree (its primary)."""

    parent_session_id: str
    call_id: str
    agent_name: str
    root_session_id: str
    # The thread's own id (its session id), so a reader of its log alone can name it.
    thread_id: str = ""
    # The spawning session's workspace checkpoint the thread starts from (a roster with
    # `workspace: coordinator`); None: an empty workspace.
    base_checkpoint: str | None = None


class SessionCreated(_EventBase, tag="session.created", frozen=True, omit_defaults=True):
    """Always seq 1: the agent spec the session runs with."""

    spec: AgentSpec
    title: str = ""
    metadata: dict[str, str] = {}
    managed: ManagedOrigin | None = None
    # A thread of another session (spawned by its call), not a session of its own.
    thread: ThreadOrigin | None = None


class SessionUpdated(_EventBase, tag="session.updated", frozen=True):
    """The title or metadata changed (each as it now is; absent: unchanged)."""

    title: str | None = None
    metadata: dict[str, str] | None = None


class SessionArchived(_EventBase, tag="session.archived", frozen=True):
    """Put away: listed only when asked for, and takes no more input."""


class UserMessage(_EventBase, tag="user.message", frozen=True):
    text: str
    # The client's own id for this message, so a retried POST is recognisable in the log.
    message_id: str | None = None


class UserInterrupt(_EventBase, tag="user.interrupt", frozen=True):
    reason: str = ""


class ModelResponse(_EventBase, tag="model.response", frozen=True):
    content: list[AssistantBlock]
    stop_reason: StopReason
    usage: Usage = Usage()
    cost_usd: float = 0.0
    model: str = ""
    duration_ms: float = 0.0
    # The last seq of the log the model was shown. Input recorded after it (sent while the
    # model was thinking) is not answered by this response. 0, in logs from before this
    # field: the response answers everything before it.
    context_seq: int = 0


class ToolRequested(_EventBase, tag="tool.requested", frozen=True):
    call_id: str
    name: str
    input: dict[str, object] = {}
    idempotent: bool = False


class ToolDispatched(_EventBase, tag="tool.dispatched", frozen=True):
    call_id: str
    attempt: int = 1
    sandbox_id: str = ""


class ToolResult(_EventBase, tag="tool.result", frozen=True):
    """The one outcome of a call. `unknown` means the sandbox died and nobody can tell."""

    call_id: str
    output: str = ""
    blob: BlobRef | None = None
    is_error: bool = False
    outcome: Outcome = "ok"
    duration_ms: float = 0.0
    # The workspace checkpoint the call left behind: a replacement sandbox starts from it.
    checkpoint: str | None = None
    # The sandbox died: the session's next call needs a new one (started from `checkpoint`).
    sandbox_lost: bool = False
    # Posted by the client (a custom tool's result, or a self-hosted worker's), not the hands.
    from_client: bool = False


class ApprovalRequested(_EventBase, tag="approval.requested", frozen=True):
    call_id: str
    # Unix seconds; past it the approval is recorded as expired, never left blocking.
    expires_at: float
    reason: str = ""


class ApprovalGranted(_EventBase, tag="approval.granted", frozen=True):
    call_id: str
    by: str = ""
    reason: str = ""


class ApprovalDenied(_EventBase, tag="approval.denied", frozen=True):
    call_id: str
    by: str = ""
    reason: str = ""


class ApprovalExpired(_EventBase, tag="approval.expired", frozen=True):
    call_id: str


class OutcomeDefined(_EventBase, tag="outcome.defined", frozen=True):
    """User input: the worker is given `description` (as a message) and works until a
    grader, not the worker, finds the work meets `rubric`, or it has been evaluated
    `max_iterations` times."""

    outcome_id: str
    description: str
    rubric: str
    max_iterations: int = 3


class OutcomeEvaluationStarted(_EventBase, tag="outcome.evaluation_started", frozen=True):
    """The grader was asked about the work; `iteration` counts from 0."""

    outcome_id: str
    iteration: int


class OutcomeEvaluationOngoing(_EventBase, tag="outcome.evaluation_ongoing", frozen=True):
    """The grader is still at it (a heartbeat while it takes long)."""

    outcome_id: str
    iteration: int


class OutcomeEvaluated(_EventBase, tag="outcome.evaluated", frozen=True):
    """An evaluation ended: its result, the grader's explanation (the worker is shown it
    when sent back), and what the grader's model requests used and cost."""

    outcome_id: str
    iteration: int
    result: OutcomeResult
    explanation: str = ""
    usage: Usage = Usage()
    cost_usd: float = 0.0
    model: str = ""


class JudgeVerdict(_EventBase, tag="judge.verdict", frozen=True):
    passed: bool
    judge: Literal["command", "model"]
    detail: str = ""


class BudgetReached(_EventBase, tag="budget.reached", frozen=True):
    budget: BudgetName
    limit: float
    used: float


class LoopDetected(_EventBase, tag="loop.detected", frozen=True):
    signature: str
    repeats: int
    reason: str = ""


class ContextCompacted(_EventBase, tag="context.compacted", frozen=True):
    """The conversation before (and including) `up_to_seq` is replaced by `summary`.

    `strategy` says how the summary was made: `handoff`, built from the log with no model
    call, or `summary`, by a model request whose `usage` and `cost_usd` are the session's
    spend like any other request's (`manual`: recorded by someone else than the brain)."""

    up_to_seq: int
    summary: str
    tokens_before: int = 0
    tokens_after: int = 0
    strategy: Literal["manual", "handoff", "summary"] = "manual"
    usage: Usage = Usage()
    cost_usd: float = 0.0
    model: str = ""


# Why an iteration of a session with context resets ended: the grader or the completion
# check sent the worker's work back, or the iteration used its turns or tokens.
IterationEnd = Literal["goal_not_met", "max_turns", "max_tokens"]
ProtectedChange = Literal["modified", "deleted"]


class HandoffFile(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A handoff file as an iteration started with it: its text (None: there was no such
    file), cut at a limit (`truncated`), and the sha256 of the whole file."""

    path: str
    text: str | None = None
    digest: str = ""
    size: int = 0
    truncated: bool = False


class ProtectedFile(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A protected test file as an iteration started with it. Its bytes are recorded the
    first time the session sees that digest (so it can be restored), never again."""

    path: str
    digest: str
    content: bytes | None = None


class IterationStarted(_EventBase, tag="iteration.started", frozen=True, omit_defaults=True):
    """An iteration of a session with context resets begins, from a fresh context built of
    the goal, the rubric and `handoff` (read from the workspace before this was recorded);
    `protected` are the test files the worker may not change during it."""

    iteration: int
    handoff: list[HandoffFile] = []
    protected: list[ProtectedFile] = []


class IterationEnded(_EventBase, tag="iteration.ended", frozen=True, omit_defaults=True):
    """An iteration ended; the next starts from a fresh context that says why."""

    iteration: int
    reason: IterationEnd
    detail: str = ""


class ProtectedFileChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    path: str
    change: ProtectedChange
    # What the file holds now ("" when deleted; `symlink` when it became a link).
    digest: str = ""


class WorkspaceChecked(_EventBase, tag="workspace.checked", frozen=True, omit_defaults=True):
    """The test ratchet's check at the end of a worker's turn: the protected files that
    were changed or deleted since the iteration started, by whatever means."""

    iteration: int
    changes: list[ProtectedFileChange] = []


class WorkspaceRestored(_EventBase, tag="workspace.restored", frozen=True, omit_defaults=True):
    """The harness put the changed protected files back as the iteration started with them
    (those in `unrestorable` it could not: their bytes were never recorded); the worker is
    told. `checkpoint`: the workspace checkpoint taken after."""

    iteration: int
    paths: list[str]
    unrestorable: list[str] = []
    checkpoint: str | None = None


class SessionStatus(_EventBase, tag="session.status", frozen=True):
    status: Status
    reason: str = ""


class SessionForked(_EventBase, tag="session.forked", frozen=True):
    """Recorded in the child: its log starts as a copy of the parent's up to `at_seq`."""

    parent_session_id: str
    at_seq: int


class ThreadSpawned(_EventBase, tag="thread.spawned", frozen=True):
    """Recorded by the parent before the thread is created: call `call_id` spawns thread
    `thread_id` (derived from the parent and the call, so it is created once) running
    `agent_name` on `task`. The call's one result is the thread's reply."""

    call_id: str
    thread_id: str
    agent_name: str
    task: str
    # The workspace the thread starts from: the parent's checkpoint at the spawn, when the
    # roster shares the coordinator's workspace.
    base_checkpoint: str | None = None


class ThreadMessageSent(_EventBase, tag="thread.message_sent", frozen=True):
    """Recorded by the sender before the message is delivered: call `call_id` sends `text`
    to thread `thread_id`; its one result is the thread's reply."""

    call_id: str
    thread_id: str
    text: str
    agent_name: str = ""


class ThreadMessageReceived(_EventBase, tag="thread.message_received", frozen=True):
    """Input from another thread of the session (its task, or a message), delivered once
    per sending call (the delivery is keyed by the sender and `call_id`)."""

    from_session_id: str
    call_id: str
    text: str
    from_agent_name: str = ""


class ThreadReplied(_EventBase, tag="thread.replied", frozen=True):
    """Recorded by the parent with the call's result: the thread ended the turn the call
    started, with `status`; `usage`, `cost_usd` and `turns` are the thread's totals so far
    (the parent's budgets count what they add)."""

    call_id: str
    thread_id: str
    status: Status
    usage: Usage = Usage()
    cost_usd: float = 0.0
    turns: int = 0
    # A roster sharing the coordinator's workspace: the thread's work was merged into the
    # parent's workspace by sandbox `sandbox_id`, which checkpointed it as `checkpoint` (the
    # parent's sandbox and workspace from now on); `merge` says what the merge did.
    checkpoint: str | None = None
    sandbox_id: str | None = None
    merge: str = ""


class WaitingCall(msgspec.Struct, frozen=True, kw_only=True):
    """A call of a thread that waits on the user, and where the thread's log asked for it:
    the `model.response` at `response_seq`, its `use_index`-th tool use."""

    call_id: str
    name: str
    input: dict[str, object]
    response_seq: int
    use_index: int
    # What the user does: allows or denies it (`approval`), or runs it and posts its result
    # (`custom`: a custom tool; `client`: a tool of a self-hosted environment's worker).
    waits_for: Literal["approval", "custom", "client"]


class ThreadWaiting(_EventBase, tag="thread.waiting", frozen=True):
    """Noted in the session at the top of a thread's tree (once per wait, keyed by the
    thread and its calls) before the thread's own log says it waits on the user: what it
    waits for, so that the session's one stream shows every call a user must answer.
    Nothing acts on it: the answers go to the thread."""

    thread_id: str
    agent_name: str
    calls: list[WaitingCall]


Event = (
    SessionCreated
    | SessionUpdated
    | SessionArchived
    | UserMessage
    | UserInterrupt
    | ModelResponse
    | ToolRequested
    | ToolDispatched
    | ToolResult
    | ApprovalRequested
    | ApprovalGranted
    | ApprovalDenied
    | ApprovalExpired
    | OutcomeDefined
    | OutcomeEvaluationStarted
    | OutcomeEvaluationOngoing
    | OutcomeEvaluated
    | JudgeVerdict
    | BudgetReached
    | LoopDetected
    | ContextCompacted
    | IterationStarted
    | IterationEnded
    | WorkspaceChecked
    | WorkspaceRestored
    | SessionStatus
    | SessionForked
    | ThreadSpawned
    | ThreadMessageSent
    | ThreadMessageReceived
    | ThreadReplied
    | ThreadWaiting
)

EVENT_CLASSES: Final[tuple[type[_EventBase], ...]] = Event.__args__


class UnknownEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event this reader cannot decode (a newer type or version): kept as raw JSON."""

    type: str
    data: str
    error: str = ""


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """An event as stored: its place in the log and when it was appended (unix seconds)."""

    seq: int
    at: float
    type: str
    event: Event | UnknownEvent
