"""The speaker turn of each segment, kept in a column so that the collection report counts themes that go
together in a turn with a GROUP BY instead of numbering every segment's turn with window functions each time
(bench/RESULTS.md: 7-14 s of CPU on a million segments). The store sets it when it saves segments
(transcripts.turn_numbers); here the segments already stored are numbered the same way in SQL.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# A turn is a run of segments of one speaker in order of start, then idx; a segment without a speaker, or
# the first of its recording, starts one (lag() = speaker is NULL then, not true): its number is the count
# of turns started so far. The order is total (idx is unique within a recording), so no two rows tie.
NUMBERED = """
    SELECT id, sum(starts) OVER (PARTITION BY recording_id ORDER BY start, idx) AS turn
    FROM (
        SELECT id, recording_id, start, idx,
               CASE WHEN lag(speaker) OVER (PARTITION BY recording_id ORDER BY start, idx) = speaker
                    THEN 0 ELSE 1 END AS starts
        FROM segments
    ) AS changes
"""


def upgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("turn", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        f"UPDATE segments SET turn = numbered.turn FROM ({NUMBERED}) AS numbered WHERE numbered.id = segments.id"
    )


def downgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("turn")
