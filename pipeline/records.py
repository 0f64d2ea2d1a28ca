"""The typed records that flow between stages.

Each stage is a function from some of these to others; stages share nothing else.
Times are always seconds in the recording's own time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import InvalidInputError
from pipeline.utils import NOT_TEXT

if TYPE_CHECKING:
    from pipeline.stages.codebook import Codebook


@dataclass(frozen=True)
class AudioInfo:
    """What a file is: identity (sha256 of its bytes) and what ffmpeg says of its audio."""

    path: Path
    sha256: str
    size_bytes: int
    format: str  # container as ffmpeg names it: "wav", "mp3", "mov,mp4,m4a,3gp,3g2,mj2", ...
    codec: str  # audio codec of the stream that is decoded
    sample_rate: int  # of the source stream, before resampling to 16 kHz
    channels: int
    duration: float  # as declared by the container; decoded length may differ (truncated files)


@dataclass(frozen=True)
class SpeechRegion:
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Chunk:
    """A stretch of audio handed to the recogniser at once (at most ~30 s), made of speech regions."""

    start: float
    end: float
    regions: tuple[SpeechRegion, ...]

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def speech_duration(self) -> float:
        return sum(r.duration for r in self.regions)


@dataclass
class Word:
    start: float
    end: float
    text: str
    probability: float
    doubtful: bool = False  # the doubt stage thinks the recogniser may have it wrong: worth a listen
    corrected: bool = False  # a person's word, from a correction of the segment's text (pipeline.realign)


class DecodeMark(StrEnum):
    """What decoding and the guards did to a segment: context that makes its words doubtful."""

    LOOP = "loop"  # a repetition loop was cut out of it, or its audio looped and was decoded again
    PHANTOM = "phantom"  # a phantom subtitle phrase was cut out of it
    REDECODED = "redecoded"  # the recogniser skipped its audio at first, and it was decoded again


@dataclass(frozen=True)
class CorrectedWord:
    """A word a person wrote in a correction, beside what the recogniser heard there: what corrections teach."""

    text: str
    heard: str  # the recogniser's text of the segment (its original_text)
    recording_id: int


@dataclass
class Segment:
    start: float
    end: float
    text: str  # after the script policy (simplified/traditional/original)
    original_text: str  # as the engine wrote it
    language: str
    words: list[Word] = field(default_factory=list)
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None
    speaker: str | None = None
    id: int | None = None  # the store's id, once stored
    version: int = 1  # bumped by every change of its text (a correction, a revert): concurrent edits are detected
    corrected: bool = False  # its text is a person's (a revert to the recogniser's version makes it false again)
    confidence: float | None = None  # 0..1, from the doubt stage; None when nothing said how sure it is
    marks: tuple[str, ...] = ()  # DecodeMarks, set while transcribing (not stored)

    @property
    def stored_id(self) -> int:
        """The store's id of a segment read from or saved to the store; one without an id is a bug."""
        if self.id is None:
            raise ValueError(f"segment at {self.start:.2f}-{self.end:.2f}s has no id: it is not stored")
        return self.id


IMPORTED = "import"  # the engine of a transcript people made elsewhere (pipeline.imports)


@dataclass
class Transcript:
    """A recording's transcription: its segments and how they were made."""

    language: str | None  # None when there was no speech to detect it from
    language_probability: float
    segments: list[Segment]
    engine: str
    model: str
    # Whisper's long-form failures the guards removed, by kind ("silence", "repetition", ...).
    guards: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Why the transcript is likely poor (low language probability, much doubtful text, ...): the doubt stage's.
    quality_warnings: list[str] = field(default_factory=list)


class Consent(StrEnum):
    """What the interviewee agreed to: exports leave closed recordings out, the web app hides them from viewers."""

    OPEN = "open"
    RESTRICTED = "restricted"
    CLOSED = "closed"


CONSENT_LEVELS = tuple(Consent)
# The longest text of a segment, imported or corrected: a long paragraph of an untimed transcript fits many times over.
MAX_TEXT_CHARS = 100_000
# The longest name, place, label or other short string ohp takes from a file or a person.
MAX_FIELD_CHARS = 1_000
# The longest name of a person who codes, decides or changes something (the database's columns hold 255).
MAX_NAME_CHARS = 255
# The longest language code (the database's columns hold 32): Whisper's are two or three letters, a file's
# BCP 47 tag (zh-Hans-CN) longer.
MAX_LANGUAGE_CHARS = 32
# The coder of codes a file brings back without saying who made them (a REFI-QDA coding with no user): never a
# name the file gives for something else. Older versions stored an ELAN tier with no ANNOTATOR's codes so too.
UNNAMED_CODER = "unknown"
# An ELAN themes tier with no ANNOTATOR is a coder of its own, "tier/NAME" (formats.elan): annotators split their
# work by tier, and one coder for all would merge them. No user's name holds "/" (store.users), so a tier is never
# taken for a person who codes in ohp, nor they for it.
TIER_CODER = "tier/"


TRANSCRIPT_FORMAT = "transcript/"  # the format of a recording imported without audio: transcript/srt, ...


@dataclass(frozen=True)
class RecordingRecord:
    """A stored recording, as the store returns it."""

    id: int
    sha256: str
    path: str  # where it was last seen
    size_bytes: int
    format: str
    duration: float
    language: str | None
    interviewee: str | None = None
    place: str | None = None
    recorded_on: str | None = None  # ISO date
    metadata: dict = field(default_factory=dict)  # anything else the project records
    consent: str = "open"  # one of CONSENT_LEVELS, as the interviewee agreed
    release_on: str | None = None  # ISO date from which a restricted or closed recording is open
    warnings: tuple[str, ...] = ()  # why its transcript is likely poor (Transcript.quality_warnings)
    doubtful: float | None = None  # share of its transcript's characters in doubtful words; None: no words

    @property
    def has_audio(self) -> bool:
        """False for a transcript imported without its audio: the file ohp holds is the transcript."""
        return not self.format.startswith(TRANSCRIPT_FORMAT)

    def access(self, today: date | None = None) -> str:
        """The consent level in force, as pipeline.access decides it (a restriction ends on its release date)."""
        from pipeline.access import consent_in_force  # not at the top: the policy module imports the records

        return consent_in_force(self, today)


@dataclass(frozen=True)
class StageRecord:
    """One stage's state for one recording: status, the settings it ran with, its report."""

    stage: str  # "transcribe", later "tag", "speakers", ...
    status: str  # "running", "done", "failed"
    settings: dict
    settings_key: str  # hash of settings: a re-run with the same key is skipped
    report: dict
    error: str | None  # why it failed; on a "done" stage, why the latest run of it failed since
    started_at: str | None  # ISO timestamps, UTC
    finished_at: str | None


class ThemeOrigin(StrEnum):
    """Which part of the tagger suggested a theme: the codebook's patterns or the learned model."""

    PATTERN = "pattern"
    MODEL = "model"


@dataclass(frozen=True)
class ThemeSuggestion:
    """A codebook theme the tagger found in a segment, with the text that made it think so."""

    theme: str  # codebook id, e.g. "left_behind_children"
    score: float  # 0..1
    evidence: tuple[tuple[int, int], ...]  # [start, end) character offsets into the segment text
    origin: str = ThemeOrigin.PATTERN


@dataclass(frozen=True)
class Entity:
    label: str  # PERSON, PLACE, ORG, DATE, MONEY
    text: str
    start: int  # character offsets into the segment text
    end: int


@dataclass(frozen=True)
class SpeakerTurn:
    """A stretch of a recording spoken by one voice."""

    start: float
    end: float
    speaker: str  # "S1", "S2", ... within one recording


class SpeakerRole(StrEnum):
    INTERVIEWER = "interviewer"
    INTERVIEWEE = "interviewee"
    OTHER = "other"


SPEAKER_ROLES = tuple(SpeakerRole)


def speaker_title(label: str | None, name: str | None, role: str | None) -> str:
    """A speaker as people read it: the name (else the label) and the role, "Zhang Changhua (interviewee)";
    a label that already says the role ("Interviewer") is not followed by it again."""
    shown = name or label or "speaker"
    return f"{shown} ({role})" if role and role.casefold() != shown.casefold() else shown


@dataclass(frozen=True)
class SpeakerRecord:
    """A voice in one recording: its label in the segments, the name people see, its role.

    named_by and role_by are the users who set the name and the role; None when the pipeline did
    (an enrolled voice's name, the role heuristics), which a later run may change."""

    label: str  # "S1", "S2", ... as Segment.speaker has it
    name: str | None = None  # display name; None shows the label
    role: str | None = None  # one of SPEAKER_ROLES
    named_by: str | None = None
    role_by: str | None = None
    person_id: int | None = None  # the enrolled person whose voice this is


@dataclass(frozen=True)
class PersonRecord:
    """An enrolled voice: recordings where it speaks give that speaker the person's name."""

    id: int
    name: str
    profile: tuple[float, ...]  # unit-length voice embedding (pipeline.stages.speakers.voice_profile)
    sources: tuple[str, ...]  # the files it was made from
    enrolled_by: str
    enrolled_at: str  # ISO timestamp, UTC
    # Where the voice comes from (a profile is derived from recordings, and shares their restriction): the sha256
    # of the files enrolled and of the recordings they were cut from; False for a voice enrolled before ohp kept it.
    origins: tuple[str, ...] = ()
    origin_known: bool = True
    from_recordings: tuple[RecordingRecord, ...] = ()  # the stored recordings among its origins
    # Who gave its origins and when (ISO, UTC): the enroller, or who said later; None where not known.
    origin_by: str | None = None
    origin_at: str | None = None


class UserRole(StrEnum):
    """What a user of the web app may do: each role what the ones before it may, and more."""

    VIEWER = "viewer"
    ANNOTATOR = "annotator"
    RESEARCHER = "researcher"


ROLES = tuple(UserRole)


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    role: str  # one of ROLES
    created_at: str
    session_version: int = 0  # a session made under another version has ended (see store.users)


class AnnotationStatus(StrEnum):
    SUGGESTED = "suggested"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


ANNOTATION_STATUSES = tuple(AnnotationStatus)
# What a theme filter counts unless told otherwise: every theme not rejected.
NOT_REJECTED = (AnnotationStatus.SUGGESTED, AnnotationStatus.ACCEPTED)
# The history's actions a person's change of a text or a theme is written as (a decision by the status it gave).
PEOPLES_CHANGES = ("corrected", "reverted", "added", *ANNOTATION_STATUSES)


@dataclass(frozen=True)
class AnnotationRecord:
    """A theme on a segment: suggested by the tagger ("auto") or added by a person, and decided."""

    id: int
    segment_id: int
    recording_id: int
    theme: str
    source: str  # "auto" or the user who added it
    status: str  # one of ANNOTATION_STATUSES
    score: float | None
    evidence: tuple[tuple[int, int], ...]  # character offsets into the segment text
    tagger: str | None  # tagger and codebook versions that suggested it
    updated_by: str | None
    updated_at: str
    version: int  # bumped on every change, so concurrent edits are detected
    origin: str | None = None  # the tagger's suggestions: "pattern" or "model" (ThemeOrigin); None for a person's


@dataclass(frozen=True)
class ThemeDecision:
    """A person's decision on a theme of a segment, with the segment's text: what the tagger learns from."""

    segment_id: int
    recording_id: int
    text: str
    language: str
    theme: str
    accepted: bool  # accepted or added; False: rejected
    evidence: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class HistoryRecord:
    """One change to a recording's annotations, text or speakers: who, when, and the state before and after."""

    id: int
    recording_id: int
    segment_id: int | None
    annotation_id: int | None
    action: str
    changed_by: str
    changed_at: str
    before: dict | None
    after: dict | None

    @property
    def revertable(self) -> bool:
        """Whether a revert can give back what it changed: a person's correction of a text (or a revert) whose earlier
        text the history kept, or a person's change of an annotation's status. ohp's own moves (a correction carried
        over, a theme moved to a new segment, a suggestion tagged again: before and after the same status) and
        changes nothing keeps the undoing of (a speaker's name, a consent) are not."""
        before = self.before or {}
        if self.action not in PEOPLES_CHANGES or not self.after:
            return False
        if "text" in before:
            return self.segment_id is not None
        return self.annotation_id is not None and before.get("status") in ANNOTATION_STATUSES


@dataclass(frozen=True)
class SearchFilters:
    """What a search is narrowed to; None is no restriction."""

    themes: tuple[str, ...] = ()  # any of these codebook ids (a theme and the themes nested in it)
    theme_status: tuple[str, ...] = NOT_REJECTED
    speaker: str | None = None
    recording: int | None = None
    language: str | None = None  # "zh" also finds "yue", "zh-TW", ...
    interviewee: str | None = None  # recording metadata, matched case-insensitively as a substring
    place: str | None = None
    date_from: str | None = None  # ISO dates, inclusive
    date_to: str | None = None
    hide_closed: bool = False  # leave out recordings closed today (pipeline.access.hides_closed: viewers)
    doubtful: bool = False  # only segments with a doubtful word

    def __post_init__(self) -> None:
        # Text the databases take alike (utils.NOT_TEXT).
        named = [(name, getattr(self, name)) for name in ("speaker", "language", "interviewee", "place")]
        for name, value in [*named, *(("theme", theme) for theme in self.themes)]:
            if value is not None and NOT_TEXT.search(value):
                raise InvalidInputError(f"the {name} filter holds no text: {value!r}")


@dataclass(frozen=True)
class SearchHit:
    recording_id: int
    recording_path: str
    segment_id: int
    start: float
    end: float
    speaker: str | None
    text: str
    language: str
    themes: tuple[str, ...]  # themes on the segment that are not rejected
    rank: float  # higher is more relevant
    speaker_name: str | None = None
    speaker_role: str | None = None


@dataclass(frozen=True)
class SearchResults:
    total: int
    hits: list[SearchHit]


@dataclass(frozen=True)
class StageRun:
    """A stage that ran on a recording: the settings it ran with, their key (a run with the same key is
    skipped) and its report."""

    settings: dict
    settings_key: str
    report: dict


def settings_key(settings: dict[str, Any]) -> str:
    """The key of a stage's settings: sha256 of their canonical JSON, first 16 hex chars."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class RecordingResult:
    """One recording after a pass of the pipeline, in memory: all that the store saves of it in one
    transaction, and what its export files show. Plain data that pickles: a pass may run on another machine.

    `stages` are the stages that ran in this pass, and what they made replaces what the store had: the
    segments when "transcribe" or "speakers" ran (else they are the stored ones, with their ids), the
    speakers when "speakers" ran, the tagger's suggestions and the entities when "tag" ran."""

    info: AudioInfo  # the file; its duration as decoded when it was transcribed in this pass
    transcript: Transcript  # language, engine and model, segments with words and speakers, guards, warnings
    speakers: list[SpeakerRecord] = field(default_factory=list)  # label, role, and the enrolled voice's name and id
    themes: dict[int, list[ThemeSuggestion]] = field(default_factory=dict)  # by index into transcript.segments
    entities: dict[int, list[Entity]] = field(default_factory=dict)  # by index into transcript.segments
    tagger: str | None = None  # the tagger and codebook versions that made the suggestions
    description: dict = field(default_factory=dict)  # interviewee, place, ... as an imported file gives them
    stages: dict[str, StageRun] = field(default_factory=dict)

    @property
    def new_segments(self) -> bool:
        """Whether the segments were made in this pass (and replace the stored ones)."""
        return "transcribe" in self.stages or "speakers" in self.stages


@dataclass
class RecordingExport:
    """Everything the export files of one recording show: the writers' only input."""

    recording: RecordingRecord
    segments: list[Segment]
    annotations: dict[int, list[AnnotationRecord]] = field(default_factory=dict)  # by segment id
    speakers: list[SpeakerRecord] = field(default_factory=list)
    entities: dict[int, list[Entity]] = field(default_factory=dict)  # by segment id
    codebook: Codebook | None = None  # theme labels and nesting; ids stand in without it
    decisions: dict[int, list[CoderDecision]] = field(default_factory=dict)  # each coder's own, by segment id

    def speaker_name(self, segment: Segment) -> str | None:
        """Who says the segment, as people read it: the speaker's display name, else its label."""
        names = {s.label: s.name for s in self.speakers if s.name}
        return names.get(segment.speaker, segment.speaker) if segment.speaker else None

    def annotations_of(self, segment: Segment) -> list[AnnotationRecord]:
        """The segment's themes, rejected ones too (a segment that is not stored has none)."""
        return self.annotations.get(segment.id, []) if segment.id is not None else []

    def entities_of(self, segment: Segment) -> list[Entity]:
        """The names found in the segment (a segment that is not stored has none)."""
        return self.entities.get(segment.id, []) if segment.id is not None else []

    def themes(self, segment: Segment) -> list[AnnotationRecord]:
        """The segment's themes that nobody rejected."""
        return [a for a in self.annotations_of(segment) if a.status != AnnotationStatus.REJECTED]

    def coded(self, segment: Segment) -> list[tuple[AnnotationRecord, str]]:
        """The segment's themes as each coder put them, (annotation, coder): a pair for every coder whose own
        decision says the theme is there (accepted, added, or imported from ELAN or a QDA program), so that
        two coders of one theme are both written; an accepted theme no decision says is there (kept before
        decisions were) by whoever accepted or added it. The tagger's open suggestions are not codings."""
        if segment.id is None:
            return []
        there: dict[str, list[str]] = {}
        for decision in self.decisions.get(segment.id, []):
            if decision.present:
                there.setdefault(decision.theme, []).append(decision.coder)
        pairs = []
        for annotation in self.annotations_of(segment):
            coders = sorted(there.get(annotation.theme, []))
            if not coders and annotation.status == AnnotationStatus.ACCEPTED:
                coders = [coder(annotation)]
            pairs += [(annotation, name) for name in coders]
        return pairs

    def theme_label(self, theme: str, language: str | None = None) -> str:
        """A theme as people read it: the codebook's labels (see Codebook.label), else its id."""
        return theme if self.codebook is None else self.codebook.label(theme, language)

    def theme_labels(self, theme: str) -> list[str]:
        """A theme's labels, one a language (terms for a catalogue), else its id."""
        return [theme] if self.codebook is None else self.codebook.labels(theme)

    def turns(self) -> list[list[Segment]]:
        """The segments grouped into turns: runs of consecutive segments by one speaker."""
        turns: list[list[Segment]] = []
        for segment in self.segments:
            if turns and segment.speaker is not None and turns[-1][-1].speaker == segment.speaker:
                turns[-1].append(segment)
            else:
                turns.append([segment])
        return turns


@dataclass
class SavedRecording:
    """What saving a RecordingResult left in the store."""

    export: RecordingExport  # the recording as stored, with the store's ids: what its export files show
    tag_counts: dict[str, int] | None = None  # what tagging changed (added, updated, withdrawn, kept); None: no tagging


TAGGER = "auto"  # the source (and updated_by) of what the tagger suggested and changed: no person


def coder(annotation: AnnotationRecord) -> str:
    """Who coded it: the person who added or decided it; "ohp" for the tagger's open suggestions."""
    if annotation.source != TAGGER:
        return annotation.source
    return annotation.updated_by if annotation.status != "suggested" and annotation.updated_by else "ohp"


@dataclass(frozen=True)
class CoderDecision:
    """One coder's own decision on a theme of a segment: there (accepted, added) or not (rejected)."""

    segment_id: int
    theme: str
    coder: str
    present: bool
    via: str  # "review" (web app, `ohp review`) or "import" (ELAN, a QDA program: the whole transcript coded)
    decided_at: str = ""


@dataclass(frozen=True)
class KeptDecision:
    """A code an import carried onto a theme a person rejected in ohp (anyone, on the annotation, or the coder
    themselves): the rejection stays, and the import says so."""

    recording_id: int
    segment_id: int
    start: float  # the segment's times
    end: float
    theme: str
    coder: str  # whose code the file carried
    decided_by: str  # who rejected the theme
    decided_at: str


@dataclass(frozen=True)
class Coding:
    """A theme someone put on part of a recording in another tool (ELAN, a QDA program), on its way back."""

    theme: str  # codebook id
    coder: str
    start: float  # seconds in the recording
    end: float
    text: str | None = None  # the coded words, when the tool marked characters rather than times


@dataclass
class ImportedCodings:
    """The codings an exchange file holds, by the sha256 of the recording they belong to."""

    path: Path
    source_format: str  # "eaf", "qdpx"
    codings: dict[str, list[Coding]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # codes that map to no theme, and the like


# ------------------------------------------------------------------------------------- analysis

FREQUENCY_DIMENSIONS = ("recording", "interviewee", "place", "role", "position")
COVERAGE_KINDS = ("suggested", "coded", "reviewed")  # see store.analysis.coverage


@dataclass(frozen=True)
class DecisionCounts:
    """The counts behind the agreement of some coders (store.analysis.decision_counts). A unit is a theme on
    a segment that two or more of the coders reviewed; a coder says it is there (accepted, added) or not."""

    coders: tuple[str, ...]
    shared: dict[int, int]  # m -> segments reviewed by m of the coders (m >= 2)
    present: dict[tuple[str, int, int], int]  # (theme, m, k) -> units on which k of m say there (k >= 1)
    marginals: dict[tuple[str, str], int]  # (theme, coder) -> units the coder says there
    tagger_reviewed: dict[str, int]  # coder -> segments they reviewed in recordings the tagger ran on
    # (coder, theme) -> (segments the tagger suggested it on, the coder says it is there, both), of those
    tagger: dict[tuple[str, str], tuple[int, int, int]]


@dataclass
class Disagreement:
    """A theme on a segment on which the coders who reviewed it differ."""

    segment_id: int
    theme: str
    path: str
    start: float
    end: float
    speaker: str | None
    text: str
    tagger: bool  # the tagger suggested it
    decisions: dict[str, bool | None]  # coder -> there, not there (rejected), None: reviewed, left undecided


@dataclass(frozen=True)
class CoverageRow:
    """How much of a recording is marked, per COVERAGE_KINDS: (segments, seconds)."""

    recording_id: int
    path: str
    duration: float
    segments: int
    seconds: float  # of speech, in segments
    marked: dict[str, tuple[int, float]]
    doubtful: float | None = None  # share of its text in doubtful words (the doubt stage's); None: not checked


@dataclass(frozen=True)
class CollectionCounts:
    """The collection at a glance (store.analysis.collection_counts); themes standing (not rejected)."""

    frequency: dict[str, dict[tuple[str, str, str], int]]  # dimension -> (value, theme, status) -> segments
    in_segments: dict[tuple[str, str], int]  # (theme, theme) -> segments carrying both; (t, t): carrying t
    in_turns: dict[tuple[str, str], int]  # the same by speaker turn
    coverage: list[CoverageRow]
