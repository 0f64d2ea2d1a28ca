"""Full-text index over segment text (converted and original), kept by the store on every write.

SQLite: an FTS5 table whose rowid is the segment id. PostgreSQL: a table of tsvectors with a GIN
index. Both hold `pipeline.search.textindex.index_terms` of the text, so they find the same segments.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Plain unicode61 with no diacritic folding: index_terms has normalised the text already.
        op.execute("CREATE VIRTUAL TABLE segment_index USING fts5(terms, tokenize = 'unicode61 remove_diacritics 0')")
    else:
        op.execute(
            "CREATE TABLE segment_index ("
            " segment_id INTEGER PRIMARY KEY REFERENCES segments (id) ON DELETE CASCADE,"
            " vector TSVECTOR NOT NULL)"
        )
        op.execute("CREATE INDEX ix_segment_index_vector ON segment_index USING GIN (vector)")
    _index_existing()


def _index_existing() -> None:
    """Index the segments a database already holds."""
    from sqlalchemy import text

    from pipeline.store.search import write_index

    bind = op.get_bind()
    rows = bind.execute(text("SELECT id, text, original_text FROM segments")).all()
    write_index(bind, [(r.id, r.text, r.original_text) for r in rows])


def downgrade() -> None:
    op.execute("DROP TABLE segment_index")
