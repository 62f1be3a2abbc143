"""One model call: the context built from the state, the provider (with retries), streamed
deltas out on NATS, and the response recorded with the calls it asks for.

The response, its `tool.requested` and, when they can go at once, their `tool.dispatched` are
one durable write: one write per tool step instead of two or three. Input that arrives while
the model thinks does not throw the response away: `context_seq` says what the model saw, and
the fold puts that input after the response, to be answered by the next turn.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Final

import msgspec

from brain._background import spawn
from brain._calls import CallsInFlight, error_result
from brain._leased_log import LeasedLog
from brain._sandbox_slot import SandboxSlot
from brain.context import build_context
from brain.decide import Dispatch, decide
from brain.deps import Nats
from brain.fold import fold
from brain.hands_client import HandsUnavailable, ProvisionFailed
from brain.providers import (
    ModelProvider,
    ModelRequest,
    ProviderError,
    ToolDefinition,
    complete_with_retries,
)
from brain.settings import BrainSettings
from brain.state import SessionState
from brain.threads import check_thread_calls, is_thread_tool, thread_tool_schemas
from schemas import (
    TOOLS,
    AgentSpec,
    Crashpoints,
    Event,
    ModelDelta,
    ModelSpec,
    Recorded,
    SessionStatus,
    ToolRequested,
    ToolUseBlock,
    delta_subject,
    event_type,
)
from session_store import Conflict

_ENCODER: Final = msgspec.json.Encoder()


class ModelCaller:
    def __init__(
        self,
        log: LeasedLog,
        sandbox: SandboxSlot,
        calls: CallsInFlight,
        providers: Callable[[ModelSpec], ModelProvider],
        nc: Nats,
        settings: BrainSettings,
        crash: Crashpoints,
        clock: Callable[[], float],
    ) -> None:
        self.log: Final = log
        self.sandbox: Final = sandbox
        self.calls: Final = calls
        self.providers: Final = providers
        self.nc: Final = nc
        self.settings: Final = settings
        self.crash: Final = crash
        self.clock: Final = clock

    async def call(self) -> None:
        self.crash.reach("before_model_call")
        self.sandbox.start_provisioning()
        if self.sandbox.is_provisioning and not self.settings.lazy_hands:
            with contextlib.suppress(HandsUnavailable, ProvisionFailed):
                await self.sandbox.get()
        state = self.log.state
        spec = self.log.spec
        turn = state.turns
        # What the model is shown: input recorded after this is not answered by its reply.
        shown = state.seq
        request = ModelRequest(
            session_id=self.log.session_id,
            model=spec.model,
            context=build_context(state),
            tools=tool_definitions(spec),
            turn=turn,
        )
        try:
            provider = self.providers(spec.model)
            response = await complete_with_retries(
                provider, request, self._delta_sink(turn, shown), self.settings.model_retry
            )
        except ProviderError as exc:
            await self.log.commit(
                [SessionStatus(status="failed", reason=f"the model failed: {exc}")]
            )
            return
        self.crash.reach("after_model_response")
        response = msgspec.structs.replace(response, context_seq=shown)
        # The calls it asks for are recorded with it (and, when they can go at once, their
        # dispatch too): one durable write per tool step.
        uses = [block for block in response.content if isinstance(block, ToolUseBlock)]
        events = [response, *tool_requests(uses, state)]
        while True:
            try:
                if uses and self._dispatches_at_once(events, uses):
                    await self.calls.dispatch([use.call_id for use in uses], before=events)
                    return
                await self.log.commit(events)
                break
            except Conflict:
                if self.log.state.turns > turn:
                    raise  # the response is in the log; a later write was refused
                # Input came while the model was thinking. The response is kept (it is paid
                # for, and `context_seq` says what it saw: the fold puts that input after
                # it, to be answered next), unless the user paused, cancelled or
                # interrupted meanwhile: then it is dropped and decide starts afresh.
                await self.log.catch_up()
                if self.log.state.status != "running" or self.log.state.interrupted:
                    return
        if uses:
            self.crash.reach("after_tool_requested")

    def _delta_sink(self, turn: int, shown: int) -> Callable[[str], None]:
        session_id = self.log.session_id
        subject = delta_subject(session_id)

        def publish(text: str) -> None:
            delta = ModelDelta(session_id=session_id, turn=turn, text=text, context_seq=shown)
            spawn(self.nc.publish(subject, _ENCODER.encode(delta)))

        return publish

    def _dispatches_at_once(self, events: Sequence[Event], uses: Sequence[ToolUseBlock]) -> bool:
        """Would `decide`, once `events` are in the log, dispatch exactly these calls? Then
        they are written together: one durable write per tool step instead of two. Asked of
        a copy of the state, so it is decide itself that answers."""
        if not self.sandbox.ready:
            return False
        state = self.log.state
        # A shallow copy, in O(1): folding a response and its requests only appends a new
        # message and adds open calls and signatures, all to containers copied here; the
        # conversation before them matters to decide only through its last message.
        ahead = msgspec.structs.replace(
            state,
            # The last message is copied too: folding a response may move input out of it.
            messages=[
                msgspec.structs.replace(m, content=list(m.content), block_seqs=list(m.block_seqs))
                for m in state.messages[-1:]
            ],
            open_calls=dict(state.open_calls),
            recent_calls=list(state.recent_calls),
        )
        now = self.clock()
        for offset, event in enumerate(events, start=1):
            fold(ahead, Recorded(seq=ahead.seq + 1, at=now, type=event_type(event), event=event))
            assert ahead.seq == state.seq + offset
        return decide(ahead, now) == Dispatch(call_ids=[u.call_id for u in uses])


def tool_requests(uses: Sequence[ToolUseBlock], state: SessionState) -> list[Event]:
    """`tool.requested` for each tool_use; a tool the session lacks, and a thread call that
    cannot run (`brain.threads`), gets its one outcome, an error, right away."""
    assert state.spec is not None
    spec = state.spec
    events: list[Event] = []
    custom = {tool.name for tool in spec.custom_tools}
    threaded = [(b.call_id, b.name, b.input) for b in uses if is_thread_tool(b.name)]
    refused = check_thread_calls(state, threaded) if threaded else {}
    for block in uses:
        if is_thread_tool(block.name) and spec.subagents is not None:
            events.append(ToolRequested(call_id=block.call_id, name=block.name, input=block.input))
            if block.call_id in refused:
                events.append(error_result(block.call_id, refused[block.call_id]))
            continue
        tool = TOOLS.get(block.name)
        events.append(
            ToolRequested(
                call_id=block.call_id,
                name=block.name,
                input=block.input,
                idempotent=tool is not None and tool.idempotent,
            )
        )
        if block.name in custom:
            continue
        if tool is None or block.name not in spec.tools:
            available = ", ".join([*spec.tools, *sorted(custom)]) or "none"
            reason = f"unknown tool {block.name!r}; available: {available}"
            events.append(error_result(block.call_id, reason))
    return events


def tool_definitions(spec: AgentSpec) -> list[ToolDefinition]:
    """keel's tools the session has, its thread tools, then the client's own (custom) tools."""
    return [
        *_tool_definitions(tuple(spec.tools)),
        *(
            ToolDefinition(name=name, description=description, input_schema=schema)
            for name, description, schema in thread_tool_schemas(spec)
        ),
        *(
            ToolDefinition(
                name=tool.name, description=tool.description, input_schema=tool.input_schema
            )
            for tool in spec.custom_tools
        ),
    ]


@functools.cache
def _tool_definitions(names: tuple[str, ...]) -> tuple[ToolDefinition, ...]:
    """Generating JSON Schema is slow, and the answer never changes for a set of tools."""
    return tuple(
        ToolDefinition(
            name=name, description=TOOLS[name].description, input_schema=TOOLS[name].input_schema
        )
        for name in names
        if name in TOOLS
    )
