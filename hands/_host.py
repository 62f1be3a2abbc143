"""The hands host: the NATS-facing side of the sandboxes on one machine.

It joins the `hands` queue group for provisioning, serves each sandbox's own subjects,
forwards calls to the sandbox's executor over its unix socket, and publishes every outcome
to JetStream with `Nats-Msg-Id = <session>/<call_id>`. It holds no credentials of keel's and never
touches the session log. It records every non-idempotent call where no sandbox can reach
(`_records.py`) and never sends a recorded call_id to an executor again. On start it adopts
the sandboxes a dead host left behind, collecting what their calls did, and removes what
cannot be adopted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from hands._backend import LAYOUT, SandboxBackend, SandboxDirs, SandboxRecord, stored_layout
from hands._calls import CallRunner
from hands._checkpoint import fingerprint, unpack
from hands._client import ExecutorClient, SandboxLost
from hands._nats import respond
from hands._outcomes import OutcomePublisher, ensure_outcome_stream
from hands._reaper import Reaper
from hands._records import CallRecords
from hands._sandbox import Sandbox
from hands._settings import HandsSettings
from hands._storage import SandboxStorage
from schemas import (
    HANDS_QUEUE,
    PROVISION_SUBJECT,
    BackgroundTasks,
    NatsLinkLog,
    ProvisionReply,
    ProvisionRequest,
    is_valid_id,
    new_id,
    sandbox_subject,
)

log = logging.getLogger("keel.hands")

_ENCODER = msgspec.json.Encoder()


class HandsHost:
    def __init__(self, settings: HandsSettings, backend: SandboxBackend) -> None:
        self.settings = settings
        self.backend = backend
        self.sandboxes_root = settings.data_dir / "sandboxes"
        self.sandboxes: dict[str, Sandbox] = {}
        self._warm: list[Sandbox] = []
        self._nc: NATS | None = None
        self._storage: SandboxStorage | None = None
        self._calls: CallRunner | None = None
        self._tasks = BackgroundTasks(log, "a hands task")
        self._warm_added = asyncio.Event()
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.sandboxes_root.mkdir(parents=True, exist_ok=True)
        link = NatsLinkLog(log, f"hands host {self.settings.host_id}")
        self._nc = link.client = await nats.connect(
            self.settings.nats_url,
            name=self.settings.host_id,
            max_reconnect_attempts=-1,
            **link.callbacks(),
        )
        js = self._nc.jetstream()
        await ensure_outcome_stream(js)
        self._storage = await SandboxStorage.open(self._nc, js)
        self._calls = CallRunner(
            self.settings, self._storage, OutcomePublisher(self._nc, js), self._tasks
        )
        await self._adopt_or_remove_leftovers()
        await self._nc.subscribe(PROVISION_SUBJECT, queue=HANDS_QUEUE, cb=self._on_provision)
        reaper = Reaper(self.settings, self._nc, lambda: list(self.sandboxes.values()), self.retire)
        self._tasks.spawn(reaper.run())
        for _ in range(self.settings.warm_pool):
            self._tasks.spawn(self._fill_warm_pool())
        await self._nc.flush()
        log.info("hands host %s serving on %s", self.settings.host_id, self.settings.nats_url)

    async def close(self, *, destroy_sandboxes: bool = False) -> None:
        """Stop serving. Sandboxes keep running for the next host unless told otherwise.
        Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        await self._tasks.cancel()
        for sandbox in [*self.sandboxes.values(), *self._warm]:
            if destroy_sandboxes:
                await self._destroy(sandbox)
            else:
                await sandbox.client.close()
        if self._nc is not None:
            await self._nc.drain()

    # -- provisioning -----------------------------------------------------------------------

    async def _on_provision(self, msg: Msg) -> None:
        # Provisioning takes a while: never hold up the next request behind it.
        self._tasks.spawn(self._answer_provision(msg))

    async def _answer_provision(self, msg: Msg) -> None:
        try:
            request = msgspec.json.decode(msg.data, type=ProvisionRequest)
        except msgspec.DecodeError as exc:
            await msg.respond(_ENCODER.encode(ProvisionReply(error=f"bad request: {exc}")))
            return
        try:
            sandbox = await self.provision(request)
        except Exception as exc:
            log.exception("provisioning failed")
            reply = ProvisionReply(
                host_id=self.settings.host_id, error=f"provisioning failed: {exc}"
            )
        else:
            reply = ProvisionReply(
                sandbox_id=sandbox.record.sandbox_id,
                host_id=self.settings.host_id,
                checkpoint=sandbox.checkpoint,
            )
        await msg.respond(_ENCODER.encode(reply))

    async def provision(self, request: ProvisionRequest) -> Sandbox:
        if not is_valid_id(request.session_id):
            raise ValueError(f"invalid session id {request.session_id!r}")
        checkpoint = await self._starting_point(request)
        sandbox = self._take_warm(request)
        if sandbox is None:
            sandbox = await self._create(request.session_id, request)
        try:
            if checkpoint:
                await self._restore(sandbox, checkpoint)
            await self._serve(sandbox)
        except BaseException:
            await asyncio.shield(self._destroy(sandbox))
            raise
        sandbox.touch()
        return sandbox

    async def _starting_point(self, request: ProvisionRequest) -> str | None:
        """The checkpoint a new sandbox starts from: the one the log names, unless the
        sandbox it replaces was removed for idling, whose final checkpoint is as new or
        newer (it holds what ran after the last call, in the background, too)."""
        previous = request.previous_sandbox_id
        if previous is None or not is_valid_id(previous):
            return request.checkpoint
        assert self._storage is not None
        return await self._storage.final_checkpoint(previous) or request.checkpoint

    def _take_warm(self, request: ProvisionRequest) -> Sandbox | None:
        for sandbox in self._warm:
            if sandbox.record.spec == request.sandbox and not sandbox.lost:
                self._warm.remove(sandbox)
                record = msgspec.structs.replace(
                    sandbox.record, session_id=request.session_id, lease_epoch=request.lease_epoch
                )
                sandbox.record = record
                sandbox.dirs.record.write_bytes(_ENCODER.encode(record))
                self._tasks.spawn(self._fill_warm_pool())
                return sandbox
        return None

    async def _fill_warm_pool(self) -> None:
        sandbox = await self._create("warm", ProvisionRequest(session_id="warm"))
        self._warm.append(sandbox)
        self._warm_added.set()

    async def wait_for_warm(self) -> None:
        """Return once the warm pool holds a sandbox."""
        while not self._warm:
            self._warm_added.clear()
            await self._warm_added.wait()

    async def _create(self, session_id: str, request: ProvisionRequest) -> Sandbox:
        """Make a sandbox. A caller cancelled half way (a closing host) lets the creation
        finish and then removes it: a backend's start cannot be interrupted safely (a Docker
        container is created on a thread whatever happens to the task awaiting it)."""
        creating = asyncio.ensure_future(self._create_now(session_id, request))
        try:
            return await asyncio.shield(creating)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._destroy(await creating)
            raise

    async def _create_now(self, session_id: str, request: ProvisionRequest) -> Sandbox:
        sandbox_id = new_id("sbx")
        dirs = SandboxDirs(self.sandboxes_root, sandbox_id)
        dirs.workspace.mkdir(parents=True)
        dirs.ipc.mkdir()
        CallRecords(dirs.calls).create()
        record = SandboxRecord(
            sandbox_id=sandbox_id,
            session_id=session_id,
            host_id=self.settings.host_id,
            backend=self.backend.name,
            created_at=time.time(),
            spec=request.sandbox,
            lease_epoch=request.lease_epoch,
        )
        await self.backend.prepare(dirs)
        handle = await self.backend.start(record, dirs)
        record = msgspec.structs.replace(record, handle=handle)
        try:
            dirs.record.write_bytes(_ENCODER.encode(record))
            client = await ExecutorClient.connect(dirs.socket)
        except BaseException:
            # Failed or cancelled half way: never leave a sandbox nobody knows about.
            await asyncio.shield(self._discard(record, dirs))
            raise
        sandbox = Sandbox(record=record, dirs=dirs, client=client)
        self._tasks.spawn(self._watch(sandbox))
        return sandbox

    async def _discard(self, record: SandboxRecord, dirs: SandboxDirs) -> None:
        await self.backend.remove(record)
        await asyncio.to_thread(shutil.rmtree, dirs.root, True)

    async def _restore(self, sandbox: Sandbox, checkpoint: str) -> None:
        assert self._storage is not None
        data = await self._storage.checkpoint_data(checkpoint)
        await asyncio.to_thread(unpack, data, sandbox.dirs.workspace)
        await self.backend.prepare(sandbox.dirs)
        sandbox.checkpoint = checkpoint
        sandbox.fingerprint = await asyncio.to_thread(fingerprint, sandbox.dirs.workspace)

    async def _serve(self, sandbox: Sandbox) -> None:
        assert self._nc is not None and self._calls is not None
        sandbox_id = sandbox.record.sandbox_id
        self.sandboxes[sandbox_id] = sandbox
        handlers = {
            "call": self._calls.on_call,
            "cancel": self._calls.on_cancel,
            "ack": self._calls.on_ack,
            "destroy": self._on_destroy,
        }
        for verb, handler in handlers.items():
            subscription = await self._nc.subscribe(
                sandbox_subject(sandbox_id, verb),  # type: ignore[arg-type]
                cb=_bound(handler, sandbox),
            )
            sandbox.subscriptions.append(subscription)
        # The server knows the subjects before anyone is told the sandbox exists.
        await self._nc.flush()

    async def _adopt_or_remove_leftovers(self) -> None:
        """Sandboxes a previous host left: adopt the live ones, remove the rest."""
        known: set[str] = set()
        for path in sorted(self.sandboxes_root.glob("*/record.json")):
            dirs = SandboxDirs(self.sandboxes_root, path.parent.name)
            try:
                data = path.read_bytes()
                record = msgspec.json.decode(data, type=SandboxRecord)
                layout = stored_layout(data)
            except msgspec.DecodeError:
                shutil.rmtree(dirs.root, ignore_errors=True)
                continue
            if record.backend != self.backend.name:
                continue
            adopted = False
            # An executor of another layout speaks another protocol: never adopted.
            if layout == LAYOUT and await self.backend.alive(record):
                try:
                    client = await ExecutorClient.connect(dirs.socket, within_s=2.0)
                    await client.ping()
                    sandbox = Sandbox(record=record, dirs=dirs, client=client)
                    if record.session_id == "warm":
                        self._warm.append(sandbox)
                    else:
                        assert self._calls is not None
                        self._calls.resume(sandbox)
                        await self._serve(sandbox)
                    self._tasks.spawn(self._watch(sandbox))
                    adopted = True
                    known.add(record.handle)
                    log.info("adopted sandbox %s", record.sandbox_id)
                except SandboxLost:
                    pass
            if not adopted:
                await self._discard(record, dirs)
                log.info("removed sandbox %s left by a dead host", record.sandbox_id)
        orphans = await self.backend.reap_unknown(self.settings.host_id, known)
        if orphans:
            log.info("removed %d orphaned sandboxes", orphans)
        # A host killed while creating a sandbox leaves its directory without a record (its
        # process or container, which carries this host's id, was reaped just above).
        for directory in sorted(self.sandboxes_root.iterdir()):
            if directory.is_dir() and not (directory / "record.json").exists():
                await asyncio.to_thread(shutil.rmtree, directory, True)
                log.info("removed sandbox directory %s, never recorded", directory.name)

    async def _on_destroy(self, sandbox: Sandbox, msg: Msg) -> None:
        await self._destroy(sandbox)
        await respond(msg, b"")

    async def retire(self, sandbox: Sandbox, reason: str, checkpoint: bool) -> None:
        """Remove a sandbox no session will use (see `hands._reaper`), after the calls it
        was already handed; with `checkpoint`, first keep its workspace as its final
        checkpoint, for the sandbox that replaces it."""
        if sandbox.retiring:
            return
        sandbox.retiring = True
        for subscription in sandbox.subscriptions:
            # Drain, not unsubscribe: a call already delivered is still run and answered.
            with contextlib.suppress(nats.errors.Error):
                await subscription.drain()
        sandbox.subscriptions.clear()
        await asyncio.gather(*sandbox.running.values(), return_exceptions=True)
        if checkpoint and not sandbox.lost:
            assert self._storage is not None
            try:
                await self._storage.keep_final(sandbox)
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                # Its workspace is not kept anywhere yet: serve it again, try next time.
                log.warning(
                    "keeping sandbox %s: no final checkpoint (%r)", sandbox.record.sandbox_id, exc
                )
                sandbox.retiring = False
                await self._serve(sandbox)
                return
        log.info(
            "removing sandbox %s of session %s: %s",
            sandbox.record.sandbox_id,
            sandbox.record.session_id,
            reason,
        )
        await self._destroy(sandbox)

    async def _destroy(self, sandbox: Sandbox) -> None:
        for subscription in sandbox.subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
        self.sandboxes.pop(sandbox.record.sandbox_id, None)
        await sandbox.client.close()
        await self._discard(sandbox.record, sandbox.dirs)

    async def _watch(self, sandbox: Sandbox) -> None:
        """Notice a sandbox dying even when no call is in flight."""
        await sandbox.client.wait_lost()
        sandbox.lost = True
        if sandbox in self._warm:
            self._warm.remove(sandbox)
            await self._destroy(sandbox)
            self._tasks.spawn(self._fill_warm_pool())


def _bound(handler: Any, sandbox: Sandbox) -> Any:
    async def callback(msg: Msg) -> None:
        await handler(sandbox, msg)

    return callback


__all__ = ["HandsHost"]
