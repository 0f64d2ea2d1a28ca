"""Imports: transcripts people made (ohp JSON, SRT, WebVTT, plain text) as recordings, and codes added in
ELAN or a QDA program as annotations by their coders. Each file is saved in one transaction, or not at all."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.formats.elan import read_eaf
from pipeline.formats.qdpx import read_qdpx
from pipeline.formats.readers import DESCRIPTION, read_limited, read_transcript, role_of_label
from pipeline.process import tag_result
from pipeline.records import (
    IMPORTED,
    TRANSCRIPT_FORMAT,
    AudioInfo,
    Coding,
    ImportedCodings,
    KeptDecision,
    RecordingResult,
    Segment,
    SpeakerRecord,
    StageRun,
    Transcript,
    settings_key,
)
from pipeline.stages.audio import probe
from pipeline.stages.codebook import Codebook
from pipeline.stages.doubt import mark_doubt
from pipeline.stages.learned import ThemeModel
from pipeline.store import Store
from pipeline.utils import clock, resolved


def import_file(
    path: Path,
    store: Store,
    audio: Path | None = None,
    codebook: Codebook | None = None,
    model: ThemeModel | None = None,
) -> int:
    """Load an existing transcript (ohp JSON, SRT, WebVTT, plain text) as a recording's transcript; its id.

    With `audio` the transcript belongs to that recording; without, the transcript file itself is the
    recording (identified by its bytes). Nothing is stored unless the whole file reads (see importers).
    A transcript imported this way is never replaced by `ohp run`, except with --force.
    """
    # Read once: the recording is the hash of the bytes imported (a second read of a pipe, `ohp import <(...)`,
    # was empty, and made every transcript imported so one recording; a file may change meanwhile).
    data = read_limited(path, "a transcript file")
    imported = read_transcript(path, data)
    if audio is not None:
        info = probe(resolved(audio))
    else:
        info = AudioInfo(
            path=resolved(path),
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            format=f"{TRANSCRIPT_FORMAT}{imported.source_format}",
            codec="",
            sample_rate=0,
            channels=0,
            duration=max((s.end for s in imported.segments), default=0.0),
        )
    settings = {"imported": str(resolved(path)), "format": imported.source_format, "timed": imported.timed}
    key = settings_key(settings)
    # Its speakers are the file's: the labels its segments carry, with names and roles where it gives them,
    # and the role a label says ("Interviewer:", "受访者：") where it gives none.
    given = {s["label"]: (s.get("name"), s.get("role")) for s in imported.metadata.get("speakers", [])}
    labels = dict.fromkeys([*(s.speaker for s in imported.segments if s.speaker), *given])
    speakers = []
    for label in labels:
        name, role = given.get(label, (None, None))
        speakers.append(SpeakerRecord(label, name, role or role_of_label(label)))
    transcript = Transcript(imported.language, 1.0, imported.segments, IMPORTED, imported.source_format)
    if any(s.words for s in transcript.segments):  # words with the recogniser's probabilities (ohp JSON)
        transcript = mark_doubt(transcript)
    result = RecordingResult(
        info,
        transcript,
        speakers=speakers,
        description={name: imported.metadata[name] for name in DESCRIPTION if name in imported.metadata},
        stages={
            "transcribe": StageRun(settings, key, {"segments": len(imported.segments), "metadata": imported.metadata}),
            "speakers": StageRun(settings, key, {"speakers": len(labels)}),
        },
    )
    if codebook:
        tag_result(result, codebook, model=model)
    return store.save_result(result).export.recording.id


@dataclass
class CodingsReport:
    """What an import of codes (ELAN, REFI-QDA) did."""

    codings: int = 0
    added: int = 0  # annotations made or accepted by the coder
    unchanged: int = 0  # the coder's theme was already there, imported from them, on that text
    # Codes on themes a person rejected in ohp: the rejection stays (Store.import_annotations).
    kept: list[KeptDecision] = field(default_factory=list)
    recordings: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _coded_segments(segments: list[Segment], coding: Coding) -> list[Segment]:
    """The segments a coding covers: each overlapping it by over half of the shorter of the two (tools
    snap codes to their own boundaries, which are ohp's segments moved a little)."""
    if coding.end <= coding.start:
        return [s for s in segments if s.start <= coding.start < s.end][:1]
    return [
        s
        for s in segments
        if min(s.end, coding.end) - max(s.start, coding.start)
        > 0.5 * min(s.end - s.start or 1e-3, coding.end - coding.start)
    ]


# Exchange files that carry codes for recordings ohp has, rather than transcripts.
CODINGS_READERS: dict[str, Callable[[Path, Codebook], ImportedCodings]] = {".eaf": read_eaf, ".qdpx": read_qdpx}


def import_codings(imported: ImportedCodings, store: Store) -> CodingsReport:
    """The codes of an exchange file, as annotations by their coders: all of them in one transaction, but those
    on themes a person rejected in ohp, which stay rejected (the report's `kept`); ConflictError, none saved, where
    a segment they were matched to changed meanwhile."""
    report = CodingsReport(warnings=list(imported.warnings))
    added, queued = [], set()
    seen: dict[int, int] = {}  # the version of each segment a code was matched to, for the store to check
    for sha256, codings in imported.codings.items():
        recording = store.recording_by_sha256(sha256)
        if recording is None:
            report.warnings.append(
                f"{len(codings)} coding(s) belong to a recording that is not in this database (sha256 {sha256[:12]}…)"
            )
            continue
        report.recordings.append(recording.id)
        segments = store.segments(recording.id)
        existing = {(a.segment_id, a.theme): a for a in store.annotations(recording.id)}
        # Each coder's own: a second coder's code on a theme the first one accepted is theirs too; a code the
        # coder already decided is there (in review, or an earlier import) is not new.
        decided_there = {(d.segment_id, d.theme, d.coder) for d in store.decisions(recording.id) if d.present}
        for coding in codings:
            report.codings += 1
            covered = _coded_segments(segments, coding)
            if not covered:
                report.warnings.append(
                    f"{coding.coder}'s {coding.theme} at {clock(coding.start)}-{clock(coding.end)} covers no segment"
                )
            quoted = (coding.text or "").strip()
            for target in covered:
                at = target.text.find(quoted) if quoted else -1
                evidence: tuple[tuple[int, int], ...] = ((at, at + len(quoted)),) if at >= 0 else ()
                had = existing.get((target.stored_id, coding.theme))
                item = (target.stored_id, coding.theme, coding.coder, evidence)
                # A rejected theme is the store's to keep, and to name in the report.
                known = had is not None and had.status != "rejected" and set(evidence) <= set(had.evidence)
                if (known and (target.stored_id, coding.theme, coding.coder) in decided_there) or item in queued:
                    report.unchanged += 1  # or a coding a tool split in pieces over one segment
                else:
                    added.append(item)
                    queued.add(item)
                    seen[target.stored_id] = target.version
    accepted, report.kept = store.import_annotations(added, seen)
    report.added = len(accepted)
    return report
