"""The store: every database access of the pipeline lives here.

Callers get and give the records of `pipeline.records`, never ORM objects, so nobody outside this
module holds a session. SQLite by default (`$OHP_DATABASE_URL` or `sqlite:///ohp.db`); any
SQLAlchemy URL works (PostgreSQL through psycopg). Opening a store upgrades its schema to the
newest Alembic revision of `pipeline/store/migrations`.

Several processes (a batch, a web app) may share one SQLite file: connections run in WAL mode
with a 30 s busy timeout, and every write transaction starts with BEGIN IMMEDIATE, so it takes
the write lock before it reads what it will change.

A new schema version: change the models below, then write the next migration, e.g.
    from alembic import command
    from pipeline.store import alembic_config
    command.revision(alembic_config("sqlite:///dev.db"), "what changed", autogenerate=True, rev_id="0002")
against a database at the previous head, and tidy what it wrote.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import struct
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

import argon2
from sqlalchemy import (
    column,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from pipeline.errors import ConflictError, InvalidInputError, NotFoundError
from pipeline.records import (
    ANNOTATION_STATUSES,
    CONSENT_LEVELS,
    ROLES,
    SPEAKER_ROLES,
    AnnotationRecord,
    AudioInfo,
    Entity,
    HistoryRecord,
    PersonRecord,
    RecordingRecord,
    SearchFilters,
    SearchHit,
    SearchResults,
    Segment,
    SpeakerRecord,
    StageRecord,
    ThemeSuggestion,
    Transcript,
    UserRecord,
    Word,
)
from pipeline.search.textindex import Query, index_terms, to_fts5, to_tsquery

__all__ = ["DEFAULT_URL", "Base", "ConflictError", "Store", "StoreError", "UTCDateTime", "alembic_config", "in_models"]
from pipeline.store import database
from pipeline.store.database import DEFAULT_URL, StoreError, alembic_config
from pipeline.store.models import (
    AnnotationRow,
    Base,
    EntityRow,
    HistoryRow,
    PersonRow,
    RecordingRow,
    SegmentRow,
    SpeakerRow,
    StageRow,
    UserRow,
    UTCDateTime,
    WordRow,
    in_models,
    iso,
    now,
)


def settings_key(settings: dict) -> str:
    """The key of a stage's settings: sha256 of their canonical JSON, first 16 hex chars."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------- rows to records


def _recording(row: RecordingRow) -> RecordingRecord:
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
    )


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


def _annotation(row: AnnotationRow, recording_id: int) -> AnnotationRecord:
    return AnnotationRecord(
        id=row.id,
        segment_id=row.segment_id,
        recording_id=recording_id,
        theme=row.theme,
        source=row.source,
        status=row.status,
        score=row.score,
        evidence=tuple((int(a), int(b)) for a, b in row.evidence or ()),
        tagger=row.tagger,
        updated_by=row.updated_by,
        updated_at=iso(row.updated_at) or "",
        version=row.version,
    )


def _annotation_state(row: AnnotationRow) -> dict:
    """What the history keeps of an annotation before and after a change."""
    return {
        "segment_id": row.segment_id,
        "theme": row.theme,
        "source": row.source,
        "status": row.status,
        "score": row.score,
        "evidence": [list(span) for span in row.evidence or ()],
    }


def _history(row: HistoryRow) -> HistoryRecord:
    return HistoryRecord(
        id=row.id,
        recording_id=row.recording_id,
        segment_id=row.segment_id,
        annotation_id=row.annotation_id,
        action=row.action,
        changed_by=row.changed_by,
        changed_at=iso(row.changed_at) or "",
        before=row.before,
        after=row.after,
    )


def _speaker(row: SpeakerRow) -> SpeakerRecord:
    return SpeakerRecord(row.label, row.name, row.role, row.named_by, row.role_by, row.person_id)


def _speaker_state(row: SpeakerRow) -> dict:
    """What the history keeps of a speaker before and after a change."""
    return {"label": row.label, "name": row.name, "named_by": row.named_by, "role": row.role, "role_by": row.role_by}


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


def _reanchor(evidence: list, old_text: str, new_text: str) -> list[list[int]]:
    """Evidence spans moved to where their words are in a segment's new text (dropped if gone)."""
    spans = []
    for start, end in evidence or ():
        found = new_text.find(old_text[start:end]) if end > start else -1
        if found >= 0:
            spans.append([found, found + end - start])
    return spans


def _matches(rec: RecordingRecord, ref: str) -> bool:
    """Whether a user's reference names this recording: id, sha256 (prefix), path, file name or stem."""
    low = ref.lower()
    path = PurePath(rec.path)
    return (
        (ref.isdigit() and int(ref) == rec.id)
        or (len(low) >= 6 and all(c in "0123456789abcdef" for c in low) and rec.sha256.lower().startswith(low))
        or ref in (rec.path, path.name, path.stem)
        or os.path.abspath(ref) == os.path.abspath(rec.path)
    )


def _as_date(value: str | date, what: str = "recorded_on") -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if value == "":
        return None
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be an ISO date (YYYY-MM-DD), not {value!r}") from None


def _json(value: dict, what: str) -> dict:
    """A copy of value as JSON gives it back (tuples become lists...), the same on every backend."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serializable: {exc}") from None


# ----------------------------------------------------------------------------------- text index

# The full-text index is not in the ORM metadata: its shape differs by database (migration 0003).
SEGMENT_INDEX = table("segment_index", column("rowid"), column("terms"), column("segment_id"), column("vector"))


def segment_terms(text_: str, original_text: str) -> str:
    """What the index holds of a segment: the terms of its text, and of the original where it differs."""
    terms = index_terms(text_)
    if original_text == text_:  # most segments (imported ones always): index the text once
        return terms
    original = index_terms(original_text)
    return terms if original == terms else f"{terms} {original}"  # simplified and traditional are one


def index_rows(conn: Connection, rows: list[tuple[int, str, str]]) -> None:
    """Index segments given as (id, text, original text), replacing what the index had of them."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        # OR REPLACE: FTS5 first drops what it had of the rowid (one lookup when it had nothing). Plain
        # tuples to the driver: this runs for every segment stored.
        conn.exec_driver_sql(
            "INSERT OR REPLACE INTO segment_index (rowid, terms) VALUES (?, ?)",
            [(sid, segment_terms(t, o)) for sid, t, o in rows],
        )
    else:
        params = [{"id": sid, "terms": segment_terms(t, o)} for sid, t, o in rows]
        conn.execute(
            text(
                "INSERT INTO segment_index (segment_id, vector) VALUES (:id, to_tsvector('simple', :terms)) "
                "ON CONFLICT (segment_id) DO UPDATE SET vector = excluded.vector"
            ),
            params,
        )


def _unindex_recording(conn: Connection, recording_id: int) -> None:
    # PostgreSQL's index rows go with their segments (ON DELETE CASCADE); an FTS5 table has no foreign keys.
    if conn.dialect.name == "sqlite":
        conn.execute(
            text("DELETE FROM segment_index WHERE rowid IN (SELECT id FROM segments WHERE recording_id = :rid)"),
            {"rid": recording_id},
        )


def _matches_query(conn: Connection, query: Query, filters: SearchFilters = SearchFilters(), ranked: bool = True):
    """A select of (segment_id, rank) for the segments matching a query and the filters, higher rank
    better (without the rank when not `ranked`: counting needs none).

    The full-text index is the first table: every segment is in it (the store keeps it so on every
    write), so a search without filters, or with a theme filter only, never touches the segments.
    """
    if conn.dialect.name == "sqlite":
        segment_id = SEGMENT_INDEX.c.rowid
        match = literal_column("segment_index").op("MATCH")(to_fts5(query))
        rank = -func.bm25(literal_column("segment_index"))
    else:
        tsquery = func.to_tsquery("simple", to_tsquery(query))
        segment_id = SEGMENT_INDEX.c.segment_id
        match = SEGMENT_INDEX.c.vector.op("@@")(tsquery)
        rank = func.ts_rank_cd(SEGMENT_INDEX.c.vector, tsquery)
    found = select(segment_id.label("segment_id"), *([rank.label("rank")] if ranked else [])).select_from(SEGMENT_INDEX)
    if filters != SearchFilters(themes=filters.themes, theme_status=filters.theme_status):  # more than a theme
        found = found.join(SegmentRow, SegmentRow.id == segment_id).join(RecordingRow, RecordingRow.id == SegmentRow.recording_id)
    return found.where(match, *_filter_clauses(filters, segment_id))


# ------------------------------------------------------------------------------------------ store


class Store:
    """The pipeline's database. Methods take and return records; each call is its own transaction."""

    def __init__(self, url: str | None = None) -> None:
        self._engine, self.url = database.open_engine(url)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    def _session(self, write: bool = False) -> AbstractContextManager[Session]:
        return database.session(self._engine, self.url, write)

    # ----------------------------------------------------------------------------- recordings

    def recording(self, recording_id: int) -> RecordingRecord:
        with self._session() as s:
            row = s.get(RecordingRow, recording_id)
            if row is None:
                raise NotFoundError(f"no recording with id {recording_id}")
            return _recording(row)

    def recording_by_sha256(self, sha256: str) -> RecordingRecord | None:
        with self._session() as s:
            row = s.scalars(select(RecordingRow).where(RecordingRow.sha256 == sha256)).one_or_none()
            return None if row is None else _recording(row)

    def list_recordings(self) -> list[RecordingRecord]:
        """All recordings, ordered by path."""
        with self._session() as s:
            rows = s.scalars(select(RecordingRow).order_by(RecordingRow.path, RecordingRow.id))
            return [_recording(row) for row in rows]

    def find_recordings(self, refs: list[str]) -> list[RecordingRecord]:
        """The recordings the refs name, in order, each once.

        A ref is an id, a sha256 or a prefix of one (at least 6 hex chars), a path, a file name
        or a file stem. Raises NotFoundError naming every ref that matches nothing or several.
        """
        recordings = self.list_recordings()
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

    def update_path(self, recording_id: int, path: str) -> None:
        """Where a recording's file is now (it was moved or renamed; its bytes are the same)."""
        with self._session(write=True) as s:
            row = s.get(RecordingRow, recording_id)
            if row is None:
                raise NotFoundError(f"no recording with id {recording_id}")
            row.path = path

    def set_metadata(
        self,
        recording_id: int,
        *,
        interviewee: str | None = None,
        place: str | None = None,
        recorded_on: str | date | None = None,
        consent: str | None = None,
        release_on: str | date | None = None,
        **extra: Any,
    ) -> RecordingRecord:
        """Set what is known of a recording. None leaves a field as it is and "" clears it (consent
        is always one of CONSENT_LEVELS); other keywords go to its metadata dict (a key set to None
        is removed)."""
        if consent is not None and consent not in CONSENT_LEVELS:
            raise InvalidInputError(f"unknown consent {consent!r}: choose one of {', '.join(CONSENT_LEVELS)}")
        day = None if recorded_on is None else _as_date(recorded_on)
        release = None if release_on is None else _as_date(release_on, "release_on")
        with self._session(write=True) as s:
            row = s.get(RecordingRow, recording_id)
            if row is None:
                raise NotFoundError(f"no recording with id {recording_id}")
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
            return _recording(row)

    # --------------------------------------------------------------------------------- stages

    def stage(self, recording_id: int, stage: str) -> StageRecord | None:
        with self._session() as s:
            row = s.get(StageRow, (recording_id, stage))
            return None if row is None else _stage(row)

    def stages(self, recording_id: int) -> list[StageRecord]:
        """A recording's stages, ordered by name."""
        with self._session() as s:
            rows = s.scalars(
                select(StageRow).where(StageRow.recording_id == recording_id).order_by(StageRow.stage)
            )
            return [_stage(row) for row in rows]

    def start_stage(self, info: AudioInfo, stage: str, settings: dict, settings_key: str) -> int:
        """Record that a stage is running on this file (added as a recording if new); its id."""
        with self._session(write=True) as s:
            rec = _upsert_recording(s, info)
            _set_stage(s, rec.id, stage, "running", settings, settings_key, {}, None)
            return rec.id

    def fail_stage(self, info: AudioInfo, stage: str, settings: dict, settings_key: str, error: str) -> None:
        """Record that a stage failed on this file; what an earlier run stored stays."""
        with self._session(write=True) as s:
            rec = _upsert_recording(s, info)
            _set_stage(s, rec.id, stage, "failed", settings, settings_key, {}, error)

    # ------------------------------------------------------------------------------ transcripts

    def save_transcription(
        self, info: AudioInfo, transcript: Transcript, settings: dict, settings_key: str, report: dict
    ) -> int:
        """Replace a recording's transcript and mark stage "transcribe" done, in one transaction:
        if anything fails, the database stays exactly as it was. Returns the recording id."""
        with self._session(write=True) as s:
            rec = _upsert_recording(s, info)
            rec.language = transcript.language
            rec.duration = info.duration
            s.flush()
            _replace_segments(s, rec.id, transcript.segments, transcript.engine, transcript.model)
            _set_stage(s, rec.id, "transcribe", "done", settings, settings_key, report, None)
            return rec.id

    def segments(self, recording_id: int) -> list[Segment]:
        """A recording's segments with their words, ordered by start (two queries in all)."""
        with self._session() as s:
            seg_rows = s.execute(
                select(SegmentRow.__table__)
                .where(SegmentRow.recording_id == recording_id)
                .order_by(SegmentRow.start, SegmentRow.idx)
            ).all()
            word_rows = s.execute(
                select(WordRow.segment_id, WordRow.start, WordRow.end, WordRow.text, WordRow.probability)
                .join(SegmentRow, WordRow.segment_id == SegmentRow.id)
                .where(SegmentRow.recording_id == recording_id)
                .order_by(WordRow.segment_id, WordRow.idx)
            ).all()
        words: dict[int, list[Word]] = defaultdict(list)
        for w in word_rows:
            words[w.segment_id].append(Word(start=w.start, end=w.end, text=w.text, probability=w.probability))
        return [
            Segment(
                start=r.start,
                end=r.end,
                text=r.text,
                original_text=r.original_text,
                language=r.language,
                words=words.get(r.id, []),
                avg_logprob=r.avg_logprob,
                no_speech_prob=r.no_speech_prob,
                compression_ratio=r.compression_ratio,
                speaker=r.speaker,
                id=r.id,
            )
            for r in seg_rows
        ]

    # ---------------------------------------------------------------------------- annotations

    def save_tags(
        self,
        recording_id: int,
        suggestions: dict[int, list[ThemeSuggestion]],
        entities: dict[int, list[Entity]],
        tagger: str,
        settings: dict,
        settings_key: str,
    ) -> dict[str, int]:
        """Store a tagging run over a recording's segments (by segment id), in one transaction.

        New themes become suggestions; suggestions the tagger still makes are updated, those it no
        longer makes are withdrawn; accepted, rejected and person-added annotations are never
        touched. Every change goes into the history. Entities are replaced. Marks stage "tag" done.
        """
        counts = {"added": 0, "updated": 0, "withdrawn": 0, "kept": 0}
        with self._session(write=True) as s:
            segment_ids = set(s.scalars(select(SegmentRow.id).where(SegmentRow.recording_id == recording_id)))
            existing = {
                (row.segment_id, row.theme): row
                for row in s.scalars(select(AnnotationRow).where(AnnotationRow.segment_id.in_(segment_ids)))
            }
            wanted = {(sid, t.theme): t for sid, found in suggestions.items() if sid in segment_ids for t in found}
            for key, row in existing.items():
                if row.status != "suggested" or row.source != "auto":
                    counts["kept"] += 1
                elif key not in wanted:
                    before = _annotation_state(row)
                    s.delete(row)
                    s.add(HistoryRow(recording_id=recording_id, segment_id=row.segment_id, annotation_id=row.id, action="withdrawn", changed_by="auto", before=before))
                    counts["withdrawn"] += 1
            for (segment_id, theme), found in wanted.items():
                evidence = [list(span) for span in found.evidence]
                row = existing.get((segment_id, theme))
                if row is None:
                    row = AnnotationRow(segment_id=segment_id, theme=theme, source="auto", status="suggested", score=found.score, evidence=evidence, tagger=tagger, updated_by="auto")
                    s.add(row)
                    s.flush()
                    s.add(HistoryRow(recording_id=recording_id, segment_id=segment_id, annotation_id=row.id, action="suggested", changed_by="auto", after=_annotation_state(row)))
                    counts["added"] += 1
                elif row.status == "suggested" and row.source == "auto" and (row.score, row.evidence, row.tagger) != (found.score, evidence, tagger):
                    before = _annotation_state(row)
                    row.score, row.evidence, row.tagger = found.score, evidence, tagger
                    row.updated_at, row.updated_by, row.version = now(), "auto", row.version + 1
                    s.add(HistoryRow(recording_id=recording_id, segment_id=segment_id, annotation_id=row.id, action="retagged", changed_by="auto", before=before, after=_annotation_state(row)))
                    counts["updated"] += 1
            no_sync = {"synchronize_session": False}
            s.execute(delete(EntityRow).where(EntityRow.segment_id.in_(segment_ids)), execution_options=no_sync)
            rows = [
                dict(segment_id=sid, label=e.label, text=e.text, start=e.start, end=e.end)
                for sid, found in entities.items() if sid in segment_ids for e in found
            ]  # fmt: skip
            if rows:
                s.execute(insert(EntityRow.__table__), rows)
            _set_stage(s, recording_id, "tag", "done", settings, settings_key, counts, None)
        return counts

    def annotations(
        self, recording_id: int | None = None, *, segment_id: int | None = None, status: str | None = None
    ) -> list[AnnotationRecord]:
        """Annotations of a recording or a segment (or all), in transcript order."""
        query = select(AnnotationRow, SegmentRow.recording_id).join(SegmentRow, AnnotationRow.segment_id == SegmentRow.id)
        if recording_id is not None:
            query = query.where(SegmentRow.recording_id == recording_id)
        if segment_id is not None:
            query = query.where(AnnotationRow.segment_id == segment_id)
        if status is not None:
            query = query.where(AnnotationRow.status == status)
        query = query.order_by(SegmentRow.recording_id, SegmentRow.start, AnnotationRow.theme)
        with self._session() as s:
            return [_annotation(row, rid) for row, rid in s.execute(query).all()]

    def decide(self, annotation_id: int, status: str, user: str, *, version: int | None = None) -> AnnotationRecord:
        """Accept or reject an annotation (or put it back to suggested), as `user`.

        With `version`, the change applies only if nobody changed the annotation since the caller
        read that version; otherwise ConflictError carries the current one.
        """
        if status not in ANNOTATION_STATUSES:
            raise InvalidInputError(f"unknown status {status!r}: choose one of {', '.join(ANNOTATION_STATUSES)}")
        with self._session(write=True) as s:
            row = s.get(AnnotationRow, annotation_id)
            if row is None:
                raise NotFoundError(f"no annotation with id {annotation_id}")
            recording_id = _recording_of_segment(s, row.segment_id)
            if version is not None and version != row.version:
                raise ConflictError(
                    f"annotation {annotation_id} was changed by {row.updated_by} at {iso(row.updated_at)}",
                    _annotation(row, recording_id),
                )
            if row.status != status:
                before = _annotation_state(row)
                row.status, row.updated_by, row.updated_at, row.version = status, user, now(), row.version + 1
                s.add(HistoryRow(recording_id=recording_id, segment_id=row.segment_id, annotation_id=row.id, action=status, changed_by=user, before=before, after=_annotation_state(row)))
            s.flush()
            return _annotation(row, recording_id)

    def add_annotation(
        self, segment_id: int, theme: str, user: str, evidence: tuple[tuple[int, int], ...] = ()
    ) -> AnnotationRecord:
        """A person puts a theme on a segment (accepted, theirs). If the theme is already there, it
        becomes accepted by them and the given evidence is added to it."""
        return self.add_annotations([(segment_id, theme, user, evidence)])[0]

    def add_annotations(self, added: Sequence[tuple[int, str, str, tuple[tuple[int, int], ...]]]) -> list[AnnotationRecord]:
        """Several `add_annotation`s, (segment id, theme, user, evidence) each, in one transaction:
        all of them or none."""
        out = []
        with self._session(write=True) as s:
            for segment_id, theme, user, evidence in added:
                recording_id = _recording_of_segment(s, segment_id)
                text = s.scalar(select(SegmentRow.text).where(SegmentRow.id == segment_id)) or ""
                for start, end in evidence:
                    if not 0 <= start < end <= len(text):
                        raise InvalidInputError(f"evidence [{start}, {end}] is outside the segment's text ({len(text)} characters)")
                row = s.scalars(select(AnnotationRow).where(AnnotationRow.segment_id == segment_id, AnnotationRow.theme == theme)).one_or_none()
                before = None if row is None else _annotation_state(row)
                spans = [list(span) for span in evidence]
                if row is None:
                    row = AnnotationRow(segment_id=segment_id, theme=theme, source=user, status="accepted", evidence=spans, updated_by=user)
                    s.add(row)
                else:
                    row.evidence = (row.evidence or []) + [span for span in spans if span not in (row.evidence or [])]
                    row.status, row.updated_by, row.updated_at, row.version = "accepted", user, now(), row.version + 1
                s.flush()
                s.add(HistoryRow(recording_id=recording_id, segment_id=segment_id, annotation_id=row.id, action="added", changed_by=user, before=before, after=_annotation_state(row)))
                out.append(_annotation(row, recording_id))
        return out

    def history(
        self, *, recording_id: int | None = None, segment_id: int | None = None, annotation_id: int | None = None
    ) -> list[HistoryRecord]:
        """Changes, oldest first, to a recording, a segment or an annotation."""
        query = select(HistoryRow)
        if recording_id is not None:
            query = query.where(HistoryRow.recording_id == recording_id)
        if segment_id is not None:
            query = query.where(HistoryRow.segment_id == segment_id)
        if annotation_id is not None:
            query = query.where(HistoryRow.annotation_id == annotation_id)
        with self._session() as s:
            return [_history(row) for row in s.scalars(query.order_by(HistoryRow.changed_at, HistoryRow.id))]

    def theme_counts(self) -> list[tuple[int, str, str, dict[str, int]]]:
        """(recording id, recording path, theme, {status: count}) for every theme in use."""
        query = (
            select(RecordingRow.id, RecordingRow.path, AnnotationRow.theme, AnnotationRow.status, func.count())
            .join(SegmentRow, SegmentRow.recording_id == RecordingRow.id)
            .join(AnnotationRow, AnnotationRow.segment_id == SegmentRow.id)
            .group_by(RecordingRow.id, RecordingRow.path, AnnotationRow.theme, AnnotationRow.status)
            .order_by(RecordingRow.path, AnnotationRow.theme)
        )
        counts: dict[tuple[int, str, str], dict[str, int]] = {}
        with self._session() as s:
            for rid, path, theme, status, n in s.execute(query):
                counts.setdefault((rid, path, theme), dict.fromkeys(ANNOTATION_STATUSES, 0))[status] = n
        return [(rid, path, theme, by_status) for (rid, path, theme), by_status in counts.items()]

    def entities(self, recording_id: int) -> dict[int, list[Entity]]:
        """A recording's named entities, by segment id."""
        query = (
            select(EntityRow)
            .join(SegmentRow, EntityRow.segment_id == SegmentRow.id)
            .where(SegmentRow.recording_id == recording_id)
            .order_by(EntityRow.segment_id, EntityRow.start)
        )
        found: dict[int, list[Entity]] = defaultdict(list)
        with self._session() as s:
            for row in s.scalars(query):
                found[row.segment_id].append(Entity(row.label, row.text, row.start, row.end))
        return dict(found)

    # ------------------------------------------------------------------------------- speakers

    def save_speakers(
        self,
        recording_id: int,
        speakers: list[SpeakerRecord],
        settings: dict,
        settings_key: str,
        report: dict,
        segments: list[Segment] | None = None,
    ) -> list[SpeakerRecord]:
        """Store what the speakers stage found and mark it done, in one transaction.

        With `segments` (the recording's transcript split at speaker changes), they replace the
        stored ones as in save_transcription: human decisions follow by time, later stages run
        again. Each speaker then gets the given role, name and enrolled person, except where a
        person set the name or the role."""
        for found in speakers:
            if found.role not in (None, *SPEAKER_ROLES):
                raise InvalidInputError(f"unknown role {found.role!r}: choose one of {', '.join(SPEAKER_ROLES)}")
        with self._session(write=True) as s:
            if s.get(RecordingRow, recording_id) is None:
                raise NotFoundError(f"no recording with id {recording_id}")
            if segments is not None:
                made_by = s.execute(select(SegmentRow.engine, SegmentRow.model).where(SegmentRow.recording_id == recording_id).limit(1)).first()
                _replace_segments(s, recording_id, segments, *(made_by or ("", "")))
            rows = {row.label: row for row in s.scalars(select(SpeakerRow).where(SpeakerRow.recording_id == recording_id))}
            for found in speakers:
                row = rows.get(found.label)
                if row is None:
                    row = rows[found.label] = SpeakerRow(recording_id=recording_id, label=found.label)
                    s.add(row)
                if row.named_by is None:
                    row.name, row.person_id = found.name, found.person_id
                if row.role_by is None:
                    row.role = found.role
            _set_stage(s, recording_id, "speakers", "done", settings, settings_key, report, None)
        return self.speakers(recording_id)

    def speakers(self, recording_id: int) -> list[SpeakerRecord]:
        """A recording's speakers, in order of first appearance."""
        with self._session() as s:
            return [_speaker(row) for row in s.scalars(select(SpeakerRow).where(SpeakerRow.recording_id == recording_id).order_by(SpeakerRow.id))]

    def rename_speaker(self, recording_id: int, label: str, name: str, user: str) -> SpeakerRecord:
        """Give a speaker the name people see, as `user` ("" gives the label back); kept in the history."""
        name = " ".join(name.split())  # one line: it goes into TXT prefixes and VTT voice tags
        with self._session(write=True) as s:
            row = _speaker_row(s, recording_id, label)
            before = _speaker_state(row)
            row.name, row.named_by = (name, user) if name else (None, None)
            s.add(HistoryRow(recording_id=recording_id, action="renamed", changed_by=user, before=before, after=_speaker_state(row)))
            s.flush()
            return _speaker(row)

    def set_role(self, recording_id: int, label: str, role: str, user: str) -> SpeakerRecord:
        """Set a speaker's role as `user`, over the heuristics' choice; kept in the history."""
        if role not in SPEAKER_ROLES:
            raise InvalidInputError(f"unknown role {role!r}: choose one of {', '.join(SPEAKER_ROLES)}")
        with self._session(write=True) as s:
            row = _speaker_row(s, recording_id, label)
            before = _speaker_state(row)
            row.role, row.role_by = role, user
            s.add(HistoryRow(recording_id=recording_id, action="role", changed_by=user, before=before, after=_speaker_state(row)))
            s.flush()
            return _speaker(row)

    def enroll(self, name: str, profile: Sequence[float], user: str, sources: Sequence[str] = ()) -> PersonRecord:
        """Store a person's voice profile as `user`; enrolling a name again replaces its profile."""
        name = " ".join(name.split())
        if not name:
            raise InvalidInputError("an enrolled voice needs a name")
        with self._session(write=True) as s:
            row = s.scalars(select(PersonRow).where(PersonRow.name == name)).one_or_none()
            if row is None:
                row = PersonRow(name=name)
                s.add(row)
            row.profile, row.sources = _profile_bytes(profile), [str(source) for source in sources]
            row.enrolled_by, row.enrolled_at = user, now()
            s.flush()
            return _person(row)

    def people(self) -> list[PersonRecord]:
        """The enrolled voices, by name."""
        with self._session() as s:
            return [_person(row) for row in s.scalars(select(PersonRow).order_by(PersonRow.name))]

    # --------------------------------------------------------------------------------- search

    def search(self, query: Query, filters: SearchFilters = SearchFilters(), limit: int = 20, offset: int = 0) -> SearchResults:
        """Segments matching a query (see pipeline.search.textindex), most relevant first, ties by recording and
        time; `total` counts every match. bm25 ranks on SQLite, ts_rank_cd on PostgreSQL.

        One statement: the matches' ids and ranks are computed once (a materialized CTE), the rank of the
        last wanted hit found in it, and only the matches ranked as high (ties included) are joined to
        their segments and recordings and sorted, however many match."""
        wanted = limit + offset
        with self._session() as s:
            conn = s.connection()
            matches = _matches_query(conn, query, filters).cte("matches").prefix_with("MATERIALIZED")
            cut = select(matches.c.rank).order_by(matches.c.rank.desc()).limit(1).offset(wanted - 1).scalar_subquery()
            total = select(func.count()).select_from(matches).scalar_subquery()
            rows = s.execute(
                select(
                    SegmentRow.id, SegmentRow.recording_id, RecordingRow.path, SegmentRow.start, SegmentRow.end,
                    SegmentRow.speaker, SegmentRow.text, SegmentRow.language, matches.c.rank, total.label("total"),
                )
                .select_from(matches)
                .join(SegmentRow, SegmentRow.id == matches.c.segment_id)
                .join(RecordingRow, RecordingRow.id == SegmentRow.recording_id)
                .where(matches.c.rank >= func.coalesce(cut, matches.c.rank))  # all, when fewer match
                .order_by(matches.c.rank.desc(), RecordingRow.path, SegmentRow.start)
                .limit(limit)
                .offset(offset)
            ).all()  # fmt: skip
            if rows:
                count = rows[0].total
            else:  # nothing matches, or fewer than offset do
                unranked = _matches_query(conn, query, filters, ranked=False).subquery()
                count = s.scalar(select(func.count()).select_from(unranked)) or 0
            themes: dict[int, list[str]] = defaultdict(list)
            if rows:
                for segment_id, theme in s.execute(
                    select(AnnotationRow.segment_id, AnnotationRow.theme)
                    .where(AnnotationRow.segment_id.in_([r.id for r in rows]), AnnotationRow.status != "rejected")
                    .order_by(AnnotationRow.theme)
                ):
                    themes[segment_id].append(theme)
        hits = [
            SearchHit(r.recording_id, r.path, r.id, r.start, r.end, r.speaker, r.text, r.language, tuple(themes[r.id]), float(r.rank))
            for r in rows
        ]
        return SearchResults(count, hits)

    def count_segments(self) -> int:
        with self._session() as s:
            return s.scalar(select(func.count()).select_from(SegmentRow)) or 0

    # ------------------------------------------------------------------------------------ web
    # People, text corrections and reverts, for the web app (pipeline/web); helpers at the end.

    def add_user(self, name: str, password: str, role: str) -> UserRecord:
        """A new account; InvalidInputError if the name is taken, the role unknown or the password empty."""
        if role not in ROLES:
            raise InvalidInputError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
        if not name.strip() or not password:
            raise InvalidInputError("a user needs a name and a password")
        with self._session(write=True) as s:
            if s.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
                raise InvalidInputError(f"user {name!r} exists already")
            row = UserRow(name=name, password_hash=_hasher().hash(password), role=role)
            s.add(row)
            s.flush()
            return _user(row)

    def user(self, name: str) -> UserRecord | None:
        with self._session() as s:
            row = s.scalars(select(UserRow).where(UserRow.name == name)).one_or_none()
            return None if row is None else _user(row)

    def check_password(self, name: str, password: str) -> UserRecord | None:
        """The user, if the password is theirs; None otherwise (an unknown name costs a hash too)."""
        with self._session() as s:
            row = s.scalars(select(UserRow).where(UserRow.name == name)).one_or_none()
        try:
            _hasher().verify(row.password_hash if row else _dummy_hash(), password)
        except argon2.exceptions.VerificationError:
            return None
        return None if row is None else _user(row)

    def stage_statuses(self) -> dict[int, dict[str, str]]:
        """Every recording's stages and their status, by recording id (one query, for listings)."""
        found: dict[int, dict[str, str]] = defaultdict(dict)
        with self._session() as s:
            for rid, stage, status in s.execute(select(StageRow.recording_id, StageRow.stage, StageRow.status).order_by(StageRow.stage)):
                found[rid][stage] = status
        return dict(found)

    def segment_versions(self, recording_id: int) -> dict[int, int]:
        """Each segment's version (see correct_text), by segment id."""
        with self._session() as s:
            return dict(s.execute(select(SegmentRow.id, SegmentRow.version).where(SegmentRow.recording_id == recording_id)).all())

    def correct_text(self, segment_id: int, text_: str, user: str, version: int) -> Segment:
        """A person's correction of a segment's text, based on `version` of it. Times and themes stay
        (evidence is re-anchored on its words), the earlier text goes into the history, the index
        follows. ConflictError, carrying the current text and version, if someone changed it since."""
        with self._session(write=True) as s:
            row = s.get(SegmentRow, segment_id)
            if row is None:
                raise NotFoundError(f"no segment with id {segment_id}")
            # The version check is in the UPDATE itself, so it holds on PostgreSQL's read committed too.
            old_text = row.text  # if the update below applies, nobody changed it since this version
            done = s.execute(
                update(SegmentRow.__table__)
                .where(SegmentRow.id == segment_id, SegmentRow.version == version)
                .values(text=text_, version=version + 1)
            ).rowcount
            s.refresh(row)
            if not done:
                raise ConflictError(f"segment {segment_id} was changed since version {version}", _segment_state(s, row))
            before, after = {"text": old_text, "version": version}, {"text": text_, "version": version + 1}
            _after_correction(s, row, before["text"])
            s.add(HistoryRow(recording_id=row.recording_id, segment_id=segment_id, action="corrected", changed_by=user, before=before, after=after))
            return _segment(row)

    def revert(self, history_id: int, user: str) -> HistoryRecord:
        """Undo one change: a text correction or an annotation's status change, if it is still the
        latest one (ConflictError otherwise). The undoing is itself a change in the history."""
        with self._session(write=True) as s:
            change = s.get(HistoryRow, history_id)
            if change is None:
                raise NotFoundError(f"no change with id {history_id}")
            before, after = change.before or {}, change.after or {}
            if "text" in before and change.segment_id is not None:
                row = s.get(SegmentRow, change.segment_id)
                if row is None or row.text != after.get("text"):
                    raise ConflictError("the text was changed again since: revert the later change first", row and _segment_state(s, row))
                old_text, row.version = row.text, row.version + 1
                row.text = before["text"]
                _after_correction(s, row, old_text)
                undo = HistoryRow(recording_id=row.recording_id, segment_id=row.id, action="reverted", changed_by=user,
                                  before={"text": old_text, "version": row.version - 1}, after={"text": row.text, "version": row.version, "reverts": change.id})  # fmt: skip
            elif change.annotation_id is not None and before.get("status") in ANNOTATION_STATUSES:
                row = s.get(AnnotationRow, change.annotation_id)
                if row is None or row.status != after.get("status"):
                    raise ConflictError("the annotation was changed again since: revert the later change first", row and _annotation(row, change.recording_id))
                state = _annotation_state(row)
                row.status, row.updated_by, row.updated_at, row.version = before["status"], user, now(), row.version + 1
                undo = HistoryRow(recording_id=change.recording_id, segment_id=row.segment_id, annotation_id=row.id, action="reverted",
                                  changed_by=user, before=state, after={**_annotation_state(row), "reverts": change.id})  # fmt: skip
            else:
                raise InvalidInputError(f"a change of kind {change.action!r} cannot be reverted")
            s.add(undo)
            s.flush()
            return _history(undo)


def _filter_clauses(filters: SearchFilters, segment_id=SegmentRow.id) -> list:
    """WHERE clauses for the filters, on SegmentRow and RecordingRow; `segment_id` is the column the
    theme filter looks up annotations by (a full-text index's own id column will do)."""
    clauses = []
    if filters.themes:
        # EXISTS: one look-up in (segment_id, theme) per match. An IN list of every segment with the
        # theme would read the whole annotations table on every search (it has no index by theme).
        clauses.append(
            exists().where(
                AnnotationRow.segment_id == segment_id,
                AnnotationRow.theme.in_(filters.themes),
                AnnotationRow.status.in_(filters.theme_status),
            )
        )
    if filters.speaker is not None:
        clauses.append(_speaker_clause(filters.speaker))
    if filters.recording is not None:
        clauses.append(SegmentRow.recording_id == filters.recording)
    if filters.language:
        clauses.append(or_(SegmentRow.language == filters.language, SegmentRow.language.like(f"{filters.language}-%")))
    if filters.interviewee:
        clauses.append(func.lower(RecordingRow.interviewee).contains(filters.interviewee.lower(), autoescape=True))
    if filters.place:
        clauses.append(func.lower(RecordingRow.place).contains(filters.place.lower(), autoescape=True))
    if filters.date_from:
        clauses.append(RecordingRow.recorded_on >= _as_date(filters.date_from))
    if filters.date_to:
        clauses.append(RecordingRow.recorded_on <= _as_date(filters.date_to))
    if filters.hide_closed:  # as RecordingRecord.access() decides it
        clauses.append(or_(RecordingRow.consent != "closed", RecordingRow.release_on <= date.today()))
    return clauses


def _recording_of_segment(s: Session, segment_id: int) -> int:
    recording_id = s.scalar(select(SegmentRow.recording_id).where(SegmentRow.id == segment_id))
    if recording_id is None:
        raise NotFoundError(f"no segment with id {segment_id}")
    return recording_id


def _decided_annotations(s: Session, recording_id: int) -> list[tuple[AnnotationRow, float, float, str]]:
    """The annotations a person decided or added, with their segment's times and text."""
    rows = s.execute(
        select(AnnotationRow, SegmentRow.start, SegmentRow.end, SegmentRow.text)
        .join(SegmentRow, AnnotationRow.segment_id == SegmentRow.id)
        .where(SegmentRow.recording_id == recording_id)
        .where((AnnotationRow.status != "suggested") | (AnnotationRow.source != "auto"))
    ).all()
    for row in rows:
        s.expunge(row[0])  # keep its values after the segment (and it) are deleted
    return [tuple(row) for row in rows]


def _carry_decisions(s: Session, recording_id: int, decided: list, segments: list[tuple[int, Segment]]) -> None:
    """Re-attach human decisions to the new segments of a re-transcribed recording.

    Each goes to the new segment that overlaps its old one most in time, its evidence re-anchored on
    the same words in the new text; the move is kept in the history. Suggestions are not carried:
    re-tagging makes them anew.
    """
    taken: set[tuple[int, str]] = set()
    for old, start, end, text in decided:
        if not segments:
            break
        def closeness(item: tuple[int, Segment]) -> tuple[float, float]:
            return min(end, item[1].end) - max(start, item[1].start), -abs(item[1].start - start)

        segment_id, segment = max(segments, key=closeness)
        if (segment_id, old.theme) in taken:
            continue
        taken.add((segment_id, old.theme))
        row = AnnotationRow(
            segment_id=segment_id, theme=old.theme, source=old.source, status=old.status, score=old.score,
            evidence=_reanchor(old.evidence, text, segment.text), tagger=old.tagger, updated_by=old.updated_by,
            updated_at=old.updated_at, version=old.version + 1,
        )  # fmt: skip
        s.add(row)
        s.flush()
        s.add(HistoryRow(
            recording_id=recording_id, segment_id=segment_id, annotation_id=row.id, action="moved",
            changed_by="ohp", before={**_annotation_state(old), "annotation_id": old.id}, after=_annotation_state(row),
        ))  # fmt: skip


def _replace_segments(s: Session, recording_id: int, segments: list[Segment], engine: str, model: str) -> None:
    """Put `segments` (with their words) in place of a recording's segments, index them, and make a
    speaker row for each of their labels. Human decisions follow by time: annotations (see
    _carry_decisions), and the names and roles people gave speakers (see _carry_speakers)."""
    decided = _decided_annotations(s, recording_id)
    corrected = _corrected_segments(s, recording_id)  # web: people's text corrections, carried below
    old_turns = s.execute(
        select(SegmentRow.start, SegmentRow.end, SegmentRow.speaker)
        .where(SegmentRow.recording_id == recording_id, SegmentRow.speaker.is_not(None))
    ).all()  # fmt: skip
    # Plain rows, not ORM objects: the new speakers may get the ids of the deleted ones.
    people_set = [
        _speaker_state(row)
        for row in s.execute(select(SpeakerRow.__table__).where(SpeakerRow.recording_id == recording_id))
        if row.named_by or row.role_by
    ]
    _unindex_recording(s.connection(), recording_id)
    old = select(SegmentRow.id).where(SegmentRow.recording_id == recording_id)
    no_sync = {"synchronize_session": False}
    s.execute(delete(WordRow).where(WordRow.segment_id.in_(old)), execution_options=no_sync)
    s.execute(delete(SegmentRow).where(SegmentRow.recording_id == recording_id), execution_options=no_sync)
    s.execute(delete(SpeakerRow).where(SpeakerRow.recording_id == recording_id), execution_options=no_sync)
    # Core executemany, no ORM bookkeeping per row; then the new ids in one query (RETURNING
    # would cost one statement per row on SQLite when the ids must come back in order).
    if segments:
        rows = [
            dict(
                recording_id=recording_id, idx=i, start=seg.start, end=seg.end, text=seg.text,
                original_text=seg.original_text, language=seg.language, speaker=seg.speaker,
                avg_logprob=seg.avg_logprob, no_speech_prob=seg.no_speech_prob,
                compression_ratio=seg.compression_ratio, engine=engine, model=model,
            )
            for i, seg in enumerate(segments)
        ]  # fmt: skip
        conn = s.connection()
        if conn.dialect.name == "sqlite":  # tuples straight to the driver: half the cost per row (bench/search.py)
            columns = ", ".join(f'"{name}"' for name in rows[0])
            conn.exec_driver_sql(
                f"INSERT INTO segments ({columns}) VALUES ({', '.join('?' * len(rows[0]))})",
                [tuple(row.values()) for row in rows],
            )
        else:
            s.execute(insert(SegmentRow.__table__), rows)
        new = select(SegmentRow.idx, SegmentRow.id).where(SegmentRow.recording_id == recording_id)
        ids = dict(s.execute(new).all())
        words = [
            dict(segment_id=ids[i], idx=j, start=w.start, end=w.end, text=w.text, probability=w.probability)
            for i, seg in enumerate(segments)
            for j, w in enumerate(seg.words)
        ]
        if words:
            s.execute(insert(WordRow.__table__), words)
        index_rows(s.connection(), [(ids[i], seg.text, seg.original_text) for i, seg in enumerate(segments)])
        _carry_decisions(s, recording_id, decided, [(ids[i], seg) for i, seg in enumerate(segments)])
    _carry_corrections(s, recording_id, corrected, [(ids[i], seg) for i, seg in enumerate(segments)] if segments else [])
    speakers = {label: SpeakerRow(recording_id=recording_id, label=label) for label in dict.fromkeys(seg.speaker for seg in segments if seg.speaker)}
    s.add_all(speakers.values())
    s.flush()
    if people_set:
        _carry_speakers(s, recording_id, people_set, old_turns, [(seg.start, seg.end, seg.speaker) for seg in segments if seg.speaker], speakers)
    # Later stages worked on the old segments: they run again on the new ones.
    s.execute(delete(StageRow).where(StageRow.recording_id == recording_id, StageRow.stage != "transcribe"), execution_options=no_sync)


def _talk_overlap(old: list[tuple[float, float, str]], new: list[tuple[float, float, str]]) -> Counter[tuple[str, str]]:
    """Seconds during which each (old label, new label) pair speak at once, from (start, end, label) segments."""
    old = sorted(old)
    starts = [start for start, _, _ in old]
    longest = max((end - start for start, end, _ in old), default=0.0)
    found: Counter[tuple[str, str]] = Counter()
    for start, end, label in new:
        for old_start, old_end, old_label in old[bisect_left(starts, start - longest) : bisect_left(starts, end)]:
            if min(end, old_end) > max(start, old_start):
                found[old_label, label] += min(end, old_end) - max(start, old_start)
    return found


def _carry_speakers(
    s: Session, recording_id: int, people_set: list[dict], old: list[tuple[float, float, str]],
    new: list[tuple[float, float, str]], speakers: dict[str, SpeakerRow],
) -> None:  # fmt: skip
    """Names and roles people gave the old speakers, given to the new speakers who talk when they did:
    pairs by the longest time speaking together, each old and new speaker in one pair at most. The
    moves are kept in the history; a speaker nobody now talks like loses what people set."""
    wanted = {state["label"]: state for state in people_set}
    paired: set[str] = set()
    for (old_label, label), _ in _talk_overlap(old, new).most_common():
        if old_label not in wanted or label in paired:
            continue
        state, row = wanted.pop(old_label), speakers[label]
        paired.add(label)
        if state["named_by"]:
            row.name, row.named_by = state["name"], state["named_by"]
        if state["role_by"]:
            row.role, row.role_by = state["role"], state["role_by"]
        s.add(HistoryRow(recording_id=recording_id, action="speaker moved", changed_by="ohp", before=state, after=_speaker_state(row)))


def _speaker_row(s: Session, recording_id: int, label: str) -> SpeakerRow:
    row = s.scalars(select(SpeakerRow).where(SpeakerRow.recording_id == recording_id, SpeakerRow.label == label)).one_or_none()
    if row is None:
        labels = s.scalars(select(SpeakerRow.label).where(SpeakerRow.recording_id == recording_id).order_by(SpeakerRow.id)).all()
        raise NotFoundError(f"recording {recording_id} has no speaker {label!r}" + (f" (it has {', '.join(labels)})" if labels else " (it has no speakers)"))
    return row


def _speaker_clause(speaker: str):
    """Segments whose speaker is `speaker`: the label, the display name (any case) or the role."""
    return or_(
        SegmentRow.speaker == speaker,
        exists().where(
            SpeakerRow.recording_id == SegmentRow.recording_id,
            SpeakerRow.label == SegmentRow.speaker,
            or_(func.lower(SpeakerRow.name) == speaker.lower(), SpeakerRow.role == speaker.lower()),
        ),
    )


def _upsert_recording(s: Session, info: AudioInfo) -> RecordingRow:
    """The recording with this sha256, added if new; a moved or renamed file only updates its path."""
    row = s.scalars(select(RecordingRow).where(RecordingRow.sha256 == info.sha256)).one_or_none()
    if row is None:
        row = RecordingRow(
            sha256=info.sha256,
            path=str(info.path),
            size_bytes=info.size_bytes,
            format=info.format,
            duration=info.duration,
        )
        s.add(row)
    elif row.path != str(info.path):
        row.path = str(info.path)
    s.flush()
    return row


def _set_stage(
    s: Session,
    recording_id: int,
    stage: str,
    status: str,
    settings: dict,
    key: str,
    report: dict,
    error: str | None,
) -> None:
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


# ------------------------------------------------------------------------------------------- web
# Accounts and text corrections for the web app (pipeline/web): the Store methods are in its "web" part.

@functools.cache
def _hasher() -> argon2.PasswordHasher:
    return argon2.PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown names, so they take as long as wrong passwords."""
    return _hasher().hash("no such user")


def _user(row: UserRow) -> UserRecord:
    return UserRecord(row.id, row.name, row.role, iso(row.created_at) or "")


def _segment(row: SegmentRow) -> Segment:
    return Segment(
        start=row.start, end=row.end, text=row.text, original_text=row.original_text, language=row.language,
        avg_logprob=row.avg_logprob, no_speech_prob=row.no_speech_prob, compression_ratio=row.compression_ratio,
        speaker=row.speaker, id=row.id,
    )  # fmt: skip


def _segment_state(s: Session, row: SegmentRow) -> dict:
    """A segment's text as it is now, and who last changed it: what a conflicting editor is shown."""
    last = s.scalars(
        select(HistoryRow).where(HistoryRow.segment_id == row.id, HistoryRow.before.is_not(None))
        .order_by(HistoryRow.id.desc()).limit(1)
    ).first()  # fmt: skip
    return {
        "segment_id": row.id, "text": row.text, "version": row.version,
        "changed_by": last.changed_by if last else None, "changed_at": iso(last.changed_at) if last else None,
    }  # fmt: skip


def _after_correction(s: Session, row: SegmentRow, old_text: str) -> None:
    """Keep a corrected segment's themes on their words and its index entry on its new text (the
    engine's original no longer matches it, so only the text is indexed)."""
    for annotation in s.scalars(select(AnnotationRow).where(AnnotationRow.segment_id == row.id)):
        annotation.evidence = _reanchor(annotation.evidence, old_text, row.text)
    index_rows(s.connection(), [(row.id, row.text, row.text)])


def _corrected_segments(s: Session, recording_id: int) -> list[tuple[float, float, str, int]]:
    """(start, end, text, version) of a recording's segments whose text a person corrected."""
    rows = s.execute(
        select(SegmentRow.start, SegmentRow.end, SegmentRow.text, SegmentRow.version)
        .where(SegmentRow.recording_id == recording_id, SegmentRow.version > 1)
    ).all()
    return [tuple(r) for r in rows]


def _carry_corrections(s: Session, recording_id: int, corrected: list, segments: list[tuple[int, Segment]]) -> None:
    """A re-transcription keeps people's corrections: each goes to the new segment covering the same
    stretch of audio (most of both overlapping); one with no such segment is recorded as dropped, its
    text kept in the history."""
    for start, end, text_, version in corrected:
        def overlap(item: tuple[int, Segment]) -> float:
            return min(end, item[1].end) - max(start, item[1].start)

        best = max(segments, key=overlap, default=None)
        same = best is not None and overlap(best) > 0.5 * max(end - start, best[1].end - best[1].start)
        if same:
            s.execute(update(SegmentRow.__table__).where(SegmentRow.id == best[0]).values(text=text_, version=version + 1))
            index_rows(s.connection(), [(best[0], text_, text_)])
        s.add(HistoryRow(
            recording_id=recording_id, segment_id=best[0] if same else None, action="carried" if same else "dropped",
            changed_by="ohp", before={"text": text_, "start": start, "end": end}, after={"text": text_} if same else None,
        ))  # fmt: skip
