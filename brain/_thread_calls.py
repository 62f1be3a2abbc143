"""A run's thread calls: spawning threads, messaging them, and collecting their replies.

Each step is crash-safe the way a tool call is:

1. Announce: `thread.spawned` / `thread.message_sent` is durable in the parent's log before
   anything happens to the thread (the call's phase becomes `thread`).
2. Act: create the thread (create-if-absent, under an id derived from the parent and the
   call) or deliver the message (an append keyed by the sender and the call). Either is
   done again by the next run of the parent if the brain died before or after it
   (`repair`): the thread is created once and the message delivered once, whatever died.
3. Collect: the thread's reply is read from the thread's own log and recorded in the
   parent's, with the call's one result, under the parent's lease, so only the parent's
   owner writes its log, and a call that has its result is never collected again. A roster
   sharing the coordinator's workspace first has the thread's work merged into it (a
   harness call in the parent's sandbox, `merge_workspace`), recorded with the reply: a
   brain that dies after the merge and before the reply is recorded is followed by one that
   merges again, which finds the branch merged (git says so) and records the reply once.

A parent waiting on its threads holds no brain and no sandbox: nothing is in flight on the
hands, so the run lets go. A thread that ends a turn pokes its parent's work subject, and a
timer left on the parent covers a poke that was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

import msgspec

from brain._calls import error_result
from brain._leased_log import LeasedLog
from brain._workspace_harness import HarnessCallFailed, WorkspaceHarness
from brain.deps import Nats
from brain.state import ToolCall
from brain.threads import (
    SPAWN_TOOL,
    TURN_OVER,
    ThreadCallError,
    child_spec,
    parse_message,
    parse_spawn,
    thread_id_for,
    thread_reply,
    waiting_key,
    waiting_note,
)
from schemas import (
    TERMINAL_STATUSES,
    Attention,
    Budgets,
    Crashpoints,
    Event,
    MergeWorkspaceInput,
    SessionCreated,
    SessionStatus,
    ThreadMessageReceived,
    ThreadMessageSent,
    ThreadOrigin,
    ThreadReplied,
    ThreadSpawned,
    ToolResult,
    UserInterrupt,
    WorkspaceRestored,
    log_subject,
    work_subject,
)
from session_store import InvalidInput, PayloadTooLarge, SessionNotFound, Threads

logger = logging.getLogger("keel.brain")

_ENCODER: Final = msgspec.json.Encoder()
# What a thread's reply is read from.
_REPLY_TYPES: Final = ("session.status", "model.response")
# What names a thread's newest workspace checkpoint (its work, to merge).
_CHECKPOINT_TYPES: Final = ("tool.result", "workspace.restored")


class ThreadCalls:
    def __init__(
        self,
        log: LeasedLog,
        store: Threads,
        nc: Nats,
        crash: Crashpoints,
        workspace: WorkspaceHarness,
    ) -> None:
        self.log: Final = log
        self.store: Final = store
        self.nc: Final = nc
        self.crash: Final = crash
        # Runs the merges of a roster sharing the coordinator's workspace.
        self.workspace: Final = workspace
        # Per open call acted on in this run: the thread's seq after which its reply is read.
        self.reply_after: dict[str, int] = {}
        # Threads told of the session's cancel or interrupt in this run.
        self.stopped: set[str] = set()

    def open(self) -> list[ToolCall]:
        return [c for c in self.log.state.open_calls.values() if c.phase == "thread"]

    # -- announce, then act -------------------------------------------------------------------

    async def run(self, call_ids: list[str]) -> None:
        """Announce these calls in one append, then spawn or deliver for each."""
        state = self.log.state
        announced: list[Event] = []
        refused: list[Event] = []
        for call_id in call_ids:
            call = state.open_calls[call_id]
            try:
                announced.append(self._announcement(call))
            except ThreadCallError as exc:
                refused.append(error_result(call_id, str(exc)))
        await self.log.commit([*announced, *refused])
        if any(isinstance(event, ThreadSpawned) for event in announced):
            self.crash.reach("after_thread_spawned")
        if any(isinstance(event, ThreadMessageSent) for event in announced):
            self.crash.reach("after_message_sent")
        await self._act_on(self.open())

    def _announcement(self, call: ToolCall) -> Event:
        state = self.log.state
        if call.name == SPAWN_TOOL:
            spawn = parse_spawn(state, call.input)
            name, _ = child_spec(self.log.spec, spawn, _spent(self.log))
            thread_id = thread_id_for(self.log.session_id, call.call_id)
            return ThreadSpawned(
                call_id=call.call_id,
                thread_id=thread_id,
                agent_name=name,
                task=spawn.task,
                base_checkpoint=state.checkpoint if self._shared_workspace() else None,
            )
        message = parse_message(state, call.input)
        return ThreadMessageSent(
            call_id=call.call_id,
            thread_id=message.thread_id,
            text=message.message,
            agent_name=state.threads[message.thread_id].agent_name,
        )

    async def repair(self) -> None:
        """Finish what a crashed run announced: create the threads it spawned, deliver the
        messages it sent (each at most once, whatever it did already)."""
        await self._act_on(self.open())

    async def _act_on(self, calls: list[ToolCall]) -> None:
        pending = [c for c in calls if c.call_id not in self.reply_after]
        failed = await asyncio.gather(*(self._act(call) for call in pending))
        errors: list[Event] = [event for event in failed if event is not None]
        if errors:
            await self.log.commit(errors)

    async def _act(self, call: ToolCall) -> ToolResult | None:
        """Spawn or deliver for `call`; its one result, an error, if that cannot be done."""
        try:
            if call.name == SPAWN_TOOL:
                await self._spawn(call)
            else:
                await self._deliver(call)
        except (InvalidInput, PayloadTooLarge, SessionNotFound, ThreadCallError) as exc:
            return error_result(call.call_id, f"the thread could not be reached: {exc}")
        return None

    async def _spawn(self, call: ToolCall) -> None:
        session_id = self.log.session_id
        spawn = parse_spawn(self.log.state, call.input)
        name, spec = child_spec(self.log.spec, spawn, _spent(self.log))
        parent = self.log.state.thread
        origin = ThreadOrigin(
            parent_session_id=session_id,
            call_id=call.call_id,
            agent_name=name,
            root_session_id=parent.root_session_id if parent is not None else session_id,
            thread_id=call.thread_id,
            base_checkpoint=self.log.state.threads[call.thread_id].base_checkpoint,
        )
        task = ThreadMessageReceived(
            from_session_id=session_id,
            call_id=call.call_id,
            text=spawn.task,
            from_agent_name=_own_name(self.log),
        )
        created = SessionCreated(spec=spec, title=name, thread=origin)
        await self.store.create_thread(session_id, call.thread_id, created, [task])
        self.crash.reach("after_thread_created")
        self.reply_after[call.call_id] = 0
        await self._poke(call.thread_id, "thread spawned")

    async def _deliver(self, call: ToolCall) -> None:
        session_id = self.log.session_id
        message = parse_message(self.log.state, call.input)
        received = ThreadMessageReceived(
            from_session_id=session_id,
            call_id=call.call_id,
            text=message.message,
            from_agent_name=_own_name(self.log),
        )
        appended = await self.store.append_once(
            call.thread_id, [received], key=f"{session_id}/{call.call_id}"
        )
        self.crash.reach("after_message_delivered")
        # The reply is the thread's turn after the message (its seq is the head it made).
        self.reply_after[call.call_id] = appended.head_seq - 1
        await self._poke(call.thread_id, "thread message")

    # -- collect ------------------------------------------------------------------------------

    async def collect(self) -> None:
        """Record the reply of every thread that ended the turn a call of ours started."""
        events: list[Event] = []
        for call in self.open():
            replied = await self._reply(call)
            if replied is not None:
                events += await self._merged(call, replied) if self._shared_workspace() else replied
        if not events:
            return
        self.crash.reach("before_thread_result")
        await self.log.commit(events)
        self.crash.reach("after_thread_result")

    async def any_replied(self) -> bool:
        """Did a thread reply since the run last looked (it will have to be recorded)?"""
        for call in self.open():
            if await self._reply(call) is not None:
                return True
        return False

    async def _reply(self, call: ToolCall) -> list[Event] | None:
        after = self.reply_after.get(call.call_id)
        if after is None:
            return None
        records = await self.store.read(call.thread_id, after_seq=after, types=_REPLY_TYPES)
        reply = thread_reply(records)
        info = await self.store.get_session(call.thread_id)
        if reply is None and info.status in TERMINAL_STATUSES:
            # Ended before the call reached it (a message to a failed thread): no turn will
            # answer, so the call ends with what the thread is.
            reply = (info.status, f"the thread is {info.status}: {info.status_reason}")
        if reply is None:
            return None
        status, text = reply
        return [
            ThreadReplied(
                call_id=call.call_id,
                thread_id=call.thread_id,
                status=status,  # type: ignore[arg-type]
                usage=info.usage,
                cost_usd=info.cost_usd,
                turns=info.turns,
            ),
            ToolResult(
                call_id=call.call_id,
                output=f"[thread {call.thread_id}]\n{text}",
                is_error=status in ("failed", "cancelled"),
                outcome="error" if status in ("failed", "cancelled") else "ok",
            ),
        ]

    def _shared_workspace(self) -> bool:
        subagents = self.log.spec.subagents
        return subagents is not None and subagents.workspace == "coordinator"

    async def _merged(self, call: ToolCall, replied: list[Event]) -> list[Event]:
        """The reply of a thread of the coordinator's workspace, once its work is merged
        into that workspace (or why it could not be: the coordinator is told and decides)."""
        reply, result = replied
        assert isinstance(reply, ThreadReplied) and isinstance(result, ToolResult)
        child = self.log.state.threads[call.thread_id]
        records = await self.store.read(call.thread_id, types=_CHECKPOINT_TYPES)
        checkpoints = [
            r.event.checkpoint
            for r in records
            if isinstance(r.event, (ToolResult, WorkspaceRestored))
        ]
        latest = next((c for c in reversed(checkpoints) if c is not None), None)
        if latest is None or latest == child.base_checkpoint:
            return replied  # the thread changed nothing in the workspace
        branch = f"keel/{child.agent_name}-{call.thread_id.removeprefix('sthr_')[:12]}"
        if not self.log.spec.has_sandbox():
            note = f"[{branch} was not merged: this agent has no workspace (no tool of its own)]"
            return [reply, msgspec.structs.replace(result, output=f"{result.output}\n{note}")]
        request = MergeWorkspaceInput(
            checkpoint=latest, branch=branch, message=f"{branch}: thread {call.thread_id}"
        )
        try:
            outcome = await self.workspace.call("merge_workspace", request)
        except HarnessCallFailed as exc:
            note = f"[{branch} was not merged into the workspace: {exc}]"
            return [reply, msgspec.structs.replace(result, output=f"{result.output}\n{note}")]
        self.crash.reach("after_thread_merge")
        return [
            msgspec.structs.replace(
                reply,
                checkpoint=outcome.checkpoint,
                sandbox_id=outcome.sandbox_id,
                merge=outcome.output,
            ),
            msgspec.structs.replace(result, output=f"{result.output}\n[{outcome.output}]"),
        ]

    # -- waits on the user ---------------------------------------------------------------------

    async def note_wait(self, waiting: list[tuple[ToolCall, str]]) -> None:
        """A thread about to wait on the user says so first in its session, whose stream is
        the one a client follows (`thread.waiting`): the calls to answer, from this log.
        Noted once per set of calls (keyed), so the run after a crash between the note and
        the thread's own waiting status notes it again harmlessly."""
        note = waiting_note(self.log.state, waiting)
        origin = self.log.state.thread
        if note is None or origin is None:
            return
        try:
            appended = await self.store.append_once(
                origin.root_session_id, [note], key=waiting_key(note)
            )
        except SessionNotFound:
            return  # deleted meanwhile: nobody follows its stream
        self.crash.reach("after_thread_wait_noted")
        try:
            await self.nc.publish(log_subject(origin.root_session_id), b"%d" % appended.head_seq)
        except Exception as exc:
            # Its streams read the store again at their next heartbeat.
            logger.warning("session %s: announcing a wait failed: %r", self.log.session_id, exc)

    # -- stops and pokes ----------------------------------------------------------------------

    async def forward_stops(self) -> None:
        """A cancel reaches every thread of this session; an interrupt every thread at work
        on a call of it. Told once per run (telling a thread again changes nothing)."""
        state = self.log.state
        if state.status == "cancelled":
            targets = list(state.threads)
            stop: Event = SessionStatus(status="cancelled", reason="its session was cancelled")
        elif state.interrupted:
            targets = [call.thread_id for call in self.open()]
            stop = UserInterrupt(reason="its session was interrupted")
        else:
            return
        for thread_id in targets:
            if thread_id in self.stopped:
                continue
            key = f"{self.log.session_id}/stop/{state.seq}/{thread_id}"
            with contextlib.suppress(SessionNotFound):  # deleted meanwhile: nothing to stop
                await self.store.append_once(thread_id, [stop], key=key)
            self.stopped.add(thread_id)
            await self._poke(thread_id, "its session stopped")

    async def poke_parent(self) -> None:
        """A thread that ended its turn tells its parent, whose next run collects the reply."""
        origin = self.log.state.thread
        if origin is not None and self.log.state.status in TURN_OVER:
            await self._poke(origin.parent_session_id, "a thread replied")

    async def _poke(self, session_id: str, reason: str) -> None:
        body = _ENCODER.encode(Attention(session_id=session_id, reason=reason))
        try:
            await self.nc.publish(work_subject(session_id), body)
        except Exception as exc:
            # The store's input timer (a new thread, a delivered message) or the parent's
            # own timer wakes it anyway, a little later.
            logger.warning("session %s: poking %s failed: %r", self.log.session_id, session_id, exc)


def _own_name(log: LeasedLog) -> str:
    """How this thread is named to the threads it messages: the primary agent has no name."""
    origin = log.state.thread
    return origin.agent_name if origin is not None else ""


def _spent(log: LeasedLog) -> Budgets:
    """What the session has spent of each budget, as limits (to leave its threads the rest)."""
    state = log.state
    return Budgets(
        max_tokens=state.usage.total_tokens,
        max_cost_usd=state.cost_usd,
        max_turns=state.turns + sum(t.turns for t in state.threads.values()),
    )
