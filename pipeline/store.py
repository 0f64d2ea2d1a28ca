"""The store: every database access of the pipeline lives here.

Callers get and give the records of `pipeline.records`, never ORM objects, so nobody outside this
module holds a session. SQLite by default (`$OHP_DATABASE_URL` or `sqlite:///ohp.db`); any
SQLAlchemy URL works (PostgreSQL through psycopg). Opening a store upgrades its schema to the
newest Alembic revision of `pipeline/migrations`.

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
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path, PurePath
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    create_engine,
    delete,
    event,
    insert,
    select,
)
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pipeline.records import AudioInfo, RecordingRecord, Segment, StageRecord, Transcript, Word

DEFAULT_URL = "sqlite:///ohp.db"
MIGRATIONS = Path(__file__).resolve().with_name("migrations")
_PG_MIGRATION_LOCK = 0x6F6870  # "ohp": key of the pg_advisory_xact_lock held while migrating


class StoreError(RuntimeError):
    """A database problem. The message names the database, its password masked."""


def settings_key(settings: dict) -> str:
    """The key of a stage's settings: sha256 of their canonical JSON, first 16 hex chars."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------- models


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone: UTC is put back on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware one")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    # Named constraints: future migrations on SQLite (batch mode) can only drop what has a name.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class RecordingRow(Base):
    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(Text)
    duration: Mapped[float] = mapped_column(Float)
    language: Mapped[str | None] = mapped_column(String(32))
    interviewee: Mapped[str | None] = mapped_column(Text)
    place: Mapped[str | None] = mapped_column(Text)
    recorded_on: Mapped[date | None] = mapped_column(Date)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)  # RecordingRecord.metadata
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now, onupdate=_now)


class SegmentRow(Base):
    __tablename__ = "segments"
    __table_args__ = (Index("ix_segments_recording_id_start", "recording_id", "start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"))
    idx: Mapped[int]  # order within the recording, as the transcript had it
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    original_text: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(32))
    speaker: Mapped[str | None] = mapped_column(String(255))
    avg_logprob: Mapped[float | None] = mapped_column(Float)
    no_speech_prob: Mapped[float | None] = mapped_column(Float)
    compression_ratio: Mapped[float | None] = mapped_column(Float)
    engine: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(Text)


class WordRow(Base):
    __tablename__ = "words"

    id: Mapped[int] = mapped_column(primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), index=True)
    idx: Mapped[int]  # order within the segment
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    probability: Mapped[float] = mapped_column(Float)


class StageRow(Base):
    __tablename__ = "stages"

    # The primary key (recording_id, stage) is the unique constraint: one row per stage and recording.
    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True
    )
    stage: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # "running", "done", "failed"
    settings: Mapped[dict] = mapped_column(JSON)
    settings_key: Mapped[str] = mapped_column(String(64))
    report: Mapped[dict] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --------------------------------------------------------------------------------- rows to records


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


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
    )


def _stage(row: StageRow) -> StageRecord:
    return StageRecord(
        stage=row.stage,
        status=row.status,
        settings=dict(row.settings or {}),
        settings_key=row.settings_key,
        report=dict(row.report or {}),
        error=row.error,
        started_at=_iso(row.started_at),
        finished_at=_iso(row.finished_at),
    )


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


def _as_date(value: str | date) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if value == "":
        return None
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"recorded_on must be an ISO date (YYYY-MM-DD), not {value!r}") from None


def _json(value: dict, what: str) -> dict:
    """A copy of value as JSON gives it back (tuples become lists...), the same on every backend."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serializable: {exc}") from None


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # the driver's own error, without the SQL and its parameters
    return str(orig if orig is not None else exc).splitlines()[0]


# ------------------------------------------------------------------------------------- migrations


def alembic_config(url: str | URL | None = None, connection: Connection | None = None) -> Config:
    """An Alembic config for pipeline/migrations: on `connection` if given, else on `url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _revisions() -> tuple[str, frozenset[str]]:
    """The head revision and all known revisions (read once per process)."""
    script = ScriptDirectory.from_config(alembic_config())
    return script.get_current_head(), frozenset(r.revision for r in script.walk_revisions())


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


# ------------------------------------------------------------------------------------------ store


class Store:
    """The pipeline's database. Methods take and return records; each call is its own transaction."""

    def __init__(self, url: str | None = None) -> None:
        raw = url or os.environ.get("OHP_DATABASE_URL") or DEFAULT_URL
        try:
            parsed = make_url(raw)
        except ArgumentError as exc:
            raise StoreError(f"not a database URL ({exc})") from None
        self.url: str = parsed.render_as_string(hide_password=True)
        self._sqlite = parsed.get_backend_name() == "sqlite"
        database = parsed.database or ""
        if self._sqlite and database not in ("", ":memory:") and not database.startswith("file:"):
            folder = Path(database).absolute().parent
            if not folder.is_dir():
                raise StoreError(f"cannot open SQLite database {database}: folder {folder} does not exist")
        try:
            self._engine = create_engine(parsed)
        except (SQLAlchemyError, ImportError) as exc:  # ImportError: the URL's driver is not installed
            raise StoreError(f"cannot use database {self.url}: {exc}") from exc
        if self._sqlite:
            event.listen(self._engine, "connect", _sqlite_pragmas)
        try:
            self._upgrade()
        except BaseException as exc:
            self._engine.dispose()
            if isinstance(exc, SQLAlchemyError):
                raise StoreError(f"cannot open database {self.url}: {_reason(exc)}") from exc
            raise

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    def _upgrade(self) -> None:
        """Bring the schema to head; a no-op (one small query) when it is there already."""
        head, known = _revisions()
        with self._engine.connect() as conn:
            if _current_revision(conn) == head:
                return
        with self._engine.connect() as conn:
            if self._sqlite:
                # Table rebuilds (alembic batch mode) must not cascade deletes: foreign keys are off
                # while migrating, checked before the commit, and on again for the pooled connection.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            try:
                self._upgrade_locked(conn, head, known)
            finally:
                if self._sqlite:
                    conn.rollback()
                    conn.exec_driver_sql("PRAGMA foreign_keys=ON")

    def _upgrade_locked(self, conn: Connection, head: str, known: frozenset[str]) -> None:
        if self._sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # one migrating process at a time
        elif conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        current = _current_revision(conn)  # again, now that we hold the lock
        if current is not None and current not in known:
            raise StoreError(
                f"database {self.url} has schema revision {current!r}, which this version of ohp "
                f"does not know (its newest is {head!r}): a newer ohp wrote it"
            )
        if current != head:
            command.upgrade(alembic_config(connection=conn), "head")
        if self._sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
            raise StoreError(f"migrating {self.url} left rows whose foreign keys point nowhere")
        conn.commit()

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed at the end, rolled back on any exception."""
        try:
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                if write and self._sqlite:
                    session.connection().exec_driver_sql("BEGIN IMMEDIATE")
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"database error on {self.url}: {_reason(exc)}") from exc

    # ----------------------------------------------------------------------------- recordings

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
        or a file stem. Raises LookupError naming every ref that matches nothing or several.
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
            raise LookupError("; ".join(problems))
        return list(found.values())

    def update_path(self, recording_id: int, path: str) -> None:
        """Where a recording's file is now (it was moved or renamed; its bytes are the same)."""
        with self._session(write=True) as s:
            row = s.get(RecordingRow, recording_id)
            if row is None:
                raise LookupError(f"no recording with id {recording_id}")
            row.path = path

    def set_metadata(
        self,
        recording_id: int,
        *,
        interviewee: str | None = None,
        place: str | None = None,
        recorded_on: str | date | None = None,
        **extra: Any,
    ) -> RecordingRecord:
        """Set what is known of a recording. None leaves a field as it is and "" clears it;
        other keywords go to its metadata dict (a key set to None is removed)."""
        day = None if recorded_on is None else _as_date(recorded_on)
        with self._session(write=True) as s:
            row = s.get(RecordingRow, recording_id)
            if row is None:
                raise LookupError(f"no recording with id {recording_id}")
            if interviewee is not None:
                row.interviewee = interviewee or None
            if place is not None:
                row.place = place or None
            if recorded_on is not None:
                row.recorded_on = day
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
            old = select(SegmentRow.id).where(SegmentRow.recording_id == rec.id)
            no_sync = {"synchronize_session": False}
            s.execute(delete(WordRow).where(WordRow.segment_id.in_(old)), execution_options=no_sync)
            s.execute(delete(SegmentRow).where(SegmentRow.recording_id == rec.id), execution_options=no_sync)
            # Core executemany, no ORM bookkeeping per row; then the new ids in one query (RETURNING
            # would cost one statement per row on SQLite when the ids must come back in order).
            if transcript.segments:
                s.execute(
                    insert(SegmentRow.__table__),
                    [
                        dict(
                            recording_id=rec.id, idx=i, start=seg.start, end=seg.end, text=seg.text,
                            original_text=seg.original_text, language=seg.language, speaker=seg.speaker,
                            avg_logprob=seg.avg_logprob, no_speech_prob=seg.no_speech_prob,
                            compression_ratio=seg.compression_ratio, engine=transcript.engine, model=transcript.model,
                        )
                        for i, seg in enumerate(transcript.segments)
                    ],
                )
                new = select(SegmentRow.idx, SegmentRow.id).where(SegmentRow.recording_id == rec.id)
                ids = dict(s.execute(new).all())
                words = [
                    dict(segment_id=ids[i], idx=j, start=w.start, end=w.end, text=w.text, probability=w.probability)
                    for i, seg in enumerate(transcript.segments)
                    for j, w in enumerate(seg.words)
                ]
                if words:
                    s.execute(insert(WordRow.__table__), words)
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
    now = _now()
    ending_a_run = status != "running" and row.status == "running" and row.started_at is not None
    row.started_at = row.started_at if ending_a_run else now
    row.finished_at = None if status == "running" else now
    row.status, row.settings, row.settings_key = status, _json(settings, "settings"), key
    row.report, row.error = _json(report, "report"), error
    s.flush()
