"""The session store: keel's single source of truth.

An append-only, hash-chained, fenced event log per session, with leases and snapshots,
on SQLite (embedded) or PostgreSQL (scale-out). Errors: see `session_store._errors`.
"""

from typing import TYPE_CHECKING, Any

from session_store._database import StoreLimits
from session_store._errors import (
    Conflict,
    Fenced,
    HeartbeatMismatch,
    InvalidEvent,
    InvalidInput,
    KeyTaken,
    LeaseHeld,
    PayloadTooLarge,
    ResourceNotFound,
    SessionBusy,
    SessionExists,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
    VersionConflict,
    WorkStateConflict,
)
from session_store._health import StoreHealth, StoreOperation
from session_store._idempotency import IdempotentWrite
from session_store._open import open_store
from session_store._protocol import (
    BrainStore,
    EventStore,
    Resources,
    SessionCatalog,
    SessionLog,
    SessionReader,
    Store,
    Tenancy,
    Threads,
    WebhookDeliveries,
    WebhookEndpoints,
    WorkQueue,
)
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
    WorkState,
    WorkStats,
)
from session_store._work import RECLAIM_AFTER_S

if TYPE_CHECKING:
    from session_store._postgres import PostgresEventStore
    from session_store._sqlite import SqliteEventStore


def __getattr__(name: str) -> Any:
    """Backends are imported on first use: a process pays only for the driver it uses."""
    if name == "PostgresEventStore":
        from session_store._postgres import PostgresEventStore

        return PostgresEventStore
    if name == "SqliteEventStore":
        from session_store._sqlite import SqliteEventStore

        return SqliteEventStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RECLAIM_AFTER_S",
    "Remembered",
    "Resource",
    "ResourceNotFound",
    "ResourcePage",
    "Resources",
    "ApiKey",
    "Appended",
    "Conflict",
    "EnvironmentKey",
    "EventStore",
    "Fenced",
    "HeartbeatMismatch",
    "IdempotentWrite",
    "InvalidEvent",
    "InvalidInput",
    "KeyScope",
    "KeyTaken",
    "Lease",
    "LeaseHeld",
    "PayloadTooLarge",
    "PostgresEventStore",
    "SessionBusy",
    "SessionCatalog",
    "SessionExists",
    "SessionInfo",
    "SessionLog",
    "BrainStore",
    "Threads",
    "SessionNotFound",
    "SessionPage",
    "SessionReader",
    "Snapshot",
    "SqliteEventStore",
    "Store",
    "StoreError",
    "StoreHealth",
    "StoreOperation",
    "StoreLimits",
    "StoreUnavailable",
    "Tenancy",
    "Verification",
    "VersionConflict",
    "WorkItem",
    "WorkLease",
    "WorkPage",
    "WorkQueue",
    "WorkState",
    "WorkStateConflict",
    "WorkStats",
    "WebhookBacklog",
    "WebhookDeliveries",
    "WebhookEndpoint",
    "WebhookEndpoints",
    "open_store",
]
