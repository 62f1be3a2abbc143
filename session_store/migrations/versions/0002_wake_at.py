"""Sessions get a durable timer: `wake_at`, so an approval expires even when nobody is
watching the session.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("wake_at", sa.Float, nullable=True))
    op.create_index("ix_sessions_wake_at", "sessions", ["wake_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_wake_at", "sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("wake_at")
