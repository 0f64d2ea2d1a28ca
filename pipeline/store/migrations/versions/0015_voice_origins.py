"""Where each enrolled voice comes from: the sha256 of the files it was made from and of the recordings they were
cut from (voice_origins), and whether ohp knows it (people.origin_known).

A voice profile is derived from recordings and shares their restriction (pipeline.access.voice_withheld). The
voices enrolled before this revision kept only the paths of their files: those that are paths of stored
recordings become their origins, but what the rest were cut from is not known, so such a voice is withheld
outside those recordings until someone says where it comes from (`ohp speakers source`). The names it gave
speakers elsewhere go now, from the history's states of them too (a name a person set stays); the profile
stays, and the next run of the speakers stage after its origin is given names them again.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("people", sa.Column("origin_known", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "voice_origins",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_voice_origins_person_id_people"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("person_id", "sha256", name=op.f("pk_voice_origins")),
    )
    _origins_of_enrolled_voices()


def _origins_of_enrolled_voices() -> None:
    conn = op.get_bind()
    people = sa.table("people", sa.column("id", sa.Integer()), sa.column("name"), sa.column("sources", sa.JSON()))
    recordings = sa.table("recordings", sa.column("id", sa.Integer()), sa.column("sha256"), sa.column("path"))
    speakers = sa.table(
        "speakers",
        sa.column("id", sa.Integer()),
        sa.column("recording_id", sa.Integer()),
        sa.column("name"),
        sa.column("named_by"),
        sa.column("person_id", sa.Integer()),
    )
    stages = sa.table(
        "stages", sa.column("recording_id", sa.Integer()), sa.column("stage"), sa.column("report", sa.JSON())
    )
    history = sa.table(
        "history",
        sa.column("id", sa.Integer()),
        sa.column("recording_id", sa.Integer()),
        sa.column("before", sa.JSON()),
        sa.column("after", sa.JSON()),
    )
    voice_origins = sa.table("voice_origins", sa.column("person_id", sa.Integer()), sa.column("sha256"))
    by_path = {path: (rid, sha) for rid, sha, path in conn.execute(sa.select(recordings))}
    for person_id, name, sources in conn.execute(sa.select(people)).all():
        own = {by_path[path] for path in sources or () if path in by_path}
        if own:
            conn.execute(sa.insert(voice_origins), [{"person_id": person_id, "sha256": sha} for _, sha in own])
        elsewhere = sa.and_(speakers.c.person_id == person_id, speakers.c.recording_id.not_in([rid for rid, _ in own]))
        withheld = {rid for (rid,) in conn.execute(sa.select(speakers.c.recording_id).where(elsewhere))}
        conn.execute(sa.update(speakers).where(elsewhere, speakers.c.named_by.is_(None)).values(name=None))
        conn.execute(sa.update(speakers).where(elsewhere).values(person_id=None))
        _unreport(conn, stages, name, withheld)
        _unhistory(conn, history, name, withheld)


def _unreport(conn: sa.Connection, stages: sa.TableClause, name: str, recording_ids: set[int]) -> None:
    """The speakers stage's reports say which label a voice matched, by name."""
    chosen = sa.and_(stages.c.stage == "speakers", stages.c.recording_id.in_(recording_ids))
    for recording_id, _, report in conn.execute(sa.select(stages).where(chosen)).all():
        enrolled = (report or {}).get("enrolled")
        if isinstance(enrolled, dict) and name in enrolled.values():
            kept = {label: matched for label, matched in enrolled.items() if matched != name}
            mine = sa.and_(stages.c.stage == "speakers", stages.c.recording_id == recording_id)
            conn.execute(sa.update(stages).where(mine).values(report={**report, "enrolled": kept}))


def _unhistory(conn: sa.Connection, history: sa.TableClause, name: str, recording_ids: set[int]) -> None:
    """The history's speaker states keep the name the voice (named_by null), not a person, gave."""
    for row_id, _, *states in conn.execute(sa.select(history).where(history.c.recording_id.in_(recording_ids))).all():
        kept = [
            {**state, "name": None}
            if isinstance(state, dict) and "named_by" in state and state["named_by"] is None and state["name"] == name
            else state
            for state in states
        ]
        if kept != states:
            conn.execute(sa.update(history).where(history.c.id == row_id).values(before=kept[0], after=kept[1]))


def downgrade() -> None:
    op.drop_table("voice_origins")
    with op.batch_alter_table("people") as batch:
        batch.drop_column("origin_known")
