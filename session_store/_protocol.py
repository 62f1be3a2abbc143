"""The interface every other package programs against, split by capability.

A caller sees only the part it uses (as eventsourcing's `AggregateRecorder` ⊂
`ApplicationRecorder`); each backend implements all of them:

    Store                  health, migrate, close: what every part has
    ├── SessionReader      a session's row and its log, as brains and gateways both read them
    │   ├── SessionLog     the log a brain drives: leases, fenced appends, timers, snapshots
    │   └── SessionCatalog the sessions the API serves: create, fork, list, delete, input, audit
    ├── Tenancy            who may call the API (bearer keys, environment keys) and what it
    │                      already answered (Idempotency-Keys)
    ├── Resources          the Managed Agents API's versioned agents and environments
    ├── Threads            sessions spawned by a session's call: created once, messaged once
    ├── WorkQueue          self-hosted environments' work items, derived from their sessions
    └── WebhookEndpoints   where a tenant's webhooks go (its API sets it)
    SessionReader
    └── WebhookDeliveries  what gateways send them by: leases on endpoints, the backlog,
                           durable cursors
    EventStore             all of them: what a backend is, and what `open_store` returns
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from schemas import Event, Recorded, SessionArchived, SessionCreated, SessionUpdated
from session_store._health import StoreHealth
from session_store._idempotency import IdempotentWrite
from session_store._records import (
    ApiKey,
    Appended,
    EnvironmentKey,
    KeyScope,
    Lease,
    Remembered,
    Resource,
    ResourcePage,
    SessionInfo,
    SessionPage,
    Snapshot,
    Verification,
    WebhookBacklog,
    WebhookEndpoint,
    WorkItem,
    WorkLease,
    WorkPage,
    WorkStats,
)


class Store(Protocol):
    # Whether reads and writes work, as the store's own operations find out.
    health: StoreHealth

    async def migrate(self) -> None: ...
    async def close(self) -> None: ...


class SessionReader(Store, Protocol):
    async def get_session(self, session_id: str) -> SessionInfo: ...
    async def read(
        self,
        session_id: str,
        after_seq: int = 0,
        limit: int | None = None,
        *,
        types: Collection[str] | None = None,
    ) -> list[Recorded]: ...


class SessionLog(SessionReader, Protocol):
    """The log a brain drives: it takes a session (claim), appends under its lease (fenced),
    lets go with a timer, and keeps snapshots of what it folded; the sweeper finds the
    sessions nobody drives."""

    async def head(self, session_id: str) -> int: ...
    async def append(
        self, session_id: str, events: Sequence[Event], expect_seq: int, epoch: int
    ) -> Appended: ...

    async def claim(self, session_id: str, owner: str, ttl: float) -> Lease: ...
    async def renew(self, lease: Lease, ttl: float) -> Lease: ...
    async def release(
        self, lease: Lease, *, wake_at: float | None = None, seen_seq: int | None = None
    ) -> bool: ...
    async def sessions_due(self, limit: int = 100) -> list[str]: ...
    async def leases_of(self, owner: str) -> list[str]: ...
    async def expire_leases_of(self, owner: str) -> list[str]: ...

    async def save_snapshot(
        self,
        session_id: str,
        seq: int,
        state: bytes,
        version: int = 1,
        parts: Sequence[bytes] = (),
    ) -> None: ...
    async def latest_snapshot(self, session_id: str, version: int = 1) -> Snapshot | None: ...


class SessionCatalog(SessionReader, Protocol):
    """The sessions the API serves, per tenant: made (created or forked), listed, given
    input without a lease, audited and deleted. Writes may carry an Idempotency-Key
    (`keyed`), whose answer is recorded with the write's effect."""

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
    async def list_sessions(
        self,
        tenant: str,
        *,
        status: str | None = None,
        statuses: Sequence[str] = (),
        created_after: float | None = None,
        created_before: float | None = None,
        agent_id: str | None = None,
        agent_version: int | None = None,
        made_from_agents: bool = False,
        include_archived: bool = True,
        oldest_first: bool = False,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage: ...
    async def delete_session(
        self,
        session_id: str,
        *,
        unless_running: bool = False,
        keyed: IdempotentWrite[None] | None = None,
    ) -> None: ...
    async def amend_session(
        self,
        session_id: str,
        event: SessionUpdated | SessionArchived,
        *,
        keyed: IdempotentWrite[SessionInfo] | None = None,
    ) -> SessionInfo: ...

    async def append_input(
        self,
        session_id: str,
        events: Sequence[Event],
        expect_seq: int | None = None,
        *,
        keyed: IdempotentWrite[Appended] | None = None,
    ) -> Appended: ...

    async def verify(self, session_id: str) -> Verification: ...


class Threads(SessionReader, Protocol):
    """Threads: sessions a session's call spawned (each created at most once, whoever asks
    how often), input delivered to them at most once per key, and the threads of a tree."""

    async def create_thread(
        self, parent_id: str, thread_id: str, created: SessionCreated, first_input: Sequence[Event]
    ) -> SessionInfo: ...
    async def append_once(self, session_id: str, events: Sequence[Event], key: str) -> Appended: ...
    async def list_threads(self, session_id: str) -> list[SessionInfo]: ...


class BrainStore(SessionLog, Threads, Protocol):
    """What a brain uses of the store: the logs it drives and the threads they spawn."""


class Tenancy(Store, Protocol):
    """Who may call the API, and what a keyed write already answered. Keys are recorded by
    the keyed writes themselves (`SessionCatalog`), in their own transactions."""

    async def create_api_key(self, tenant: str, name: str = "") -> ApiKey: ...
    async def tenant_for_key(self, key: str) -> str | None: ...
    async def create_environment_key(
        self, tenant: str, environment_id: str, name: str = ""
    ) -> EnvironmentKey: ...
    async def environment_for_key(self, key: str) -> KeyScope | None: ...

    async def recall(self, tenant: str, key: str) -> Remembered | None: ...


class Resources(Store, Protocol):
    """The Managed Agents API's agents and environments: versions of JSON bodies."""

    async def put_resource(
        self,
        tenant: str,
        kind: str,
        body: str,
        *,
        resource_id: str | None = None,
        expect_version: int | None = None,
    ) -> Resource: ...
    async def get_resource(
        self, tenant: str, kind: str, resource_id: str, version: int | None = None
    ) -> Resource: ...
    async def list_resources(
        self,
        tenant: str,
        kind: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        include_archived: bool = False,
        created_after: float | None = None,
        created_before: float | None = None,
    ) -> ResourcePage: ...
    async def resource_versions(
        self,
        tenant: str,
        kind: str,
        resource_id: str,
        *,
        limit: int = 20,
        before_version: int | None = None,
    ) -> ResourcePage: ...
    async def archive_resource(self, tenant: str, kind: str, resource_id: str) -> Resource: ...
    async def delete_resource(self, tenant: str, kind: str, resource_id: str) -> None: ...


class WorkQueue(Store, Protocol):
    """A self-hosted environment's work items: each a session that waits on the
    environment's worker, handed out by polls, leased by acks and heartbeats."""

    async def poll_work(
        self,
        tenant: str,
        environment_id: str,
        *,
        worker_id: str | None = None,
        reclaim_after: float = ...,
    ) -> WorkItem | None: ...
    async def ack_work(
        self, tenant: str, environment_id: str, work_id: str, *, ttl: int
    ) -> WorkItem: ...
    async def heartbeat_work(
        self,
        tenant: str,
        environment_id: str,
        work_id: str,
        *,
        ttl: int,
        expected: int | None,
        check: bool = True,
    ) -> WorkLease: ...
    async def stop_work(
        self, tenant: str, environment_id: str, work_id: str, *, force: bool
    ) -> WorkItem: ...
    async def get_work(self, tenant: str, environment_id: str, work_id: str) -> WorkItem: ...
    async def patch_work_metadata(
        self, tenant: str, environment_id: str, work_id: str, patch: dict[str, str | None]
    ) -> WorkItem: ...
    async def list_work(
        self, tenant: str, environment_id: str, *, limit: int = 20, cursor: str | None = None
    ) -> WorkPage: ...
    async def work_stats(self, tenant: str, environment_id: str) -> WorkStats: ...


class WebhookEndpoints(Store, Protocol):
    """A tenant's webhook endpoint (one at most), as its API sets, shows and removes it."""

    async def set_webhook_endpoint(
        self, tenant: str, url: str, event_types: Sequence[str], *, new_secret: str
    ) -> WebhookEndpoint: ...
    async def get_webhook_endpoint(self, tenant: str) -> WebhookEndpoint | None: ...
    async def delete_webhook_endpoint(self, tenant: str) -> bool: ...


class WebhookDeliveries(SessionReader, Protocol):
    """What the gateways that send webhooks go by: who sends to which endpoint (leases),
    what each has not been sent yet, and how far it has been sent (durable cursors). They
    read the logs the events come from."""

    async def claim_webhook_endpoints(
        self, owner: str, ttl: float, limit: int = 100
    ) -> list[WebhookEndpoint]: ...
    async def release_webhook_endpoints(self, owner: str) -> None: ...
    async def webhook_backlog(
        self, endpoint: WebhookEndpoint, limit: int = 100
    ) -> list[WebhookBacklog]: ...
    async def advance_webhook_cursor(
        self, endpoint_id: str, session_id: str, next_seq: int, next_part: int
    ) -> None: ...
    async def forget_webhook_session(self, endpoint_id: str, session_id: str) -> None: ...


class EventStore(
    SessionLog,
    SessionCatalog,
    Threads,
    Tenancy,
    Resources,
    WorkQueue,
    WebhookEndpoints,
    WebhookDeliveries,
    Protocol,
):
    """The whole store: every part above. Backends are this; a caller should ask for the
    part it uses."""
