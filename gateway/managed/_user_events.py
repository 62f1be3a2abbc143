"""What a user sends, as the events of keel's log: checked against the session's calls, so a
confirmation or a result lands only on a call waiting for it, exactly once; and against its
outcomes, so one outcome is worked on at a time."""

from __future__ import annotations

from collections.abc import Sequence

from gateway._errors import ApiProblem
from gateway.managed._common import refuse
from gateway.managed._projection import CallView, Projection
from gateway.managed._shapes import (
    MAX_ITERATIONS,
    ContentParam,
    EventParams,
    RubricFile,
    SystemMessageParams,
    TextBlockParam,
    UserCustomToolResultParams,
    UserDefineOutcomeParams,
    UserInterruptParams,
    UserMessageParams,
    UserToolConfirmationParams,
    UserToolResultParams,
)
from schemas import (
    ApprovalDenied,
    ApprovalGranted,
    Event,
    OutcomeDefined,
    ToolResult,
    UserInterrupt,
    UserMessage,
    new_id,
)


def text_of(content: Sequence[ContentParam], field: str) -> str:
    texts = []
    for block in content:
        if not isinstance(block, TextBlockParam):
            raise refuse(field, "keel's models are shown text only; send text blocks")
        texts.append(block.text)
    return "\n\n".join(texts)


def user_message(params: UserMessageParams) -> UserMessage:
    return UserMessage(text=text_of(params.content, "content"))


def outcome_defined(
    params: UserDefineOutcomeParams, where: str, open_outcome: str | None
) -> OutcomeDefined:
    """A new outcome, unless `open_outcome` is still worked on or evaluated."""
    if isinstance(params.rubric, RubricFile):
        raise refuse(f"{where}.rubric", "keel has no files yet; send the rubric as text")
    if open_outcome is not None:
        raise ApiProblem(
            409,
            f"{where}: outcome {open_outcome} is still being worked on; wait until its "
            "evaluation ends it, or end it with a user.interrupt",
        )
    return OutcomeDefined(
        outcome_id=new_id("outc"),
        description=params.description,
        rubric=params.rubric.content,
        max_iterations=params.max_iterations or MAX_ITERATIONS,
    )


def to_log(params: Sequence[tuple[int, EventParams]], calls: Projection) -> list[Event]:
    """The events to append to one log for `params` (each with its index in the request),
    given the log's calls and outcomes (`calls`, folded to the head the append will
    expect). A 400 for what keel does not serve; a 409 (final) for what the log's state
    cannot take: an answer to no waiting call, or of the wrong kind, or an outcome while one
    is open."""
    events: list[Event] = []
    answered: set[str] = set()
    outcome = calls.outcomes.open()
    open_outcome = None if outcome is None else outcome.outcome_id
    for i, event in params:
        where = f"events[{i}]"
        match event:
            case UserMessageParams():
                events.append(UserMessage(text=text_of(event.content, f"{where}.content")))
            case UserInterruptParams():
                # Sent to the log of the thread it names (`_thread_input`), or the session's.
                events.append(UserInterrupt(reason="interrupted by the user"))
            case UserToolConfirmationParams(tool_use_id=tool_use_id):
                call_id, call = _open_call(calls, tool_use_id, where, answered)
                if not call.waiting_approval:
                    raise ApiProblem(409, f"{where}: tool use {tool_use_id} awaits no confirmation")
                if event.result == "allow":
                    events.append(ApprovalGranted(call_id=call_id, by="user"))
                else:
                    events.append(
                        ApprovalDenied(call_id=call_id, by="user", reason=event.deny_message or "")
                    )
            case (
                UserCustomToolResultParams(custom_tool_use_id=tool_use_id)
                | UserToolResultParams(tool_use_id=tool_use_id)
            ):
                call_id, call = _open_call(calls, tool_use_id, where, answered)
                if not call.on_client:
                    raise ApiProblem(409, f"{where}: tool use {tool_use_id} is keel's to run")
                if call.waiting_approval:
                    raise ApiProblem(
                        409, f"{where}: tool use {tool_use_id} awaits a user.tool_confirmation"
                    )
                events.append(
                    ToolResult(
                        call_id=call_id,
                        output=text_of(event.content, f"{where}.content"),
                        is_error=event.is_error,
                        outcome="error" if event.is_error else "ok",
                        from_client=True,
                    )
                )
            case UserDefineOutcomeParams():
                defined = outcome_defined(event, where, open_outcome)
                events.append(defined)
                open_outcome = defined.outcome_id
            case SystemMessageParams():
                raise refuse(where, "system.message is not served yet")
    return events


def _open_call(
    calls: Projection, tool_use_id: str, where: str, answered: set[str]
) -> tuple[str, CallView]:
    found = calls.call_for(tool_use_id)
    if found is None or tool_use_id in answered:
        raise ApiProblem(
            409, f"{where}: no tool use {tool_use_id} is waiting (unknown, or answered already)"
        )
    answered.add(tool_use_id)
    return found
