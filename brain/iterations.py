"""Context resets (the shift change), as pure functions: when an iteration ends, what the next
one starts from, and how their events fold.

A session whose spec has `context_resets` works in iterations. Each starts from a fresh
context: one user turn (the brief) built of the goal (the defined outcome and the user's
messages), the outcome's rubric, the handoff files as the workspace held them (recorded in
`iteration.started`, so a replay rebuilds the same brief without a sandbox), why the previous
iteration ended and what the harness undid in it. An iteration ends when the worker ended
its turn and the grader (or the completion check) sent the work back, or when it used its
turns or tokens; either way only once no call is open, so no call spans two iterations.

Before the work is graded, judged or an iteration ends, the test ratchet checks the
protected files (`workspace.checked`); what changed is put back (`workspace.restored`) and the
worker told, in its context now and in the next brief.
"""

from __future__ import annotations

from typing import Final

import msgspec

from brain.compaction import block_tokens, context_tokens
from brain.ratchet import ratchet_on
from brain.state import Message, SessionState
from schemas import (
    IterationEnd,
    IterationEnded,
    IterationStarted,
    TextBlock,
    WorkspaceChecked,
    WorkspaceRestored,
    encode_event,
)

# How many protected files a brief names (the rest are counted).
NAMED_PROTECTED: Final = 50
# The most an `iteration.started` may weigh encoded: under the store's limit of one event
# (256 KiB by default), whatever the workspace holds.
STARTED_BYTES: Final = 192 * 1024

END_REASONS: Final[dict[IterationEnd, str]] = {
    "goal_not_met": "your work was checked and sent back",
    "max_turns": "it used the turns an iteration has",
    "max_tokens": "it used the tokens an iteration has",
}


class StartIteration(msgspec.Struct, frozen=True, tag=True):
    """Read the handoff and protected files through the hands, then record the start."""

    iteration: int


class EndIteration(msgspec.Struct, frozen=True, tag=True):
    iteration: int
    reason: IterationEnd
    detail: str = ""


class CheckWorkspace(msgspec.Struct, frozen=True, tag=True):
    """Compare the protected files with the iteration's start, and record what changed."""

    iteration: int


class RestoreWorkspace(msgspec.Struct, frozen=True, tag=True):
    """Put the changed protected files back, and record it."""

    iteration: int


IterationAction = StartIteration | EndIteration | CheckWorkspace | RestoreWorkspace


def next_step(state: SessionState) -> IterationAction | None:
    """What context resets do next, when no call is open; None: carry on as without them
    (call the model, or grade, judge or complete a turn the worker ended)."""
    assert state.spec is not None
    resets = state.spec.context_resets
    if resets is None or not state.messages:
        return None
    it = state.iterations
    ended_turn = state.messages[-1].role == "assistant"
    if it.number == 0:
        return None if ended_turn else StartIteration(iteration=1)
    if it.ended_seq > it.started_seq:
        return StartIteration(iteration=it.number + 1)
    if it.changes:
        return RestoreWorkspace(iteration=it.number)
    responded = _last_response_seq(state)
    if responded == 0:
        return None  # the iteration's first model call is next
    sent_back = _sent_back(state, responded)
    limit = None if ended_turn else _limit(state)
    if not ended_turn and sent_back is None and limit is None:
        return None
    # (An iteration that started with no test files has none to check.)
    if ratchet_on(state) and it.protected and it.checked_seq < responded:
        return CheckWorkspace(iteration=it.number)
    if sent_back is not None:
        return EndIteration(iteration=it.number, reason="goal_not_met", detail=sent_back)
    if limit is not None:
        return EndIteration(iteration=it.number, reason=limit)
    return None


def _last_response_seq(state: SessionState) -> int:
    """The seq of the iteration's latest model response (0: none yet)."""
    for message in reversed(state.messages):
        if message.role == "assistant":
            return message.seq
    return 0


def _sent_back(state: SessionState, responded: int) -> str | None:
    """Why the work of the worker's latest turn was sent back, if it was: the grader's
    feedback, or the failed completion check."""
    outcome = state.outcome
    if outcome is not None and outcome.result == "needs_revision" and outcome.ended_seq > responded:
        last = state.messages[-1]
        return "\n".join(
            block.text
            for block, seq in zip(last.content, last.block_seqs, strict=False)
            if seq == outcome.ended_seq and isinstance(block, TextBlock)
        )
    verdict = state.verdict
    if verdict is not None and not verdict.passed and verdict.seq > responded:
        return f"The completion check failed ({verdict.judge}): {verdict.detail}"
    return None


def _limit(state: SessionState) -> IterationEnd | None:
    assert state.spec is not None and state.spec.context_resets is not None
    resets = state.spec.context_resets
    it = state.iterations
    if resets.max_turns is not None and state.turns - it.turns_at_start >= resets.max_turns:
        return "max_turns"
    used = state.usage.total_tokens - it.tokens_at_start
    if resets.max_tokens is not None and used >= resets.max_tokens:
        return "max_tokens"
    return None


def fitted(started: IterationStarted, limit: int = STARTED_BYTES) -> IterationStarted | None:
    """`started` made to weigh at most `limit` encoded: first without the bytes of protected
    versions, largest first (such a version is then not restorable, though still guarded by
    its digest, and a later start records it if it fits); then with the handoff files' text
    halved, longest first. None when even that does not fit (too many protected files)."""
    protected = sorted(started.protected, key=lambda f: len(f.content or b""), reverse=True)
    handoff = list(started.handoff)
    while len(encode_event(started)) > limit:
        with_bytes = [i for i, f in enumerate(protected) if f.content is not None]
        texts = [i for i, f in enumerate(handoff) if f.text]
        if with_bytes:
            i = with_bytes[0]
            protected[i] = msgspec.structs.replace(protected[i], content=None)
        elif texts:
            i = max(texts, key=lambda i: len(handoff[i].text or ""))
            text = handoff[i].text or ""
            handoff[i] = msgspec.structs.replace(
                handoff[i], text=text[: len(text) // 2], truncated=True
            )
        else:
            return None
        order = {f.path: n for n, f in enumerate(started.protected)}
        started = msgspec.structs.replace(
            started,
            handoff=handoff,
            protected=sorted(protected, key=lambda f: order[f.path]),
        )
    return started


# -- folding ----------------------------------------------------------------------------------


def note_request(state: SessionState, text: str) -> None:
    """A user's message is part of the goal every iteration's brief restates."""
    if state.spec is not None and state.spec.context_resets is not None:
        state.iterations.requests.append(text)


def fold_iteration(
    state: SessionState,
    event: IterationStarted | IterationEnded | WorkspaceChecked | WorkspaceRestored,
    seq: int,
) -> None:
    it = state.iterations
    match event:
        case IterationStarted():
            text = brief(state, event)
            for file in event.protected:
                if file.content is not None:
                    it.content_seqs.setdefault(file.digest, seq)
            it.number = event.iteration
            it.started_seq = seq
            it.turns_at_start = state.turns
            it.tokens_at_start = state.usage.total_tokens
            it.protected = {file.path: file.digest for file in event.protected}
            it.changes = []
            it.undone = []
            # The fresh context: the brief alone (no compaction's summary), sized anew.
            state.summary = ""
            state.messages = [
                Message(role="user", content=[TextBlock(text=text)], seq=seq, block_seqs=[seq])
            ]
            state.pending_input = True
            state.context_tokens = context_tokens(state)
        case IterationEnded(reason=reason, detail=detail):
            it.ended_seq = seq
            it.end_reason = reason
            it.end_detail = detail
        case WorkspaceChecked(changes=changes):
            it.checked_seq = seq
            it.changes = list(changes)
        case WorkspaceRestored():
            it.changes = []
            if event.checkpoint is not None:
                state.checkpoint = event.checkpoint
            note = restore_note(event)
            it.undone.append(note)
            # The worker is told at once, as the next user turn.
            _tell(state, note, seq)


def _tell(state: SessionState, text: str, seq: int) -> None:
    block = TextBlock(text=text)
    state.context_tokens += block_tokens(block)
    if state.messages and state.messages[-1].role == "user":
        state.messages[-1].content.append(block)
        state.messages[-1].block_seqs.append(seq)
    else:
        state.messages.append(Message(role="user", content=[block], seq=seq, block_seqs=[seq]))
    state.pending_input = True


def restore_note(event: WorkspaceRestored) -> str:
    parts = []
    if event.paths:
        parts.append(
            "The harness undid your changes to protected test files and put them back as "
            f"this iteration started: {', '.join(event.paths)}."
        )
    if event.unrestorable:
        parts.append(
            "These protected test files were changed and could not be put back (the harness "
            f"kept no copy); they count as tampered with: {', '.join(event.unrestorable)}."
        )
    parts.append("You may not change or delete test files you did not write.")
    return " ".join(parts)


# -- the brief --------------------------------------------------------------------------------


def brief(state: SessionState, started: IterationStarted) -> str:
    """The one user turn an iteration starts from."""
    assert state.spec is not None and state.spec.context_resets is not None
    it = state.iterations
    sections = [
        f"This is iteration {started.iteration} of a long task. You start from a fresh "
        "context: you remember nothing of earlier iterations; what you know is this message "
        "and what the workspace holds."
    ]
    if it.end_reason is not None:
        ended = f"Iteration {it.number} ended because {END_REASONS[it.end_reason]}."
        sections.append(f"{ended}\n{it.end_detail}".strip())
    sections.extend(it.undone)
    sections.append(_goal(state))
    if state.outcome is not None and state.outcome.open:
        sections.append(f"Your work will be graded by this rubric:\n{state.outcome.rubric}")
    if started.handoff:
        sections.append(_handoff(started))
    if ratchet_on(state) and started.protected:
        sections.append(_protected(started))
    return "\n\n".join(sections)


def _goal(state: SessionState) -> str:
    lines = ["The goal:"]
    if state.outcome is not None and state.outcome.open:
        lines.append(state.outcome.description)
    requests = state.iterations.requests
    if requests:
        lines.append("What the user asked, oldest first:")
        lines.extend(f"- {text}" for text in requests)
    return "\n".join(lines)


def _handoff(started: IterationStarted) -> str:
    lines = [
        "The handoff files: read them, work from them, and keep them up to date as you go "
        "(the plan, your progress, the tasks left): they are all the next iteration will "
        "know of this one."
    ]
    for file in started.handoff:
        if file.text is None:
            lines.append(f"--- {file.path} (there is no such file yet) ---")
            continue
        cut = f" (its first part of {file.size} bytes)" if file.truncated else ""
        lines.append(f"--- {file.path}{cut} ---\n{file.text}")
    return "\n".join(lines)


def _protected(started: IterationStarted) -> str:
    paths = [file.path for file in started.protected]
    named = ", ".join(paths[:NAMED_PROTECTED])
    more = f" and {len(paths) - NAMED_PROTECTED} more" if len(paths) > NAMED_PROTECTED else ""
    return (
        "Protected test files: you did not write these, and may not change or delete them. "
        "Writing or editing one is refused; a change made any other way is undone at the "
        f"end of your turn: {named}{more}."
    )
