"""Telling brains a session has something to do: an `Attention` on its work subject."""

from __future__ import annotations

import logging
from typing import Final

import msgspec
import nats.errors
from nats.js import JetStreamContext

from schemas import Attention, work_subject

log = logging.getLogger("keel.gateway")

_ENCODER: Final = msgspec.json.Encoder()


class Announcer:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def announce(self, session_id: str, reason: str) -> None:
        """Best effort, on purpose: the input is already durable, and the store's input
        timer hands the session to a brain a second later if this message is lost."""
        body = _ENCODER.encode(Attention(session_id=session_id, reason=reason))
        try:
            await self.js.publish(work_subject(session_id), body, timeout=2.0)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("announcing %s failed (%r); the sweeper will find it", session_id, exc)
