"""Vocabulary: words a person wrote in a correction are marked, and the suggested terms researchers ignored.

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("words") as batch:
        batch.add_column(sa.Column("corrected", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "ignored_terms",
        sa.Column("term", sa.String(length=255), primary_key=True),
        sa.Column("ignored_by", sa.String(length=255), nullable=False),
        sa.Column("ignored_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ignored_terms")
    with op.batch_alter_table("words") as batch:
        batch.drop_column("corrected")
