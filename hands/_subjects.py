"""A sandbox's own subjects, `keel.sandbox.<id>.call|cancel|ack|destroy`: served while it
takes calls (calls, cancels and acks go to the `CallRunner`), drained when it is retired."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Literal

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from hands._calls import CallRunner
from hands._hosted import HostedSandboxes
from hands._nats import respond
from hands._sandbox import Sandbox
from schemas import sandbox_subject

Handler = Callable[[Sandbox, Msg], Awaitable[None]]


class SandboxSubjects:
    def __init__(self, nc: NATS, hosted: HostedSandboxes, calls: CallRunner) -> None:
        self._nc = nc
        self._hosted = hosted
        self._calls = calls

    async def serve(self, sandbox: Sandbox) -> None:
        sandbox_id = sandbox.record.sandbox_id
        self._hosted.served[sandbox_id] = sandbox
        handlers: dict[Literal["call", "cancel", "ack", "destroy"], Handler] = {
            "call": self._calls.on_call,
            "cancel": self._calls.on_cancel,
            "ack": self._calls.on_ack,
            "destroy": self._on_destroy,
        }
        for verb, handler in handlers.items():
            subscription = await self._nc.subscribe(
                sandbox_subject(sandbox_id, verb), cb=_bound(handler, sandbox)
            )
            sandbox.subscriptions.append(subscription)
        # The server knows the subjects before anyone is told the sandbox exists.
        await self._nc.flush()

    async def drain(self, sandbox: Sandbox) -> None:
        """Take no more calls for the sandbox."""
        for subscription in sandbox.subscriptions:
            # Drain, not unsubscribe: a call already delivered is still run and answered.
            with contextlib.suppress(nats.errors.Error):
                await subscription.drain()
        sandbox.subscriptions.clear()

    async def _on_destroy(self, sandbox: Sandbox, msg: Msg) -> None:
        await self._hosted.destroy(sandbox)
        await respond(msg, b"")


def _bound(handler: Handler, sandbox: Sandbox) -> Callable[[Msg], Awaitable[None]]:
    async def callback(msg: Msg) -> None:
        await handler(sandbox, msg)

    return callback
