"""The sandbox a run sends its session's calls to, and how it gets one.

Lazy hands: the sandbox starts while the model thinks, and is awaited only when a tool call
needs it. It starts from the session's last checkpoint (or, when its host removed the
previous one for idling, from that one's final checkpoint), named with the run's lease epoch
so a host can ask whether the run that wanted it still holds the session.
"""

from __future__ import annotations

import asyncio
from typing import Final

from brain._background import spawn
from brain._leased_log import LeasedLog
from brain.deps import Hands
from brain.hands_client import ProvisionFailed
from schemas import Backoff, retrying

# Provisioning that failed is tried three times in all, a second or so apart.
PROVISION_BACKOFF: Final = Backoff(attempts=3, first_s=0.3, factor=3.0, max_s=2.0, jitter_s=0.2)


class SandboxSlot:
    def __init__(self, hands: Hands, log: LeasedLog) -> None:
        self.hands: Final = hands
        self.log: Final = log
        # Where calls go; None when none is ready (not provisioned yet, or known to be gone).
        self.sandbox_id: str | None = None
        self.provisioning: asyncio.Task[str] | None = None

    def take_up(self) -> None:
        """The sandbox the log names (once it is loaded), if any."""
        self.sandbox_id = self.log.state.sandbox_id

    @property
    def ready(self) -> bool:
        """A call sent now goes to a sandbox without waiting for one."""
        return self.sandbox_id is not None and self.provisioning is None

    @property
    def is_provisioning(self) -> bool:
        return self.provisioning is not None

    def start_provisioning(self) -> None:
        """Lazy hands: the sandbox starts while the model thinks, and is awaited only when a
        tool call needs it. A session whose every tool the client runs (a self-hosted
        environment's) never has one."""
        spec = self.log.spec
        if (
            self.sandbox_id is None
            and self.provisioning is None
            and any(not spec.runs_on_client(tool) for tool in spec.tools)
        ):
            self.provisioning = asyncio.create_task(self._provision())

    async def _provision(self) -> str:
        state = self.log.state
        reply = await self.hands.provision(
            self.log.session_id,
            self.log.spec.sandbox,
            state.checkpoint,
            previous_sandbox_id=state.sandbox_id,
            lease_epoch=self.log.lease.epoch,
        )
        return reply.sandbox_id

    async def get(self) -> str:
        """The sandbox, provisioned first if need be (raises `HandsUnavailable` or
        `ProvisionFailed`). A host that could not make one (its executor slow to start on a
        loaded machine) is asked again before the calls waiting for it fail."""
        if self.sandbox_id is not None:
            return self.sandbox_id
        self.sandbox_id = await retrying(
            PROVISION_BACKOFF,
            self._provisioned,
            lambda exc: isinstance(exc, ProvisionFailed),
            what=f"provisioning a sandbox for session {self.log.session_id}",
        )
        return self.sandbox_id

    async def _provisioned(self) -> str:
        self.start_provisioning()
        assert self.provisioning is not None
        try:
            return await self.provisioning
        finally:
            self.provisioning = None

    def gone(self, sandbox_id: str) -> None:
        """Nobody serves `sandbox_id` any more: if calls go there, the next one gets a fresh
        sandbox."""
        if self.sandbox_id == sandbox_id:
            self.sandbox_id = None

    def end(self) -> None:
        """The session is over (completed, failed or cancelled): so is its sandbox."""
        if self.sandbox_id is not None:
            spawn(self.hands.destroy(self.sandbox_id))

    def drop_unused(self) -> None:
        """A sandbox provisioned for calls that never came is named by no event: remove it
        (once it is ready, in the background), or nothing ever would."""
        if self.provisioning is not None:
            spawn(_destroy_when_ready(self.hands, self.provisioning))
        elif self.sandbox_id is not None and self.sandbox_id != self.log.state.sandbox_id:
            spawn(self.hands.destroy(self.sandbox_id))


async def _destroy_when_ready(hands: Hands, provisioning: asyncio.Task[str]) -> None:
    await hands.destroy(await provisioning)
