"""The sandboxes one hands host runs: those it serves, by id, and its warm pool (started
ahead of demand, handed out on provisioning). How a sandbox is made (never left half made,
even by a cancelled caller), watched for dying, and removed with everything it held."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import Final

import msgspec
import nats.errors

from hands._backend import SandboxBackend, SandboxDirs, SandboxRecord
from hands._client import ExecutorClient
from hands._metrics import HandsMetrics
from hands._records import CallRecords
from hands._sandbox import Sandbox
from hands._settings import HandsSettings
from schemas import BackgroundTasks, ProvisionRequest, new_id, run_to_end

log = logging.getLogger("keel.hands")

_ENCODER: Final = msgspec.json.Encoder()


class HostedSandboxes:
    def __init__(
        self,
        settings: HandsSettings,
        backend: SandboxBackend,
        root: Path,
        tasks: BackgroundTasks,
        metrics: HandsMetrics,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.root = root
        # Those taking calls on their own subjects (`SandboxSubjects.serve`).
        self.served: dict[str, Sandbox] = {}
        self._warm: list[Sandbox] = []
        self._warm_added = asyncio.Event()
        self._tasks = tasks
        self.metrics = metrics
        # Read at scrape time: nothing to keep up to date on the hot path.
        metrics.sandboxes.labels("served").set_function(lambda: len(self.served))
        metrics.sandboxes.labels("warm").set_function(lambda: len(self._warm))

    async def create(self, session_id: str, request: ProvisionRequest) -> Sandbox:
        """Make a sandbox. A caller cancelled half way (a closing host) lets the creation
        finish and then removes it, however often it is cancelled meanwhile: a backend's
        start cannot be interrupted safely (a Docker container is created on a thread
        whatever happens to the task awaiting it), and a host's tasks are cancelled again
        and again until they end (`BackgroundTasks.cancel`)."""
        creating = asyncio.ensure_future(self._create_now(session_id, request))
        try:
            return await asyncio.shield(creating)
        except asyncio.CancelledError:
            await run_to_end(self._remove_once_made(creating))
            raise

    async def _remove_once_made(self, creating: asyncio.Future[Sandbox]) -> None:
        with contextlib.suppress(Exception):
            await self.destroy(await creating)

    async def _create_now(self, session_id: str, request: ProvisionRequest) -> Sandbox:
        started = time.perf_counter()
        sandbox_id = new_id("sbx")
        dirs = SandboxDirs(self.root, sandbox_id)
        record = SandboxRecord(
            sandbox_id=sandbox_id,
            session_id=session_id,
            host_id=self.settings.host_id,
            backend=self.backend.name,
            created_at=time.time(),
            spec=request.sandbox,
            lease_epoch=request.lease_epoch,
        )
        try:
            dirs.workspace.mkdir(parents=True)
            dirs.ipc.mkdir()
            CallRecords(dirs.calls).create()
            await self.backend.prepare(dirs)
            handle = await self.backend.start(record, dirs)
        except BaseException:
            # Nothing runs yet (a backend that failed half way leaves what it started to the
            # next host's reaping of unknown sandboxes), but the directory is ours to remove.
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, dirs.root, True))
            raise
        record = msgspec.structs.replace(record, handle=handle)
        try:
            dirs.record.write_bytes(_ENCODER.encode(record))
            client = await ExecutorClient.connect(dirs.socket)
        except BaseException:
            # Failed or cancelled half way: never leave a sandbox nobody knows about.
            await asyncio.shield(self.discard(record, dirs))
            raise
        sandbox = Sandbox(record=record, dirs=dirs, client=client)
        self.watch(sandbox)
        self.metrics.starts.labels(self.backend.name).observe(time.perf_counter() - started)
        return sandbox

    def watch(self, sandbox: Sandbox) -> None:
        """Notice a sandbox dying even when no call is in flight."""
        self._tasks.spawn(self._watch(sandbox))

    async def _watch(self, sandbox: Sandbox) -> None:
        await sandbox.client.wait_lost()
        sandbox.lost = True
        if sandbox in self._warm:
            self._warm.remove(sandbox)
            await self.destroy(sandbox)
            self._tasks.spawn(self.fill_warm_pool())

    async def destroy(self, sandbox: Sandbox) -> None:
        for subscription in sandbox.subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
        self.served.pop(sandbox.record.sandbox_id, None)
        await sandbox.client.close()
        await self.discard(sandbox.record, sandbox.dirs)

    async def discard(self, record: SandboxRecord, dirs: SandboxDirs) -> None:
        """Remove a sandbox the host holds no connection to: its backend's part, its
        directory."""
        await self.backend.remove(record)
        await asyncio.to_thread(shutil.rmtree, dirs.root, True)

    # -- the warm pool ----------------------------------------------------------------------

    def take_warm(self, request: ProvisionRequest) -> Sandbox | None:
        """A warm sandbox of the spec asked for, now the session's (and one more started)."""
        for sandbox in self._warm:
            if sandbox.record.spec == request.sandbox and not sandbox.lost:
                self._warm.remove(sandbox)
                record = msgspec.structs.replace(
                    sandbox.record, session_id=request.session_id, lease_epoch=request.lease_epoch
                )
                sandbox.record = record
                sandbox.dirs.record.write_bytes(_ENCODER.encode(record))
                self._tasks.spawn(self.fill_warm_pool())
                return sandbox
        return None

    async def fill_warm_pool(self) -> None:
        sandbox = await self.create("warm", ProvisionRequest(session_id="warm"))
        self._warm.append(sandbox)
        self._warm_added.set()

    def keep_warm(self, sandbox: Sandbox) -> None:
        """An adopted warm sandbox goes back into the pool."""
        self._warm.append(sandbox)

    async def wait_for_warm(self) -> None:
        """Return once the warm pool holds a sandbox."""
        while not self._warm:
            self._warm_added.clear()
            await self._warm_added.wait()

    async def close(self, *, destroy: bool) -> None:
        """Let go of every sandbox: destroy it, or only close its connection, leaving it
        running for the next host to adopt."""
        for sandbox in [*self.served.values(), *self._warm]:
            if destroy:
                await self.destroy(sandbox)
            else:
                await sandbox.client.close()
