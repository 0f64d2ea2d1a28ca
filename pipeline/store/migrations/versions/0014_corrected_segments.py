"""Whether a segment's text is a person's, kept in a column of its own.

A segment counted as corrected when its version was above 1, but a revert to the recogniser's text raises the
version too: the reverted segment stayed a person's (never doubtful, carried over by a re-transcription as a
correction). The segments already stored are marked as the version said: a revert made before this revision
kept no words to put back, so the text it left stays a person's.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# SQLite alters the table by copying it: the copy keeps the AUTOINCREMENT that 0013 gave it (ids never reused).
SQLITE_TABLE = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("segments", table_kwargs=SQLITE_TABLE) as batch:
        batch.add_column(sa.Column("corrected", sa.Boolean(), server_default=sa.false(), nullable=False))
    segments = sa.table("segments", sa.column("version", sa.Integer()), sa.column("corrected", sa.Boolean()))
    op.execute(segments.update().where(segments.c.version > 1).values(corrected=True))


def downgrade() -> None:
    with op.batch_alter_table("segments", table_kwargs=SQLITE_TABLE) as batch:
        batch.drop_column("corrected")
