"""Self-hosted environments: their work items, the workers that poll them, and their keys.

`work_items` holds the Managed Agents `environments.work` queue: one row per item, derived
from the sessions that wait on their environment's worker. `live_session` is the item's
session while the item is not stopped, and unique, so a session never has two live items,
whichever gateways derive them at once. `work_pollers` keeps when each worker last polled
(the queue's `workers_polling`). `environment_keys` are the bearer keys a worker polls with;
only a hash is kept. Sessions get an index on their environment and status, which is what
deriving the queue reads.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "work_items",
        sa.Column("work_id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("environment_id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("live_session", sa.String(64), nullable=True, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("polled_at", sa.Float, nullable=True),
        sa.Column("worker_id", sa.String(128), nullable=True),
        sa.Column("acknowledged_at", sa.Float, nullable=True),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("heartbeat_us", sa.BigInteger, nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("ttl_s", sa.Integer, nullable=False, server_default="0"),
        sa.Column("stop_requested_at", sa.Float, nullable=True),
        sa.Column("stopped_at", sa.Float, nullable=True),
    )
    op.create_index(
        "ix_work_items_environment_state",
        "work_items",
        ["tenant", "environment_id", "state", "created_at"],
    )
    op.create_table(
        "work_pollers",
        sa.Column("environment_id", sa.String(64), nullable=False),
        sa.Column("worker_id", sa.String(128), nullable=False),
        sa.Column("polled_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("environment_id", "worker_id"),
    )
    op.create_table(
        "environment_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(64), nullable=False, unique=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("environment_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_sessions_environment_status", "sessions", ["environment_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_sessions_environment_status", "sessions")
    op.drop_table("environment_keys")
    op.drop_table("work_pollers")
    op.drop_index("ix_work_items_environment_state", "work_items")
    op.drop_table("work_items")
