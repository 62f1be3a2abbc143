"""The brain's side of the hands: provision sandboxes, send calls, collect outcomes.

A call is sent as a request that the hands answer at once (`CallAccepted`); its outcome comes
later on `keel.outcomes.<session>`, which JetStream keeps, so a brain that was not listening
when it was published (it crashed, or it let the session wait) collects it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Callable, Iterable
from typing import Final

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, Header

from schemas import (
    OUTCOME_STREAM,
    PROVISION_PROGRESS_S,
    PROVISION_SUBJECT,
    Backoff,
    CallAccepted,
    CallRequest,
    CancelRequest,
    OutcomeAck,
    ProvisionReply,
    ProvisionRequest,
    SandboxSpec,
    ToolOutcome,
    outcome_subject,
    retrying,
    sandbox_subject,
)

_ENCODER: Final = msgspec.json.Encoder()
_OUTCOME: Final = msgspec.json.Decoder(ToolOutcome)
_PROVISION_REPLY: Final = msgspec.json.Decoder(ProvisionReply)
# The status NATS sends to a request's reply subject when nobody is subscribed to it.
_NO_RESPONDERS: Final = "503"


class HandsUnavailable(Exception):
    """No hands host answered (none is running, or all are restarting)."""


class SandboxGone(Exception):
    """Nobody serves the sandbox any more: a call sent to it was delivered to no one."""


class ProvisionFailed(Exception):
    """A hands host answered but could not make a sandbox."""


async def ask_to_provision(
    nc: NATS, request: bytes, *, timeout_s: float, silence_s: float
) -> ProvisionReply:
    """One provisioning request followed to its answer through the host's progress notes
    (`PROVISION_PROGRESS_S`). Raises `nats.errors.NoRespondersError` when no host is
    subscribed, `ProvisionFailed` when the host that took the request falls silent (a
    sandbox it may still finish is then nobody's, and its idle reaper removes it), and
    `HandsUnavailable` when the whole provisioning outlasts `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    answers = await nc.subscribe(nc.new_inbox())
    try:
        await nc.publish(PROVISION_SUBJECT, request, reply=answers.subject)
        who = "any hands host"
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise HandsUnavailable(f"provisioning took longer than {timeout_s:.0f} s")
            try:
                msg = await answers.next_msg(timeout=min(silence_s, left))
            except nats.errors.TimeoutError:
                if loop.time() >= deadline:
                    continue
                raise ProvisionFailed(
                    f"nothing was heard from {who} about the provisioning for {silence_s:.0f} s"
                ) from None
            if msg.headers and msg.headers.get(Header.STATUS) == _NO_RESPONDERS:
                raise nats.errors.NoRespondersError
            answer = _PROVISION_REPLY.decode(msg.data)
            if not answer.working:
                return answer
            who = f"hands host {answer.host_id}"
    finally:
        with contextlib.suppress(nats.errors.Error):
            await answers.unsubscribe()


class HandsClient:
    def __init__(
        self,
        nc: NATS,
        *,
        provision_timeout_s: float = 120.0,
        provision_silence_s: float = 10 * PROVISION_PROGRESS_S,
        request_timeout_s: float = 10.0,
        no_hands_for_s: float = 30.0,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.provision_timeout_s = provision_timeout_s
        # How long the host that took a provisioning request may be heard from neither with
        # a progress note nor the answer before it counts as gone (killed, or cut off).
        self.provision_silence_s = provision_silence_s
        self.request_timeout_s = request_timeout_s
        # How long provisioning keeps asking while no hands host is subscribed (one may be
        # restarting) before it gives up.
        self.no_hands_for_s = no_hands_for_s

    async def provision(
        self,
        session_id: str,
        spec: SandboxSpec,
        checkpoint: str | None,
        *,
        previous_sandbox_id: str | None = None,
        lease_epoch: int = 0,
    ) -> ProvisionReply:
        """A sandbox for the session, started from `checkpoint` (or, when the host removed
        `previous_sandbox_id` for idling, from its final checkpoint)."""
        request = _ENCODER.encode(
            ProvisionRequest(
                session_id=session_id,
                sandbox=spec,
                checkpoint=checkpoint,
                previous_sandbox_id=previous_sandbox_id,
                lease_epoch=lease_epoch,
            )
        )
        # No hands host subscribed right now (one may be restarting): ask again for a while.
        while_none_answers = Backoff(
            attempts=None,
            first_s=0.05,
            max_s=1.0,
            jitter_s=0.05,
            factor=2.0,
            timeout_s=self.no_hands_for_s,
        )
        try:
            answer = await retrying(
                while_none_answers,
                lambda: ask_to_provision(
                    self.nc,
                    request,
                    timeout_s=self.provision_timeout_s,
                    silence_s=self.provision_silence_s,
                ),
                lambda exc: isinstance(exc, nats.errors.NoRespondersError),
                what="provisioning a sandbox",
            )
        except nats.errors.NoRespondersError:
            raise HandsUnavailable(
                f"no hands host answered for {self.no_hands_for_s:.0f} s"
            ) from None
        if answer.error:
            raise ProvisionFailed(answer.error)
        return answer

    async def send(self, sandbox_id: str, call: CallRequest) -> CallAccepted:
        """Hand `call` to its sandbox. Raises SandboxGone when nobody received it, which
        proves it did not run there."""
        try:
            reply = await self.nc.request(
                sandbox_subject(sandbox_id, "call"),
                _ENCODER.encode(call),
                timeout=self.request_timeout_s,
            )
        except nats.errors.NoRespondersError:
            raise SandboxGone(sandbox_id) from None
        return msgspec.json.decode(reply.data, type=CallAccepted)

    async def ack(self, sandbox_id: str, call_id: str) -> None:
        """The outcome is in the log: the hands may drop the full result (best effort)."""
        await self.nc.publish(
            sandbox_subject(sandbox_id, "ack"), _ENCODER.encode(OutcomeAck(call_id=call_id))
        )

    async def cancel(self, sandbox_id: str, call_id: str) -> None:
        """Stop a running call (best effort): its outcome, an error, still comes."""
        await self.nc.publish(
            sandbox_subject(sandbox_id, "cancel"), _ENCODER.encode(CancelRequest(call_id=call_id))
        )

    async def destroy(self, sandbox_id: str) -> None:
        """The session ended: its sandbox goes (best effort; nobody may be serving it)."""
        await self.nc.publish(sandbox_subject(sandbox_id, "destroy"), b"")

    async def listen(
        self, session_id: str, on_outcome: Callable[[ToolOutcome], None]
    ) -> Subscription:
        """Outcomes as they are published (a plain subscription: no JetStream round trip)."""

        async def deliver(msg: Msg) -> None:
            try:
                on_outcome(_OUTCOME.decode(msg.data))
            except msgspec.DecodeError:
                return

        return await self.nc.subscribe(outcome_subject(session_id), cb=deliver)

    async def collect(
        self, session_id: str, call_ids: Iterable[str], since: float
    ) -> dict[str, ToolOutcome]:
        """Outcomes JetStream kept for `call_ids`, published after about `since` (unix s).

        Reads only the session's subject from shortly before `since`, so the cost depends on
        the calls in question, not on the session's age.
        """
        wanted = set(call_ids)
        found: dict[str, ToolOutcome] = {}
        # A minute of slack for clocks that disagree between machines.
        start = datetime.datetime.fromtimestamp(since - 60, tz=datetime.UTC)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=start,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
        )
        try:
            subscription = await self.js.pull_subscribe(
                outcome_subject(session_id), stream=OUTCOME_STREAM, config=config
            )
        except nats.js.errors.NotFoundError:
            return found  # no stream yet: nothing was ever published
        try:
            pending = (await subscription.consumer_info()).num_pending or 0
            while pending > 0 and wanted - found.keys():
                try:
                    messages = await subscription.fetch(min(pending, 256), timeout=2.0)
                except TimeoutError:  # nats raises both its own and asyncio's
                    break
                pending -= len(messages)
                for message in messages:
                    try:
                        outcome = _OUTCOME.decode(message.data)
                    except msgspec.DecodeError:
                        continue
                    if outcome.call_id in wanted:
                        found[outcome.call_id] = outcome
        finally:
            await subscription.unsubscribe()
        return found
