"""Every coder's own decisions on themes, for the agreement between coders; filled from the annotations'
decisions as they stand (the latest decider's, and the person who added a theme).

Revision ID: 0010
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

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
        sa.column("segment_id", sa.Integer),
        sa.column("theme", sa.String),
        sa.column("source", sa.String),
        sa.column("status", sa.String),
        sa.column("updated_by", sa.String),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    rows = {}
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


def downgrade() -> None:
    op.drop_index(op.f("ix_decisions_segment_id"), table_name="decisions")
    op.drop_table("decisions")
