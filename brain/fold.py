"""The reducer: `state = fold(state, recorded)`, the only way a brain learns anything.

Deterministic and free of I/O: time comes from the event's `at`, never from a clock. For
speed, fold updates `state` in place and returns it (a replay owns its state); to keep an
earlier state, snapshot it with `encode_state`. Snapshot + tail equals a full replay.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import assert_never

import msgspec

from brain.compaction import (
    TASK_CHARS,
    block_tokens,
    context_tokens,
    estimate_tokens,
    reduce_old_outputs,
)
from brain.iterations import fold_iteration, note_request
from brain.state import (
    RECENT_CALLS,
    ChildThread,
    DefinedOutcome,
    Message,
    SessionState,
    ToolCall,
    Verdict,
)
from schemas import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    BudgetReached,
    ContentBlock,
    ContextCompacted,
    ContextPolicy,
    Event,
    IterationEnded,
    IterationStarted,
    JudgeVerdict,
    LoopDetected,
    ModelResponse,
    OutcomeDefined,
    OutcomeEvaluated,
    OutcomeEvaluationOngoing,
    OutcomeEvaluationStarted,
    OutcomeResult,
    Recorded,
    SessionArchived,
    SessionCreated,
    SessionForked,
    SessionStatus,
    SessionUpdated,
    TextBlock,
    ThreadMessageReceived,
    ThreadMessageSent,
    ThreadReplied,
    ThreadSpawned,
    ThreadWaiting,
    ToolDispatched,
    ToolRequested,
    ToolResult,
    ToolResultBlock,
    UnknownEvent,
    Usage,
    UserInterrupt,
    UserMessage,
    WorkspaceChecked,
    WorkspaceRestored,
)


class FoldError(Exception):
    """The events do not continue the state (a gap or a repeat in seq)."""


def initial_state(session_id: str) -> SessionState:
    return SessionState(session_id=session_id)


def replay(recorded: Iterable[Recorded], state: SessionState) -> SessionState:
    for item in recorded:
        state = fold(state, item)
    return state


def fold(state: SessionState, recorded: Recorded) -> SessionState:
    if recorded.seq != state.seq + 1:
        raise FoldError(
            f"session {state.session_id}: event seq {recorded.seq} after state seq {state.seq}"
        )
    state.seq = recorded.seq
    state.updated_at = recorded.at
    _apply(state, recorded.event, recorded.seq, recorded.at)
    return state


def _apply(  # noqa: PLR0915
    state: SessionState, event: Event | UnknownEvent, seq: int, at: float
) -> None:
    match event:
        case SessionCreated(spec=spec, title=title):
            state.spec = spec
            state.title = title
            state.created_at = at
            state.context_tokens = estimate_tokens(spec.system_prompt)
            state.thread = event.thread
            if event.thread is not None:
                # A thread of a coordinator's workspace starts from it.
                state.checkpoint = event.thread.base_checkpoint
        case SessionUpdated(title=title):
            if title is not None:
                state.title = title
        case SessionArchived():
            pass
        case UserMessage(text=text):
            _add_block(state, "user", TextBlock(text=text), seq)
            state.task = state.task or text[:TASK_CHARS]
            state.pending_input = True
            state.interrupted = False
            state.input_seq = seq
            note_request(state, text)
        case OutcomeDefined(description=description):
            # The worker is given the description as a message; only the grader sees the
            # rubric.
            _add_block(state, "user", TextBlock(text=description), seq)
            state.pending_input = True
            state.interrupted = False
            state.input_seq = seq
            state.task = state.task or description[:TASK_CHARS]
            state.outcome = DefinedOutcome(
                outcome_id=event.outcome_id,
                description=description,
                rubric=event.rubric,
                max_iterations=event.max_iterations,
                defined_seq=seq,
            )
        case OutcomeEvaluationStarted(outcome_id=outcome_id, iteration=iteration):
            if (outcome := state.outcome) is not None and outcome.outcome_id == outcome_id:
                outcome.started_seq = seq
                outcome.iteration = iteration
        case OutcomeEvaluationOngoing():
            pass
        case OutcomeEvaluated(outcome_id=outcome_id, iteration=iteration, result=result):
            # The grader's requests are the session's spend, as the worker's are.
            state.usage = state.usage + event.usage
            state.cost_usd += event.cost_usd
            if (outcome := state.outcome) is not None and outcome.outcome_id == outcome_id:
                outcome.ended_seq = seq
                outcome.result = result
                if result == "needs_revision":
                    outcome.iteration = iteration + 1
                note = feedback(result, event.explanation)
                if note:
                    # The worker reads the grader's feedback as the next user turn.
                    _add_block(state, "user", TextBlock(text=note), seq)
        case UserInterrupt():
            state.interrupted = True
        case ModelResponse(content=content, usage=usage, cost_usd=cost, context_seq=shown):
            unseen = _take_input_after(state, shown) if shown else []
            state.messages.append(Message(role="assistant", content=list(content), seq=seq))
            if unseen:
                # After the response, so it opens there (messages stay in seq order); its
                # blocks keep the seqs they were recorded at.
                state.messages.append(
                    Message(
                        role="user",
                        content=[block for _, block in unseen],
                        seq=seq,
                        block_seqs=[block_seq for block_seq, _ in unseen],
                    )
                )
            state.usage = state.usage + usage
            state.cost_usd += cost
            state.turns += 1
            state.pending_input = bool(unseen)
            _count_response(state, usage, content, unseen)
        case ToolRequested(call_id=call_id, name=name, input=arguments, idempotent=idempotent):
            state.open_calls[call_id] = ToolCall(
                call_id=call_id,
                name=name,
                input=arguments,
                idempotent=idempotent,
                requested_seq=seq,
            )
            state.recent_calls.append(call_signature(name, arguments))
            del state.recent_calls[:-RECENT_CALLS]
        case ApprovalRequested(call_id=call_id, expires_at=expires_at):
            if call := state.open_calls.get(call_id):
                call.phase = "awaiting_approval"
                call.approval_expires_at = expires_at
        case ApprovalGranted(call_id=call_id):
            _set_phase(state, call_id, "approved")
        case ApprovalDenied(call_id=call_id):
            _set_phase(state, call_id, "denied")
        case ApprovalExpired(call_id=call_id):
            _set_phase(state, call_id, "expired")
        case ToolDispatched(call_id=call_id, attempt=attempt, sandbox_id=sandbox_id):
            if call := state.open_calls.get(call_id):
                call.phase = "dispatched"
                call.attempt = attempt
                call.sandbox_id = sandbox_id
                call.dispatched_at = at
                state.sandbox_id = sandbox_id or state.sandbox_id
        case ToolResult(
            call_id=call_id,
            output=output,
            blob=blob,
            is_error=is_error,
            checkpoint=checkpoint,
            sandbox_lost=sandbox_lost,
        ):
            # A result for a call that is not open (a duplicate) changes nothing.
            if (call := state.open_calls.pop(call_id, None)) is not None:
                state.calls_finished += 1
                if checkpoint is not None:
                    state.checkpoint = checkpoint
                if sandbox_lost and call.sandbox_id == state.sandbox_id:
                    state.sandbox_id = None
                block = ToolResultBlock(
                    call_id=call_id, output=output, blob=blob, is_error=is_error
                )
                _add_block(state, "user", block, seq)
        case JudgeVerdict(passed=passed, judge=judge, detail=detail):
            state.verdict = Verdict(passed=passed, judge=judge, detail=detail, seq=seq)
        case BudgetReached(budget=budget):
            state.budget_reached = budget
        case LoopDetected(reason=reason, signature=signature):
            state.loop_detected = reason or signature
        case ContextCompacted(up_to_seq=up_to_seq, summary=summary):
            state.summary = summary
            state.compacted_through = max(state.compacted_through, up_to_seq)
            state.messages = [m for m in state.messages if m.seq > state.compacted_through]
            # A summary made by a model request is the session's spend like any other.
            state.usage = state.usage + event.usage
            state.cost_usd += event.cost_usd
            state.context_tokens = context_tokens(state)
        case IterationStarted() | IterationEnded() | WorkspaceChecked() | WorkspaceRestored():
            fold_iteration(state, event, seq)
        case SessionStatus(status=status, reason=reason):
            state.status = status
            state.status_reason = reason
            state.status_seq = seq
            if status == "running":
                # Resuming clears the guards that paused the session.
                state.budget_reached = None
                state.loop_detected = None
                state.interrupted = False
        case SessionForked(parent_session_id=parent, at_seq=at_seq):
            state.forked_from = parent
            state.forked_at_seq = at_seq
            # The copy gets its own sandbox (from the last checkpoint it names), never the
            # parent's; a call the parent had in flight has not run in the copy's world.
            state.sandbox_id = None
            for call in state.open_calls.values():
                if call.phase == "dispatched":
                    call.phase = "requested"
        case ThreadSpawned(call_id=call_id, thread_id=thread_id, agent_name=agent_name):
            _start_thread_call(state, call_id, thread_id)
            state.threads.setdefault(
                thread_id,
                ChildThread(
                    agent_name=agent_name, call_id=call_id, base_checkpoint=event.base_checkpoint
                ),
            )
        case ThreadMessageSent(call_id=call_id, thread_id=thread_id):
            _start_thread_call(state, call_id, thread_id)
        case ThreadMessageReceived(text=text, from_agent_name=sender):
            # Another thread's input reads as the user's, naming who sent it.
            note = f"[message from {sender or 'the primary agent'}]\n{text}"
            _add_block(state, "user", TextBlock(text=note), seq)
            state.pending_input = True
            state.interrupted = False
            state.input_seq = seq
        case ThreadReplied(thread_id=thread_id):
            # The thread's totals so far: the session counts what they add since last time
            # (its turns are its own: `turns` counts this agent's, the one a script plays).
            if (child := state.threads.get(thread_id)) is not None:
                state.usage = state.usage + _usage_added(child.usage, event.usage)
                state.cost_usd += max(event.cost_usd - child.cost_usd, 0.0)
                child.usage, child.cost_usd, child.turns = event.usage, event.cost_usd, event.turns
            if event.checkpoint is not None:
                # Its work merged into the session's workspace, in the sandbox that did it.
                state.checkpoint = event.checkpoint
                state.sandbox_id = event.sandbox_id or state.sandbox_id
        case ThreadWaiting():
            pass  # for the session's stream: what the thread waits on is in its own log
        case UnknownEvent():
            state.unknown_events += 1
        case _:
            # Every event type has its case: a new one that does not fails type checking.
            assert_never(event)


def feedback(result: OutcomeResult, explanation: str) -> str:
    """What the worker is told of an evaluation that sends it back: to revise, or, after
    the last one, to say where its work falls short (nothing more is evaluated)."""
    if result == "needs_revision":
        return f"The grader found that your work needs revision: {explanation}"
    if result == "max_iterations_reached":
        return (
            "The grader's last evaluation found your work still short of the outcome, and "
            f"no more evaluations will run: {explanation}"
        )
    return ""


def _count_response(
    state: SessionState,
    usage: Usage,
    content: Sequence[ContentBlock],
    unseen: Sequence[tuple[int, ContentBlock]],
) -> None:
    """What the context holds after a response: what the model was sent (as it reported
    it, else as estimated before), the response and the input it did not see; then older
    tool outputs become previews."""
    sent = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    if sent:
        state.context_tokens = sent + sum(block_tokens(block) for _, block in unseen)
    state.context_tokens += usage.output_tokens or sum(block_tokens(b) for b in content)
    policy = state.spec.context if state.spec is not None else ContextPolicy()
    state.context_tokens -= reduce_old_outputs(state, policy.keep_turns)


def _add_block(state: SessionState, role: str, block: ContentBlock, seq: int) -> None:
    """Append to the last message when it has the same role, so roles always alternate."""
    state.context_tokens += block_tokens(block)
    if state.messages and state.messages[-1].role == role:
        state.messages[-1].content.append(block)
        state.messages[-1].block_seqs.append(seq)
    else:
        state.messages.append(
            Message(role=role, content=[block], seq=seq, block_seqs=[seq])  # type: ignore[arg-type]
        )


def _take_input_after(state: SessionState, shown: int) -> list[tuple[int, ContentBlock]]:
    """Remove from the last user turn what was recorded after seq `shown`, and return it
    (with its seqs): the response being folded never saw it, so it comes after it."""
    if not state.messages or state.messages[-1].role != "user":
        return []
    last = state.messages[-1]
    keep = sum(1 for block_seq in last.block_seqs if block_seq <= shown)
    unseen = list(zip(last.block_seqs[keep:], last.content[keep:], strict=True))
    del last.content[keep:], last.block_seqs[keep:]
    if not last.content:
        state.messages.pop()
    return unseen


def _start_thread_call(state: SessionState, call_id: str, thread_id: str) -> None:
    if call := state.open_calls.get(call_id):
        call.phase = "thread"
        call.thread_id = thread_id


def _usage_added(counted: Usage, now: Usage) -> Usage:
    return Usage(
        input_tokens=max(now.input_tokens - counted.input_tokens, 0),
        output_tokens=max(now.output_tokens - counted.output_tokens, 0),
        cache_read_tokens=max(now.cache_read_tokens - counted.cache_read_tokens, 0),
        cache_write_tokens=max(now.cache_write_tokens - counted.cache_write_tokens, 0),
    )


def _set_phase(state: SessionState, call_id: str, phase: str) -> None:
    if call := state.open_calls.get(call_id):
        call.phase = phase  # type: ignore[assignment]


def call_signature(name: str, arguments: dict[str, object]) -> str:
    """Same tool, same input → same signature (keys sorted), for loop detection."""
    canonical = msgspec.json.encode(arguments, order="sorted")
    return f"{name}:{hashlib.sha256(canonical).hexdigest()[:16]}"
