"""`wake(session_id)`: take a session, rebuild it from its log, and drive it until it waits.

1. Claim the lease (the epoch rises, fencing every earlier owner).
2. Load the newest snapshot and fold the events after it.
3. Repair what a crash left: a dispatched call with no outcome is collected from JetStream or
   asked for again by call_id (the hands never run a call_id twice); a call whose sandbox
   nobody serves any more is recorded as `unknown`.
4. Loop `decide` -> perform -> fenced append, until the session waits or ends; renew the
   lease meanwhile; snapshot every N events. Release the lease.

Every append names the lease epoch, so a brain that lost its lease (paused past it) has every
append refused and stops. Every action's side effect happens after the event that announces
it is durable (`tool.dispatched` before the call is sent), so a crash at any point leaves a
log the next brain can finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Final, Literal

import msgspec

from brain.context import build_context
from brain.decide import (
    Action,
    AskApproval,
    CallModel,
    Complete,
    DetectLoop,
    Dispatch,
    ExpireApproval,
    Judge,
    Pause,
    ReachBudget,
    Refuse,
    RequestTools,
    Wait,
    decide,
)
from brain.deps import BrainDeps, Hands, Message
from brain.fold import fold, initial_state, replay
from brain.hands_client import HandsUnavailable, ProvisionFailed, SandboxGone
from brain.judge import judge_by_model, verdict_from_outcome
from brain.providers import (
    ModelRequest,
    ProviderError,
    ToolDefinition,
    complete_with_retries,
)
from brain.state import STATE_VERSION, ToolCall, decode_state, encode_state
from schemas import (
    TOOLS,
    AgentSpec,
    ApprovalExpired,
    ApprovalRequested,
    BudgetReached,
    CallRequest,
    Event,
    JudgeVerdict,
    LoopDetected,
    ModelDelta,
    Recorded,
    SessionStatus,
    Status,
    ToolDispatched,
    ToolOutcome,
    ToolRequested,
    ToolResult,
    ToolUseBlock,
    delta_subject,
    event_type,
    log_subject,
    new_id,
    work_subject,
)
from session_store import (
    Conflict,
    Fenced,
    Lease,
    LeaseHeld,
    SessionNotFound,
    StoreUnavailable,
)

log = logging.getLogger("keel.brain")

_ENCODER: Final = msgspec.json.Encoder()

# While calls are in flight and their hands are unreachable, ask again this often.
RESEND_EVERY_S: Final = 0.5
# A session left waiting on tool calls is looked at again after this long (via its timer),
# in case no outcome ever wakes it (the hands died for good).
RECHECK_IN_FLIGHT_S: Final = 30.0
# A call whose sandbox died is sent to a fresh sandbox at most this many times.
MAX_REDISPATCH: Final = 3

Stopped = Literal["waiting", "ended", "fenced", "busy", "gone"]


class WakeResult(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    stopped: Stopped
    status: Status | None = None
    reason: str = ""
    head_seq: int = 0
    # Something was appended while the brain let go (user input): wake the session again.
    again: bool = False
    wake_at: float | None = None


async def wake(session_id: str, deps: BrainDeps) -> WakeResult:
    settings = deps.settings
    try:
        lease = await deps.store.claim(session_id, settings.brain_id, settings.lease_s)
    except LeaseHeld as held:
        return WakeResult(session_id=session_id, stopped="busy", reason=str(held))
    except SessionNotFound:
        return WakeResult(session_id=session_id, stopped="gone")
    run = _SessionRun(deps, lease)
    return await run.main()


class _SessionRun:
    def __init__(self, deps: BrainDeps, lease: Lease) -> None:
        self.deps = deps
        self.store = deps.store
        self.settings = deps.settings
        self.lease = lease
        self.session_id = lease.session_id
        self.state = initial_state(lease.session_id)
        self.snapshot_seq = 0
        # Outcomes heard but not yet recorded; None in the inbox means "re-read the log".
        self.inbox: asyncio.Queue[ToolOutcome | None] = asyncio.Queue()
        self.outcomes: dict[str, ToolOutcome] = {}
        self.side_calls: dict[str, asyncio.Future[ToolOutcome]] = {}
        # Dispatched calls whose sandbox nobody serves: when that was first seen.
        self.unreachable: dict[str, float] = {}
        self.sandbox_id: str | None = None
        self.provisioning: asyncio.Task[str] | None = None
        self.hold_until = deps.clock() + self.settings.hold_s
        self.next_probe = deps.clock() + self.settings.probe_every_s
        self.fenced = asyncio.Event()
        # Calls in flight already told to stop (the session was cancelled).
        self.cancelled: set[str] = set()

    # -- the lifecycle ----------------------------------------------------------------------

    async def main(self) -> WakeResult:
        subscriptions = [
            await self.deps.hands.listen(self.session_id, self._heard),
            await self.deps.nc.subscribe(work_subject(self.session_id), cb=self._poked),
        ]
        keeper = asyncio.create_task(self._keep_lease())
        work = asyncio.create_task(self._drive())
        fenced = asyncio.create_task(self.fenced.wait())
        try:
            await asyncio.wait({work, fenced}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                result = await work
            if self.fenced.is_set():
                raise Fenced(self.session_id, self.lease.epoch, -1)
        except Fenced:
            log.warning("session %s: fenced (another brain took it over)", self.session_id)
            return self._result("fenced")
        finally:
            for task in (work, keeper, fenced):
                task.cancel()
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
            await self._drop_unused_sandbox()
        return await self._let_go(result)

    async def _drive(self) -> WakeResult:
        await self._load()
        await self._repair()
        while True:
            try:
                await self._absorb()
                if self.state.status == "cancelled":
                    self._cancel_in_flight()
                action = decide(self.state, self.deps.clock())
                if isinstance(action, Wait):
                    if self._should_hold():
                        await self._hold()
                        continue
                    return await self._settle(action)
                await self._perform(action)
            except Conflict:
                # Someone appended (user input) since we read: catch up and decide again.
                # Nothing was sent for the refused events, so nothing is lost or repeated.
                await self._catch_up()

    def _cancel_in_flight(self) -> None:
        for call in self.state.open_calls.values():
            if call.phase == "dispatched" and call.call_id not in self.cancelled:
                self.cancelled.add(call.call_id)
                _spawn(self.deps.hands.cancel(call.sandbox_id, call.call_id))

    async def _let_go(self, result: WakeResult) -> WakeResult:
        # With seen_seq, input that came while letting go leaves the session due at once:
        # even if this brain dies right here, the sweeper hands it on.
        released = await self.store.release(
            self.lease, wake_at=result.wake_at, seen_seq=self.state.seq
        )
        if not released:
            return self._result("fenced")
        head = await self.store.head(self.session_id)
        return msgspec.structs.replace(result, again=head > self.state.seq)

    async def _keep_lease(self) -> None:
        period = self.settings.lease_s / 3
        while True:
            await asyncio.sleep(period)
            try:
                self.lease = await self.store.renew(self.lease, self.settings.lease_s)
            except Fenced:
                self.fenced.set()
                return
            except Exception as exc:
                # A passing store fault: try again; if the lease lapses meanwhile, the next
                # renewal or append is refused and the run stops.
                # Quietly in an outage the store has announced itself.
                quiet = isinstance(exc, StoreUnavailable)
                log.log(
                    logging.DEBUG if quiet else logging.WARNING,
                    "session %s: renewing the lease failed: %s",
                    self.session_id,
                    exc,
                )

    # -- reading and writing the log ----------------------------------------------------------

    async def _load(self) -> None:
        snapshot = await self.store.latest_snapshot(self.session_id, STATE_VERSION)
        if snapshot is not None:
            try:
                self.state = decode_state(snapshot.state)
                self.snapshot_seq = snapshot.seq
            except msgspec.DecodeError:
                log.warning("session %s: unreadable snapshot; replaying", self.session_id)
        await self._catch_up()
        self.sandbox_id = self.state.sandbox_id

    async def _catch_up(self) -> None:
        replay(await self.store.read(self.session_id, after_seq=self.state.seq), self.state)

    async def _commit(self, events: Sequence[Event]) -> None:
        appended = await self.store.append(
            self.session_id, events, self.state.seq, self.lease.epoch
        )
        for event in events:
            recorded = Recorded(
                seq=self.state.seq + 1, at=appended.at, type=event_type(event), event=event
            )
            fold(self.state, recorded)
        _spawn(self.deps.nc.publish(log_subject(self.session_id), b"%d" % appended.head_seq))
        if self.state.seq - self.snapshot_seq >= self.settings.snapshot_every:
            await self._snapshot()

    async def _snapshot(self) -> None:
        saving = asyncio.ensure_future(
            self.store.save_snapshot(
                self.session_id, self.state.seq, encode_state(self.state), STATE_VERSION
            )
        )
        if self.deps.crash.armed("during_snapshot"):
            await asyncio.sleep(0.001)  # the write is under way
        self.deps.crash.reach("during_snapshot")
        await saving
        self.snapshot_seq = self.state.seq

    def _result(self, stopped: Stopped, wake_at: float | None = None) -> WakeResult:
        return WakeResult(
            session_id=self.session_id,
            stopped=stopped,
            status=self.state.status,
            reason=self.state.status_reason,
            head_seq=self.state.seq,
            wake_at=wake_at,
        )

    def _terminal(self) -> bool:
        return self.state.status in ("completed", "failed", "cancelled")

    @property
    def spec(self) -> AgentSpec:
        assert self.state.spec is not None
        return self.state.spec

    # -- what arrives while the session runs ---------------------------------------------------

    def _heard(self, outcome: ToolOutcome) -> None:
        waiter = self.side_calls.pop(outcome.call_id, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(outcome)
            return
        self.outcomes[outcome.call_id] = outcome
        self.inbox.put_nowait(outcome)

    async def _poked(self, _: Message) -> None:
        self.inbox.put_nowait(None)

    async def _absorb(self) -> None:
        """Record every outcome heard so far (in one append), after catching up if poked."""
        poked = False
        while not self.inbox.empty():
            poked = self.inbox.get_nowait() is None or poked
        if poked:
            await self._catch_up()
        results: list[Event] = []
        for call_id, outcome in list(self.outcomes.items()):
            call = self.state.open_calls.get(call_id)
            if call is None or call.phase != "dispatched":
                # Recorded already (a duplicate, or `unknown` before the hands came back).
                del self.outcomes[call_id]
                _spawn(self.deps.hands.ack(outcome.sandbox_id, call_id))
                continue
            if outcome.sandbox_lost and call.sandbox_id == self.sandbox_id:
                self.sandbox_id = None
            results.append(_result_event(outcome))
        if not results:
            return
        await self._commit(results)
        self.deps.crash.reach("after_tool_result")
        for event in results:
            assert isinstance(event, ToolResult)
            outcome = self.outcomes.pop(event.call_id)
            self.unreachable.pop(event.call_id, None)
            _spawn(self.deps.hands.ack(outcome.sandbox_id, event.call_id))

    def _should_hold(self) -> bool:
        in_flight = any(c.phase == "dispatched" for c in self.state.open_calls.values())
        return in_flight and self.deps.clock() < self.hold_until

    async def _hold(self) -> None:
        """Wait for outcomes while keeping the session (the fast path for tool calls)."""
        now = self.deps.clock()
        timeout = min(self.hold_until, self.next_probe) - now
        if self.unreachable:
            timeout = min(timeout, RESEND_EVERY_S)
        with contextlib.suppress(TimeoutError):
            item = await asyncio.wait_for(self.inbox.get(), max(timeout, 0.0))
            self.inbox.put_nowait(item)
            return
        if self.deps.clock() >= self.next_probe:
            await self._probe()
        if self.unreachable:
            await self._resend_unreachable()

    async def _probe(self) -> None:
        """Ask again about every call in flight: a live host says it has it (nothing runs
        twice), a dead one is noticed, and its calls end as `unknown` after a grace."""
        self.next_probe = self.deps.clock() + self.settings.probe_every_s
        waiting = [
            call
            for call in self.state.open_calls.values()
            if call.phase == "dispatched"
            and call.call_id not in self.outcomes
            and call.call_id not in self.unreachable
        ]
        await asyncio.gather(*(self._resend(call) for call in waiting))

    async def _settle(self, wait: Wait) -> WakeResult:
        """Nothing to do until something arrives: say so in the log and set the timer."""
        waiting: Status = "waiting"
        if self.state.status in ("idle", "running") and self.state.status != waiting:
            await self._commit([SessionStatus(status=waiting, reason=wait.reason)])
        deadlines = [
            call.approval_expires_at
            for call in self.state.open_calls.values()
            if call.phase == "awaiting_approval" and call.approval_expires_at is not None
        ]
        if any(c.phase == "dispatched" for c in self.state.open_calls.values()):
            deadlines.append(self.deps.clock() + RECHECK_IN_FLIGHT_S)
        if self._terminal():
            if self.sandbox_id is not None:
                # The session is over (completed, failed or cancelled): so is its sandbox.
                _spawn(self.deps.hands.destroy(self.sandbox_id))
            return self._result("ended")
        return self._result("waiting", min(deadlines, default=None))

    # -- repair -------------------------------------------------------------------------------

    async def _repair(self) -> None:
        """Find the outcome of every call a crashed brain dispatched and did not record."""
        dispatched = [c for c in self.state.open_calls.values() if c.phase == "dispatched"]
        if not dispatched:
            return
        since = min(call.dispatched_at for call in dispatched)
        found = await self.deps.hands.collect(
            self.session_id, [c.call_id for c in dispatched], since
        )
        self.outcomes.update(found)
        missing = [c for c in dispatched if c.call_id not in found]
        await asyncio.gather(*(self._resend(call) for call in missing))

    async def _resend(self, call: ToolCall) -> None:
        """Ask the call's sandbox for it again: the hands answer a known call_id from their
        record (or finish running it), and run it only if they never received it."""
        if await self._send(call.sandbox_id, call) == "sent":
            self.unreachable.pop(call.call_id, None)
        else:
            self.unreachable.setdefault(call.call_id, self.deps.clock())

    async def _resend_unreachable(self) -> None:
        now = self.deps.clock()
        if not self.deps.nc.is_connected:
            # This brain's own link to NATS is down (a NATS outage): it can tell nothing about
            # any sandbox, so no call is judged lost meanwhile; the grace starts again.
            for call_id in self.unreachable:
                self.unreachable[call_id] = now
            return
        lost: list[ToolCall] = []
        for call_id, since in list(self.unreachable.items()):
            call = self.state.open_calls.get(call_id)
            if call is None or call_id in self.outcomes:
                self.unreachable.pop(call_id, None)
            elif now - since >= self.settings.lost_after_s:
                self.unreachable.pop(call_id)
                lost.append(call)
            else:
                await self._resend(call)
        if any(call.sandbox_id == self.sandbox_id for call in lost):
            self.sandbox_id = None
        # An idempotent call may simply run again, in a fresh sandbox; any other call's
        # effects are unknown, and the model is told so.
        again = [call.call_id for call in lost if call.idempotent]
        for call in lost:
            if not call.idempotent:
                self._heard(_lost(call, self.session_id))
        if again:
            await self._dispatch(again)

    # -- actions ------------------------------------------------------------------------------

    async def _perform(self, action: Action) -> None:
        prelude: list[Event] = []
        if self.state.status != "running" and not isinstance(action, Complete):
            prelude.append(SessionStatus(status="running"))
        match action:
            case CallModel():
                if prelude:
                    await self._commit(prelude)
                await self._call_model()
            case RequestTools(calls=calls):
                await self._commit([*prelude, *self._requests(calls)])
                self.deps.crash.reach("after_tool_requested")
            case AskApproval(call_id=call_id, expires_at=expires_at):
                await self._commit(
                    [*prelude, ApprovalRequested(call_id=call_id, expires_at=expires_at)]
                )
            case ExpireApproval(call_id=call_id):
                await self._commit([*prelude, ApprovalExpired(call_id=call_id)])
            case Refuse(call_id=call_id, reason=reason):
                await self._commit([*prelude, _error_result(call_id, reason)])
            case Dispatch(call_ids=call_ids):
                if prelude:
                    await self._commit(prelude)
                await self._dispatch(call_ids)
            case ReachBudget(budget=budget, limit=limit, used=used):
                reason = f"the {budget} budget is reached: {used:g} of {limit:g}"
                await self._commit(
                    [
                        *prelude,
                        BudgetReached(budget=budget, limit=limit, used=used),
                        SessionStatus(status="paused", reason=reason),
                    ]
                )
            case DetectLoop(signature=signature, repeats=repeats):
                reason = f"the same tool call {repeats} times in a row ({signature})"
                await self._commit(
                    [
                        *prelude,
                        LoopDetected(signature=signature, repeats=repeats, reason=reason),
                        SessionStatus(status="paused", reason=f"loop detected: {reason}"),
                    ]
                )
            case Pause(reason=reason):
                await self._commit([SessionStatus(status="paused", reason=reason)])
            case Judge():
                if prelude:
                    await self._commit(prelude)
                await self._judge()
            case Complete(reason=reason):
                await self._commit([SessionStatus(status="completed", reason=reason)])
            case Wait():
                raise AssertionError("waiting is not an action to perform")

    async def _call_model(self) -> None:
        self.deps.crash.reach("before_model_call")
        self._start_provisioning()
        if self.provisioning is not None and not self.settings.lazy_hands:
            with contextlib.suppress(HandsUnavailable, ProvisionFailed):
                await self._sandbox()
        spec = self.spec
        turn = self.state.turns
        # What the model is shown: input recorded after this is not answered by its reply.
        shown = self.state.seq
        request = ModelRequest(
            session_id=self.session_id,
            model=spec.model,
            context=build_context(self.state),
            tools=tool_definitions(spec.tools),
            turn=turn,
        )
        try:
            provider = self.deps.providers(spec.model)
            response = await complete_with_retries(
                provider, request, self._delta_sink(turn), self.settings.model_retry
            )
        except ProviderError as exc:
            await self._commit([SessionStatus(status="failed", reason=f"the model failed: {exc}")])
            return
        self.deps.crash.reach("after_model_response")
        response = msgspec.structs.replace(response, context_seq=shown)
        # The calls it asks for are recorded with it (and, when they can go at once, their
        # dispatch too): one durable write per tool step.
        uses = [block for block in response.content if isinstance(block, ToolUseBlock)]
        events = [response, *self._requests(uses)]
        while True:
            try:
                if uses and self._dispatches_at_once(events, uses):
                    await self._dispatch([use.call_id for use in uses], before=events)
                    return
                await self._commit(events)
                break
            except Conflict:
                if self.state.turns > turn:
                    raise  # the response is in the log; a later write was refused
                # Input came while the model was thinking. The response is kept (it is paid
                # for, and `context_seq` says what it saw: the fold puts that input after
                # it, to be answered next), unless the user paused, cancelled or
                # interrupted meanwhile: then it is dropped and decide starts afresh.
                await self._catch_up()
                if self.state.status != "running" or self.state.interrupted:
                    return
        if uses:
            self.deps.crash.reach("after_tool_requested")

    def _requests(self, uses: Sequence[ToolUseBlock]) -> list[Event]:
        """`tool.requested` for each tool_use; a tool the session lacks gets its one outcome,
        an error, right away."""
        events: list[Event] = []
        for block in uses:
            tool = TOOLS.get(block.name)
            events.append(
                ToolRequested(
                    call_id=block.call_id,
                    name=block.name,
                    input=block.input,
                    idempotent=tool is not None and tool.idempotent,
                )
            )
            if tool is None or block.name not in self.spec.tools:
                available = ", ".join(self.spec.tools) or "none"
                reason = f"unknown tool {block.name!r}; available: {available}"
                events.append(_error_result(block.call_id, reason))
        return events

    def _delta_sink(self, turn: int) -> Callable[[str], None]:
        subject = delta_subject(self.session_id)

        def publish(text: str) -> None:
            delta = ModelDelta(session_id=self.session_id, turn=turn, text=text)
            _spawn(self.deps.nc.publish(subject, _ENCODER.encode(delta)))

        return publish

    async def _dispatch(self, call_ids: list[str], before: Sequence[Event] = ()) -> None:
        """Record `tool.dispatched`, then send: a call is never sent before the log says so.
        Calls nobody received go to a fresh sandbox (safe: they did not run). `before` are
        events not yet written that the first write carries (the response asking for them)."""
        pending = list(before)
        attempts = {c: self._open_attempt(c) for c in call_ids}
        for _ in range(MAX_REDISPATCH):
            try:
                sandbox_id = await self._sandbox()
            except (HandsUnavailable, ProvisionFailed) as exc:
                reason = f"no sandbox for the call: {exc}"
                await self._commit([*pending, *(_error_result(c, reason) for c in call_ids)])
                return
            await self._commit(
                [
                    *pending,
                    *(
                        ToolDispatched(call_id=c, attempt=attempts[c] + 1, sandbox_id=sandbox_id)
                        for c in call_ids
                    ),
                ]
            )
            if pending:
                self.deps.crash.reach("after_tool_requested")
                pending = []
            self.deps.crash.reach("after_dispatched")
            calls = [self.state.open_calls[c] for c in call_ids]
            sent = await asyncio.gather(*(self._send(sandbox_id, call) for call in calls))
            self.deps.crash.reach("after_send")
            for call, how in zip(calls, sent, strict=True):
                if how == "unsure":
                    # Maybe delivered: never sent anywhere else; probing asks again.
                    self.unreachable.setdefault(call.call_id, self.deps.clock())
            call_ids = [c.call_id for c, how in zip(calls, sent, strict=True) if how == "nobody"]
            if not call_ids:
                return
            attempts = {c: self._open_attempt(c) for c in call_ids}
            self.sandbox_id = None
        for call_id in call_ids:
            call = self.state.open_calls[call_id]
            self._heard(_failed(call, self.session_id, "no sandbox received the call"))

    def _open_attempt(self, call_id: str) -> int:
        call = self.state.open_calls.get(call_id)
        return call.attempt if call is not None else 0

    def _dispatches_at_once(self, events: Sequence[Event], uses: Sequence[ToolUseBlock]) -> bool:
        """Would `decide`, once `events` are in the log, dispatch exactly these calls? Then
        they are written together: one durable write per tool step instead of two. Asked of
        a copy of the state, so it is decide itself that answers."""
        if self.sandbox_id is None or self.provisioning is not None:
            return False
        # A shallow copy, in O(1): folding a response and its requests only appends a new
        # message and adds open calls and signatures, all to containers copied here; the
        # conversation before them matters to decide only through its last message.
        ahead = msgspec.structs.replace(
            self.state,
            # The last message is copied too: folding a response may move input out of it.
            messages=[
                msgspec.structs.replace(m, content=list(m.content), block_seqs=list(m.block_seqs))
                for m in self.state.messages[-1:]
            ],
            open_calls=dict(self.state.open_calls),
            recent_calls=list(self.state.recent_calls),
        )
        now = self.deps.clock()
        for offset, event in enumerate(events, start=1):
            fold(ahead, Recorded(seq=ahead.seq + 1, at=now, type=event_type(event), event=event))
            assert ahead.seq == self.state.seq + offset
        return decide(ahead, now) == Dispatch(call_ids=[u.call_id for u in uses])

    async def _send(self, sandbox_id: str, call: ToolCall) -> Literal["sent", "nobody", "unsure"]:
        """Hand a call to its sandbox: `nobody` received it (so it did not run), or it was
        `sent`, or it is `unsure` (it may have been delivered)."""
        request = CallRequest(
            call_id=call.call_id,
            session_id=self.session_id,
            name=call.name,
            input=call.input,
            attempt=call.attempt,
        )
        try:
            accepted = await self.deps.hands.send(sandbox_id, request)
        except SandboxGone:
            return "nobody"
        except Exception as exc:
            log.warning("session %s: sending %s: %r", self.session_id, call.call_id, exc)
            return "unsure"
        if accepted.error:
            self._heard(_failed(call, self.session_id, accepted.error))
        return "sent"

    # -- the sandbox ----------------------------------------------------------------------------

    def _start_provisioning(self) -> None:
        """Lazy hands: the sandbox starts while the model thinks, and is awaited only when a
        tool call needs it."""
        if self.sandbox_id is None and self.provisioning is None and self.spec.tools:
            self.provisioning = asyncio.create_task(self._provision())

    async def _provision(self) -> str:
        reply = await self.deps.hands.provision(
            self.session_id,
            self.spec.sandbox,
            self.state.checkpoint,
            previous_sandbox_id=self.state.sandbox_id,
            lease_epoch=self.lease.epoch,
        )
        return reply.sandbox_id

    async def _sandbox(self) -> str:
        if self.sandbox_id is not None:
            return self.sandbox_id
        self._start_provisioning()
        assert self.provisioning is not None
        try:
            self.sandbox_id = await self.provisioning
        finally:
            self.provisioning = None
        return self.sandbox_id

    async def _drop_unused_sandbox(self) -> None:
        """A sandbox provisioned for calls that never came is named by no event: remove it
        (once it is ready, in the background), or nothing ever would."""
        if self.provisioning is not None:
            _spawn(_destroy_when_ready(self.deps.hands, self.provisioning))
        elif self.sandbox_id is not None and self.sandbox_id != self.state.sandbox_id:
            _spawn(self.deps.hands.destroy(self.sandbox_id))

    # -- the completion check -------------------------------------------------------------------

    async def _judge(self) -> None:
        condition = self.spec.completion
        if condition.kind == "command":
            verdict = await self._judge_by_command(condition.command or "true")
        else:
            try:
                verdict = await judge_by_model(
                    self.deps.providers, self.state, self.settings.model_retry
                )
            except ProviderError as exc:
                await self._commit(
                    [SessionStatus(status="failed", reason=f"the judge model failed: {exc}")]
                )
                return
        await self._commit([verdict])

    async def _judge_by_command(self, command: str) -> JudgeVerdict:
        try:
            sandbox_id = await self._sandbox()
        except (HandsUnavailable, ProvisionFailed) as exc:
            return JudgeVerdict(passed=False, judge="command", detail=f"no sandbox: {exc}")
        call_id = new_id("judge")
        waiter: asyncio.Future[ToolOutcome] = asyncio.get_running_loop().create_future()
        self.side_calls[call_id] = waiter
        request = CallRequest(
            call_id=call_id, session_id=self.session_id, name="bash", input={"command": command}
        )
        try:
            await self.deps.hands.send(sandbox_id, request)
            outcome = await asyncio.wait_for(waiter, self.spec.sandbox.call_timeout_s + 30)
        except (SandboxGone, TimeoutError) as exc:
            self.sandbox_id = None if isinstance(exc, SandboxGone) else self.sandbox_id
            return JudgeVerdict(
                passed=False, judge="command", detail=f"the check could not run: {exc!r}"
            )
        finally:
            self.side_calls.pop(call_id, None)
        _spawn(self.deps.hands.ack(sandbox_id, call_id))
        return verdict_from_outcome(command, outcome)


def tool_definitions(names: Sequence[str]) -> list[ToolDefinition]:
    return list(_tool_definitions(tuple(names)))


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


def _error_result(call_id: str, reason: str) -> ToolResult:
    return ToolResult(call_id=call_id, output=reason, is_error=True, outcome="error")


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


async def _destroy_when_ready(hands: Hands, provisioning: asyncio.Task[str]) -> None:
    await hands.destroy(await provisioning)


# Best-effort messages (acks, destroys, deltas) outlive the run that sent them; the loop
# keeps only weak references to tasks, so they are held here until done.
_BACKGROUND: Final[set[asyncio.Future[None]]] = set()


def _spawn(coroutine: Coroutine[object, object, None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    task.add_done_callback(_ignore_failure)


def _ignore_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("best-effort message failed: %s", task.exception())
