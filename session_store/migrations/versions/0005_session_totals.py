"""Sessions keep what the API shows without replaying their log: the title and metadata
they were created with, and running totals of model usage, cost and turns, kept by every
append in the same transaction as its events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TOTALS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "turns",
)


def upgrade() -> None:
    # Sessions created before this revision show empty totals until their next response:
    # backfilling would mean decoding every stored model response inside a migration.
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("title", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("metadata", sa.Text, nullable=False, server_default="{}"))
        for name in _TOTALS:
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"))
    op.create_index("ix_sessions_tenant_created", "sessions", ["tenant", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_tenant_created", "sessions")
    with op.batch_alter_table("sessions") as batch:
        for name in ("title", "metadata", *_TOTALS, "cost_usd"):
            batch.drop_column(name)
