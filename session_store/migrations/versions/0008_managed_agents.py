"""Managed Agents: agents and environments, and where a session made from them came from.

`resources` holds the API's versioned resources (agents, environments) as JSON bodies, one
row per version. A session made through the Managed Agents API names its agent version and
environment (projected from its `session.created`), and may be archived (`session.archived`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("archived_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("resource_id", "version"),
    )
    op.create_index("ix_resources_tenant_kind", "resources", ["tenant", "kind", "resource_id"])
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("agent_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("agent_version", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("environment_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("archived_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for name in ("agent_id", "agent_version", "environment_id", "archived_at"):
            batch.drop_column(name)
    op.drop_index("ix_resources_tenant_kind", "resources")
    op.drop_table("resources")
