"""The interface every other package programs against; each backend implements it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from schemas import Event, Recorded, SessionCreated
from session_store._health import StoreHealth
from session_store._idempotency import IdempotentWrite
from session_store._records import (
    ApiKey,
    Appended,
    Lease,
    Remembered,
    SessionInfo,
    SessionPage,
    Snapshot,
    Verification,
)


class EventStore(Protocol):
    # Whether reads and writes work, as the store's own operations find out.
    health: StoreHealth

    async def migrate(self) -> None: ...
    async def close(self) -> None: ...

    async def create_session(
        self,
        tenant: str,
        created: SessionCreated,
        *,
        session_id: str | None = None,
        first_input: Sequence[Event] = (),
        keyed: IdempotentWrite[SessionInfo] | None = None,
    ) -> SessionInfo: ...
    async def fork_session(
        self,
        parent_id: str,
        at_seq: int,
        tenant: str,
        *,
        keyed: IdempotentWrite[SessionInfo] | None = None,
    ) -> SessionInfo: ...
    async def get_session(self, session_id: str) -> SessionInfo: ...
    async def list_sessions(
        self,
        tenant: str,
        *,
        status: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage: ...
    async def delete_session(
        self, session_id: str, *, keyed: IdempotentWrite[None] | None = None
    ) -> None: ...

    async def append(
        self, session_id: str, events: Sequence[Event], expect_seq: int, epoch: int
    ) -> Appended: ...
    async def append_input(
        self,
        session_id: str,
        events: Sequence[Event],
        expect_seq: int | None = None,
        *,
        keyed: IdempotentWrite[Appended] | None = None,
    ) -> Appended: ...
    async def read(
        self, session_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[Recorded]: ...
    async def head(self, session_id: str) -> int: ...

    async def claim(self, session_id: str, owner: str, ttl: float) -> Lease: ...
    async def renew(self, lease: Lease, ttl: float) -> Lease: ...
    async def release(
        self, lease: Lease, *, wake_at: float | None = None, seen_seq: int | None = None
    ) -> bool: ...
    async def sessions_due(self, limit: int = 100) -> list[str]: ...
    async def leases_of(self, owner: str) -> list[str]: ...

    async def save_snapshot(
        self, session_id: str, seq: int, state: bytes, version: int = 1
    ) -> None: ...
    async def latest_snapshot(self, session_id: str, version: int = 1) -> Snapshot | None: ...

    async def verify(self, session_id: str) -> Verification: ...

    async def create_api_key(self, tenant: str, name: str = "") -> ApiKey: ...
    async def tenant_for_key(self, key: str) -> str | None: ...

    async def recall(self, tenant: str, key: str) -> Remembered | None: ...
