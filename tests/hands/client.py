"""A minimal brain-side hands client for the tests: provision, call, collect outcomes."""

from __future__ import annotations

import asyncio

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from brain.hands_client import ask_to_provision
from schemas import (
    CallAccepted,
    CallRequest,
    CancelRequest,
    OutcomeAck,
    ProvisionReply,
    ProvisionRequest,
    SandboxSpec,
    ToolOutcome,
    new_id,
    outcome_subject,
    sandbox_subject,
)

_ENCODER = msgspec.json.Encoder()


class HandsTestClient:
    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()

    @classmethod
    async def connect(cls, url: str) -> HandsTestClient:
        return cls(await nats.connect(url))

    async def close(self) -> None:
        await self.nc.drain()

    async def provision(
        self, session_id: str, *, checkpoint: str | None = None, spec: SandboxSpec | None = None
    ) -> ProvisionReply:
        request = ProvisionRequest(
            session_id=session_id, sandbox=spec or SandboxSpec(), checkpoint=checkpoint
        )
        # No responders means no hands host is subscribed right now (one may be restarting):
        # a client waits a little and asks again, as a brain must.
        for attempt in range(20):
            try:
                result = await ask_to_provision(
                    self.nc, _ENCODER.encode(request), timeout_s=60, silence_s=60
                )
                break
            except nats.errors.NoRespondersError:
                if attempt == 19:
                    raise
                await asyncio.sleep(0.1)
        assert not result.error, result.error
        return result

    async def send(self, sandbox_id: str, call: CallRequest) -> CallAccepted:
        reply = await self.nc.request(
            sandbox_subject(sandbox_id, "call"), _ENCODER.encode(call), timeout=10
        )
        return msgspec.json.decode(reply.data, type=CallAccepted)

    async def outcome(self, session_id: str, call_id: str, wait_s: float = 60) -> ToolOutcome:
        """The outcome of `call_id` from JetStream, however long ago it was published."""
        subscription = await self.js.subscribe(outcome_subject(session_id), ordered_consumer=True)
        try:
            while True:
                message = await subscription.next_msg(timeout=wait_s)
                outcome = msgspec.json.decode(message.data, type=ToolOutcome)
                if outcome.call_id == call_id:
                    return outcome
        finally:
            await subscription.unsubscribe()

    async def outcomes(self, session_id: str, call_id: str) -> int:
        """How many outcomes JetStream holds for `call_id` (never more than one)."""
        info = await self.js.stream_info("KEEL_OUTCOMES")
        if info.state.messages == 0:
            return 0
        subscription = await self.js.subscribe(outcome_subject(session_id), ordered_consumer=True)
        count = 0
        try:
            while True:
                try:
                    message = await subscription.next_msg(timeout=0.5)
                except nats.errors.TimeoutError:
                    return count
                count += msgspec.json.decode(message.data, type=ToolOutcome).call_id == call_id
        finally:
            await subscription.unsubscribe()

    async def call(
        self,
        sandbox_id: str,
        session_id: str,
        name: str,
        arguments: dict[str, object],
        *,
        call_id: str | None = None,
    ) -> ToolOutcome:
        call_id = call_id or new_id("call")
        request = CallRequest(call_id=call_id, session_id=session_id, name=name, input=arguments)
        accepted = await self.send(sandbox_id, request)
        assert accepted.call_id == call_id and not accepted.error, accepted
        return await self.outcome(session_id, call_id)

    async def cancel(self, sandbox_id: str, call_id: str) -> None:
        await self.nc.request(
            sandbox_subject(sandbox_id, "cancel"),
            _ENCODER.encode(CancelRequest(call_id=call_id)),
            timeout=10,
        )

    async def ack(self, sandbox_id: str, call_id: str) -> None:
        await self.nc.request(
            sandbox_subject(sandbox_id, "ack"),
            _ENCODER.encode(OutcomeAck(call_id=call_id)),
            timeout=10,
        )
