"""The store keeps no blobs: the `blobs` table goes.

Nothing wrote to it: the hands keep tool output and files in the NATS object store
(`keel-blobs`), since they never touch the session store, and a `tool.result` references
those. A row left in it by an older release is dropped with the table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("blobs")


def downgrade() -> None:
    """An empty table as 0001 made it: the dropped rows are not brought back."""
    op.create_table(
        "blobs",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
