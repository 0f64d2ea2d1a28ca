"""The full-text index of segments with marked letters, made again now that marks are folded a letter at a time.

Before this revision the index dropped a segment's marks from its whole text only when the text also held an
accented Latin letter: ё was е and й и beside one and kept elsewhere, Greek accents were kept without one, and a
final Σ was ς. Latin text alone folds as it did; only text with a combining mark, a Greek or a Cyrillic letter
(or a mathematical Greek one, which NFKC makes Greek) can have other terms now. Those segments are found in SQL,
their terms made again in Python, and only the index rows that differ from them are written, in batches.

The downgrade leaves the index as it is: the old rule is not kept, and the terms it would give differ only for
those segments' marked letters.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# Combining marks to Cyrillic (Greek between), Greek Extended, mathematical Greek: the same character class in
# a SQLite GLOB and a PostgreSQL regular expression.
MARKED = "\u0300-\u04ff\u1f00-\u1fff\U0001d6a8-\U0001d7c9"
BATCH = 1_000  # segments read, compared and written at a time


def upgrade() -> None:
    from pipeline.store.search import segment_terms, write_index

    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    matches, marked = ("GLOB", f"*[{MARKED}]*") if sqlite else ("~", f"[{MARKED}]")
    candidates = sa.text(
        f"SELECT id, text, original_text FROM segments WHERE id > :after"
        f" AND (text {matches} :marked OR original_text {matches} :marked) ORDER BY id LIMIT {BATCH}"
    )
    differing = _differing_sqlite if sqlite else _differing_postgresql
    after = 0
    while rows := bind.execute(candidates, {"after": after, "marked": marked}).all():
        after = rows[-1].id
        stale = differing(bind, {r.id: segment_terms(r.text, r.original_text) for r in rows})
        write_index(bind, [(r.id, r.text, r.original_text) for r in rows if r.id in stale])


def _differing_sqlite(bind: Connection, terms: dict[int, str]) -> set[int]:
    """The segments of `terms` (id: its terms now) whose index row holds other terms."""
    stored = sa.text("SELECT rowid, terms FROM segment_index WHERE rowid IN :ids")
    held: dict[int, str] = dict(
        bind.execute(stored.bindparams(sa.bindparam("ids", expanding=True)), {"ids": list(terms)}).all()
    )
    return {sid for sid, now in terms.items() if held.get(sid) != now}


def _differing_postgresql(bind: Connection, terms: dict[int, str]) -> set[int]:
    """As _differing_sqlite, but the index holds a tsvector of the terms, which only PostgreSQL makes."""
    stored = sa.text(
        "SELECT v.id FROM unnest(:ids, :terms) AS v (id, terms) LEFT JOIN segment_index i ON i.segment_id = v.id"
        " WHERE i.vector IS DISTINCT FROM to_tsvector('simple', v.terms)"
    ).bindparams(
        sa.bindparam("ids", type_=postgresql.ARRAY(sa.Integer())),
        sa.bindparam("terms", type_=postgresql.ARRAY(sa.Text())),
    )
    return set(bind.scalars(stored, {"ids": list(terms), "terms": list(terms.values())}))


def downgrade() -> None:
    pass
