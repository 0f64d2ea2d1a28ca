"""Doubt: which words to check, each segment's confidence, why a recording's transcript is likely poor and how
much of it is doubtful.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("words") as batch:
        batch.add_column(sa.Column("doubtful", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("confidence", sa.Float(), nullable=True))
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("warnings", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("doubtful", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("doubtful")
        batch.drop_column("warnings")
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("confidence")
    with op.batch_alter_table("words") as batch:
        batch.drop_column("doubtful")
