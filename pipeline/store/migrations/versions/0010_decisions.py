"""Every coder's own decisions on themes, for the agreement between coders; filled from each coder's last decision
the history holds, then the annotations' decisions as they stand (the latest decider's, and the person who added a
theme). From the annotations alone, a coder's decision another's overturned (rita accepted, bob rejected) was lost.

Revision ID: 0010
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    decisions = op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("theme", sa.String(length=128), nullable=False),
        sa.Column("coder", sa.String(length=255), nullable=False),
        sa.Column("present", sa.Boolean(), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("via IN ('review', 'import')", name=op.f("ck_decisions_via")),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name=op.f("fk_decisions_segment_id_segments"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        sa.UniqueConstraint("segment_id", "theme", "coder", name=op.f("uq_decisions_segment_id_theme_coder")),
    )
    op.create_index(op.f("ix_decisions_segment_id"), "decisions", ["segment_id"], unique=False)
    annotations = sa.table(
        "annotations",
        sa.column("id", sa.Integer),
        sa.column("segment_id", sa.Integer),
        sa.column("theme", sa.String),
        sa.column("source", sa.String),
        sa.column("status", sa.String),
        sa.column("updated_by", sa.String),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    rows = _from_history(annotations)
    for a in op.get_bind().execute(sa.select(annotations).where(annotations.c.status != "suggested")):
        when = a.updated_at or datetime.now(UTC)
        if a.source != "auto":  # the person who added it said the theme is there
            rows[a.segment_id, a.theme, a.source] = (True, when)
        if a.updated_by and a.updated_by not in ("auto", "ohp"):
            rows[a.segment_id, a.theme, a.updated_by] = (a.status == "accepted", when)
    op.bulk_insert(
        decisions,
        [
            {"segment_id": sid, "theme": theme, "coder": coder, "present": present, "via": "review", "decided_at": at}
            for (sid, theme, coder), (present, at) in rows.items()
        ],
    )


def _from_history(annotations: sa.TableClause) -> dict[tuple[int, str, str], tuple[bool, datetime]]:
    """Each coder's last decision on each annotation still there, as the history has it: accepted or added present,
    rejected absent, put back to suggested none. A revert undid a change whose decider the history does not link:
    the decisions before it on that annotation are left to the annotations' own state."""
    history = sa.table(
        "history",
        sa.column("id", sa.Integer),
        sa.column("annotation_id", sa.Integer),
        sa.column("action", sa.String),
        sa.column("changed_by", sa.String),
        sa.column("changed_at", sa.DateTime(timezone=True)),
    )
    bind = op.get_bind()
    latest: dict[int, dict[str, tuple[str, datetime]]] = defaultdict(dict)  # by annotation, by coder
    actions = ("accepted", "rejected", "added", "suggested", "reverted")
    for h in bind.execute(sa.select(history).where(history.c.action.in_(actions)).order_by(history.c.id)):
        if h.action == "reverted":
            latest.pop(h.annotation_id, None)
        elif h.annotation_id is not None and h.changed_by not in ("auto", "ohp"):
            latest[h.annotation_id][h.changed_by] = (h.action, h.changed_at or datetime.now(UTC))
    where = {
        a.id: (a.segment_id, a.theme)
        for a in bind.execute(sa.select(annotations.c.id, annotations.c.segment_id, annotations.c.theme))
    }
    return {
        (*where[annotation_id], coder): (action != "rejected", at)
        for annotation_id, by_coder in latest.items()
        for coder, (action, at) in by_coder.items()
        if action != "suggested" and annotation_id in where
    }


def downgrade() -> None:
    op.drop_index(op.f("ix_decisions_segment_id"), table_name="decisions")
    op.drop_table("decisions")
