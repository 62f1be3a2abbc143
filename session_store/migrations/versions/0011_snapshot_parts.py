"""Snapshots in parts kept by content: a snapshot is a small header (`snapshots.state`) and
the digests of its parts (`snapshots.parts`), each part a row of `snapshot_parts`, written
once and kept while a snapshot of the session names it. A snapshot of an older release,
in one piece, has no parts and reads as before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-15
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("snapshots", sa.Column("parts", sa.LargeBinary, nullable=True))
    op.create_table(
        "snapshot_parts",
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("session_id", "version", "digest"),
    )


def downgrade() -> None:
    """Snapshots in parts cannot be read in one piece: they go (a brain replays instead)."""
    op.drop_table("snapshot_parts")
    op.execute("DELETE FROM snapshots WHERE parts IS NOT NULL")
    with op.batch_alter_table("snapshots") as batch:
        batch.drop_column("parts")
