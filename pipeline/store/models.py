"""The database's tables as ORM rows, and the UTC timestamp type they share.

Only the store's modules see these rows: each turns its own into the records of `pipeline.records`.
The full-text index is no model (its shape differs by database): see pipeline.store.search.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pipeline.errors import InvalidInputError
from pipeline.records import MAX_LANGUAGE_CHARS
from pipeline.utils import NOT_TEXT

if TYPE_CHECKING:
    from alembic.runtime.environment import NameFilterParentNames, NameFilterType


# The largest id (and version) a row can have: ids are INTEGER columns, 32 bits on PostgreSQL. A larger
# number names nothing; sent to the database it would be an error, not "not found".
MAX_ID = 2**31 - 1


def now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def in_models(name: str | None, type_: NameFilterType, parent_names: NameFilterParentNames) -> bool:
    """For Alembic's comparisons: everything but the full-text index (and FTS5's own tables) is a model."""
    return not (type_ == "table" and name and name.startswith("segment_index"))


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone: UTC is put back on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise InvalidInputError(f"naive datetime {value!r}: give a timezone-aware one")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class PlainText(TypeDecorator[str]):
    """Text that every backend keeps: no NUL, which PostgreSQL refuses and SQLite kept (a correction or a name saved
    on one database was an error on the other), and no half of a UTF-16 pair, which neither can encode (JSON's
    \\ud800: a crash on both). Both are refused, with InvalidInputError."""

    impl: type[String] = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is not None and (found := NOT_TEXT.search(value)):
            why = "a NUL" if found.group() == "\x00" else "half of a character (a lone surrogate)"
            raise InvalidInputError(f"{value[:40]!r} holds {why}: not text a database keeps")
        return value


class Bounded(PlainText):
    """Text (PlainText) of at most `length` characters on every backend. PostgreSQL refuses a longer one and SQLite
    keeps it, so a save (a long speaker label an import allows) worked on one database and failed on the other;
    both refuse it now, with InvalidInputError."""

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        limit = self.length
        if value is not None and len(value) > limit:
            raise InvalidInputError(f"{value[:40]!r}... is {len(value):,} characters: at most {limit} are kept here")
        return super().process_bind_param(value, dialect)


class Finite(TypeDecorator[float]):
    """A float that is a number on every backend: SQLite stores NaN as NULL (an optional column gave None back where
    PostgreSQL gave NaN, a required one failed as a database error where PostgreSQL kept it), and infinity is no
    JSON, which the exports write. Both are refused, with InvalidInputError."""

    impl = Float
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Any) -> float | None:
        if value is not None and not math.isfinite(value):
            raise InvalidInputError(f"{value} cannot be stored: a number here must be finite")
        return value


def check_values(table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """What the PlainText (Bounded among them) and Finite columns would refuse in rows written around the ORM (raw
    inserts): InvalidInputError."""
    checked = [(name, column.type) for name, column in table.c.items() if isinstance(column.type, PlainText | Finite)]
    for row in rows:
        for name, type_ in checked:
            type_.process_bind_param(row.get(name), None)


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
    # Every model here maps one Table (SQLAlchemy types it as any FromClause): for Core insert/update/select.
    __table__: ClassVar[Table]


class RecordingRow(Base):
    __tablename__ = "recordings"
    __table_args__ = (CheckConstraint("consent IN ('open', 'restricted', 'closed')", name="consent"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(Bounded(64), unique=True)
    path: Mapped[str] = mapped_column(PlainText)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(PlainText)
    duration: Mapped[float] = mapped_column(Finite)
    language: Mapped[str | None] = mapped_column(Bounded(MAX_LANGUAGE_CHARS))
    interviewee: Mapped[str | None] = mapped_column(PlainText)
    place: Mapped[str | None] = mapped_column(PlainText)
    recorded_on: Mapped[date | None] = mapped_column(Date)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)  # RecordingRecord.metadata
    consent: Mapped[str] = mapped_column(Bounded(16), default="open", server_default="open")
    release_on: Mapped[date | None] = mapped_column(Date)
    warnings: Mapped[list | None] = mapped_column(JSON)  # why its transcript is likely poor (the doubt stage)
    doubtful: Mapped[float | None] = mapped_column(Finite)  # share of its words' characters in doubtful words
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, onupdate=now)


class SegmentRow(Base):
    __tablename__ = "segments"
    # AUTOINCREMENT on SQLite (migration 0013): an id is never given again, as PostgreSQL's sequences never
    # give one again. Without it SQLite reused the ids of a recording's segments replaced by a re-transcription,
    # and a correction, decision or revert meant for a segment (or annotation) that is gone hit its new namesake.
    __table_args__ = (Index("ix_segments_recording_id_start", "recording_id", "start"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"))
    idx: Mapped[int]  # order within the recording, as the transcript had it
    start: Mapped[float] = mapped_column(Finite)
    end: Mapped[float] = mapped_column(Finite)
    text: Mapped[str] = mapped_column(PlainText)
    original_text: Mapped[str] = mapped_column(PlainText)
    language: Mapped[str] = mapped_column(Bounded(MAX_LANGUAGE_CHARS))
    speaker: Mapped[str | None] = mapped_column(Bounded(255))
    avg_logprob: Mapped[float | None] = mapped_column(Finite)
    no_speech_prob: Mapped[float | None] = mapped_column(Finite)
    compression_ratio: Mapped[float | None] = mapped_column(Finite)
    engine: Mapped[str] = mapped_column(Bounded(64))
    model: Mapped[str] = mapped_column(PlainText)
    # web: bumped by every change of its text, so two people editing one segment are detected
    version: Mapped[int] = mapped_column(default=1, server_default="1")
    # Its text is a person's (migration 0014): a correction sets it, a revert to the recogniser's text clears it.
    corrected: Mapped[bool] = mapped_column(default=False, server_default=false())
    confidence: Mapped[float | None] = mapped_column(Finite)  # the doubt stage's
    # Which speaker turn of its recording it is in (1, 2, ...; transcripts.turn_numbers): set when the segments
    # are saved, the only time their speakers, starts or order change, so the report counts turns by GROUP BY.
    turn: Mapped[int] = mapped_column(server_default="0")


class WordRow(Base):
    __tablename__ = "words"

    id: Mapped[int] = mapped_column(primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), index=True)
    idx: Mapped[int]  # order within the segment
    start: Mapped[float] = mapped_column(Finite)
    end: Mapped[float] = mapped_column(Finite)
    text: Mapped[str] = mapped_column(PlainText)
    probability: Mapped[float] = mapped_column(Finite)
    doubtful: Mapped[bool] = mapped_column(default=False, server_default=false())  # the doubt stage's
    corrected: Mapped[bool] = mapped_column(default=False, server_default=false())  # a person's (pipeline.realign)


class StageRow(Base):
    __tablename__ = "stages"

    # The primary key (recording_id, stage) is the unique constraint: one row per stage and recording.
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True)
    stage: Mapped[str] = mapped_column(Bounded(64), primary_key=True)
    status: Mapped[str] = mapped_column(Bounded(16))  # "running", "done", "failed"
    settings: Mapped[dict] = mapped_column(JSON)
    settings_key: Mapped[str] = mapped_column(Bounded(64))
    report: Mapped[dict] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(PlainText)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AnnotationRow(Base):
    __tablename__ = "annotations"
    # One annotation per theme and segment: a person accepting the tagger's suggestion decides it,
    # a person adding a theme the tagger also finds keeps theirs.
    __table_args__ = (UniqueConstraint("segment_id", "theme"), {"sqlite_autoincrement": True})  # as segments

    id: Mapped[int] = mapped_column(primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), index=True)
    theme: Mapped[str] = mapped_column(Bounded(128))
    source: Mapped[str] = mapped_column(Bounded(255))  # "auto" or the user who added it
    status: Mapped[str] = mapped_column(Bounded(16))  # suggested, accepted, rejected
    score: Mapped[float | None] = mapped_column(Finite)
    evidence: Mapped[list] = mapped_column(JSON)  # [[start, end], ...] into the segment text
    tagger: Mapped[str | None] = mapped_column(Bounded(128))
    origin: Mapped[str | None] = mapped_column(Bounded(16))  # the tagger's: "pattern" or "model"; None: a person's
    updated_by: Mapped[str | None] = mapped_column(Bounded(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    version: Mapped[int] = mapped_column(default=1)


class DecisionRow(Base):
    """One coder's own decision on a theme of a segment. An annotation holds the latest decision of anyone;
    these keep every coder's, for the agreement between them (pipeline.analysis.agreement)."""

    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("segment_id", "theme", "coder"),
        CheckConstraint("via IN ('review', 'import')", name="via"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), index=True)
    theme: Mapped[str] = mapped_column(Bounded(128))
    coder: Mapped[str] = mapped_column(Bounded(255))
    present: Mapped[bool]  # accepted or added: True; rejected: False
    # review: decided in the web app or `ohp review`, segment by segment; import: coded in ELAN or a QDA
    # program over the whole transcript, so every segment of that recording counts as reviewed by the coder.
    via: Mapped[str] = mapped_column(Bounded(16))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class EntityRow(Base):
    __tablename__ = "entities"

    id: Mapped[int] = mapped_column(primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(Bounded(16))
    text: Mapped[str] = mapped_column(PlainText)
    start: Mapped[int]
    end: Mapped[int]


class HistoryRow(Base):
    __tablename__ = "history"
    __table_args__ = (Index("ix_history_recording_id_changed_at", "recording_id", "changed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"))
    # No foreign keys: history outlives the segments and annotations it speaks of.
    segment_id: Mapped[int | None]
    annotation_id: Mapped[int | None]
    action: Mapped[str] = mapped_column(Bounded(32))
    changed_by: Mapped[str] = mapped_column(Bounded(255))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)


class PersonRow(Base):
    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Bounded(255), unique=True)
    profile: Mapped[bytes] = mapped_column(LargeBinary)  # little-endian float32 (see speakers.profile_bytes)
    sources: Mapped[list] = mapped_column(JSON)
    enrolled_by: Mapped[str] = mapped_column(Bounded(255))
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    # False for a voice enrolled before ohp kept where voices come from (migration 0015): PersonRecord.origin_known.
    origin_known: Mapped[bool] = mapped_column(server_default=false())
    # Who said where the voice comes from (the enroller, or `ohp speakers source`) and when: it decides where the
    # voice may name speakers. None where no one has, or someone did before ohp kept who (migration 0017).
    origin_by: Mapped[str | None] = mapped_column(Bounded(255))
    origin_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class VoiceOriginRow(Base):
    """A file an enrolled voice was made from, or a recording such a file was cut from, by its sha256: a
    recording's (RecordingRow.sha256) once the collection holds it."""

    __tablename__ = "voice_origins"

    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(Bounded(64), primary_key=True)


class SpeakerRow(Base):
    __tablename__ = "speakers"
    __table_args__ = (UniqueConstraint("recording_id", "label"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(Bounded(255))  # as segments.speaker has it
    name: Mapped[str | None] = mapped_column(PlainText)
    named_by: Mapped[str | None] = mapped_column(Bounded(255))  # None: the pipeline named it
    role: Mapped[str | None] = mapped_column(Bounded(16))
    role_by: Mapped[str | None] = mapped_column(Bounded(255))  # None: the heuristics chose it
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Bounded(255), unique=True)  # as given (normalised), shown
    name_key: Mapped[str] = mapped_column(Bounded(255), unique=True)  # as compared: users.name_key
    password_hash: Mapped[str] = mapped_column(PlainText)  # argon2id, with its parameters and salt
    role: Mapped[str] = mapped_column(Bounded(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")  # raised: its sessions end


class IgnoredTermRow(Base):
    """A term `ohp vocabulary suggest` no longer offers: a researcher ignored it."""

    __tablename__ = "ignored_terms"

    term: Mapped[str] = mapped_column(Bounded(255), primary_key=True)
    ignored_by: Mapped[str] = mapped_column(Bounded(255))
    ignored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
