"""Who said where each enrolled voice comes from, and when (people.origin_by, people.origin_at).

A voice's origins decide where it may name speakers (pipeline.access.voice_withheld): giving them is a change of
access, and every such change is someone's. Before this revision `ohp speakers source` kept no user, so for a voice
whose origin is known the store cannot tell whether its enroller gave it at enrolment or someone else later: both
columns stay empty for the voices enrolled before it (`ohp speakers list` says the origin was given before ohp
kept by whom) rather than name someone who may not have given it.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("people") as batch:
        batch.add_column(sa.Column("origin_by", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("origin_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("people") as batch:
        batch.drop_column("origin_at")
        batch.drop_column("origin_by")
