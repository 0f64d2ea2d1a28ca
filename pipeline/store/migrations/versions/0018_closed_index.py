"""SQLite: the segments of closed recordings in a full-text table of their own, segment_index_closed.

FTS5's bm25 weighs a word by the statistics of the whole table it searches (how many rows hold it, their average
length). With every segment in segment_index, the order of a viewer's hits could tell which words closed interviews
say more often; now segment_index holds only what every signed-in user may see. The recordings closed today (closed,
without a release date or with one still to come) have their rows moved to the new table, made with the same
tokenizer as segment_index (0003). PostgreSQL ranks by ts_rank_cd, which reads the segment alone: unchanged there.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

CLOSED_SEGMENTS = (
    "SELECT s.id FROM segments s JOIN recordings r ON r.id = s.recording_id"
    " WHERE r.consent = 'closed' AND (r.release_on IS NULL OR r.release_on > date('now', 'localtime'))"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        "CREATE VIRTUAL TABLE segment_index_closed USING fts5(terms, tokenize = 'unicode61 remove_diacritics 0')"
    )
    op.execute(
        "INSERT INTO segment_index_closed (rowid, terms)"
        f" SELECT rowid, terms FROM segment_index WHERE rowid IN ({CLOSED_SEGMENTS})"
    )
    op.execute(f"DELETE FROM segment_index WHERE rowid IN ({CLOSED_SEGMENTS})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("INSERT INTO segment_index (rowid, terms) SELECT rowid, terms FROM segment_index_closed")
    op.execute("DROP TABLE segment_index_closed")
