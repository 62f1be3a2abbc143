"""Drive the real `wake()` in one event loop, without processes or NATS.

What is real: `wake` and every part of a run, the reducer and `decide`, the scripted model
(`Providers`), and the store (SQLite in a temporary directory). What stands in:

- `InMemoryNats`: subscriptions by subject; a publish is recorded and delivered to each
  subscriber of its subject on its own task, as a NATS connection would.
- `FakeHands`: answers calls from a table (tool name and input -> outputs, in turn), or, given
  a workspace, runs them there with the real sandbox executor (unsandboxed); records every
  call it runs, and keeps the one rule of real hands that matters to a brain: a sandbox runs a
  call_id once and answers a repeat from its record. It keeps every outcome it published, as
  the JetStream stream does, for `collect`. It can be told to never answer a tool's next
  calls, to say nobody received them, and to lose a sandbox.
- `RaisingCrashpoints`: the brain's crash points raise `SimulatedCrash` instead of SIGKILL;
  the run ends right there, still holding its lease, and the next `wake` with the same
  brain id is the restarted brain (a lease's owner may claim it back at once).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from brain.crashpoints import POINTS
from brain.deps import BrainDeps, Message
from brain.hands_client import ProvisionFailed, SandboxGone
from brain.metrics import BrainMetrics
from brain.providers import Providers
from brain.settings import BrainSettings
from brain.wake import WakeResult, wake
from hands.executor import Executor
from schemas import (
    HARNESS_TOOLS,
    TOOLS,
    AgentSpec,
    CallAccepted,
    CallRequest,
    Crashpoints,
    Event,
    ProvisionReply,
    SandboxSpec,
    SessionCreated,
    ToolOutcome,
    UserMessage,
    work_subject,
)
from session_store import EventStore

BRAIN_ID = "brain-harness"


# -- crash points ---------------------------------------------------------------------------


class SimulatedCrash(Exception):
    """The brain "died" at a crash point: nothing after it in the run happens."""


class RaisingCrashpoints(Crashpoints):
    """`KEEL_CRASH_AT=point[:n]`, raising `SimulatedCrash` the n-th time instead of SIGKILL;
    `on_crash` is told first, at the very moment (what else dies with the brain)."""

    def __init__(self, spec: str | None = None, on_crash: Callable[[], None] | None = None) -> None:
        super().__init__(spec, POINTS)
        self.on_crash = on_crash

    def reach(self, point: str) -> None:
        if self.point != point:
            return
        self.remaining -= 1
        if self.remaining == 0:
            if self.on_crash is not None:
                self.on_crash()
            raise SimulatedCrash(point)


# -- NATS -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InMemoryMessage:
    subject: str
    data: bytes


class _InMemorySubscription:
    def __init__(
        self, nats: InMemoryNats, subject: str, cb: Callable[[Message], Awaitable[None]]
    ) -> None:
        self.nats = nats
        self.subject = subject
        self.cb = cb

    async def unsubscribe(self) -> None:
        self.nats.subscriptions.discard(self)


class InMemoryNats:
    def __init__(self) -> None:
        self.subscriptions: set[_InMemorySubscription] = set()
        self.published: list[InMemoryMessage] = []
        self._deliveries: set[asyncio.Future[None]] = set()

    @property
    def is_connected(self) -> bool:
        return True

    async def publish(self, subject: str, payload: bytes = b"") -> None:
        message = InMemoryMessage(subject, payload)
        self.published.append(message)
        for subscription in list(self.subscriptions):
            if subscription.subject == subject:
                delivery = asyncio.ensure_future(subscription.cb(message))
                self._deliveries.add(delivery)
                delivery.add_done_callback(self._deliveries.discard)

    async def subscribe(
        self, subject: str, *, cb: Callable[[Message], Awaitable[None]]
    ) -> _InMemorySubscription:
        subscription = _InMemorySubscription(self, subject, cb)
        self.subscriptions.add(subscription)
        return subscription


# -- hands ----------------------------------------------------------------------------------


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    output: str
    is_error: bool = False
    exit_code: int | None = 0


def _key(name: str, input: Mapping[str, object]) -> tuple[str, bytes]:
    return name, msgspec.json.encode(input, order="sorted")


class _Listener:
    def __init__(
        self, hands: FakeHands, session_id: str, on_outcome: Callable[[ToolOutcome], None]
    ) -> None:
        self.hands = hands
        self.session_id = session_id
        self.on_outcome = on_outcome

    async def unsubscribe(self) -> None:
        self.hands.listeners.discard(self)


class FakeHands:
    def __init__(
        self,
        default: Answer | None = None,
        call_s: float = 0.002,
        workspace: Path | None = None,
    ) -> None:
        # One workspace that every sandbox shares (as if each started from the checkpoint
        # of the one before), where calls really run; None: calls are answered from `answers`.
        self.executor = (
            None if workspace is None else Executor(workspace, workspace.parent / "outputs", None)
        )
        self.answers: dict[tuple[str, bytes], list[Answer]] = {}
        self.default = default or Answer(output="ok")
        # How long a call runs before its outcome is published.
        self.call_s = call_s
        # Every call it ran, in order (a repeat of a call_id a sandbox knows is not run).
        self.ran: list[CallRequest] = []
        self.provisioned: list[tuple[str, str | None]] = []  # (sandbox_id, checkpoint)
        self.destroyed: list[str] = []
        self.acked: list[str] = []
        self.listeners: set[_Listener] = set()
        # Live sandboxes: the call_ids each has received, and the outcomes it recorded.
        self.sandboxes: dict[str, dict[str, ToolOutcome | None]] = {}
        # Calls running (their outcomes are timed to come), by call_id.
        self._running: dict[str, tuple[ToolOutcome, asyncio.TimerHandle]] = {}
        # What the outcome stream keeps (JetStream): every outcome published, by call_id.
        self.stream: dict[str, ToolOutcome] = {}
        self._unanswered: Counter[str] = Counter()
        self._unreceived: Counter[str] = Counter()
        self._failed_provisions = 0
        self._ids = itertools.count(1)

    # -- what a test tells it -----------------------------------------------------------------

    def answer(
        self,
        name: str,
        input: Mapping[str, object],
        output: str,
        *,
        is_error: bool = False,
        exit_code: int | None = 0,
    ) -> None:
        """What a call of `name` with `input` answers; several answers are given in turn, the
        last one for good."""
        answer = Answer(output=output, is_error=is_error, exit_code=exit_code)
        self.answers.setdefault(_key(name, input), []).append(answer)

    def never_answer(self, name: str, times: int = 1) -> None:
        """The next `times` calls of `name` are received and run, and never end."""
        self._unanswered[name] += times

    def nobody_receives(self, name: str, times: int = 1) -> None:
        """The next `times` sends of a `name` call find no subscriber (so they do not run)."""
        self._unreceived[name] += times

    def fail_provisions(self, times: int) -> None:
        """The next `times` provisions are answered with a host's error (an executor that
        did not start in time)."""
        self._failed_provisions += times

    def lose_sandbox(self, sandbox_id: str) -> None:
        """The sandbox dies with its records: nobody serves it, nothing it ran is answered."""
        self.sandboxes.pop(sandbox_id, None)
        for call_id, (outcome, handle) in list(self._running.items()):
            if outcome.sandbox_id == sandbox_id:
                handle.cancel()
                del self._running[call_id]

    def outlive_brain(self, for_s: float = 0.05) -> None:
        """A brain died: the calls running now end `for_s` later, so the brain that takes
        over finds them still running, not finished."""
        loop = asyncio.get_running_loop()
        for call_id, (outcome, handle) in list(self._running.items()):
            handle.cancel()
            self._running[call_id] = (outcome, loop.call_later(for_s, self._finish, outcome))

    def runs_of(self, call_id: str) -> int:
        return sum(call.call_id == call_id for call in self.ran)

    # -- the Hands protocol -------------------------------------------------------------------

    async def provision(
        self,
        session_id: str,
        spec: SandboxSpec,
        checkpoint: str | None,
        *,
        previous_sandbox_id: str | None = None,
        lease_epoch: int = 0,
    ) -> ProvisionReply:
        if self._failed_provisions > 0:
            self._failed_provisions -= 1
            raise ProvisionFailed("provisioning failed: no executor listening")
        sandbox_id = f"sbx-{next(self._ids)}"
        self.sandboxes[sandbox_id] = {}
        self.provisioned.append((sandbox_id, checkpoint))
        return ProvisionReply(sandbox_id=sandbox_id, host_id="fake", checkpoint=checkpoint)

    async def send(self, sandbox_id: str, call: CallRequest) -> CallAccepted:
        records = self.sandboxes.get(sandbox_id)
        if records is None:
            raise SandboxGone(sandbox_id)
        if self._unreceived[call.name] > 0:
            self._unreceived[call.name] -= 1
            raise SandboxGone(sandbox_id)
        if call.call_id in records:
            recorded = records[call.call_id]
            if recorded is not None:
                self._publish(recorded)  # answered from the record, not run again
            return CallAccepted(call_id=call.call_id, duplicate=True)
        records[call.call_id] = None
        self.ran.append(call)
        if self._unanswered[call.name] > 0:
            self._unanswered[call.name] -= 1
        else:
            outcome = self._run(sandbox_id, call)
            ends = asyncio.get_running_loop().call_later(self.call_s, self._finish, outcome)
            self._running[call.call_id] = (outcome, ends)
        return CallAccepted(call_id=call.call_id)

    async def ack(self, sandbox_id: str, call_id: str) -> None:
        self.acked.append(call_id)

    async def cancel(self, sandbox_id: str, call_id: str) -> None:
        records = self.sandboxes.get(sandbox_id)
        if records is not None and call_id in records and records[call_id] is None:
            running = self._running.pop(call_id, None)
            if running is not None:
                running[1].cancel()
            cancelled = ToolOutcome(
                call_id=call_id,
                session_id=self._session_of(call_id),
                sandbox_id=sandbox_id,
                output="cancelled",
                is_error=True,
                outcome="error",
            )
            records[call_id] = cancelled
            self._publish(cancelled)

    async def destroy(self, sandbox_id: str) -> None:
        self.destroyed.append(sandbox_id)
        self.sandboxes.pop(sandbox_id, None)

    async def listen(self, session_id: str, on_outcome: Callable[[ToolOutcome], None]) -> _Listener:
        listener = _Listener(self, session_id, on_outcome)
        self.listeners.add(listener)
        return listener

    async def collect(
        self, session_id: str, call_ids: Iterable[str], since: float
    ) -> dict[str, ToolOutcome]:
        return {
            call_id: self.stream[call_id]
            for call_id in call_ids
            if call_id in self.stream and self.stream[call_id].session_id == session_id
        }

    # -- inside -------------------------------------------------------------------------------

    def _run(self, sandbox_id: str, call: CallRequest) -> ToolOutcome:
        answer = self._answer(call)
        tool = TOOLS.get(call.name) or HARNESS_TOOLS.get(call.name)
        mutating = tool is not None and tool.mutating
        return ToolOutcome(
            call_id=call.call_id,
            session_id=call.session_id,
            sandbox_id=sandbox_id,
            output=answer.output,
            is_error=answer.is_error,
            outcome="error" if answer.is_error else "ok",
            exit_code=answer.exit_code,
            # A mutating call leaves a workspace checkpoint, as the real hands do.
            checkpoint=f"ckpt-{call.call_id}" if mutating else None,
        )

    def _answer(self, call: CallRequest) -> Answer:
        if self.executor is not None:
            result = self.executor.run(
                call.call_id, {"tool": call.name, "input": call.input, "max_output_bytes": 10**6}
            )
            return Answer(
                output=result["output"], is_error=result["is_error"], exit_code=result["exit_code"]
            )
        answers = self.answers.get(_key(call.name, call.input), [self.default])
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def _finish(self, outcome: ToolOutcome) -> None:
        del self._running[outcome.call_id]
        self.sandboxes[outcome.sandbox_id][outcome.call_id] = outcome
        self._publish(outcome)

    def _publish(self, outcome: ToolOutcome) -> None:
        self.stream[outcome.call_id] = outcome
        for listener in list(self.listeners):
            if listener.session_id == outcome.session_id:
                listener.on_outcome(outcome)

    def _session_of(self, call_id: str) -> str:
        return next(call.session_id for call in self.ran if call.call_id == call_id)


# -- driving sessions -----------------------------------------------------------------------


class Harness:
    """A store, NATS and hands shared by every brain "process" a test starts."""

    def __init__(
        self, store: EventStore, workspace: Path | None = None, **settings: object
    ) -> None:
        self.store = store
        self.nats = InMemoryNats()
        self.hands = FakeHands(workspace=workspace)
        self.providers = Providers()
        # One brain's metrics, whichever of its "processes" (a restart after a crash) runs.
        self.metrics = BrainMetrics()
        values: dict[str, object] = {"brain_id": BRAIN_ID, "lease_s": 2.0}
        self.settings = BrainSettings(**(values | settings))  # type: ignore[arg-type]

    def deps(self, crash_at: str | None = None) -> BrainDeps:
        """What one brain process has; a new one after a crash is the restarted brain."""
        return BrainDeps(
            store=self.store,
            nc=self.nats,
            hands=self.hands,
            settings=self.settings,
            providers=self.providers.provider_for,
            crash=RaisingCrashpoints(crash_at, on_crash=self.hands.outlive_brain),
            metrics=self.metrics,
        )

    async def start_session(self, spec: AgentSpec, text: str = "Fix add().") -> str:
        """What the gateway does: create, append the user's message, say so on NATS."""
        info = await self.store.create_session("acme", SessionCreated(spec=spec, title="test"))
        await self.add_input(info.session_id, UserMessage(text=text))
        return info.session_id

    async def add_input(self, session_id: str, *events: Event) -> None:
        await self.store.append_input(session_id, list(events))
        await self.nats.publish(work_subject(session_id), b"input")

    async def drive(self, session_id: str, crash_at: str | None = None) -> WakeResult:
        """Wake the session until it waits or ends (again when input came while letting go),
        as a brain does with each work message."""
        deps = self.deps(crash_at)
        while True:
            result = await wake(session_id, deps)
            if not result.again:
                return result

    async def drive_until(
        self, session_id: str, statuses: set[str], timeout_s: float = 10.0
    ) -> WakeResult:
        """Drive again whenever the session waits with a timer, until it reaches `statuses`."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = await self.drive(session_id)
            if result.status in statuses:
                return result
            assert time.monotonic() < deadline, result
            if result.wake_at is not None:
                await asyncio.sleep(max(0.0, min(result.wake_at - time.time(), 0.1)))
