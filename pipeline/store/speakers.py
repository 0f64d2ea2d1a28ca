"""The speakers of each recording (their labels, the names and roles people or the pipeline gave them)
and the enrolled voices (people's voice profiles) that name speakers across recordings."""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, select
from sqlalchemy.orm import Session

from pipeline.access import closed_origins, voice_withheld
from pipeline.carry import speaker_state
from pipeline.errors import ConflictError, InvalidInputError, NotFoundError
from pipeline.records import SPEAKER_ROLES, PersonRecord, SpeakerRecord
from pipeline.store.database import by_code_point
from pipeline.store.models import (
    HistoryRow,
    PersonRow,
    RecordingRow,
    SpeakerRow,
    StageRow,
    VoiceOriginRow,
    iso,
    now,
)
from pipeline.store.recordings import recording_record


def speaker_record(row: SpeakerRow | Row[Any]) -> SpeakerRecord:  # an ORM object or a Core row
    return SpeakerRecord(row.label, row.name, row.role, row.named_by, row.role_by, row.person_id)


def _profile_bytes(profile: Sequence[float]) -> bytes:
    # Explicit little-endian float32: the same bytes whichever machine wrote them.
    return struct.pack(f"<{len(profile)}f", *profile)


def _people(s: Session, rows: Iterable[PersonRow]) -> list[PersonRecord]:
    """The enrolled voices of these rows, each with its origins and the stored recordings among them."""
    rows = list(rows)
    origins: defaultdict[int, list[str]] = defaultdict(list)
    query = select(VoiceOriginRow).where(VoiceOriginRow.person_id.in_([row.id for row in rows]))
    for origin in s.scalars(query.order_by(by_code_point(VoiceOriginRow.sha256))):
        origins[origin.person_id].append(origin.sha256)
    shas = {sha for found in origins.values() for sha in found}
    stored = {
        row.sha256: recording_record(row)
        for row in s.scalars(select(RecordingRow).where(RecordingRow.sha256.in_(shas)).order_by(RecordingRow.id))
    }
    return [
        PersonRecord(
            id=row.id,
            name=row.name,
            profile=struct.unpack(f"<{len(row.profile) // 4}f", row.profile),
            sources=tuple(row.sources or ()),
            enrolled_by=row.enrolled_by,
            enrolled_at=iso(row.enrolled_at) or "",
            origins=tuple(origins[row.id]),
            origin_known=row.origin_known,
            from_recordings=tuple(stored[sha] for sha in origins[row.id] if sha in stored),
            origin_by=row.origin_by,
            origin_at=iso(row.origin_at),
        )
        for row in rows
    ]


def _person_row(s: Session, name: str) -> PersonRow:
    name = " ".join(name.split())
    row = s.scalars(select(PersonRow).where(PersonRow.name == name)).one_or_none()
    if row is None:
        # The names offered for a typo are those `ohp speakers list` shows: a voice from a closed recording is named
        # after someone in it.
        people = s.scalars(select(PersonRow).order_by(by_code_point(PersonRow.name))).all()
        known = [person.name for person in _people(s, people) if not closed_origins(person)]
        raise NotFoundError(f"no enrolled voice {name!r}" + (f" (there are {', '.join(known)})" if known else ""))
    return row


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


def save_speakers(s: Session, recording_id: int, found: list[SpeakerRecord]) -> list[str]:
    """Give each speaker the stage found the given role, name and enrolled person, except where a person
    set the name or the role; the names of the voices the stage matched that were forgotten since it read them
    (`ohp speakers forget` while it ran), which name no one (nor may the stage's report keep them: `unreport`)."""
    for speaker in found:
        if speaker.role not in (None, *SPEAKER_ROLES):
            raise InvalidInputError(f"unknown role {speaker.role!r}: choose one of {', '.join(SPEAKER_ROLES)}")
    voices = [speaker.person_id for speaker in found if speaker.person_id is not None]
    enrolled = set(s.scalars(select(PersonRow.id).where(PersonRow.id.in_(voices)))) if voices else set()
    forgotten = [speaker for speaker in found if speaker.person_id is not None and speaker.person_id not in enrolled]
    rows = {row.label: row for row in s.scalars(select(SpeakerRow).where(SpeakerRow.recording_id == recording_id))}
    for speaker in found:
        row = rows.get(speaker.label)
        if row is None:
            row = rows[speaker.label] = SpeakerRow(recording_id=recording_id, label=speaker.label)
            s.add(row)
        if row.named_by is None:
            row.name, row.person_id = (None, None) if speaker in forgotten else (speaker.name, speaker.person_id)
        if row.role_by is None:
            row.role = speaker.role
    return [speaker.name for speaker in forgotten if speaker.name]


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


def enroll(
    s: Session, name: str, profile: Sequence[float], user: str, sources: Sequence[str] = (), origins: Iterable[str] = ()
) -> PersonRecord:
    """Store a person's voice profile as `user`, made from the files `sources`, whose origins (`origins`: the
    sha256 of those files and of the recordings they were cut from; none for a voice recorded apart from the
    collection) decide where it may name speakers; enrolling a name again replaces its profile."""
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
    return _set_origins(s, row, origins, user, row.enrolled_at)


def set_origins(
    s: Session, name: str, origins: Iterable[str], user: str, seen: PersonRecord | None = None
) -> PersonRecord:
    """Say where an enrolled voice comes from (see enroll) as `user`, replacing what was known of it. `seen`: the
    voice as the caller checked the change against it: ConflictError where it is withheld now and was not then (a
    recording it comes from closed since), as a check passed without a researcher would let anyone release it."""
    row = _person_row(s, name)
    if seen is not None and not voice_withheld(seen):
        [current] = _people(s, [row])
        if withheld := voice_withheld(current):
            raise ConflictError(
                f"the voice of {row.name} changed meanwhile: it is withheld now ({withheld}); look again"
            )
    return _set_origins(s, row, origins, user, now())


def _set_origins(s: Session, row: PersonRow, origins: Iterable[str], user: str, at: datetime) -> PersonRecord:
    """The origins decide where the voice may name speakers, so who gave them and when is kept with them."""
    s.execute(delete(VoiceOriginRow).where(VoiceOriginRow.person_id == row.id))
    s.add_all(VoiceOriginRow(person_id=row.id, sha256=sha) for sha in sorted(set(origins)))
    row.origin_known, row.origin_by, row.origin_at = True, user, at
    s.flush()
    withhold_voices(s)  # it may come from a closed recording
    [person] = _people(s, [row])
    return person


def people(s: Session) -> list[PersonRecord]:
    """The enrolled voices, by name."""
    return _people(s, s.scalars(select(PersonRow).order_by(by_code_point(PersonRow.name))))


def _unname(speakers: Iterable[SpeakerRow]) -> None:
    """Take from these speakers the name an enrolled voice gave them (one a person set stays) and their voice."""
    for speaker in speakers:
        if speaker.named_by is None:
            speaker.name = None
        speaker.person_id = None


def unreport(s: Session, name: str, recording_ids: Collection[int] | None = None) -> None:
    """Take the voice `name` from the speakers stage's reports (of these recordings, else of all), which say which
    label it matched, by name."""
    query = select(StageRow).where(StageRow.stage == "speakers")
    if recording_ids is not None:
        query = query.where(StageRow.recording_id.in_(recording_ids))
    for stage in s.scalars(query):
        enrolled = (stage.report or {}).get("enrolled")
        if isinstance(enrolled, dict) and name in enrolled.values():
            stage.report = {**stage.report, "enrolled": {k: v for k, v in enrolled.items() if v != name}}


def _unhistory(s: Session, name: str, recording_ids: Collection[int]) -> None:
    """Take the voice `name` from the speaker states the history of these recordings keeps where the voice, not a
    person, had named the speaker (before a role or a name was set on it); the names people set stay."""
    for row in s.scalars(select(HistoryRow).where(HistoryRow.recording_id.in_(recording_ids))):
        states = {"before": row.before, "after": row.after}
        for side, state in states.items():
            if isinstance(state, dict) and "named_by" in state and state["named_by"] is None and state["name"] == name:
                setattr(row, side, {**state, "name": None})


def withhold_voices(s: Session) -> None:
    """Take the names enrolled voices gave speakers, in every recording, where pipeline.access withholds the voice:
    it came from a recording closed today. No history row is written (it would keep the name), and the history's
    states of those speakers lose it; a run of the speakers stage after the voice's recording is released names
    the speakers again."""
    query = (
        select(SpeakerRow, RecordingRow.sha256)
        .join(RecordingRow, RecordingRow.id == SpeakerRow.recording_id)
        .where(SpeakerRow.person_id.is_not(None))
    )
    named = s.execute(query).all()
    if not named:
        return
    voices = _people(s, s.scalars(select(PersonRow).where(PersonRow.id.in_({row.person_id for row, _ in named}))))
    for person in voices:
        withheld = [row for row, sha in named if row.person_id == person.id and voice_withheld(person, sha)]
        if withheld:
            _unname(withheld)
            unreport(s, person.name, {row.recording_id for row in withheld})
            _unhistory(s, person.name, {row.recording_id for row in withheld})
    s.flush()


def forget(s: Session, name: str) -> int:
    """Remove a person's enrolled voice and the name it gave speakers (those a person named keep theirs);
    how many speakers lose the name. A voice profile is biometric data: it goes with what its matches wrote
    (the speakers stage's report too), and no history row is written (it would keep the name again)."""
    row = _person_row(s, name)
    named = s.scalars(select(SpeakerRow).where(SpeakerRow.person_id == row.id)).all()
    unnamed = sum(speaker.named_by is None for speaker in named)
    _unname(named)
    unreport(s, row.name)
    s.delete(row)
    s.flush()
    return unnamed
