"""Retiring a sandbox no session will use (the reaper, `_reaper.py`, decides which): it takes
no more calls, finishes those it was already handed, keeps its workspace as its final
checkpoint when asked to, and is removed."""

from __future__ import annotations

import asyncio
import logging

import nats.errors

from hands._hosted import HostedSandboxes
from hands._sandbox import Sandbox
from hands._storage import SandboxStorage
from hands._subjects import SandboxSubjects

log = logging.getLogger("keel.hands")


class Retirer:
    def __init__(
        self, hosted: HostedSandboxes, subjects: SandboxSubjects, storage: SandboxStorage
    ) -> None:
        self._hosted = hosted
        self._subjects = subjects
        self._storage = storage

    async def retire(self, sandbox: Sandbox, reason: str, checkpoint: bool) -> None:
        """Remove a sandbox after the calls it was already handed; with `checkpoint`, first
        keep its workspace as its final checkpoint, for the sandbox that replaces it."""
        if sandbox.retiring:
            return
        sandbox.retiring = True
        await self._subjects.drain(sandbox)
        await asyncio.gather(*sandbox.running.values(), return_exceptions=True)
        if checkpoint and not sandbox.lost:
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
        # An idle sandbox is kept as a checkpoint; one no session can reach is not.
        self._hosted.metrics.reaped.labels("idle" if checkpoint else "unreachable").inc()
