"""Running calls in a sandbox, each call_id at most once.

A sandbox's `call`, `cancel` and `ack` subjects come here. The host's records of the
sandbox's calls (`_records.py`) alone decide whether a call_id may be sent to the executor:
a non-idempotent call is recorded before the executor can see it, and a recorded call_id is
never sent again. A duplicate is answered from its recorded outcome (published again;
JetStream drops the repeated Nats-Msg-Id) or, if an earlier incarnation of the host sent it,
collected from the executor. An outcome is finished with its blob and checkpoint (kept
however long NATS is away), recorded, and published until JetStream has it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from typing import Any

import msgspec
from nats.aio.msg import Msg

from hands._client import ExecutorCall, ExecutorResult, SandboxLost
from hands._metrics import HandsMetrics
from hands._nats import respond
from hands._outcomes import OutcomePublisher
from hands._sandbox import Sandbox
from hands._settings import HandsSettings
from hands._storage import SandboxStorage
from schemas import (
    HARNESS_OUTPUT_BYTES,
    HARNESS_TOOLS,
    TOOLS,
    BackgroundTasks,
    CallAccepted,
    CallRequest,
    CancelRequest,
    OutcomeAck,
    ToolOutcome,
    ToolSpec,
    is_valid_id,
    working_on,
)

log = logging.getLogger("keel.hands")


class CallRunner:
    def __init__(
        self,
        settings: HandsSettings,
        storage: SandboxStorage,
        outcomes: OutcomePublisher,
        tasks: BackgroundTasks,
        metrics: HandsMetrics,
    ) -> None:
        self._settings = settings
        self._storage = storage
        self._outcomes = outcomes
        self._tasks = tasks
        self._metrics = metrics

    def resume(self, sandbox: Sandbox) -> None:
        """Finish what a dead host left in an adopted sandbox, from the host's records.

        Each call it sent without recording an outcome is collected from the executor, never
        sent again (one the executor never received is refused there and ends `unknown`).
        Each recorded outcome not acknowledged is published again, since that host may have
        died before publishing it; JetStream drops a repeated Nats-Msg-Id and a brain ignores
        an outcome it has already recorded.
        """
        for request in sandbox.records.unfinished():
            if request.call_id not in sandbox.running:
                self._start(sandbox, request, collect=True)
        for outcome in sandbox.records.unacknowledged():
            self._tasks.spawn(self._outcomes.publish(outcome))

    async def on_call(self, sandbox: Sandbox, msg: Msg) -> None:
        try:
            request = msgspec.json.decode(msg.data, type=CallRequest)
        except msgspec.DecodeError as exc:
            await respond(msg, CallAccepted(call_id="", error=f"malformed call: {exc}"))
            return
        call_id = request.call_id
        if not (is_valid_id(call_id) and is_valid_id(request.session_id)):
            await respond(msg, CallAccepted(call_id=call_id, error="invalid call or session id"))
            return
        duplicate = call_id in sandbox.running or sandbox.records.started(call_id)
        await respond(msg, CallAccepted(call_id=call_id, duplicate=duplicate))
        if call_id in sandbox.running:
            return  # its outcome is published when it ends
        if not sandbox.records.started(call_id):
            self._start(sandbox, request)  # new, or idempotent: runs (again)
        elif (outcome := sandbox.records.outcome(call_id)) is not None:
            # Asked again (a brain probing): answered from the record, never run again.
            self._tasks.spawn(self._outcomes.publish(outcome))
        else:
            # Sent by an incarnation of this host that died, and not collected yet.
            self._start(sandbox, sandbox.records.request(call_id) or request, collect=True)

    async def on_cancel(self, sandbox: Sandbox, msg: Msg) -> None:
        with contextlib.suppress(msgspec.DecodeError, SandboxLost):
            request = msgspec.json.decode(msg.data, type=CancelRequest)
            await sandbox.client.cancel(request.call_id)
        await respond(msg, b"")

    async def on_ack(self, sandbox: Sandbox, msg: Msg) -> None:
        # The outcome stays recorded: a late duplicate is still answered, never run.
        with contextlib.suppress(msgspec.DecodeError, ValueError, OSError):
            ack = msgspec.json.decode(msg.data, type=OutcomeAck)
            sandbox.records.acknowledge(ack.call_id)
        await respond(msg, b"")

    def _start(self, sandbox: Sandbox, request: CallRequest, *, collect: bool = False) -> None:
        task = self._tasks.spawn(self._run(sandbox, request, collect=collect))
        sandbox.running[request.call_id] = task
        sandbox.touch()

        def finished(_: asyncio.Task[Any]) -> None:
            sandbox.running.pop(request.call_id, None)
            sandbox.touch()

        task.add_done_callback(finished)

    async def _run(self, sandbox: Sandbox, request: CallRequest, *, collect: bool) -> None:
        """Run a call (or, `collect`, wait for one an earlier host sent) and publish its
        outcome; a non-idempotent call's outcome is recorded first."""
        started = time.perf_counter()
        with working_on(request.session_id, request.call_id):
            problem = None if collect else _invalid(request)
            recorded = collect or (problem is None and not _tool(request.name).idempotent)
            if recorded and not collect:
                # Before the executor can see it: from here on it is never sent again.
                try:
                    sandbox.records.start(request)
                except OSError as exc:
                    problem = f"the hands host could not record the call ({exc}); it did not run"
                    recorded = False
            if problem is not None:
                outcome = _outcome(sandbox, request, problem, is_error=True, outcome="error")
            elif sandbox.lost:
                outcome = _lost_outcome(sandbox, request)
            else:
                try:
                    if collect:
                        result = await sandbox.client.collect(request.call_id)
                    else:
                        result = await sandbox.client.call(
                            ExecutorCall(
                                call_id=request.call_id,
                                tool=request.name,
                                input=await self._executor_input(request),
                                idempotent=_tool(request.name).idempotent,
                                max_output_bytes=(
                                    HARNESS_OUTPUT_BYTES
                                    if request.name in HARNESS_TOOLS
                                    else self._settings.max_output_bytes
                                ),
                                spill_bytes=self._settings.max_spill_bytes,
                                timeout_s=sandbox.record.spec.call_timeout_s,
                            )
                        )
                    outcome = await self._finish(sandbox, request, result)
                except SandboxLost:
                    outcome = _lost_outcome(sandbox, request)
                except ValueError as exc:  # a merge of a checkpoint the host cannot find
                    outcome = _outcome(sandbox, request, str(exc), is_error=True, outcome="error")
            if recorded:
                await self._record(sandbox, outcome)
            self._metrics.call_done(request.name, outcome.outcome, time.perf_counter() - started)
            await self._outcomes.publish(outcome)

    async def _executor_input(self, request: CallRequest) -> dict[str, object]:
        """The call's input as the executor takes it: a merge gets the bytes of the thread's
        checkpoint, which only the host can read (the sandbox reaches no object store)."""
        if request.name != "merge_workspace":
            return request.input
        data = await self._storage.checkpoint_data(str(request.input["checkpoint"]))
        return {**request.input, "archive": base64.b64encode(data).decode()}

    async def _record(self, sandbox: Sandbox, outcome: ToolOutcome) -> None:
        """Keep the outcome, then let the executor drop its copy (until the host has it, a
        host that dies is replaced by one that collects it from the executor)."""
        try:
            sandbox.records.finish(outcome)
        except OSError:
            log.exception("recording the outcome of %s failed", outcome.call_id)
            return
        with contextlib.suppress(SandboxLost):
            await sandbox.client.forget(outcome.call_id)

    async def _finish(
        self, sandbox: Sandbox, request: CallRequest, result: ExecutorResult
    ) -> ToolOutcome:
        """The outcome of a call the executor answered, once what it names is kept: its full
        output as a blob and, after a mutating call, a checkpoint of the workspace."""
        blob = None
        if result.full_output:
            data = await asyncio.to_thread(sandbox.dirs.read_output, request.call_id)
            if data is not None:
                blob = await self._storage.keep_output(data, result.output)
            sandbox.dirs.remove_output(request.call_id)
        spec = TOOLS.get(request.name) or HARNESS_TOOLS.get(request.name)
        if spec is not None and spec.mutating:
            await self._storage.keep_checkpoint(sandbox)
        return ToolOutcome(
            call_id=request.call_id,
            session_id=request.session_id,
            sandbox_id=sandbox.record.sandbox_id,
            output=result.output,
            blob=blob,
            is_error=result.is_error,
            outcome="unknown" if result.unknown else "error" if result.is_error else "ok",
            exit_code=result.exit_code,
            duration_ms=result.duration_ms,
            checkpoint=sandbox.checkpoint,
        )


def _lost_outcome(sandbox: Sandbox, request: CallRequest) -> ToolOutcome:
    sandbox.lost = True
    return _outcome(
        sandbox,
        request,
        "the sandbox was lost (it died or was killed) before the call finished; "
        "its effects are unknown",
        is_error=True,
        outcome="unknown",
        sandbox_lost=True,
    )


def _outcome(sandbox: Sandbox, request: CallRequest, output: str, **fields: Any) -> ToolOutcome:
    return ToolOutcome(
        call_id=request.call_id,
        session_id=request.session_id,
        sandbox_id=sandbox.record.sandbox_id,
        output=output,
        checkpoint=sandbox.checkpoint,
        **fields,
    )


def _tool(name: str) -> ToolSpec:
    """A model's tool or the harness's own (a brain's read or restore of the workspace)."""
    return TOOLS.get(name) or HARNESS_TOOLS[name]


def _invalid(request: CallRequest) -> str | None:
    spec = TOOLS.get(request.name) or HARNESS_TOOLS.get(request.name)
    if spec is None:
        return f"unknown tool {request.name!r}; the tools are {', '.join(sorted(TOOLS))}"
    try:
        msgspec.convert(request.input, spec.input_type)
    except msgspec.ValidationError as exc:
        return f"invalid input for {request.name}: {exc}"
    return None
