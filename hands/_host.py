"""The hands host: the NATS-facing side of the sandboxes on one machine. It holds no
credentials of keel's and never touches the session log.

It is a composition, on one NATS connection, of the parts named in their own modules:

- `HostedSandboxes` (`_hosted.py`): the sandboxes it runs, served or warm, and how each is
  made, watched and removed;
- `SandboxStorage` (`_storage.py`): checkpoints and blobs in the NATS object store;
- `CallRunner` (`_calls.py`) with `OutcomePublisher` (`_outcomes.py`): each call recorded
  where no sandbox can reach (`_records.py`), so a call_id runs at most once, and its outcome
  published to JetStream with `Nats-Msg-Id = <session>/<call_id>` until JetStream has it;
- `SandboxSubjects` (`_subjects.py`): each sandbox's own subjects;
- `adopt_or_remove_leftovers` (`_adoption.py`): on start, the sandboxes a dead host left
  behind are adopted, with what their calls did collected, or removed;
- `Provisioner` (`_provision.py`): the `hands` queue group for provisioning;
- `Reaper` (`_reaper.py`) and `Retirer` (`_retire.py`): removing the sandboxes no session
  will use.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from nats.aio.client import Client as NATS

from hands._adoption import adopt_or_remove_leftovers
from hands._backend import SandboxBackend
from hands._calls import CallRunner
from hands._hosted import HostedSandboxes
from hands._metrics import HandsMetrics
from hands._outcomes import OutcomePublisher, ensure_outcome_stream
from hands._provision import Provisioner
from hands._reaper import Reaper
from hands._retire import Retirer
from hands._sandbox import Sandbox
from hands._settings import HandsSettings
from hands._storage import SandboxStorage
from hands._subjects import SandboxSubjects
from schemas import (
    HANDS_QUEUE,
    PROVISION_SUBJECT,
    BackgroundTasks,
    MetricsServer,
    NatsLinkLog,
    ProvisionRequest,
    connect_nats,
)

log = logging.getLogger("keel.hands")

JETSTREAM_TIMEOUT_S: Final = 2.0


class HandsHost:
    def __init__(self, settings: HandsSettings, backend: SandboxBackend) -> None:
        self.settings = settings
        self.backend = backend
        self.sandboxes_root = settings.data_dir / "sandboxes"
        self._tasks = BackgroundTasks(log, "a hands task")
        self.metrics = HandsMetrics()
        self.metrics_server: MetricsServer | None = None
        self._hosted = HostedSandboxes(
            settings, backend, self.sandboxes_root, self._tasks, self.metrics
        )
        # The parts that need NATS, made by `start`.
        self._nc: NATS | None = None
        self._provisioner: Provisioner | None = None
        self._retirer: Retirer | None = None
        self._closed = False

    @property
    def sandboxes(self) -> dict[str, Sandbox]:
        """The sandboxes taking calls, by id."""
        return self._hosted.served

    async def start(self) -> None:
        self.sandboxes_root.mkdir(parents=True, exist_ok=True)
        link = NatsLinkLog(log, f"hands host {self.settings.host_id}")
        nc = self._nc = await connect_nats(self.settings.nats_url, self.settings.host_id, link)
        # Every JetStream request (an outcome, a chunk of a blob or checkpoint) is acked in
        # milliseconds; one lost with a NATS node that died is sent again after 2 s, not
        # nats-py's 5 s (outcomes are deduplicated; objects are stored by digest).
        js = nc.jetstream(timeout=JETSTREAM_TIMEOUT_S)
        replication = self.settings.jetstream.resolve(nc)
        await ensure_outcome_stream(js, replication)
        storage = await SandboxStorage.open(nc, js, replication)
        calls = CallRunner(
            self.settings,
            storage,
            OutcomePublisher(nc, js, replication),
            self._tasks,
            self.metrics,
        )
        subjects = SandboxSubjects(nc, self._hosted, calls)
        await adopt_or_remove_leftovers(self._hosted, calls, subjects)
        self._provisioner = Provisioner(self._hosted, subjects, storage, self._tasks)
        await nc.subscribe(PROVISION_SUBJECT, queue=HANDS_QUEUE, cb=self._provisioner.on_provision)
        self._retirer = Retirer(self._hosted, subjects, storage)
        reaper = Reaper(self.settings, nc, lambda: list(self.sandboxes.values()), self.retire)
        self._tasks.spawn(reaper.run())
        for _ in range(self.settings.warm_pool):
            self._tasks.spawn(self._hosted.fill_warm_pool())
        await nc.flush()
        if self.settings.metrics_addr:
            self.metrics_server = MetricsServer.start(
                self.settings.metrics_addr, self.metrics.registry
            )
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
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.close)

    async def wait_for_warm(self) -> None:
        """Return once the warm pool holds a sandbox."""
        await self._hosted.wait_for_warm()

    async def provision(self, request: ProvisionRequest) -> Sandbox:
        assert self._provisioner is not None, "start() the host first"
        return await self._provisioner.provision(request)

    async def retire(self, sandbox: Sandbox, reason: str, checkpoint: bool) -> None:
        """Remove a sandbox no session will use (see `hands._reaper`, `hands._retire`)."""
        assert self._retirer is not None, "start() the host first"
        await self._retirer.retire(sandbox, reason, checkpoint)


__all__ = ["HandsHost"]
