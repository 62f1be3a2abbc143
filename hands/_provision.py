"""Provisioning: `keel.hands.provision` (queue `hands`, so one host of many answers) gets a
sandbox from the warm pool or a new one, started from the last checkpoint the log names, or
from the final checkpoint of the sandbox it replaces, and served on its own subjects before
anyone is told it exists."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import msgspec
from nats.aio.msg import Msg

from hands._checkpoint import fingerprint, unpack
from hands._hosted import HostedSandboxes
from hands._sandbox import Sandbox
from hands._storage import SandboxStorage
from hands._subjects import SandboxSubjects
from schemas import (
    PROVISION_PROGRESS_S,
    BackgroundTasks,
    ProvisionReply,
    ProvisionRequest,
    is_valid_id,
    run_to_end,
)

log = logging.getLogger("keel.hands")

_ENCODER: Final = msgspec.json.Encoder()


async def _tell_still_working(msg: Msg, host_id: str) -> None:
    """Progress notes to the asker while the provisioning lasts, so that it can tell a slow
    host (a cold Docker start on a loaded machine) from a dead one. A quick provisioning
    sends none."""
    if not msg.reply:
        return
    note = _ENCODER.encode(ProvisionReply(working=True, host_id=host_id))
    while True:
        await asyncio.sleep(PROVISION_PROGRESS_S)
        await msg.respond(note)


class Provisioner:
    def __init__(
        self,
        hosted: HostedSandboxes,
        subjects: SandboxSubjects,
        storage: SandboxStorage,
        tasks: BackgroundTasks,
    ) -> None:
        self._hosted = hosted
        self._subjects = subjects
        self._storage = storage
        self._tasks = tasks

    async def on_provision(self, msg: Msg) -> None:
        # Provisioning takes a while: never hold up the next request behind it.
        self._tasks.spawn(self._answer(msg))

    async def _answer(self, msg: Msg) -> None:
        host_id = self._hosted.settings.host_id
        try:
            request = msgspec.json.decode(msg.data, type=ProvisionRequest)
        except msgspec.DecodeError as exc:
            await msg.respond(_ENCODER.encode(ProvisionReply(error=f"bad request: {exc}")))
            return
        progress = self._tasks.spawn(_tell_still_working(msg, host_id))
        try:
            sandbox = await self.provision(request)
        except Exception as exc:
            log.exception("provisioning failed")
            reply = ProvisionReply(host_id=host_id, error=f"provisioning failed: {exc}")
        else:
            reply = ProvisionReply(
                sandbox_id=sandbox.record.sandbox_id,
                host_id=host_id,
                checkpoint=sandbox.checkpoint,
            )
        finally:
            progress.cancel()
        await msg.respond(_ENCODER.encode(reply))

    async def provision(self, request: ProvisionRequest) -> Sandbox:
        if not is_valid_id(request.session_id):
            raise ValueError(f"invalid session id {request.session_id!r}")
        checkpoint = await self._starting_point(request)
        sandbox = self._hosted.take_warm(request)
        source = "warm"
        if sandbox is None:
            sandbox = await self._hosted.create(request.session_id, request)
            source = "cold"
        try:
            if checkpoint:
                await self._restore(sandbox, checkpoint)
            await self._subjects.serve(sandbox)
        except BaseException:
            # However often a closing host cancels it: a half-served sandbox is removed.
            await run_to_end(self._hosted.destroy(sandbox))
            raise
        sandbox.touch()
        self._hosted.metrics.provisions.labels(source).inc()
        return sandbox

    async def _starting_point(self, request: ProvisionRequest) -> str | None:
        """The checkpoint a new sandbox starts from: the one the log names, unless the
        sandbox it replaces was removed for idling, whose final checkpoint is as new or
        newer (it holds what ran after the last call, in the background, too)."""
        previous = request.previous_sandbox_id
        if previous is None or not is_valid_id(previous):
            return request.checkpoint
        return await self._storage.final_checkpoint(previous) or request.checkpoint

    async def _restore(self, sandbox: Sandbox, checkpoint: str) -> None:
        data = await self._storage.checkpoint_data(checkpoint)
        await asyncio.to_thread(unpack, data, sandbox.dirs.workspace)
        await self._hosted.backend.prepare(sandbox.dirs)
        sandbox.checkpoint = checkpoint
        sandbox.fingerprint = await asyncio.to_thread(fingerprint, sandbox.dirs.workspace)
