"""Recordings (a file's identity, where it is, what is known of it) and the stages run on them."""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import replace
from datetime import date
from pathlib import PurePath
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pipeline import access
from pipeline.errors import ConflictError, InvalidInputError, NotFoundError
from pipeline.records import (
    CONSENT_LEVELS,
    IMPORTED,
    MAX_FIELD_CHARS,
    AudioInfo,
    RecordingRecord,
    Segment,
    StageRecord,
    Word,
)
from pipeline.stages.doubt import doubtful_share, rewarn
from pipeline.store import search
from pipeline.store.database import by_code_point
from pipeline.store.models import MAX_ID, HistoryRow, RecordingRow, SegmentRow, StageRow, WordRow, iso, now
from pipeline.utils import as_date

log = logging.getLogger(__name__)


def recording_record(row: RecordingRow) -> RecordingRecord:
    return RecordingRecord(
        id=row.id,
        sha256=row.sha256,
        path=row.path,
        size_bytes=row.size_bytes,
        format=row.format,
        duration=row.duration,
        language=row.language,
        interviewee=row.interviewee,
        place=row.place,
        recorded_on=row.recorded_on.isoformat() if row.recorded_on else None,
        metadata=dict(row.extra or {}),
        consent=row.consent,
        release_on=row.release_on.isoformat() if row.release_on else None,
        warnings=tuple(row.warnings or ()),
        doubtful=row.doubtful,
    )


def _stored_words(s: Session, recording_id: int) -> tuple[list[Segment], bool]:
    """A recording's words as far as their doubt goes (no times), in two segments: those of the recogniser's
    text and those of a person's (Segment.corrected); and whether a recogniser wrote any of it (a segment not
    imported, or a word that is not a person's: an ohp JSON imported back keeps the recogniser's words). One
    query without ORDER BY: all a recount needs, for every correction."""
    rows = s.execute(  # the session's: it flushes what is pending first (what a revert set on the segment)
        select(
            SegmentRow.corrected,
            SegmentRow.engine,
            WordRow.text,
            WordRow.probability,
            WordRow.doubtful,
            WordRow.corrected,
        )
        .outerjoin(WordRow, WordRow.segment_id == SegmentRow.id)
        .where(SegmentRow.recording_id == recording_id)
    )
    segments = [Segment(0.0, 0.0, "", "", "", corrected=corrected) for corrected in (False, True)]
    recognised = False
    for person_text, engine, text, probability, doubtful, corrected in rows:
        recognised = recognised or engine != IMPORTED or corrected is False
        if text is not None:  # a segment without words (an imported transcript's)
            segments[person_text].words.append(Word(0.0, 0.0, text, probability, doubtful=doubtful))
    return segments, recognised


def count_doubt(s: Session, recording_id: int) -> None:
    """Keep the recording's share of doubtful text, and its warnings about its text, in step with its words:
    after they are saved or a person corrected some. Counted as the doubt stage counts it (doubtful_share:
    letters and digits, not a word's punctuation or spaces), so that the share the list shows is the one its
    warning names."""
    (segments, recognised), row = _stored_words(s, recording_id), recording_row(s, recording_id)
    # Unchecked, not "0% doubtful", where no recogniser wrote any of it: a person's words in a correction of an
    # imported transcript without words are no check the doubt stage made.
    row.doubtful = doubtful_share(segments) if recognised else None
    row.warnings = rewarn(list(row.warnings or ()), segments)


def _stage(row: StageRow) -> StageRecord:
    return StageRecord(
        stage=row.stage,
        status=row.status,
        settings=dict(row.settings or {}),
        settings_key=row.settings_key,
        report=dict(row.report or {}),
        error=row.error,
        started_at=iso(row.started_at),
        finished_at=iso(row.finished_at),
    )


def _matches(rec: RecordingRecord, ref: str) -> bool:
    """Whether a user's reference names this recording: id, sha256 (prefix), path, file name or stem."""
    low = ref.lower()
    path = PurePath(rec.path)
    return (
        # isdecimal, not isdigit: "①" is a digit int() cannot read; more digits than any id has name none (int()
        # refuses 4,300 of them)
        (ref.isdecimal() and len(ref) <= len(str(MAX_ID)) and int(ref) == rec.id)
        or (len(low) >= 6 and all(c in "0123456789abcdef" for c in low) and rec.sha256.lower().startswith(low))
        or ref in (rec.path, path.name, path.stem)
        or os.path.abspath(ref) == os.path.abspath(rec.path)
    )


def _json(value: dict[str, Any], what: str) -> dict[str, Any]:
    """A copy of value as JSON gives it back (tuples become lists...), the same on every backend: NaN and
    infinity are no JSON, which PostgreSQL's json refuses and SQLite kept, so both refuse them here."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except ValueError as exc:  # NaN or infinity (or a value that contains itself)
        raise InvalidInputError(f"{what} cannot be stored: {exc}") from None
    except TypeError as exc:
        raise TypeError(f"{what} must be JSON-serializable: {exc}") from None


def recording_row(s: Session, recording_id: int) -> RecordingRow:
    row = s.get(RecordingRow, recording_id)
    if row is None:
        raise NotFoundError(f"no recording with id {recording_id}")
    return row


def recording(s: Session, recording_id: int) -> RecordingRecord:
    return recording_record(recording_row(s, recording_id))


def recording_by_sha256(s: Session, sha256: str) -> RecordingRecord | None:
    row = s.scalars(select(RecordingRow).where(RecordingRow.sha256 == sha256)).one_or_none()
    return None if row is None else recording_record(row)


def latest_at_path(s: Session, path: str) -> RecordingRow | None:
    """The recording last added at this path: other bytes there (the file edited or replaced) are a new one."""
    return s.scalars(select(RecordingRow).where(RecordingRow.path == path).order_by(RecordingRow.id.desc())).first()


def list_recordings(s: Session) -> list[RecordingRecord]:
    """All recordings, ordered by path."""
    rows = s.scalars(select(RecordingRow).order_by(by_code_point(RecordingRow.path), RecordingRow.id))
    return [recording_record(row) for row in rows]


def find_recordings(s: Session, refs: list[str]) -> list[RecordingRecord]:
    """The recordings the refs name, in order, each once.

    A ref is an id, a sha256 or a prefix of one (at least 6 hex chars), a path, a file name
    or a file stem. Raises NotFoundError naming every ref that matches nothing or several.
    """
    recordings = list_recordings(s)
    found: dict[int, RecordingRecord] = {}
    problems = []
    for ref in refs:
        hits = [rec for rec in recordings if _matches(rec, ref)]
        if len(hits) == 1:
            found.setdefault(hits[0].id, hits[0])
        elif not hits:
            problems.append(f"{ref!r} matches no recording")
        else:
            names = ", ".join(f"#{rec.id} {rec.path} ({rec.sha256[:8]})" for rec in hits)
            problems.append(f"{ref!r} matches {len(hits)} recordings: {names}")
    if problems:
        raise NotFoundError("; ".join(problems))
    return list(found.values())


def update_path(s: Session, recording_id: int, path: str) -> None:
    """Where a recording's file is now (it was moved or renamed; its bytes are the same)."""
    recording_row(s, recording_id).path = path


def set_metadata(
    s: Session,
    recording_id: int,
    *,
    interviewee: str | None = None,
    place: str | None = None,
    recorded_on: str | date | None = None,
    consent: str | None = None,
    release_on: str | date | None = None,
    changed_by: str = "ohp",
    access_seen: RecordingRecord | None = None,
    **extra: Any,
) -> RecordingRecord:
    """Set what is known of a recording. None leaves a field as it is and "" clears it (consent
    is always one of CONSENT_LEVELS); other keywords go to its metadata dict (a key set to None
    is removed). A change of its consent or its release date, who may see it, is kept in the history
    as `changed_by`'s; the interviewee, place and date are not (a name replaced by a pseudonym would
    stay in the history). `access_seen`: the recording as the caller checked the change against it (who may
    open it): ConflictError where its consent or release date changed since, as a check passed on a state
    another change replaced would let an annotator open what a researcher had just closed."""
    if consent is not None and consent not in CONSENT_LEVELS:
        raise InvalidInputError(f"unknown consent {consent!r}: choose one of {', '.join(CONSENT_LEVELS)}")
    for what, value in (("interviewee", interviewee), ("place", place)):
        if value is not None and len(value) > MAX_FIELD_CHARS:
            raise InvalidInputError(f"{what} has {len(value)} characters: at most {MAX_FIELD_CHARS}")
    day = None if recorded_on is None else as_date(recorded_on)
    release = None if release_on is None else as_date(release_on, "release_on")
    row = recording_row(s, recording_id)
    access_before = _access_state(row)
    if access_seen is not None and access_before != _access_state_of(access_seen):
        raise ConflictError(
            f"the consent of recording {recording_id} changed meanwhile ({access_before['consent']}, release "
            f"{access_before['release_on'] or 'none'}): look again before changing it"
        )
    if interviewee is not None:
        row.interviewee = interviewee or None
    if place is not None:
        row.place = place or None
    if recorded_on is not None:
        row.recorded_on = day
    if consent is not None:
        row.consent = consent
    if release_on is not None:
        row.release_on = release
    if extra:
        merged = {**(row.extra or {}), **_json(extra, "metadata")}
        row.extra = {key: value for key, value in merged.items() if value is not None}
    s.flush()
    if consent is not None or release_on is not None:
        search.place_recording(s.connection(), recording_id)  # its index rows follow its consent
    access_after = _access_state(row)
    if access_after != access_before:
        s.add(
            HistoryRow(
                recording_id=recording_id,
                action="consent",
                changed_by=changed_by,
                before=access_before,
                after=access_after,
            )
        )
    return recording_record(row)


def _access_state(row: RecordingRow) -> dict:
    """What decides who may see a recording, as the history keeps it."""
    return {"consent": row.consent, "release_on": row.release_on and row.release_on.isoformat()}


def _access_state_of(recording: RecordingRecord) -> dict:
    """`_access_state` of a recording as read before."""
    return {"consent": recording.consent, "release_on": recording.release_on or None}


def describe_from_file(s: Session, row: RecordingRow, description: dict[str, Any]) -> None:
    """Set what an imported file says of its recording (pipeline.formats.readers.DESCRIPTION), except a consent
    that would open it further than the store has it (access.loosens): a file exported before the recording
    was closed, imported again, leaves it closed."""
    stored = recording_record(row)
    given = description.get("release_on")
    said = replace(
        stored,
        consent=description.get("consent") or stored.consent,
        release_on=stored.release_on if given is None else given or None,  # None leaves it, "" clears it
    )
    if access.loosens(stored, said):
        log.warning(
            "recording %d: its consent stays %s, where the file imported says %s (ohp describe --consent changes it)",
            row.id,
            access.consent_label(stored),
            access.consent_label(said),
        )
        description = {key: value for key, value in description.items() if key not in ("consent", "release_on")}
    set_metadata(s, row.id, **description, changed_by="ohp import")  # the file's word, not a person's


def upsert_recording(s: Session, info: AudioInfo) -> RecordingRow:
    """The recording with this sha256, added if new; a moved or renamed file only updates its path."""
    row = s.scalars(select(RecordingRow).where(RecordingRow.sha256 == info.sha256)).one_or_none()
    if row is None:
        before = latest_at_path(s, str(info.path))
        consent, release_on = access.first_consent(recording_record(before) if before else None)
        row = RecordingRow(
            sha256=info.sha256,
            path=str(info.path),
            size_bytes=info.size_bytes,
            format=info.format,
            duration=info.duration,
            consent=consent,
            release_on=as_date(release_on, "release_on") if release_on else None,
        )
        s.add(row)
        if before is not None and consent != "open":
            log.info("%s: new bytes where recording %d was: %s, as it is", info.path, before.id, consent)
    elif row.path != str(info.path):
        row.path = str(info.path)
    s.flush()
    return row


def stage(s: Session, recording_id: int, stage: str) -> StageRecord | None:
    row = s.get(StageRow, (recording_id, stage))
    return None if row is None else _stage(row)


def stages(s: Session, recording_id: int) -> list[StageRecord]:
    """A recording's stages, ordered by name."""
    query = select(StageRow).where(StageRow.recording_id == recording_id).order_by(by_code_point(StageRow.stage))
    rows = s.scalars(query)
    return [_stage(row) for row in rows]


def drop_stages(s: Session, recording_id: int, keep: tuple[str, ...]) -> None:
    """Forget a recording's stages but those in `keep` (they worked on segments that are gone: they run again)."""
    s.execute(delete(StageRow).where(StageRow.recording_id == recording_id, StageRow.stage.not_in(keep)))


def stage_listing(s: Session) -> tuple[dict[int, dict[str, str]], dict[int, dict[str, str]]]:
    """Every recording's stages, by recording id, from one read of the table (for listings): their status, and the
    error of those whose last run failed (those "failed", and those done whose last run failed: fail_stage)."""
    statuses: defaultdict[int, dict[str, str]] = defaultdict(dict)
    failures: defaultdict[int, dict[str, str]] = defaultdict(dict)
    query = select(StageRow.recording_id, StageRow.stage, StageRow.status, StageRow.error)
    for rid, name, status, error in s.execute(query.order_by(by_code_point(StageRow.stage))):
        statuses[rid][name] = status
        if error is not None:
            failures[rid][name] = str(error)
    return dict(statuses), dict(failures)


def set_stage(
    s: Session,
    recording_id: int,
    stage: str,
    status: str,
    settings: dict[str, Any],
    key: str,
    report: dict[str, Any],
    error: str | None,
) -> None:
    """Where a stage is on a recording: "running", "done" or "failed", with what it ran with and found (a failure
    after a done run: fail_stage)."""
    row = s.get(StageRow, (recording_id, stage))
    if row is None:
        row = StageRow(recording_id=recording_id, stage=stage)
        s.add(row)
    moment = now()
    ending_a_run = status != "running" and row.status == "running" and row.started_at is not None
    row.started_at = row.started_at if ending_a_run else moment
    row.finished_at = None if status == "running" else moment
    row.status, row.settings, row.settings_key = status, _json(settings, "settings"), key
    row.report, row.error = _json(report, "report"), error
    s.flush()


def fail_stage(s: Session, recording_id: int, stage: str, settings: dict[str, Any], key: str, error: str) -> None:
    """A stage failed on the recording. Where it was done before, its result and settings stay, the failure noted
    beside them (until it is done again): a later run with those settings skips it, one with others tries again.
    Otherwise the stage is "failed", with the settings it failed with."""
    row = s.get(StageRow, (recording_id, stage))
    if row is not None and row.status == "done":
        row.error = error
        s.flush()
    else:
        set_stage(s, recording_id, stage, "failed", settings, key, {}, error)
