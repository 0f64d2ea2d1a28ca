"""The speakers of each recording (their labels, the names and roles people or the pipeline gave them)
and the enrolled voices (people's voice profiles) that name speakers across recordings."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from pipeline.carry import speaker_state
from pipeline.errors import InvalidInputError, NotFoundError
from pipeline.records import SPEAKER_ROLES, PersonRecord, SpeakerRecord
from pipeline.store.models import HistoryRow, PersonRow, SpeakerRow, StageRow, iso, now


def speaker_record(row: SpeakerRow | Row[Any]) -> SpeakerRecord:  # an ORM object or a Core row
    return SpeakerRecord(row.label, row.name, row.role, row.named_by, row.role_by, row.person_id)


def _profile_bytes(profile: Sequence[float]) -> bytes:
    # Explicit little-endian float32: the same bytes whichever machine wrote them.
    return struct.pack(f"<{len(profile)}f", *profile)


def _person(row: PersonRow) -> PersonRecord:
    return PersonRecord(
        id=row.id,
        name=row.name,
        profile=struct.unpack(f"<{len(row.profile) // 4}f", row.profile),
        sources=tuple(row.sources or ()),
        enrolled_by=row.enrolled_by,
        enrolled_at=iso(row.enrolled_at) or "",
    )


def _speaker_row(s: Session, recording_id: int, label: str) -> SpeakerRow:
    row = s.scalars(
        select(SpeakerRow).where(SpeakerRow.recording_id == recording_id, SpeakerRow.label == label)
    ).one_or_none()
    if row is None:
        labels = s.scalars(
            select(SpeakerRow.label).where(SpeakerRow.recording_id == recording_id).order_by(SpeakerRow.id)
        ).all()
        raise NotFoundError(
            f"recording {recording_id} has no speaker {label!r}"
            + (f" (it has {', '.join(labels)})" if labels else " (it has no speakers)")
        )
    return row


def save_speakers(s: Session, recording_id: int, found: list[SpeakerRecord]) -> None:
    """Give each speaker the stage found the given role, name and enrolled person, except where a person
    set the name or the role."""
    for speaker in found:
        if speaker.role not in (None, *SPEAKER_ROLES):
            raise InvalidInputError(f"unknown role {speaker.role!r}: choose one of {', '.join(SPEAKER_ROLES)}")
    rows = {row.label: row for row in s.scalars(select(SpeakerRow).where(SpeakerRow.recording_id == recording_id))}
    for speaker in found:
        row = rows.get(speaker.label)
        if row is None:
            row = rows[speaker.label] = SpeakerRow(recording_id=recording_id, label=speaker.label)
            s.add(row)
        if row.named_by is None:
            row.name, row.person_id = speaker.name, speaker.person_id
        if row.role_by is None:
            row.role = speaker.role


def speakers(s: Session, recording_id: int) -> list[SpeakerRecord]:
    """A recording's speakers, in order of first appearance."""
    query = select(SpeakerRow).where(SpeakerRow.recording_id == recording_id).order_by(SpeakerRow.id)
    return [speaker_record(row) for row in s.scalars(query)]


def rename_speaker(s: Session, recording_id: int, label: str, name: str, user: str) -> SpeakerRecord:
    """Give a speaker the name people see, as `user` ("" gives the label back); kept in the history."""
    name = " ".join(name.split())  # one line: it goes into TXT prefixes and VTT voice tags
    row = _speaker_row(s, recording_id, label)
    before = speaker_state(row)
    row.name, row.named_by = (name, user) if name else (None, None)
    s.add(
        HistoryRow(
            recording_id=recording_id, action="renamed", changed_by=user, before=before, after=speaker_state(row)
        )
    )
    s.flush()
    return speaker_record(row)


def set_role(s: Session, recording_id: int, label: str, role: str, user: str) -> SpeakerRecord:
    """Set a speaker's role as `user`, over the heuristics' choice; kept in the history."""
    if role not in SPEAKER_ROLES:
        raise InvalidInputError(f"unknown role {role!r}: choose one of {', '.join(SPEAKER_ROLES)}")
    row = _speaker_row(s, recording_id, label)
    before = speaker_state(row)
    row.role, row.role_by = role, user
    s.add(
        HistoryRow(recording_id=recording_id, action="role", changed_by=user, before=before, after=speaker_state(row))
    )
    s.flush()
    return speaker_record(row)


def enroll(s: Session, name: str, profile: Sequence[float], user: str, sources: Sequence[str] = ()) -> PersonRecord:
    """Store a person's voice profile as `user`; enrolling a name again replaces its profile."""
    name = " ".join(name.split())
    if not name:
        raise InvalidInputError("an enrolled voice needs a name")
    row = s.scalars(select(PersonRow).where(PersonRow.name == name)).one_or_none()
    if row is None:
        row = PersonRow(name=name)
        s.add(row)
    row.profile, row.sources = _profile_bytes(profile), [str(source) for source in sources]
    row.enrolled_by, row.enrolled_at = user, now()
    s.flush()
    return _person(row)


def people(s: Session) -> list[PersonRecord]:
    """The enrolled voices, by name."""
    return [_person(row) for row in s.scalars(select(PersonRow).order_by(PersonRow.name))]


def forget(s: Session, name: str) -> int:
    """Remove a person's enrolled voice and the name it gave speakers (those a person named keep theirs);
    how many speakers lose the name. A voice profile is biometric data: it goes with what its matches wrote
    (the speakers stage's report too), and no history row is written (it would keep the name again)."""
    name = " ".join(name.split())
    row = s.scalars(select(PersonRow).where(PersonRow.name == name)).one_or_none()
    if row is None:
        known = s.scalars(select(PersonRow.name).order_by(PersonRow.name)).all()
        raise NotFoundError(f"no enrolled voice {name!r}" + (f" (there are {', '.join(known)})" if known else ""))
    named = s.scalars(select(SpeakerRow).where(SpeakerRow.person_id == row.id)).all()
    for speaker in named:
        if speaker.named_by is None:
            speaker.name = None
        speaker.person_id = None
    # The speakers stage's report says which label the voice matched, by name.
    for stage in s.scalars(select(StageRow).where(StageRow.stage == "speakers")):
        enrolled = (stage.report or {}).get("enrolled")
        if isinstance(enrolled, dict) and name in enrolled.values():
            stage.report = {**stage.report, "enrolled": {k: v for k, v in enrolled.items() if v != name}}
    s.delete(row)
    s.flush()
    return sum(speaker.named_by is None for speaker in named)
