"""The session store: keel's single source of truth.

An append-only, hash-chained, fenced event log per session, with leases and snapshots,
on SQLite (embedded) or PostgreSQL (scale-out). Errors: see `session_store._errors`.
"""

from typing import TYPE_CHECKING, Any

from session_store._database import StoreLimits
from session_store._errors import (
    Conflict,
    Fenced,
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
)
from session_store._health import StoreHealth, StoreOperation
from session_store._idempotency import IdempotentWrite
from session_store._open import open_store
from session_store._protocol import (
    EventStore,
    Resources,
    SessionCatalog,
    SessionLog,
    SessionReader,
    Store,
    Tenancy,
    WebhookDeliveries,
    WebhookEndpoints,
)
from session_store._records import (
    ApiKey,
    Appended,
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
)

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
    "Remembered",
    "Resource",
    "ResourceNotFound",
    "ResourcePage",
    "Resources",
    "ApiKey",
    "Appended",
    "Conflict",
    "EventStore",
    "Fenced",
    "IdempotentWrite",
    "InvalidEvent",
    "InvalidInput",
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
    "WebhookBacklog",
    "WebhookDeliveries",
    "WebhookEndpoint",
    "WebhookEndpoints",
    "open_store",
]
