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

A run is made of named parts, each in its own module: the log it holds (`LeasedLog`: lease,
state, fenced appends, snapshots), what reaches it meanwhile (`Inbox`), its calls in flight
(`CallsInFlight`: dispatch, outcomes, hold, probe, lost calls), the sandbox they go to
(`SandboxSlot`), the model call (`ModelCaller`), the compaction before it (`Compactor`) and
the completion check (`CompletionCheck`).
This module only puts them together and performs what `decide` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final, Literal

import msgspec

from brain._calls import CallsInFlight, error_result
from brain._compactor import Compactor
from brain._inbox import Inbox
from brain._leased_log import LeasedLog
from brain._model_call import ModelCaller, tool_requests
from brain._sandbox_slot import SandboxSlot
from brain._thread_calls import ThreadCalls
from brain._workspace_harness import WorkspaceHarness
from brain.decide import (
    Action,
    AskApproval,
    CallModel,
    Compact,
    Complete,
    DetectLoop,
    Dispatch,
    ExpireApproval,
    GradeOutcome,
    InterruptOutcome,
    Judge,
    Pause,
    ReachBudget,
    Refuse,
    RequestTools,
    RunThreadCalls,
    Wait,
    decide,
    waits_on_user,
)
from brain.deps import BrainDeps
from brain.iterations import (
    CheckWorkspace,
    EndIteration,
    IterationAction,
    RestoreWorkspace,
    StartIteration,
)
from brain.judge import CompletionCheck
from schemas import (
    END_TURN,
    WAITING_FOR_APPROVAL,
    WAITING_FOR_CLIENT,
    ApprovalExpired,
    ApprovalRequested,
    BudgetReached,
    Event,
    IterationEnded,
    LoopDetected,
    OutcomeEvaluated,
    SessionStatus,
    Status,
    work_subject,
    working_on,
)
from session_store import Conflict, Fenced, Lease, LeaseHeld, SessionNotFound

logger = logging.getLogger("keel.brain")

# A session left waiting on tool calls is looked at again after this long (via its timer),
# in case no outcome ever wakes it (the hands died for good).
RECHECK_IN_FLIGHT_S: Final = 30.0
# A session waiting on its threads is looked at again after this long, in case the poke of a
# thread that replied was lost (its brain died between recording the reply and poking).
RECHECK_THREADS_S: Final = 10.0

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
    result = await _wake(session_id, deps)
    deps.metrics.runs.labels(result.stopped).inc()
    return result


async def _wake(session_id: str, deps: BrainDeps) -> WakeResult:
    settings = deps.settings
    woken = time.perf_counter()
    with working_on(session_id):  # every line logged meanwhile names the session
        try:  # 1. the lease
            lease = await deps.store.claim(session_id, settings.brain_id, settings.lease_s)
        except LeaseHeld as held:
            return WakeResult(session_id=session_id, stopped="busy", reason=str(held))
        except SessionNotFound:
            return WakeResult(session_id=session_id, stopped="gone")
        return await _SessionRun(deps, lease, woken).main()


class _SessionRun:
    """One run of a session, from its claimed lease until it lets go."""

    def __init__(self, deps: BrainDeps, lease: Lease, woken: float) -> None:
        settings = deps.settings
        self.deps: Final = deps
        self.woken: Final = woken
        self.metrics: Final = deps.metrics
        # Every model request of the run is timed, whoever makes it.
        providers = deps.metrics.timed(deps.providers)
        self.log: Final = LeasedLog(
            deps.store, deps.nc, settings, deps.crash, lease, deps.metrics, deps.observer
        )
        self.inbox: Final = Inbox()
        self.sandbox: Final = SandboxSlot(deps.hands, self.log)
        self.calls: Final = CallsInFlight(
            self.log,
            self.sandbox,
            self.inbox,
            deps.hands,
            deps.nc,
            settings,
            deps.crash,
            deps.clock,
        )
        self.model: Final = ModelCaller(
            self.log,
            self.sandbox,
            self.calls,
            providers,
            deps.nc,
            settings,
            deps.crash,
            deps.clock,
        )
        self.completion: Final = CompletionCheck(
            self.log,
            self.sandbox,
            self.inbox,
            deps.hands,
            providers,
            settings.model_retry,
            settings.grader_heartbeat_s,
        )
        self.compactor: Final = Compactor(self.log, providers, settings, deps.crash)
        self.workspace: Final = WorkspaceHarness(
            self.log, self.sandbox, self.inbox, deps.hands, deps.crash
        )
        self.threads: Final = ThreadCalls(self.log, deps.store, deps.nc, deps.crash, self.workspace)
        self.fenced: Final = asyncio.Event()

    # -- the lifecycle ----------------------------------------------------------------------

    async def main(self) -> WakeResult:
        session_id = self.log.session_id
        subscriptions = [
            await self.deps.hands.listen(session_id, self.inbox.heard),
            await self.deps.nc.subscribe(work_subject(session_id), cb=self.inbox.poked),
        ]
        keeper = asyncio.create_task(self.log.keep_lease(self.fenced))
        work = asyncio.create_task(self._drive())
        fenced = asyncio.create_task(self.fenced.wait())
        try:
            await asyncio.wait({work, fenced}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                result = await work
            if self.fenced.is_set():
                raise Fenced(session_id, self.log.lease.epoch, -1)
        except Fenced:
            logger.warning("session %s: fenced (another brain took it over)", session_id)
            return self._result("fenced")
        finally:
            for task in (work, keeper, fenced):
                task.cancel()
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
            self.sandbox.drop_unused()
        return await self._let_go(result)

    async def _drive(self) -> WakeResult:
        await self.log.load()  # 2. the newest snapshot, then the events after it
        self.sandbox.take_up()
        await self.calls.repair()  # 3. what a crash left
        await self.threads.repair()
        self.metrics.wakes.observe(time.perf_counter() - self.woken)
        while True:  # 4. decide -> perform -> append, until the session waits or ends
            try:
                await self.calls.record_outcomes()
                await self.threads.forward_stops()
                await self.threads.collect()
                if self.log.state.status == "cancelled":
                    self.calls.cancel_all()
                action = decide(self.log.state, self.deps.clock())
                if isinstance(action, Wait):
                    if self.calls.should_hold():
                        await self.calls.hold()
                        continue
                    return await self._settle(action)
                started = time.perf_counter()
                await self._perform(action)
                self.metrics.steps.labels(type(action).__name__).observe(
                    time.perf_counter() - started
                )
            except Conflict:
                # Someone appended (user input) since we read: catch up and decide again.
                # Nothing was sent for the refused events, so nothing is lost or repeated.
                await self.log.catch_up()

    async def _let_go(self, result: WakeResult) -> WakeResult:
        if not await self.log.release(result.wake_at):
            return self._result("fenced")
        await self.threads.poke_parent()
        # A thread may have replied after the run last looked, its poke finding us busy.
        again = await self.log.grew() or await self.threads.any_replied()
        return msgspec.structs.replace(result, again=again)

    def _stopped_status(self) -> Status:
        """Where an interrupt or a guard (budget, loop) leaves the session: paused until
        resumed, or idle until more input for a session that idles between turns."""
        return "idle" if self.log.spec.turn_end == "idle" else "paused"

    def _result(self, stopped: Stopped, wake_at: float | None = None) -> WakeResult:
        state = self.log.state
        return WakeResult(
            session_id=self.log.session_id,
            stopped=stopped,
            status=state.status,
            reason=state.status_reason,
            head_seq=state.seq,
            wake_at=wake_at,
        )

    async def _settle(self, wait: Wait) -> WakeResult:
        """Nothing to do until something arrives: say so in the log and set the timer."""
        state = self.log.state
        # An idle session that idles between turns stays idle: its turn is over.
        if state.status == "running" or (
            state.status == "idle" and self.log.spec.turn_end == "complete"
        ):
            if wait.reason in (WAITING_FOR_APPROVAL, WAITING_FOR_CLIENT):
                await self.threads.note_wait(waits_on_user(state, self.deps.clock()))
            await self.log.commit([SessionStatus(status="waiting", reason=wait.reason)])
        deadlines = [
            call.approval_expires_at
            for call in self.log.state.open_calls.values()
            if call.phase == "awaiting_approval" and call.approval_expires_at is not None
        ]
        if self.calls.in_flight():
            deadlines.append(self.deps.clock() + RECHECK_IN_FLIGHT_S)
        if self.threads.open():
            deadlines.append(self.deps.clock() + RECHECK_THREADS_S)
        if self.log.terminal():
            self.sandbox.end()
            return self._result("ended")
        return self._result("waiting", min(deadlines, default=None))

    # -- actions ------------------------------------------------------------------------------

    async def _perform(self, action: Action) -> None:  # noqa: PLR0915
        commit = self.log.commit
        prelude: list[Event] = []
        # Ending a turn, or an outcome the user interrupted, does not set the session running;
        # nor does giving the open calls of a cancelled or interrupted session their outcomes
        # (running again would clear the interrupt before its every call is refused).
        stopping = self.log.terminal() or (
            isinstance(action, Refuse) and self.log.state.interrupted
        )
        if (
            self.log.state.status != "running"
            and not stopping
            and not isinstance(action, Complete | InterruptOutcome)
        ):
            prelude.append(SessionStatus(status="running"))
        match action:
            case CallModel():
                if prelude:
                    await commit(prelude)
                await self.model.call()
            case Compact():
                if prelude:
                    await commit(prelude)
                await self.compactor.compact(action)
            case RequestTools(calls=calls):
                await commit([*prelude, *tool_requests(calls, self.log.state)])
                self.deps.crash.reach("after_tool_requested")
            case AskApproval(call_id=call_id, expires_at=expires_at):
                await commit([*prelude, ApprovalRequested(call_id=call_id, expires_at=expires_at)])
            case ExpireApproval(call_id=call_id):
                await commit([*prelude, ApprovalExpired(call_id=call_id)])
            case Refuse(call_id=call_id, reason=reason):
                await commit([*prelude, error_result(call_id, reason)])
            case Dispatch(call_ids=call_ids):
                if prelude:
                    await commit(prelude)
                await self.calls.dispatch(call_ids)
            case RunThreadCalls(call_ids=call_ids):
                if prelude:
                    await commit(prelude)
                await self.threads.run(call_ids)
            case ReachBudget(budget=budget, limit=limit, used=used):
                reason = f"the {budget} budget is reached: {used:g} of {limit:g}"
                await commit(
                    [
                        *prelude,
                        BudgetReached(budget=budget, limit=limit, used=used),
                        SessionStatus(status=self._stopped_status(), reason=reason),
                    ]
                )
            case DetectLoop(signature=signature, repeats=repeats):
                reason = f"the same tool call {repeats} times in a row ({signature})"
                await commit(
                    [
                        *prelude,
                        LoopDetected(signature=signature, repeats=repeats, reason=reason),
                        SessionStatus(
                            status=self._stopped_status(), reason=f"loop detected: {reason}"
                        ),
                    ]
                )
            case Pause(reason=reason):
                await commit([SessionStatus(status=self._stopped_status(), reason=reason)])
            case Judge():
                if prelude:
                    await commit(prelude)
                await self.completion.judge()
            case GradeOutcome():
                if prelude:
                    await commit(prelude)
                await self.completion.grade(action)
            case InterruptOutcome(outcome_id=outcome_id, iteration=iteration):
                await commit(
                    [
                        OutcomeEvaluated(
                            outcome_id=outcome_id,
                            iteration=iteration,
                            result="interrupted",
                            explanation="interrupted by the user",
                        )
                    ]
                )
            case StartIteration() | EndIteration() | CheckWorkspace() | RestoreWorkspace():
                await self._perform_iteration(action, prelude)
            case Complete(reason=reason):
                if self.log.spec.turn_end == "idle":
                    await commit([SessionStatus(status="idle", reason=END_TURN)])
                else:
                    await commit([SessionStatus(status="completed", reason=reason)])
            case Wait():
                raise AssertionError("waiting is not an action to perform")

    async def _perform_iteration(self, action: IterationAction, prelude: list[Event]) -> None:
        """Context resets' steps (`brain.iterations`): the sandbox's part is the harness's."""
        if prelude:
            await self.log.commit(prelude)
        match action:
            case StartIteration():
                await self.workspace.start(action)
            case EndIteration(iteration=iteration, reason=reason, detail=detail):
                ended = IterationEnded(iteration=iteration, reason=reason, detail=detail)
                await self.log.commit([ended])
                self.deps.crash.reach("after_iteration_ended")
            case CheckWorkspace():
                await self.workspace.check(action)
            case RestoreWorkspace():
                await self.workspace.restore(action)
