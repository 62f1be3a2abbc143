"""Threads: sub-agents of a session, as the brain sees them, in pure functions.

A thread is a session of its own (its own log, lease, fencing and brain), linked to the
session whose call spawned it. Two tools, run by the brain itself and never sent to the
hands, are offered to an agent whose spec has `subagents`:

- `spawn_thread` starts a thread running an agent of the roster (by name) or, when the
  spec allows, an inline agent the model defines; the call's one result is the thread's
  reply when it ends the turn its task started.
- `message_thread` sends a message to a thread this agent spawned; the call's one result
  is the thread's reply to it.

The thread's id is derived from the parent and the call, so whichever brain spawns it, and
however often, it is the same thread. What a run does with these calls (announce, create,
deliver, collect) is `brain._thread_calls`; this module decides what they mean.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import Annotated, Final, Literal, TypeVar

import msgspec

from brain.state import SessionState, ToolCall
from schemas import (
    WAITING_FOR_CLIENT,
    AgentSpec,
    Budgets,
    ModelResponse,
    Recorded,
    SessionStatus,
    TextBlock,
    ThreadWaiting,
    ToolUseBlock,
    WaitingCall,
)

SPAWN_TOOL: Final = "spawn_thread"
MESSAGE_TOOL: Final = "message_thread"
THREAD_TOOLS: Final = frozenset({SPAWN_TOOL, MESSAGE_TOOL})
# A task or message longer than this is refused (it would be a huge event in two logs).
MAX_TEXT: Final = 100_000
# Statuses a thread ends a turn with: its reply is ready.
TURN_OVER: Final = frozenset({"idle", "completed", "failed", "cancelled"})

_T = TypeVar("_T")
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
_Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class InlineAgent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An agent defined at spawn time: its name, system prompt, and which of the spawning
    agent's tools it has (all of them when left out)."""

    name: _Name
    system: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] = ""
    tools: Annotated[list[str], msgspec.Meta(max_length=64)] | None = None


class SpawnInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Start a sub-agent on a task, in a thread of its own with its own context, model and
    sandbox. Name an `agent` of the roster, or define an `inline` one (when allowed). The
    result is the thread's reply once it finishes the task; message the thread (by the
    id in the result) to continue with it."""

    task: _Text
    agent: _Name | None = None
    inline: InlineAgent | None = None


class MessageInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Send a message to a thread this agent spawned; the result is its reply."""

    thread_id: _Name
    message: _Text


class ThreadCallError(ValueError):
    """A spawn or message call that cannot run: the model is told why, as its result."""


def is_thread_tool(name: str) -> bool:
    return name in THREAD_TOOLS


def thread_id_for(parent_session_id: str, call_id: str) -> str:
    """The thread a call spawns: the same for the same parent and call, whoever asks."""
    digest = hashlib.sha256(f"{parent_session_id}\0{call_id}".encode()).hexdigest()
    return f"sthr_{digest[:32]}"


def thread_tool_schemas(spec: AgentSpec) -> list[tuple[str, str, dict[str, object]]]:
    """(name, description, input schema) of the thread tools `spec` offers its model."""
    if spec.subagents is None:
        return []
    roster = "; ".join(
        f"{entry.name}: {entry.description}" if entry.description else entry.name
        for entry in spec.subagents.roster
    )
    spawn = _description(SpawnInput)
    if roster:
        spawn += f"\n\nAgents of the roster: {roster}."
    if not spec.subagents.inline:
        spawn += "\n\nInline agents are not allowed: name an agent of the roster."
    return [
        (SPAWN_TOOL, spawn, _schema(SpawnInput)),
        (MESSAGE_TOOL, _description(MessageInput), _schema(MessageInput)),
    ]


def parse_spawn(state: SessionState, arguments: dict[str, object]) -> SpawnInput:
    """The spawn call's input, checked against the spec; ThreadCallError says what is wrong."""
    spec = state.spec
    assert spec is not None
    if spec.subagents is None:
        raise ThreadCallError("this agent cannot spawn threads")
    spawn = _convert(arguments, SpawnInput)
    if (spawn.agent is None) == (spawn.inline is None):
        raise ThreadCallError("name exactly one of `agent` (of the roster) or `inline`")
    if spawn.agent is not None and not any(e.name == spawn.agent for e in spec.subagents.roster):
        names = ", ".join(e.name for e in spec.subagents.roster) or "none"
        raise ThreadCallError(f"no agent {spawn.agent!r} in the roster; it has: {names}")
    if spawn.inline is not None:
        if not spec.subagents.inline:
            raise ThreadCallError("inline agents are not allowed: name an agent of the roster")
        extra = set(spawn.inline.tools or ()) - set(spec.tools)
        if extra:
            raise ThreadCallError(f"an inline agent may only have this agent's tools: {extra}")
    return spawn


def parse_message(state: SessionState, arguments: dict[str, object]) -> MessageInput:
    if state.spec is None or state.spec.subagents is None:
        raise ThreadCallError("this agent has no threads to message")
    message = _convert(arguments, MessageInput)
    if message.thread_id not in state.threads:
        raise ThreadCallError(f"no thread {message.thread_id!r} was spawned by this agent")
    return message


def check_thread_calls(
    state: SessionState, calls: Sequence[tuple[str, str, dict[str, object]]]
) -> dict[str, str]:
    """Why each of these (call_id, name, input) thread calls of one response cannot run,
    by call_id; those absent may. A thread works on one thing at a time: a message to a
    thread busy with another call, and more spawns than the spec allows, are refused."""
    assert state.spec is not None
    refused: dict[str, str] = {}
    busy = {call.thread_id for call in state.open_calls.values() if call.phase == "thread"}
    spawned = len(state.threads)
    limit = state.spec.subagents.max_threads if state.spec.subagents is not None else 0
    for call_id, name, arguments in calls:
        try:
            if name == SPAWN_TOOL:
                parse_spawn(state, arguments)
                spawned += 1
                if spawned > limit:
                    raise ThreadCallError(f"this agent may spawn at most {limit} threads")
            else:
                target = parse_message(state, arguments).thread_id
                if target in busy:
                    raise ThreadCallError(
                        f"thread {target} is still working on an earlier call; its reply "
                        "comes as that call's result"
                    )
                busy.add(target)
        except ThreadCallError as exc:
            refused[call_id] = str(exc)
    return refused


def child_spec(spec: AgentSpec, spawn: SpawnInput, used: Budgets) -> tuple[str, AgentSpec]:
    """The roster name and spec of the thread `spawn` starts, under `spec`. A thread idles
    between turns (it takes more messages), never spawns threads of its own, and spends at
    most what the session has left of each budget (`used` says how much is spent)."""
    assert spec.subagents is not None
    if spawn.agent is not None:
        entry = next(e for e in spec.subagents.roster if e.name == spawn.agent)
        name, base = entry.name, entry.spec
    else:
        assert spawn.inline is not None
        inline = spawn.inline
        name = inline.name
        tools = spec.tools if inline.tools is None else [t for t in spec.tools if t in inline.tools]
        base = msgspec.structs.replace(
            spec, system_prompt=inline.system, tools=tools, custom_tools=[]
        )
    budgets = _within(base.budgets, spec.budgets, used)
    return name, msgspec.structs.replace(base, subagents=None, turn_end="idle", budgets=budgets)


def waiting_note(
    state: SessionState, waiting: Sequence[tuple[ToolCall, str]]
) -> ThreadWaiting | None:
    """What a thread about to wait on the user notes in its session (`thread.waiting`): the
    calls it waits on (`waiting`, as `decide.waits_on_user` says), each where its log asked
    for it; None for a session's own log, or a wait on nothing the user answers."""
    origin, spec = state.thread, state.spec
    if origin is None or spec is None:
        return None
    asked_at = {
        block.call_id: (message.seq, index)
        for message in state.messages
        if message.role == "assistant"
        for index, block in enumerate(b for b in message.content if isinstance(b, ToolUseBlock))
    }
    calls: list[WaitingCall] = []
    for call, reason in waiting:
        place = asked_at.get(call.call_id)
        if place is None:
            # Not in the context (compaction and resets keep what is open, so never seen):
            # the thread's own stream still shows the call; the session's cannot name it.
            continue
        response_seq, use_index = place
        waits_for: Literal["approval", "custom", "client"] = "approval"
        if reason == WAITING_FOR_CLIENT:
            custom = any(tool.name == call.name for tool in spec.custom_tools)
            waits_for = "custom" if custom else "client"
        calls.append(
            WaitingCall(
                call_id=call.call_id,
                name=call.name,
                input=call.input,
                response_seq=response_seq,
                use_index=use_index,
                waits_for=waits_for,
            )
        )
    if not calls:
        return None
    return ThreadWaiting(thread_id=origin.thread_id, agent_name=origin.agent_name, calls=calls)


def waiting_key(note: ThreadWaiting) -> str:
    """The note's key in its session: one note per thread and set of calls waited on, so a
    run that noted it and died before the thread's log said it waits notes it once."""
    calls = "\0".join(sorted(call.call_id for call in note.calls))
    return f"{note.thread_id}/waiting/{hashlib.sha256(calls.encode()).hexdigest()[:32]}"


def thread_reply(records: Sequence[Recorded]) -> tuple[str, str] | None:
    """The status a thread ended its turn with and its reply, from its log after the turn
    began (statuses and responses); None while the turn goes on."""
    text = ""
    for record in records:
        event = record.event
        if isinstance(event, ModelResponse):
            text = "".join(b.text for b in event.content if isinstance(b, TextBlock))
        elif isinstance(event, SessionStatus) and event.status in TURN_OVER:
            if event.status in ("failed", "cancelled"):
                return event.status, f"the thread {event.status}: {event.reason}".strip()
            return event.status, text or f"(the thread ended its turn: {event.reason})"
    return None


def _within(own: Budgets, session: Budgets, used: Budgets) -> Budgets:
    """Each limit the tighter of the thread's own and what the session has left."""

    def tighter(mine: float | None, total: float | None, spent: float | None) -> float | None:
        left = None if total is None else max(total - (spent or 0), 0)
        if mine is None:
            return left
        return mine if left is None else min(mine, left)

    turns = tighter(own.max_turns, session.max_turns, used.max_turns)
    tokens = tighter(own.max_tokens, session.max_tokens, used.max_tokens)
    return Budgets(
        max_tokens=None if tokens is None else int(tokens),
        max_cost_usd=tighter(own.max_cost_usd, session.max_cost_usd, used.max_cost_usd),
        max_turns=None if turns is None else int(turns),
        max_wall_seconds=own.max_wall_seconds or session.max_wall_seconds,
    )


def _convert(arguments: dict[str, object], kind: type[_T]) -> _T:
    try:
        return msgspec.convert(arguments, kind)
    except (msgspec.ValidationError, RecursionError) as exc:
        raise ThreadCallError(f"invalid input: {exc}") from exc


def _description(kind: type[msgspec.Struct]) -> str:
    return " ".join((kind.__doc__ or "").split())


@functools.cache
def _schema(kind: type[msgspec.Struct]) -> dict[str, object]:
    schema = msgspec.json.schema(kind)
    definition: dict[str, object] = schema["$defs"][kind.__name__]
    return definition
