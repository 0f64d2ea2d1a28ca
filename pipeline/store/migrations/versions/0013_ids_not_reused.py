"""Segment and annotation ids are never given again on SQLite (AUTOINCREMENT), as on PostgreSQL.

SQLite gives a new row the largest id + 1: the segments a re-transcription put in place of a recording's took
the ids of those it deleted, and the tagger's new suggestions those of the ones that went with them. A person
correcting, deciding or reverting by the id of what was there (a web page loaded before the batch saved, a
history entry) changed the new segment or annotation that had the same id and version instead of being told
it is gone. PostgreSQL's sequences never give an id twice: nothing to do there.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLES = ("segments", "annotations")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        # The rows are copied with their ids: AUTOINCREMENT starts after the largest one still there.
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
