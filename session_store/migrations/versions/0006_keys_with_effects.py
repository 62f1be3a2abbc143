"""Idempotency keys are written with their write's effect, in one transaction.

Before, a key was taken (`status` 0) before its write and answered after it, so a gateway
that died in between left the key "in progress" for good: every retry was refused, while
the write may well have committed. Such rows are removed, so their keys work again: the old
scheme kept nothing that links a key to its effect, so a retry of one of them performs its
write, which may repeat one that committed before the upgrade; that is the one case this
cannot tell, and it beats a key refused forever.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM idempotency_keys WHERE status = 0")


def downgrade() -> None:
    """Nothing to undo: the removed rows stood for no answer."""
