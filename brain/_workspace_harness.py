"""What context resets and the test ratchet do in the sandbox: read the handoff and protected
files, and put changed protected files back.

These are the harness's own calls (`schemas.HARNESS_TOOLS`), sent to the session's sandbox
like the completion check's command, and never a model's. Their results are recorded before
anything uses them (`iteration.started`, `workspace.checked`, `workspace.restored`), and both
are idempotent: a read answers the same, a restore writes the recorded bytes. So a brain that
dies after one ran and before its result was recorded leaves nothing undone: the next brain
runs it again, and the log holds it once. A read or restore that cannot run pauses the session
with the reason (resuming tries again): an iteration never starts from a handoff it did not
read, and no turn's work is graded with its protected files unchecked.
"""

from __future__ import annotations

import asyncio
from typing import Final

import msgspec

from brain._background import spawn
from brain._inbox import Inbox
from brain._leased_log import LeasedLog
from brain._sandbox_slot import SandboxSlot
from brain.deps import Hands
from brain.hands_client import HandsUnavailable, ProvisionFailed, SandboxGone
from brain.iterations import CheckWorkspace, RestoreWorkspace, StartIteration, fitted
from brain.ratchet import Source, changes_found, ratchet_on, restorable
from schemas import (
    CallRequest,
    ContextResets,
    Crashpoints,
    IterationStarted,
    RestoredFile,
    RestoreFilesInput,
    SessionStatus,
    Status,
    ToolOutcome,
    WorkspaceChecked,
    WorkspaceFiles,
    WorkspaceFilesInput,
    WorkspaceRestored,
    new_id,
)

# A call is sent this many times (to a fresh sandbox, started from the last checkpoint, when
# its sandbox is gone) before the session pauses.
ATTEMPTS: Final = 2
_FILES: Final = msgspec.json.Decoder(WorkspaceFiles)


class HarnessCallFailed(Exception):
    """The harness's call could not run, or failed: why."""


class WorkspaceHarness:
    def __init__(
        self,
        log: LeasedLog,
        sandbox: SandboxSlot,
        inbox: Inbox,
        hands: Hands,
        crash: Crashpoints,
    ) -> None:
        self.log: Final = log
        self.sandbox: Final = sandbox
        self.inbox: Final = inbox
        self.hands: Final = hands
        self.crash: Final = crash

    @property
    def resets(self) -> ContextResets:
        resets = self.log.spec.context_resets
        assert resets is not None
        return resets

    async def start(self, action: StartIteration) -> None:
        """Read the handoff files (and the protected files' digests, with the bytes of
        versions not recorded yet), then record the iteration's start. Without keel's
        sandbox there is nothing to read: the iteration starts from the goal alone."""
        state = self.log.state
        if not self.log.spec.has_sandbox():
            await self.log.commit([IterationStarted(iteration=action.iteration)])
            self.crash.reach("after_iteration_started")
            return
        ratchet = ratchet_on(state)
        request = WorkspaceFilesInput(
            read=self.resets.handoff_files,
            protected=self.resets.protected_tests if ratchet else [],
            known=sorted(state.iterations.content_seqs),
            # A fresh worker inherits no process of the last one.
            stop_processes=ratchet,
        )
        try:
            files = await self._read(request)
        except HarnessCallFailed as exc:
            await self._pause(f"the handoff files could not be read: {exc}")
            return
        self.crash.reach("after_workspace_read")
        started = fitted(
            IterationStarted(
                iteration=action.iteration, handoff=files.read, protected=files.protected
            )
        )
        if started is None:
            count = len(files.protected)
            await self._pause(
                f"{count} protected test files are too many to record in the log: "
                "narrow context_resets.protected_tests"
            )
            return
        await self.log.commit([started])
        self.crash.reach("after_iteration_started")

    async def check(self, action: CheckWorkspace) -> None:
        """Record which protected files changed since the iteration started."""
        # Nothing its calls left running can change a file once it is checked.
        request = WorkspaceFilesInput(
            protected=self.resets.protected_tests, content_bytes=0, stop_processes=True
        )
        try:
            files = await self._read(request)
        except HarnessCallFailed as exc:
            await self._pause(f"the protected test files could not be checked: {exc}")
            return
        changes = changes_found(self.log.state.iterations.protected, files)
        await self.log.commit([WorkspaceChecked(iteration=action.iteration, changes=changes)])
        self.crash.reach("after_workspace_checked")

    async def restore(self, action: RestoreWorkspace) -> None:
        """Put the changed protected files back (their bytes read from the log), then record
        it, with the checkpoint after."""
        sources, unrestorable = restorable(self.log.state.iterations)
        files = await self._recorded_bytes(sources)
        unrestorable += [s.path for s in sources if s.path not in {f.path for f in files}]
        checkpoint = None
        if files:
            try:
                outcome = await self.call("restore_files", RestoreFilesInput(files=files))
            except HarnessCallFailed as exc:
                await self._pause(f"the protected test files could not be put back: {exc}")
                return
            checkpoint = outcome.checkpoint
        self.crash.reach("after_restore")
        restored = WorkspaceRestored(
            iteration=action.iteration,
            paths=[file.path for file in files],
            unrestorable=unrestorable,
            checkpoint=checkpoint,
        )
        await self.log.commit([restored])

    async def _recorded_bytes(self, sources: list[Source]) -> list[RestoredFile]:
        """The bytes of each source, from the `iteration.started` that recorded them."""
        recorded: dict[str, bytes] = {}
        for seq in sorted({source.seq for source in sources}):
            for record in await self.log.store.read(self.log.session_id, seq - 1, 1):
                if isinstance(record.event, IterationStarted):
                    recorded |= {
                        f.digest: f.content for f in record.event.protected if f.content is not None
                    }
        return [
            RestoredFile(path=source.path, content=recorded[source.digest])
            for source in sources
            if source.digest in recorded
        ]

    async def _read(self, request: WorkspaceFilesInput) -> WorkspaceFiles:
        outcome = await self.call("workspace_files", request)
        try:
            return _FILES.decode(outcome.output)
        except msgspec.DecodeError as exc:
            raise HarnessCallFailed(f"the sandbox's answer is not the workspace: {exc}") from exc

    async def call(self, name: str, arguments: msgspec.Struct) -> ToolOutcome:
        """Run a harness call in the session's sandbox (a fresh one if it is gone) and wait
        for its outcome; a failed call raises `HarnessCallFailed`. Also how a thread's work
        is merged into this session's workspace (`brain._thread_calls`)."""
        for _ in range(ATTEMPTS):
            try:
                sandbox_id = await self.sandbox.get()
            except (HandsUnavailable, ProvisionFailed) as exc:
                raise HarnessCallFailed(f"no sandbox: {exc}") from exc
            try:
                outcome = await self._send(sandbox_id, name, arguments)
            except SandboxGone:
                self.sandbox.gone(sandbox_id)
                continue
            except TimeoutError:
                continue  # NATS or the sandbox slow: the call is idempotent, ask again
            if outcome.sandbox_lost:
                self.sandbox.gone(sandbox_id)
                continue
            if outcome.is_error:
                raise HarnessCallFailed(outcome.output)
            return outcome
        raise HarnessCallFailed(f"no outcome after {ATTEMPTS} attempts")

    async def _send(self, sandbox_id: str, name: str, arguments: msgspec.Struct) -> ToolOutcome:
        call_id = new_id("harness")
        waiter = self.inbox.expect(call_id)
        request = CallRequest(
            call_id=call_id,
            session_id=self.log.session_id,
            name=name,
            input=msgspec.to_builtins(arguments),
        )
        try:
            accepted = await self.hands.send(sandbox_id, request)
            if accepted.error:
                raise HarnessCallFailed(accepted.error)
            timeout = self.log.spec.sandbox.call_timeout_s + 30
            outcome = await asyncio.wait_for(waiter, timeout)
        finally:
            self.inbox.stop_expecting(call_id)
        spawn(self.hands.ack(sandbox_id, call_id))
        return outcome

    async def _pause(self, reason: str) -> None:
        status: Status = "idle" if self.log.spec.turn_end == "idle" else "paused"
        await self.log.commit([SessionStatus(status=status, reason=reason)])
