"""Webhooks: a tenant's endpoint, and how far it has been sent each session's events.

`webhook_endpoints` holds one endpoint per tenant (its URL, signing secret, the event types
it takes, and the lease of the gateway sending to it); `webhook_cursors` the delivery
position per endpoint and session, durable, so a gateway that dies mid-delivery is followed
by one that resumes there (and a deleted session's `session.deleted`, still to send).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("endpoint_id", sa.String(64), nullable=False, unique=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("event_types", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
    )
    op.create_table(
        "webhook_cursors",
        sa.Column("endpoint_id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("next_seq", sa.BigInteger, nullable=False),
        sa.Column("next_part", sa.Integer, nullable=False),
        sa.Column("deleted_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("endpoint_id", "session_id"),
    )


def downgrade() -> None:
    op.drop_table("webhook_cursors")
    op.drop_table("webhook_endpoints")
