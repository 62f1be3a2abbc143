"""Tool outcomes on JetStream: the stream `KEEL_OUTCOMES` (`keel.outcomes.<session>`), each
outcome deduplicated by `Nats-Msg-Id = <session>/<call_id>` within a 15-minute window, so
publishing one again (a probe, an adopting host) never delivers it twice."""

from __future__ import annotations

import contextlib
from typing import Final

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from hands._nats import until_nats_has_it
from schemas import OUTCOME_STREAM, OUTCOME_SUBJECTS, ToolOutcome, outcome_msg_id, outcome_subject

_ENCODER: Final = msgspec.json.Encoder()


class OutcomePublisher:
    def __init__(self, nc: NATS, js: JetStreamContext) -> None:
        self._nc = nc
        self._js = js

    async def publish(self, outcome: ToolOutcome) -> None:
        """Publish until JetStream has it: an outcome is never dropped for a passing fault."""
        js = self._js

        async def publish() -> None:
            try:
                await js.publish(
                    outcome_subject(outcome.session_id),
                    _ENCODER.encode(outcome),
                    headers={"Nats-Msg-Id": outcome_msg_id(outcome.session_id, outcome.call_id)},
                )
            except nats.js.errors.NoStreamResponseError:
                # The stream is gone (deleted, or a fresh JetStream): make it again.
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    await ensure_outcome_stream(js)
                raise

        await until_nats_has_it(self._nc, f"publishing the outcome of {outcome.call_id}", publish)


async def ensure_outcome_stream(js: JetStreamContext) -> None:
    config = StreamConfig(
        name=OUTCOME_STREAM,
        subjects=[OUTCOME_SUBJECTS],
        max_age=7 * 24 * 3600,
        duplicate_window=15 * 60,
    )
    try:
        await js.stream_info(OUTCOME_STREAM)
    except NotFoundError:
        await js.add_stream(config)
