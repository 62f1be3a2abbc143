"""Tool calls in flight: sending them, recording their outcomes, and noticing when none
will come.

A call is never sent before the log says so (`tool.dispatched` is durable first). A call
that nobody received goes to a fresh sandbox (it provably did not run); a call that may have
been delivered never goes anywhere else, only to its own sandbox again, which answers a known
call_id from its record (or finishes running it) and runs it only if it never received it.
While calls run the run keeps the session (`hold_s`) and asks about them every
`probe_every_s`: a host that died mid-call publishes nothing, and only asking notices. A call
whose sandbox nobody serves for `lost_after_s` (while this brain's own NATS link is up) ends
as `unknown`, unless it is idempotent: then it simply runs again, in a fresh sandbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Final, Literal

from brain._background import spawn
from brain._inbox import Inbox
from brain._leased_log import LeasedLog
from brain._sandbox_slot import SandboxSlot
from brain.deps import Hands, Nats
from brain.hands_client import HandsUnavailable, ProvisionFailed, SandboxGone
from brain.settings import BrainSettings
from brain.state import ToolCall
from schemas import CallRequest, Crashpoints, Event, ToolDispatched, ToolOutcome, ToolResult

logger = logging.getLogger("keel.brain")

# While calls are in flight and their hands are unreachable, ask again this often.
RESEND_EVERY_S: Final = 0.5
# A call whose sandbox died is sent to a fresh sandbox at most this many times.
MAX_REDISPATCH: Final = 3

Sent = Literal["sent", "nobody", "unsure"]


class CallsInFlight:
    def __init__(
        self,
        log: LeasedLog,
        sandbox: SandboxSlot,
        inbox: Inbox,
        hands: Hands,
        nc: Nats,
        settings: BrainSettings,
        crash: Crashpoints,
        clock: Callable[[], float],
    ) -> None:
        self.log: Final = log
        self.sandbox: Final = sandbox
        self.inbox: Final = inbox
        self.hands: Final = hands
        self.nc: Final = nc
        self.settings: Final = settings
        self.crash: Final = crash
        self.clock: Final = clock
        # Dispatched calls whose sandbox nobody serves: when that was first seen.
        self.unreachable: dict[str, float] = {}
        self.hold_until = clock() + settings.hold_s
        self.next_probe = clock() + settings.probe_every_s
        # Calls in flight already told to stop (the session was cancelled).
        self.cancelled: set[str] = set()

    def in_flight(self) -> bool:
        return any(c.phase == "dispatched" for c in self.log.state.open_calls.values())

    # -- sending ------------------------------------------------------------------------------

    async def dispatch(self, call_ids: list[str], before: Sequence[Event] = ()) -> None:
        """Record `tool.dispatched`, then send: a call is never sent before the log says so.
        Calls nobody received go to a fresh sandbox (safe: they did not run). `before` are
        events not yet written that the first write carries (the response asking for them)."""
        pending = list(before)
        attempts = {c: self._open_attempt(c) for c in call_ids}
        for _ in range(MAX_REDISPATCH):
            try:
                sandbox_id = await self.sandbox.get()
            except (HandsUnavailable, ProvisionFailed) as exc:
                reason = f"no sandbox for the call: {exc}"
                await self.log.commit([*pending, *(error_result(c, reason) for c in call_ids)])
                return
            await self.log.commit(
                [
                    *pending,
                    *(
                        ToolDispatched(call_id=c, attempt=attempts[c] + 1, sandbox_id=sandbox_id)
                        for c in call_ids
                    ),
                ]
            )
            if pending:
                self.crash.reach("after_tool_requested")
                pending = []
            self.crash.reach("after_dispatched")
            calls = [self.log.state.open_calls[c] for c in call_ids]
            sent = await asyncio.gather(*(self._send(sandbox_id, call) for call in calls))
            self.crash.reach("after_send")
            for call, how in zip(calls, sent, strict=True):
                if how == "unsure":
                    # Maybe delivered: never sent anywhere else; probing asks again.
                    self.unreachable.setdefault(call.call_id, self.clock())
            call_ids = [c.call_id for c, how in zip(calls, sent, strict=True) if how == "nobody"]
            if not call_ids:
                return
            attempts = {c: self._open_attempt(c) for c in call_ids}
            self.sandbox.gone(sandbox_id)
        for call_id in call_ids:
            call = self.log.state.open_calls[call_id]
            self.inbox.heard(_failed(call, self.log.session_id, "no sandbox received the call"))

    def _open_attempt(self, call_id: str) -> int:
        call = self.log.state.open_calls.get(call_id)
        return call.attempt if call is not None else 0

    async def _send(self, sandbox_id: str, call: ToolCall) -> Sent:
        """Hand a call to its sandbox: `nobody` received it (so it did not run), or it was
        `sent`, or it is `unsure` (it may have been delivered)."""
        session_id = self.log.session_id
        request = CallRequest(
            call_id=call.call_id,
            session_id=session_id,
            name=call.name,
            input=call.input,
            attempt=call.attempt,
        )
        try:
            accepted = await self.hands.send(sandbox_id, request)
        except SandboxGone:
            return "nobody"
        except Exception as exc:
            logger.warning("session %s: sending %s: %r", session_id, call.call_id, exc)
            return "unsure"
        if accepted.error:
            self.inbox.heard(_failed(call, session_id, accepted.error))
        return "sent"

    def cancel_all(self) -> None:
        """The session was cancelled: tell every call in flight to stop (once); each still
        ends with its one outcome, an error."""
        for call in self.log.state.open_calls.values():
            if call.phase == "dispatched" and call.call_id not in self.cancelled:
                self.cancelled.add(call.call_id)
                spawn(self.hands.cancel(call.sandbox_id, call.call_id))

    # -- outcomes -----------------------------------------------------------------------------

    async def record_outcomes(self) -> None:
        """Record every outcome heard so far (in one append), after catching up if poked."""
        if self.inbox.take_arrivals():
            await self.log.catch_up()
        outcomes = self.inbox.outcomes
        results: list[Event] = []
        for call_id, outcome in list(outcomes.items()):
            call = self.log.state.open_calls.get(call_id)
            if call is None or call.phase != "dispatched":
                # Recorded already (a duplicate, or `unknown` before the hands came back).
                del outcomes[call_id]
                spawn(self.hands.ack(outcome.sandbox_id, call_id))
                continue
            if outcome.sandbox_lost:
                self.sandbox.gone(call.sandbox_id)
            results.append(_result_event(outcome))
        if not results:
            return
        # A deliberately broken brain, for the test that `keel drill` catches one.
        await self.log.commit(results * 2 if self.settings.broken == "result_twice" else results)
        self.crash.reach("after_tool_result")
        for event in results:
            assert isinstance(event, ToolResult)
            outcome = outcomes.pop(event.call_id)
            self.unreachable.pop(event.call_id, None)
            spawn(self.hands.ack(outcome.sandbox_id, event.call_id))

    async def repair(self) -> None:
        """Find the outcome of every call a crashed brain dispatched and did not record."""
        dispatched = [c for c in self.log.state.open_calls.values() if c.phase == "dispatched"]
        if not dispatched:
            return
        since = min(call.dispatched_at for call in dispatched)
        found = await self.hands.collect(
            self.log.session_id, [c.call_id for c in dispatched], since
        )
        self.inbox.outcomes.update(found)
        missing = [c for c in dispatched if c.call_id not in found]
        await asyncio.gather(*(self._resend(call) for call in missing))

    # -- holding the session while calls run --------------------------------------------------

    def should_hold(self) -> bool:
        return self.in_flight() and self.clock() < self.hold_until

    async def hold(self) -> None:
        """Wait for outcomes while keeping the session (the fast path for tool calls)."""
        now = self.clock()
        timeout = min(self.hold_until, self.next_probe) - now
        if self.unreachable:
            timeout = min(timeout, RESEND_EVERY_S)
        if await self.inbox.wait(timeout):
            return
        if self.clock() >= self.next_probe:
            await self._probe()
        if self.unreachable:
            await self._resend_unreachable()

    async def _probe(self) -> None:
        """Ask again about every call in flight: a live host says it has it (nothing runs
        twice), a dead one is noticed, and its calls end as `unknown` after a grace."""
        self.next_probe = self.clock() + self.settings.probe_every_s
        waiting = [
            call
            for call in self.log.state.open_calls.values()
            if call.phase == "dispatched"
            and call.call_id not in self.inbox.outcomes
            and call.call_id not in self.unreachable
        ]
        await asyncio.gather(*(self._resend(call) for call in waiting))

    async def _resend(self, call: ToolCall) -> None:
        """Ask the call's sandbox for it again: the hands answer a known call_id from their
        record (or finish running it), and run it only if they never received it."""
        if await self._send(call.sandbox_id, call) == "sent":
            self.unreachable.pop(call.call_id, None)
        else:
            self.unreachable.setdefault(call.call_id, self.clock())

    async def _resend_unreachable(self) -> None:
        now = self.clock()
        if not self.nc.is_connected:
            # This brain's own link to NATS is down (a NATS outage): it can tell nothing about
            # any sandbox, so no call is judged lost meanwhile; the grace starts again.
            for call_id in self.unreachable:
                self.unreachable[call_id] = now
            return
        lost: list[ToolCall] = []
        for call_id, since in list(self.unreachable.items()):
            call = self.log.state.open_calls.get(call_id)
            if call is None or call_id in self.inbox.outcomes:
                self.unreachable.pop(call_id, None)
            elif now - since >= self.settings.lost_after_s:
                self.unreachable.pop(call_id)
                lost.append(call)
            else:
                await self._resend(call)
        for call in lost:
            self.sandbox.gone(call.sandbox_id)
        # An idempotent call may simply run again, in a fresh sandbox; any other call's
        # effects are unknown, and the model is told so.
        again = [call.call_id for call in lost if call.idempotent]
        for call in lost:
            if not call.idempotent:
                self.inbox.heard(_lost(call, self.log.session_id))
        if again:
            await self.dispatch(again)


def error_result(call_id: str, reason: str) -> ToolResult:
    """A call's one outcome when it is not run: an error the model sees."""
    return ToolResult(call_id=call_id, output=reason, is_error=True, outcome="error")


def _result_event(outcome: ToolOutcome) -> ToolResult:
    return ToolResult(
        call_id=outcome.call_id,
        output=outcome.output,
        blob=outcome.blob,
        is_error=outcome.is_error,
        outcome=outcome.outcome,
        duration_ms=outcome.duration_ms,
        checkpoint=outcome.checkpoint,
        sandbox_lost=outcome.sandbox_lost,
    )


def _failed(call: ToolCall, session_id: str, reason: str) -> ToolOutcome:
    return ToolOutcome(
        call_id=call.call_id,
        session_id=session_id,
        sandbox_id=call.sandbox_id,
        output=reason,
        is_error=True,
        outcome="error",
    )


def _lost(call: ToolCall, session_id: str) -> ToolOutcome:
    return ToolOutcome(
        call_id=call.call_id,
        session_id=session_id,
        sandbox_id=call.sandbox_id,
        output=(
            f"the sandbox {call.sandbox_id} is gone and nobody kept this call's outcome; "
            "whether it ran, and what it did, is unknown"
        ),
        is_error=True,
        outcome="unknown",
        sandbox_lost=True,
    )
