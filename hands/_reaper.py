"""Finding the sandboxes no session will use again, so none outlives its use.

A sandbox can be left behind by any crash: a brain killed after provisioning one but
before any event named it, a call sent to a fresh sandbox after its first one stopped
answering (and then came back with a restarted host), a finished session whose brain died
before saying so. So every sandbox a host serves is looked at again and again:

- quiet for `sandbox_check_s`: the host asks a brain (`keel.sandboxes.check`, answered from
  the log, since hands never touch it) whether any run of its session can still reach it;
  one whose session ended, or whose log names another sandbox (and the run that asked for
  it is over), or that was provisioned by a run that has since ended without naming it, is
  removed at once;
- quiet for `sandbox_idle_s`: it is checkpointed and removed, unless the log says a call
  sent to it has no outcome yet (a brain that died after sending it will ask for it there);
  the session's next call finds nobody there and goes to a fresh sandbox started from that
  checkpoint.

With no brain answering nothing is removed for being unreachable; the idle limit still
holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from hands._sandbox import Sandbox
from hands._settings import HandsSettings
from schemas import (
    SANDBOX_CHECK_SUBJECT,
    SandboxCheck,
    SandboxCheckReply,
    SandboxInUse,
    SandboxVerdict,
)

log = logging.getLogger("keel.hands")

_ENCODER: Final = msgspec.json.Encoder()
_REPLY: Final = msgspec.json.Decoder(SandboxCheckReply)
CHECK_TIMEOUT_S: Final = 10.0

Retire = Callable[[Sandbox, str, bool], Awaitable[None]]


class Reaper:
    def __init__(
        self,
        settings: HandsSettings,
        nc: NATS,
        sandboxes: Callable[[], Iterable[Sandbox]],
        retire: Retire,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.sandboxes = sandboxes
        self.retire = retire

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sandbox_check_s)
            try:
                await self.sweep()
            except Exception:
                # The loop that frees sandboxes must outlive any one bad sweep.
                log.exception("looking after sandboxes failed")

    async def sweep(self) -> None:
        quiet = [s for s in self.sandboxes() if self._quiet_for(s) >= self.settings.sandbox_check_s]
        verdicts = {v.sandbox_id: v for v in await self._check(quiet)}
        for sandbox in quiet:
            verdict = verdicts.get(sandbox.record.sandbox_id)
            # Looked at again now: a call may have come while others were being removed.
            quiet_for = self._quiet_for(sandbox)
            if quiet_for < self.settings.sandbox_check_s:
                continue
            if verdict is not None and not verdict.reachable:
                await self.retire(sandbox, verdict.reason, False)
            elif quiet_for >= self.settings.sandbox_idle_s and not (verdict and verdict.busy):
                # Not while the log says a call sent to it has no outcome: a brain that
                # lost track of it (it crashed) will ask for it here again.
                await self.retire(sandbox, f"idle for {quiet_for:.0f} s", True)

    @staticmethod
    def _quiet_for(sandbox: Sandbox) -> float:
        return 0.0 if sandbox.retiring else sandbox.quiet_for(time.monotonic())

    async def _check(self, sandboxes: list[Sandbox]) -> list[SandboxVerdict]:
        if not sandboxes:
            return []
        request = SandboxCheck(
            sandboxes=[
                SandboxInUse(
                    sandbox_id=s.record.sandbox_id,
                    session_id=s.record.session_id,
                    lease_epoch=s.record.lease_epoch,
                )
                for s in sandboxes
            ]
        )
        try:
            reply = await self.nc.request(
                SANDBOX_CHECK_SUBJECT, _ENCODER.encode(request), timeout=CHECK_TIMEOUT_S
            )
            answer = _REPLY.decode(reply.data)
        except (nats.errors.Error, TimeoutError, msgspec.DecodeError) as exc:
            log.debug("no brain told which sandboxes are still in use: %r", exc)
            return []
        if answer.error:
            log.warning("a brain could not tell which sandboxes are in use: %s", answer.error)
        asked = {s.record.sandbox_id for s in sandboxes}
        return [v for v in answer.verdicts if v.sandbox_id in asked]
