"""What driving a session needs from outside, each as the small interface `wake` uses of it.

A brain process passes the real parts (`nats.aio.client.Client`, `brain.hands_client.
HandsClient`); a test passes in-memory ones (`tests/brain/harness.py`) and drives the real
`wake` without processes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from brain.crashpoints import brain_crashpoints
from brain.metrics import BrainMetrics
from brain.providers import ModelProvider, provider_for
from brain.settings import BrainSettings
from schemas import (
    CallAccepted,
    CallRequest,
    Crashpoints,
    ModelSpec,
    ProvisionReply,
    Recorded,
    SandboxSpec,
    ToolOutcome,
)
from session_store import BrainStore


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class Message(Protocol):
    """A message delivered to a subscriber (what `nats.aio.msg.Msg` offers of it)."""

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...


class Nats(Protocol):
    """What a session run uses of its NATS connection: plain (not JetStream) messages."""

    @property
    def is_connected(self) -> bool: ...

    async def publish(self, subject: str, payload: bytes = b"") -> None: ...

    async def subscribe(
        self, subject: str, *, cb: Callable[[Message], Awaitable[None]]
    ) -> Subscription: ...


class Hands(Protocol):
    """The brain's side of the hands (see `brain.hands_client` for what each one promises).

    `provision` raises `HandsUnavailable` or `ProvisionFailed`; `send` raises `SandboxGone`
    when nobody received the call (so it provably did not run); `ack`, `cancel` and `destroy`
    are best effort.
    """

    async def provision(
        self,
        session_id: str,
        spec: SandboxSpec,
        checkpoint: str | None,
        *,
        previous_sandbox_id: str | None = None,
        lease_epoch: int = 0,
    ) -> ProvisionReply: ...

    async def send(self, sandbox_id: str, call: CallRequest) -> CallAccepted: ...

    async def ack(self, sandbox_id: str, call_id: str) -> None: ...

    async def cancel(self, sandbox_id: str, call_id: str) -> None: ...

    async def destroy(self, sandbox_id: str) -> None: ...

    async def listen(
        self, session_id: str, on_outcome: Callable[[ToolOutcome], None]
    ) -> Subscription: ...

    async def collect(
        self, session_id: str, call_ids: Iterable[str], since: float
    ) -> dict[str, ToolOutcome]: ...


class LogObserver(Protocol):
    """Sees each batch of events a run reads or commits, in seq order, with the run's lease
    epoch (the live tracer, `traces.live`). Called on the run's path: it must not wait."""

    def saw(
        self, session_id: str, epoch: int, records: Sequence[Recorded], *, committed: bool
    ) -> None: ...


@dataclass
class BrainDeps:
    """What driving a session needs; one per brain process, shared by its sessions."""

    store: BrainStore
    nc: Nats
    hands: Hands
    settings: BrainSettings
    providers: Callable[[ModelSpec], ModelProvider] = provider_for
    crash: Crashpoints = field(default_factory=brain_crashpoints)
    clock: Callable[[], float] = time.time
    observer: LogObserver | None = None
    metrics: BrainMetrics = field(default_factory=BrainMetrics)
