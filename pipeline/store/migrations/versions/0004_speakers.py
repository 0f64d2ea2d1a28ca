"""Speakers per recording (label, display name, role, enrolled person) and enrolled voices.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("profile", sa.LargeBinary(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("enrolled_by", sa.String(length=255), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_people")),
        sa.UniqueConstraint("name", name=op.f("uq_people_name")),
    )
    op.create_table(
        "speakers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("named_by", sa.String(length=255), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("role_by", sa.String(length=255), nullable=True),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_speakers_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_speakers_person_id_people"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_speakers")),
        sa.UniqueConstraint("recording_id", "label", name=op.f("uq_speakers_recording_id_label")),
    )
    _speakers_of_existing_segments()


def _speakers_of_existing_segments() -> None:
    """A speaker row for each label the stored segments already carry (imported transcripts)."""
    op.execute(
        "INSERT INTO speakers (recording_id, label)"
        " SELECT DISTINCT recording_id, speaker FROM segments WHERE speaker IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("speakers")
    op.drop_table("people")
