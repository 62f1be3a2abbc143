"""The store's tables, as SQLAlchemy Core metadata. The migrations create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

# The newest migration: these tables are what it leaves. A store already there skips
# Alembic entirely at start (importing it is a tenth of a second of every brain's start).
SCHEMA_REVISION = "0012"

metadata = MetaData()

sessions = Table(
    "sessions",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("head_seq", BigInteger, nullable=False),
    Column("head_hash", LargeBinary(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text, nullable=False, default=""),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_epoch", BigInteger, nullable=False, default=0),
    Column("lease_until", Float, nullable=True),
    # A timer a brain left when it let the session wait (an approval expiring): when it is
    # due and nobody holds the lease, the sweeper hands the session to a brain.
    Column("wake_at", Float, nullable=True),
    # What the API shows without replaying the log: the title and metadata (JSON) the
    # session was created with, and running totals its appends keep.
    Column("title", Text, nullable=False, server_default=""),
    Column("metadata", Text, nullable=False, server_default="{}"),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
    Column("turns", BigInteger, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    # A session made through the Managed Agents API: its agent version and environment.
    Column("agent_id", String(64), nullable=True),
    Column("agent_version", BigInteger, nullable=True),
    Column("environment_id", String(64), nullable=True),
    Column("archived_at", Float, nullable=True),
    # A thread: the session whose call spawned it, and the session at the top of its tree.
    Column("parent_session_id", String(64), nullable=True),
    Column("thread_of", String(64), nullable=True),
    Index("ix_sessions_tenant_status", "tenant", "status", "session_id"),
    Index("ix_sessions_tenant_created", "tenant", "created_at"),
    Index("ix_sessions_lease_until", "lease_until"),
    Index("ix_sessions_wake_at", "wake_at"),
    # What deriving a self-hosted environment's work reads (`_work.py`).
    Index("ix_sessions_environment_status", "environment_id", "status"),
    Index("ix_sessions_thread_of", "thread_of", "created_at"),
)

events = Table(
    "events",
    metadata,
    Column("session_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("type", String(64), nullable=False),
    Column("at", Float, nullable=False),
    # msgspec JSON as text, so `sqlite3` and `psql` show it as written.
    Column("data", Text, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    PrimaryKeyConstraint("session_id", "seq"),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("session_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("at", Float, nullable=False),
    Column("state", LargeBinary, nullable=False),
    # The sha256 digests (32 bytes each, in order) of the parts in `snapshot_parts` that
    # follow `state`; NULL for a snapshot in one piece.
    Column("parts", LargeBinary, nullable=True),
    PrimaryKeyConstraint("session_id", "version", "seq"),
)

# The parts of a session's snapshot, kept by content: a new snapshot writes only the parts
# the previous one did not have, and drops those it no longer names.
snapshot_parts = Table(
    "snapshot_parts",
    metadata,
    Column("session_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", LargeBinary(32), nullable=False),
    Column("data", LargeBinary, nullable=False),
    PrimaryKeyConstraint("session_id", "version", "digest"),
)

# Bearer keys of the HTTP API, each mapped to a tenant; only a hash is kept.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("key_id", String(64), nullable=False, unique=True),
    Column("tenant", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
)

# Responses to writes sent with an Idempotency-Key, so a retried request gets the first
# answer instead of doing the write again. A row is written in the same transaction as its
# write's effect (`_idempotency.py`), so there is no row without an effect, nor the reverse.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("tenant", "key"),
)

# The Managed Agents API's versioned resources (agents, environments), one row per version;
# `created_at` is the resource's, the same in every version, `updated_at` the version's.
resources = Table(
    "resources",
    metadata,
    Column("resource_id", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("archived_at", Float, nullable=True),
    PrimaryKeyConstraint("resource_id", "version"),
    Index("ix_resources_tenant_kind", "tenant", "kind", "resource_id"),
)

# A self-hosted environment's work items (`_work.py`), derived from the sessions waiting on
# its worker. `live_session` is the item's session until the item stops, unique: a session
# never has two live items. `heartbeat_us` is the last heartbeat in microseconds, so the
# `last_heartbeat` a worker echoes back compares exactly.
work_items = Table(
    "work_items",
    metadata,
    Column("work_id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("environment_id", String(64), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("live_session", String(64), nullable=True, unique=True),
    Column("state", String(16), nullable=False),
    Column("metadata", Text, nullable=False, server_default="{}"),
    Column("created_at", Float, nullable=False),
    Column("polled_at", Float, nullable=True),
    Column("worker_id", String(128), nullable=True),
    Column("acknowledged_at", Float, nullable=True),
    Column("started_at", Float, nullable=True),
    Column("heartbeat_us", BigInteger, nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("ttl_s", Integer, nullable=False, server_default="0"),
    Column("stop_requested_at", Float, nullable=True),
    Column("stopped_at", Float, nullable=True),
    Index("ix_work_items_environment_state", "tenant", "environment_id", "state", "created_at"),
)

# When each worker last polled its environment, for the queue's `workers_polling`.
work_pollers = Table(
    "work_pollers",
    metadata,
    Column("environment_id", String(64), nullable=False),
    Column("worker_id", String(128), nullable=False),
    Column("polled_at", Float, nullable=False),
    PrimaryKeyConstraint("environment_id", "worker_id"),
)

# Bearer keys of self-hosted environments' workers: each serves one environment's work and
# sessions, nothing else. Only a hash is kept, as for API keys.
environment_keys = Table(
    "environment_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("key_id", String(64), nullable=False, unique=True),
    Column("tenant", String(64), nullable=False),
    Column("environment_id", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
)

# A tenant's webhook endpoint (one at most): where its sessions' events are POSTed, signed
# with `secret`; `event_types` (JSON) picks which, all when empty. Events logged from
# `created_at` on are sent. `lease_owner` is the gateway that sends them until `lease_until`.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("endpoint_id", String(64), nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("secret", String(128), nullable=False),
    Column("event_types", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", Float, nullable=True),
)

# How far an endpoint has been sent each session's webhook events: every one before part
# `next_part` of those that the event at `next_seq` of the log makes. No row: nothing sent
# yet. `deleted_at`: the session is gone (its log with it), and `session.deleted` is still
# to send; the row is written by the delete, in its transaction.
webhook_cursors = Table(
    "webhook_cursors",
    metadata,
    Column("endpoint_id", String(64), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("next_seq", BigInteger, nullable=False),
    Column("next_part", Integer, nullable=False),
    Column("deleted_at", Float, nullable=True),
    PrimaryKeyConstraint("endpoint_id", "session_id"),
)
