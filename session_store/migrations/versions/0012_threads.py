"""Threads: a session spawned by another session's call, as a sub-agent of it.

A thread is a session of its own (its own log, lease and fencing), linked to the session
whose call spawned it (`parent_session_id`) and to the session at the top of its tree
(`thread_of`, the primary thread the Managed Agents API lists it under). Both null: a
session of its own.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("parent_session_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("thread_of", sa.String(64), nullable=True))
    op.create_index("ix_sessions_thread_of", "sessions", ["thread_of", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_thread_of", "sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("thread_of")
        batch.drop_column("parent_session_id")
