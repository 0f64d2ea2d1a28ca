"""The store: every database access of the pipeline lives in this package.

Callers use `Store` and get and give the records of `pipeline.records`, never ORM objects, so nobody
outside the package holds a session. `Store` owns the engine and the transactions: each of its
methods is one transaction (a write one takes the write lock first), in which it calls the plain
functions of the module that holds the concern, each taking the session:

    database     the URL, the engine, SQLite's settings, the Alembic migrations, sessions
    models       the ORM rows
    recordings   recordings, what is known of them, and the stages run on them
    transcripts  segments and words: replaced with what people did carried over, corrected, reverted
    annotations  themes, their decisions and the history of changes; named entities
    speakers     a recording's speakers, and enrolled voices
    search       the full-text index and the search SQL
    users        the web app's accounts and their password hashes
    vocabulary   the words people wrote in corrections, and the suggested terms ignored

Errors: pipeline.errors' NotFoundError, InvalidInputError (a value the database cannot hold among them)
and ConflictError; StoreError when the database cannot be used.
"""

# No `from __future__ import annotations` here: in a package's __init__ it binds the name of the
# submodule `annotations`.
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Any, Self

from sqlalchemy.orm import Session

from pipeline.errors import ConflictError
from pipeline.records import (
    ROLES,
    AnnotationRecord,
    AudioInfo,
    CoderDecision,
    CollectionCounts,
    CorrectedWord,
    DecisionCounts,
    Disagreement,
    Entity,
    HistoryRecord,
    KeptDecision,
    PersonRecord,
    RecordingExport,
    RecordingRecord,
    RecordingResult,
    SavedRecording,
    SearchFilters,
    SearchResults,
    Segment,
    SpeakerRecord,
    StageRecord,
    ThemeDecision,
    Transcript,
    UserRecord,
)
from pipeline.search.textindex import Query
from pipeline.store import analysis, annotations, database, recordings, search, transcripts, users, vocabulary
from pipeline.store import speakers as speaker_store
from pipeline.store.annotations import Added
from pipeline.store.database import StoreError, alembic_config
from pipeline.store.models import Base, UTCDateTime, in_models

__all__ = [
    "ROLES",
    "Base",
    "ConflictError",
    "Store",
    "StoreError",
    "UTCDateTime",
    "UserRecord",
    "alembic_config",
    "in_models",
]


class Store:
    """The pipeline's database. Methods take and return records; each call is its own transaction."""

    def __init__(self, url: str) -> None:
        self._engine, self.url = database.open_engine(url)
        self._place_released()

    def _place_released(self) -> None:
        """Move the index rows of the recordings released since they were indexed into the table every signed-in
        user's search ranks by (search.released_in_closed_index; SQLite only)."""
        if self.dialect != "sqlite":  # one index table: not even a connection to take
            return
        with self._session() as s:
            released = search.released_in_closed_index(s.connection())
        if released:
            with self._session(write=True) as s:
                for recording_id in released:
                    search.place_recording(s.connection(), recording_id)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def dialect(self) -> str:
        """The database's kind as SQLAlchemy names it: sqlite, postgresql, ..."""
        return self._engine.dialect.name

    def __enter__(self) -> Self:
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
            return recordings.recording(s, recording_id)

    def recording_by_sha256(self, sha256: str) -> RecordingRecord | None:
        with self._session() as s:
            return recordings.recording_by_sha256(s, sha256)

    def recording_at_path(self, path: str) -> RecordingRecord | None:
        """The recording last added at this path (see recordings.latest_at_path)."""
        with self._session() as s:
            row = recordings.latest_at_path(s, path)
            return None if row is None else recordings.recording_record(row)

    def list_recordings(self) -> list[RecordingRecord]:
        """All recordings, ordered by path."""
        with self._session() as s:
            return recordings.list_recordings(s)

    def find_recordings(self, refs: list[str]) -> list[RecordingRecord]:
        """The recordings the refs name (see recordings.find_recordings), in order, each once."""
        with self._session() as s:
            return recordings.find_recordings(s, refs)

    def update_path(self, recording_id: int, path: str) -> None:
        """Where a recording's file is now (it was moved or renamed; its bytes are the same)."""
        with self._session(write=True) as s:
            recordings.update_path(s, recording_id, path)

    def set_metadata(
        self,
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
        """Set what is known of a recording, a change of who may see it kept in the history as `changed_by`'s
        (see recordings.set_metadata)."""
        changes = dict(
            interviewee=interviewee, place=place, recorded_on=recorded_on, consent=consent, release_on=release_on
        )
        seen = None if access_seen is None else {recording_id: access_seen}
        [recording] = self.set_metadata_of([recording_id], {**changes, **extra}, changed_by, seen)
        return recording

    def set_metadata_of(
        self,
        recording_ids: Sequence[int],
        changes: dict[str, Any],
        changed_by: str,
        access_seen: dict[int, RecordingRecord] | None = None,
    ) -> list[RecordingRecord]:
        """set_metadata's `changes` (its keywords) on several recordings in one transaction: all of them or, on an
        error (a conflict on one, a Ctrl-C), none; `access_seen` by recording id."""
        with self._session(write=True) as s:
            described = [
                recordings.set_metadata(
                    s, i, **changes, changed_by=changed_by, access_seen=access_seen[i] if access_seen else None
                )
                for i in recording_ids
            ]
            if changes.get("consent") is not None or changes.get("release_on") is not None:
                speaker_store.withhold_voices(s)  # voices enrolled from them follow their consent
            return described

    # --------------------------------------------------------------------------------- stages

    def stage(self, recording_id: int, stage: str) -> StageRecord | None:
        with self._session() as s:
            return recordings.stage(s, recording_id, stage)

    def stages(self, recording_id: int) -> list[StageRecord]:
        """A recording's stages, ordered by name."""
        with self._session() as s:
            return recordings.stages(s, recording_id)

    def stage_listing(self) -> tuple[dict[int, dict[str, str]], dict[int, dict[str, str]]]:
        """Every recording's stages with their status, and the errors of those whose last run failed, each by
        recording id (recordings.stage_listing: one query, for listings)."""
        with self._session() as s:
            return recordings.stage_listing(s)

    def start_stage(self, info: AudioInfo, stage: str, settings: dict[str, Any], settings_key: str) -> int:
        """Record that a stage is running on this file (added as a recording if new); its id."""
        with self._session(write=True) as s:
            recording_id = recordings.upsert_recording(s, info).id
            recordings.set_stage(s, recording_id, stage, "running", settings, settings_key, {}, None)
            return recording_id

    def fail_stage(self, info: AudioInfo, stage: str, settings: dict[str, Any], settings_key: str, error: str) -> None:
        """Record that a stage failed on this file; what an earlier run stored stays, a done stage with its
        settings (recordings.fail_stage)."""
        with self._session(write=True) as s:
            recording_id = recordings.upsert_recording(s, info).id
            recordings.fail_stage(s, recording_id, stage, settings, settings_key, error)

    # ------------------------------------------------------------------------------ transcripts

    def save_result(self, result: RecordingResult) -> SavedRecording:
        """Save a pass's result (pipeline.process) in one transaction: if anything fails, the database stays
        exactly as it was.

        The recording is added or updated (its path, what an imported file says of it; its language and
        duration when it was transcribed). New segments (RecordingResult.new_segments) replace the stored
        ones with their words and index entries, people's work on the old ones carried over to them
        (transcripts.replace_segments), and the stages that did not run on them are forgotten. The speakers
        get what the stage found, except where a person set the name or the role; the tagger's suggestions
        are added, updated or withdrawn, never touching a human decision (annotations.save_tags). Each stage
        that ran is marked done. Returns the recording as saved, for its export files."""
        with self._session(write=True) as s:
            row = recordings.upsert_recording(s, result.info)
            if "transcribe" in result.stages:
                row.language, row.duration = result.transcript.language, result.info.duration
                row.warnings = result.transcript.quality_warnings
            recording_id = row.id
            if result.description:
                recordings.describe_from_file(s, row, result.description)
            if result.new_segments:
                if "transcribe" not in result.stages:  # made from the stored segments: as they were read?
                    transcripts.check_unchanged(s, recording_id, result.transcript.segments)
                segments = transcripts.replace_segments(s, recording_id, result.transcript)
                recordings.count_doubt(s, recording_id)
                recordings.drop_stages(s, recording_id, keep=("transcribe", *result.stages))
            else:
                segments = transcripts.as_stored(s, recording_id, result.transcript.segments)
            forgotten: list[str] = []  # voices forgotten while the pass ran
            if "speakers" in result.stages:
                forgotten = speaker_store.save_speakers(s, recording_id, result.speakers)
            counts = annotations.save_result_tags(s, recording_id, segments, result) if "tag" in result.stages else None
            for name, run in result.stages.items():
                report = {**run.report, **counts} if name == "tag" and counts is not None else run.report
                recordings.set_stage(s, recording_id, name, "done", run.settings, run.settings_key, report, None)
            for voice in forgotten:  # its report names them no more
                speaker_store.unreport(s, voice, [recording_id])
            # The names a voice withheld here gave (a pass that read the voices before a consent changed), and those
            # that voices enrolled from this recording gave elsewhere, where it is stored with a consent of its own
            # (an imported file's, a new recording's): over every recording, however the consent came.
            speaker_store.withhold_voices(s)
            return SavedRecording(_saved_export(s, recording_id, segments), counts)

    def recording_export(self, recording_id: int) -> RecordingExport:
        """What a recording's export files show, read as one state: a pass saved meanwhile is in all of it or in
        none (read apart, an export had the new segments with the old segments' themes, which it then left out)."""
        with self._session() as s:
            return _saved_export(s, recording_id, transcripts.segments(s, recording_id))

    def transcript(self, recording_id: int) -> Transcript:
        """A recording's stored transcript (see transcripts.transcript)."""
        with self._session() as s:
            return transcripts.transcript(s, recording_id)

    def segments(self, recording_id: int) -> list[Segment]:
        """A recording's segments with their words, ordered by start (two queries in all)."""
        with self._session() as s:
            return transcripts.segments(s, recording_id)

    def count_segments(self) -> int:
        with self._session() as s:
            return transcripts.count_segments(s)

    def segment_recording(self, segment_id: int) -> int:
        """The id of the segment's recording (NotFoundError)."""
        with self._session() as s:
            return annotations.recording_of_segment(s, segment_id)

    def correct_text(self, segment_id: int, text_: str, user: str, version: int) -> tuple[Segment, int]:
        """A person's correction of a segment's text, based on `version` of it: the segment and its version
        now. ConflictError, carrying the current text and version, if someone changed it since; the same
        text again changes nothing (see transcripts.correct_text)."""
        with self._session(write=True) as s:
            return transcripts.correct_text(s, segment_id, text_, user, version)

    def revert(self, history_id: int, user: str) -> HistoryRecord:
        """Undo one change: a text correction or an annotation's status change, if it is still the
        latest one (ConflictError otherwise). The undoing is itself a change in the history."""
        with self._session(write=True) as s:
            return transcripts.revert(s, history_id, user)

    def corrected_words(self, scope: Sequence[int] | None = None) -> list[CorrectedWord]:
        """Every word a person wrote in a correction in these recordings (None: all; see
        vocabulary.corrected_words)."""
        with self._session() as s:
            return vocabulary.corrected_words(s, scope)

    def ignored_terms(self) -> set[str]:
        """The terms researchers chose not to be suggested for the vocabulary."""
        with self._session() as s:
            return vocabulary.ignored_terms(s)

    def ignore_term(self, term: str, user: str) -> None:
        with self._session(write=True) as s:
            vocabulary.ignore_term(s, term, user)

    # ---------------------------------------------------------------------------- annotations

    def annotations(
        self, recording_id: int | None = None, *, segment_id: int | None = None, status: str | None = None
    ) -> list[AnnotationRecord]:
        """Annotations of a recording or a segment (or all), in transcript order."""
        with self._session() as s:
            return annotations.list_annotations(s, recording_id, segment_id=segment_id, status=status)

    def theme_decisions(self, scope: Sequence[int] | None = None) -> list[ThemeDecision]:
        """Every theme people decided on in these recordings (None: all), with the segment's text (what
        `ohp tag-learn` learns from)."""
        with self._session() as s:
            return annotations.list_decisions(s, scope)

    def decide(self, annotation_id: int, status: str, user: str, *, version: int | None = None) -> AnnotationRecord:
        """Accept or reject an annotation (or put it back to suggested), as `user`. With `version`,
        ConflictError carries the current one if somebody changed it since."""
        with self._session(write=True) as s:
            return annotations.decide(s, annotation_id, status, user, version=version)

    def add_annotation(
        self,
        segment_id: int,
        theme: str,
        user: str,
        evidence: tuple[tuple[int, int], ...] = (),
        *,
        version: int | None = None,
    ) -> AnnotationRecord:
        """A person puts a theme on a segment (accepted, theirs). If the theme is already there, it
        becomes accepted by them and the given evidence is added to it; if a person rejected it,
        ConflictError carries it (overturning a rejection is a `decide` on its version). With `version`, the
        segment's version the evidence's offsets are into: ConflictError, carrying the segment's text now, if
        someone changed the text since (transcripts.check_version)."""
        with self._session(write=True) as s:
            if version is not None:
                transcripts.check_version(s, segment_id, version)
            return annotations.add_annotations(s, [(segment_id, theme, user, evidence)])[0]

    def add_annotations(self, added: Sequence[Added]) -> list[AnnotationRecord]:
        """Several `add_annotation`s, (segment id, theme, user, evidence) each, in one transaction:
        all of them or none."""
        with self._session(write=True) as s:
            return annotations.add_annotations(s, added)

    def import_annotations(
        self, added: Sequence[Added], seen: Mapping[int, int] | None = None
    ) -> tuple[list[AnnotationRecord], list[KeptDecision]]:
        """Codes coded in another tool over a whole transcript, (segment id, theme, coder, evidence) each, in one
        transaction: the annotations accepted, and the codes on themes a person rejected in ohp, which stay
        rejected; a conflict where a segment changed since its version `seen` (annotations.import_annotations)."""
        with self._session(write=True) as s:
            return annotations.import_annotations(s, added, seen)

    def decisions(self, recording_id: int) -> list[CoderDecision]:
        """Every coder's own decisions on a recording's themes, in transcript order."""
        with self._session() as s:
            return annotations.decisions(s, recording_id)

    def history(
        self, *, recording_id: int | None = None, segment_id: int | None = None, annotation_id: int | None = None
    ) -> list[HistoryRecord]:
        """Changes, oldest first, to a recording, a segment or an annotation."""
        with self._session() as s:
            return annotations.history(s, recording_id=recording_id, segment_id=segment_id, annotation_id=annotation_id)

    def theme_counts(self) -> list[tuple[int, str, str, dict[str, int]]]:
        """(recording id, recording path, theme, {status: count}) for every theme in use."""
        with self._session() as s:
            return annotations.theme_counts(s)

    def status_counts(self) -> dict[int, dict[str, int]]:
        """{recording id: {status: count}}, every theme together, of the recordings with annotations."""
        with self._session() as s:
            return annotations.status_counts(s)

    def entities(self, recording_id: int) -> dict[int, list[Entity]]:
        """A recording's named entities, by segment id."""
        with self._session() as s:
            return annotations.entities(s, recording_id)

    # ------------------------------------------------------------------------------- analysis

    def coders(self, scope: Sequence[int] | None = None) -> list[str]:
        """Everyone who decided a theme on these recordings (None: all), by name."""
        with self._session() as s:
            return analysis.coders(s, scope)

    def decision_counts(self, scope: Sequence[int] | None, coders: Sequence[str]) -> DecisionCounts:
        """The counts behind the coders' agreement on these recordings (see analysis.decision_counts)."""
        with self._session() as s:
            return analysis.decision_counts(s, scope, coders)

    def disagreements(self, scope: Sequence[int] | None, coders: Sequence[str]) -> Iterator[Disagreement]:
        """Where the coders differ, in transcript order, streamed from one query."""
        with self._session() as s:
            yield from analysis.disagreements(s, scope, coders)

    def collection_counts(self, scope: Sequence[int] | None = None) -> CollectionCounts:
        """Theme frequency, co-occurrence and coverage of these recordings (see analysis.collection_counts)."""
        with self._session() as s:
            return analysis.collection_counts(s, scope)

    # ------------------------------------------------------------------------------- speakers

    def speakers(self, recording_id: int) -> list[SpeakerRecord]:
        """A recording's speakers, in order of first appearance."""
        with self._session() as s:
            return speaker_store.speakers(s, recording_id)

    def rename_speaker(self, recording_id: int, label: str, name: str, user: str) -> SpeakerRecord:
        """Give a speaker the name people see, as `user` ("" gives the label back); kept in the history."""
        with self._session(write=True) as s:
            return speaker_store.rename_speaker(s, recording_id, label, name, user)

    def set_role(self, recording_id: int, label: str, role: str, user: str) -> SpeakerRecord:
        """Set a speaker's role as `user`, over the heuristics' choice; kept in the history."""
        with self._session(write=True) as s:
            return speaker_store.set_role(s, recording_id, label, role, user)

    def enroll(
        self,
        name: str,
        profile: Sequence[float],
        user: str,
        sources: Sequence[str] = (),
        origins: Sequence[str] = (),
    ) -> PersonRecord:
        """Store a person's voice profile as `user`, made from the files `sources`, coming from `origins` (the
        sha256 of the files and of recordings they were cut from); enrolling a name again replaces its profile."""
        with self._session(write=True) as s:
            return speaker_store.enroll(s, name, profile, user, sources, origins)

    def set_voice_origins(
        self, name: str, origins: Sequence[str], user: str, seen: PersonRecord | None = None
    ) -> PersonRecord:
        """Say where an enrolled voice comes from (sha256s, as for enroll) as `user`, who is kept with them; the
        names it gave where that withholds it go. `seen`: the voice as the caller checked who may say so
        (speakers.set_origins)."""
        with self._session(write=True) as s:
            return speaker_store.set_origins(s, name, origins, user, seen)

    def forget_person(self, name: str) -> int:
        """Remove a person's enrolled voice and the name it gave speakers; how many it had named."""
        with self._session(write=True) as s:
            return speaker_store.forget(s, name)

    def people(self) -> list[PersonRecord]:
        """The enrolled voices, by name."""
        with self._session() as s:
            return speaker_store.people(s)

    # --------------------------------------------------------------------------------- search

    def search(
        self, query: Query, filters: SearchFilters = SearchFilters(), limit: int = 20, offset: int = 0
    ) -> SearchResults:
        """Segments matching a query, most relevant first (see search.search); `total` counts every match. A
        viewer's search first moves the rows of recordings released since they were indexed (a web app runs past
        release dates), so that no hit of theirs is ranked by the closed recordings' statistics."""
        if filters.hide_closed:
            self._place_released()
        with self._session() as s:
            return search.search(s, query, filters, limit, offset)

    # ---------------------------------------------------------------------------------- users

    def add_user(self, name: str, password: str, role: str) -> UserRecord:
        """A new account (see users.add_user): InvalidInputError if the name is taken (but for case or
        spaces), the role unknown or the password shorter than 8 characters."""
        with self._session(write=True) as s:
            return users.add_user(s, name, password, role)

    def user(self, name: str) -> UserRecord | None:
        """The account of this name (compared as users.name_key), or None."""
        with self._session() as s:
            return users.user(s, name)

    def list_users(self) -> list[UserRecord]:
        """Every account, by name."""
        with self._session() as s:
            return users.list_users(s)

    def set_password(self, name: str, password: str) -> UserRecord:
        """A new password for the user, whose sessions end (NotFoundError, InvalidInputError)."""
        with self._session(write=True) as s:
            return users.set_password(s, name, password)

    def end_sessions(self, name: str) -> None:
        """End every session of the user (logging out)."""
        with self._session(write=True) as s:
            users.end_sessions(s, name)

    def remove_user(self, name: str) -> UserRecord:
        """Remove the account; their sessions end, what they did stays (NotFoundError)."""
        with self._session(write=True) as s:
            return users.remove_user(s, name)

    def check_password(self, name: str, password: str) -> UserRecord | None:
        """The user, if the password is theirs; None otherwise (an unknown name costs a hash too)."""
        with self._session() as s:
            found = users.user_and_hash(s, name)
        return users.check_password(found, password)


def _saved_export(s: Session, recording_id: int, segments: list[Segment]) -> RecordingExport:
    """A recording for its export files: the segments (a pass's, as just saved), in time order; its themes,
    speakers and entities as the transaction sees them (small reads, in it)."""
    themes: dict[int, list[AnnotationRecord]] = {}
    for annotation in annotations.list_annotations(s, recording_id):
        themes.setdefault(annotation.segment_id, []).append(annotation)
    decided: dict[int, list[CoderDecision]] = {}
    for decision in annotations.decisions(s, recording_id):
        decided.setdefault(decision.segment_id, []).append(decision)
    ordered = sorted(segments, key=lambda segment: segment.start)
    return RecordingExport(
        recordings.recording(s, recording_id),
        ordered,
        themes,
        speaker_store.speakers(s, recording_id),
        annotations.entities(s, recording_id),
        decisions=decided,
    )
