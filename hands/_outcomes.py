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

from hands._nats import until_nats_has_it
from schemas import (
    OUTCOME_STREAM,
    OUTCOME_SUBJECTS,
    SINGLE,
    Replication,
    ToolOutcome,
    ensure_stream,
    outcome_msg_id,
    outcome_subject,
)

_ENCODER: Final = msgspec.json.Encoder()


class OutcomePublisher:
    def __init__(self, nc: NATS, js: JetStreamContext, replication: Replication = SINGLE) -> None:
        self._nc = nc
        self._js = js
        self._replication = replication

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
                    await ensure_outcome_stream(js, self._replication)
                raise

        await until_nats_has_it(self._nc, f"publishing the outcome of {outcome.call_id}", publish)


async def ensure_outcome_stream(js: JetStreamContext, replication: Replication = SINGLE) -> None:
    """The stream made, or brought to this configuration (replicas and placement included);
    `StreamMismatch` when NATS refuses."""
    await ensure_stream(
        js,
        StreamConfig(
            name=OUTCOME_STREAM,
            subjects=[OUTCOME_SUBJECTS],
            max_age=7 * 24 * 3600,
            duplicate_window=15 * 60,
            num_replicas=replication.replicas,
            placement=replication.placement,
        ),
    )
