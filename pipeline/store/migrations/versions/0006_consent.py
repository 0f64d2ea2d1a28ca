"""Consent: what each interviewee agreed to (open, restricted, closed) and when a restriction ends.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("consent", sa.String(length=16), server_default="open", nullable=False))
        batch.add_column(sa.Column("release_on", sa.Date(), nullable=True))
        batch.create_check_constraint("consent", "consent IN ('open', 'restricted', 'closed')")


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_constraint("consent", type_="check")
        batch.drop_column("release_on")
        batch.drop_column("consent")
