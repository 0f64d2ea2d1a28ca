"""Where a theme suggestion came from: the codebook's patterns or the learned model.

Revision ID: 0011
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("annotations") as batch:
        batch.add_column(sa.Column("origin", sa.String(length=16), nullable=True))
    # Every suggestion made before the model existed came from the patterns.
    op.execute("UPDATE annotations SET origin = 'pattern' WHERE source = 'auto'")


def downgrade() -> None:
    with op.batch_alter_table("annotations") as batch:
        batch.drop_column("origin")
