"""Telling brains a session has something to do: an `Attention` on its work subject."""

from __future__ import annotations

import logging
from typing import Final

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from schemas import Attention, log_subject, work_subject

log = logging.getLogger("keel.gateway")

_ENCODER: Final = msgspec.json.Encoder()


class Announcer:
    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.js = nc.jetstream()

    async def announce(self, session_id: str, reason: str, head_seq: int) -> None:
        """Tell brains the session has something to do, and live streams that its log grew
        to `head_seq`. Best effort, on purpose: the input is already durable, the store's
        input timer hands the session to a brain a second later if this message is lost, and
        streams read the store every second regardless."""
        body = _ENCODER.encode(Attention(session_id=session_id, reason=reason))
        try:
            await self.nc.publish(log_subject(session_id), b"%d" % head_seq)
            await self.js.publish(work_subject(session_id), body, timeout=2.0)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("announcing %s failed (%r); the sweeper will find it", session_id, exc)
