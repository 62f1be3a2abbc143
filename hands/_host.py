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
import logging

import msgspec
import nats
from nats.aio.client import Client as NATS

from hands._adoption import adopt_or_remove_leftovers
from hands._backend import SandboxBackend
from hands._calls import CallRunner
from hands._hosted import HostedSandboxes
from hands._outcomes import OutcomePublisher, ensure_outcome_stream
from hands._provision import Provisioner
from hands._reaper import Reaper
from hands._sandbox import Sandbox
from hands._settings import HandsSettings
from hands._storage import SandboxStorage
from hands._subjects import SandboxSubjects
from schemas import (
    HANDS_QUEUE,
    PROVISION_SUBJECT,
    BackgroundTasks,
    NatsLinkLog,
    ProvisionRequest,
)

log = logging.getLogger("keel.hands")

_ENCODER = msgspec.json.Encoder()


class HandsHost:
    def __init__(self, settings: HandsSettings, backend: SandboxBackend) -> None:
        self.settings = settings
        self.backend = backend
        self.sandboxes_root = settings.data_dir / "sandboxes"
        self._tasks = BackgroundTasks(log, "a hands task")
        self._hosted = HostedSandboxes(settings, backend, self.sandboxes_root, self._tasks)
        self._nc: NATS | None = None
        self._storage: SandboxStorage | None = None
        self._calls: CallRunner | None = None
        self._subjects: SandboxSubjects | None = None
        self._provisioner: Provisioner | None = None
        self._closed = False

    @property
    def sandboxes(self) -> dict[str, Sandbox]:
        """The sandboxes taking calls, by id."""
        return self._hosted.served

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
        self._subjects = SandboxSubjects(self._nc, self._hosted, self._calls)
        await adopt_or_remove_leftovers(self._hosted, self._calls, self._subjects)
        self._provisioner = Provisioner(self._hosted, self._subjects, self._storage, self._tasks)
        await self._nc.subscribe(
            PROVISION_SUBJECT, queue=HANDS_QUEUE, cb=self._provisioner.on_provision
        )
        reaper = Reaper(self.settings, self._nc, lambda: list(self.sandboxes.values()), self.retire)
        self._tasks.spawn(reaper.run())
        for _ in range(self.settings.warm_pool):
            self._tasks.spawn(self._hosted.fill_warm_pool())
        await self._nc.flush()
        log.info("hands host %s serving on %s", self.settings.host_id, self.settings.nats_url)

    async def close(self, *, destroy_sandboxes: bool = False) -> None:
        """Stop serving. Sandboxes keep running for the next host unless told otherwise.
        Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        await self._tasks.cancel()
        await self._hosted.close(destroy=destroy_sandboxes)
        if self._nc is not None:
            await self._nc.drain()

    async def wait_for_warm(self) -> None:
        """Return once the warm pool holds a sandbox."""
        await self._hosted.wait_for_warm()

    async def provision(self, request: ProvisionRequest) -> Sandbox:
        assert self._provisioner is not None, "start() the host first"
        return await self._provisioner.provision(request)

    async def retire(self, sandbox: Sandbox, reason: str, checkpoint: bool) -> None:
        """Remove a sandbox no session will use (see `hands._reaper`), after the calls it
        was already handed; with `checkpoint`, first keep its workspace as its final
        checkpoint, for the sandbox that replaces it."""
        if sandbox.retiring:
            return
        sandbox.retiring = True
        assert self._subjects is not None
        await self._subjects.drain(sandbox)
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
                await self._subjects.serve(sandbox)
                return
        log.info(
            "removing sandbox %s of session %s: %s",
            sandbox.record.sandbox_id,
            sandbox.record.session_id,
            reason,
        )
        await self._hosted.destroy(sandbox)


__all__ = ["HandsHost"]
