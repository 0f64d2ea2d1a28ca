"""Export files: JSON (the reference format) and CSV here; subtitles, documents, ELAN, REFI-QDA and OHMS
in their own modules, all gathered in WRITERS and PROJECT_WRITERS.

Every writer is a function from a `RecordingExport` (a recording, its speakers, segments, themes and
entities) to text or bytes; `write_exports` puts one recording's files in a folder as
`<recording file stem>.<ext>`, and `export_recordings` adds what an export must respect: consent (closed
recordings are left out unless asked for), redaction, and the project files over many recordings.
Segments name their speaker by label in the JSON (its recording part gives each label's name and role);
the other formats show the speaker's display name, or the label when it has none.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from pipeline import access
from pipeline.errors import InvalidInputError
from pipeline.formats.documents import to_docx, to_txt
from pipeline.formats.elan import to_eaf
from pipeline.formats.ohms import to_ohms
from pipeline.formats.qdpx import to_qdpx
from pipeline.formats.redact import Redaction, Redactor
from pipeline.formats.subtitles import to_srt, to_vtt
from pipeline.records import RecordingExport, RecordingRecord, coder
from pipeline.stages.codebook import Codebook
from pipeline.utils import clock, write_atomic

DEFAULT_FORMATS = ("json", "srt", "vtt", "txt")

log = logging.getLogger(__name__)


def gather(store, recording: RecordingRecord, codebook: Codebook | None = None) -> RecordingExport:
    """A recording's export from the store, read as one state (the codebook gives themes their labels)."""
    return replace(store.recording_export(recording.id), codebook=codebook)


def to_json(export: RecordingExport) -> str:
    recording = export.recording
    document = {
        "recording": {
            "id": recording.id,
            "path": recording.path,
            "sha256": recording.sha256,
            "duration": recording.duration,
            "language": recording.language,
            "interviewee": recording.interviewee,
            "place": recording.place,
            "recorded_on": recording.recorded_on,
            "consent": recording.consent,
            "release_on": recording.release_on,
            "warnings": list(recording.warnings),
            "speakers": [{"label": s.label, "name": s.name, "role": s.role} for s in export.speakers],
        },
        "segments": [
            {
                "id": s.id,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "original_text": s.original_text,
                "language": s.language,
                "speaker": s.speaker,
                "confidence": s.confidence,
                "words": [
                    {
                        "start": round(w.start, 3),
                        "end": round(w.end, 3),
                        "text": w.text,
                        "probability": round(w.probability, 4),
                        "doubtful": w.doubtful,
                        "corrected": w.corrected,
                    }
                    for w in s.words
                ],
                "themes": [
                    {
                        "id": a.theme,
                        "label": export.theme_label(a.theme, "en"),
                        "status": a.status,
                        "source": a.source,
                        "origin": a.origin,
                        "coder": coder(a),
                        "evidence": [list(span) for span in a.evidence],
                    }
                    for a in export.annotations_of(s)
                ],
                "entities": [
                    {"label": e.label, "text": e.text, "start": e.start, "end": e.end} for e in export.entities_of(s)
                ],
            }
            for s in export.segments
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"


CSV_COLUMNS = (
    "recording",
    "start",
    "end",
    "timecode",
    "speaker",
    "text",
    "theme",
    "theme_label",
    "status",
    "coder",
    "evidence",
    "consent",
)


def csv_cell(value: str) -> str:
    # A spreadsheet runs a cell that starts with = + - @ as a formula (CSV injection): a transcript
    # line like "=HYPERLINK(...)" must stay text. The apostrophe is Excel's own "this is text" mark.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def csv_row(values: Iterable[object]) -> list[object]:
    """A row whose every text cell is safe from formulas (csv_cell): not only the free-text columns, as a
    file name, a theme id or a codebook's label may start like a formula too. Numbers stay numbers."""
    return [csv_cell(value) if isinstance(value, str) else value for value in values]


def to_csv(exports: list[RecordingExport], codebook: Codebook | None = None) -> str:
    """One row per coded segment and theme (rejected ones left out), for NVivo, ATLAS.ti, MAXQDA or a
    spreadsheet. UTF-8 with a byte-order mark: without it Excel reads Chinese as mojibake."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for export in exports:
        name = Path(export.recording.path).name
        for segment in export.segments:
            for annotation in export.themes(segment):
                evidence = " … ".join(segment.text[a:b] for a, b in annotation.evidence)
                writer.writerow(
                    csv_row(
                        (
                            name,
                            f"{segment.start:.3f}",
                            f"{segment.end:.3f}",
                            clock(segment.start),
                            export.speaker_name(segment) or "",
                            segment.text,
                            annotation.theme,
                            export.theme_label(annotation.theme),
                            annotation.status,
                            coder(annotation),
                            evidence,
                            export.recording.access(),
                        )
                    )
                )
    return "\ufeff" + buffer.getvalue()


class ExportFormat(StrEnum):
    """The formats ohp writes (the CLI's --format choices): each has its writer below."""

    JSON = "json"
    SRT = "srt"
    VTT = "vtt"
    TXT = "txt"
    DOCX = "docx"
    EAF = "eaf"
    OHMS = "ohms"
    CSV = "csv"
    QDPX = "qdpx"


FORMATS = tuple(ExportFormat)
# Each format of one recording: its writer, and the file's extension.
WRITERS: dict[str, tuple[Callable[[RecordingExport], str | bytes], str]] = {
    ExportFormat.JSON: (to_json, "json"),
    ExportFormat.SRT: (to_srt, "srt"),
    ExportFormat.VTT: (to_vtt, "vtt"),
    ExportFormat.TXT: (to_txt, "txt"),
    ExportFormat.DOCX: (to_docx, "docx"),
    ExportFormat.EAF: (to_eaf, "eaf"),
    ExportFormat.OHMS: (to_ohms, "ohms.xml"),
}
# Formats of many recordings at once (a project for a QDA program, a table): their writer and file name.
PROJECT_WRITERS: dict[str, tuple[Callable[[list[RecordingExport], Codebook | None], str | bytes], str]] = {
    ExportFormat.CSV: (to_csv, "coded-segments.csv"),
    ExportFormat.QDPX: (to_qdpx, "ohp-project.qdpx"),
}


def export_path(out_dir: Path, stem: str, fmt: str) -> Path:
    return out_dir / f"{stem}.{WRITERS[fmt][1]}"


def shared_stems(paths: Iterable[Path | str]) -> set[str]:
    """File stems that more than one of the paths has: their exports need telling apart."""
    counts = Counter(Path(p).stem for p in set(map(str, paths)))
    return {stem for stem, n in counts.items() if n > 1}


def transcribed_paths(store, include_closed: bool = False) -> list[str]:
    """The paths of the stored recordings that have transcript files: a file that failed to decode has a row
    (its failed stage) but no transcript, and a closed recording no files (unless `include_closed`: exported
    on request), so their stems are no other file's concern. A closed one's would be worse than none: the
    hash it added to an open recording's file names would tell whoever gets the files that it exists."""
    statuses, _ = store.stage_listing()
    done = {rid for rid, stages in statuses.items() if stages.get("transcribe") == "done"}
    return [r.path for r in store.list_recordings() if r.id in done and access.exported(r, include_closed)]


def export_stem(recording: RecordingRecord, taken: set[str] | None = None) -> str:
    """The file stem of the recording; with a short hash when another recording has the same stem."""
    stem = Path(recording.path).stem
    return f"{stem}-{recording.sha256[:8]}" if taken and stem in taken else stem


def _check_formats(formats: tuple[str, ...]) -> None:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InvalidInputError(f"unknown export format {', '.join(unknown)}: choose from {', '.join(FORMATS)}")


def write_exports(
    export: RecordingExport, out_dir: Path, formats: tuple[str, ...] = DEFAULT_FORMATS, stem: str | None = None
) -> list[Path]:
    """The files of one recording in the formats of one recording (project formats are left to
    `export_recordings`)."""
    _check_formats(formats)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or export_stem(export.recording)
    private = access.holds_closed([export.recording])
    paths = []
    for fmt in formats:
        if fmt in WRITERS:
            path = export_path(out_dir, stem, fmt)
            write_atomic(path, WRITERS[fmt][0](export), private=private)
            paths.append(path)
    return paths


@dataclass
class ExportReport:
    files: list[Path] = field(default_factory=list)
    left_out: list[tuple[RecordingRecord, str]] = field(default_factory=list)  # and why
    redactions: list[Redaction] = field(default_factory=list)


def export_recordings(
    store,
    recordings: list[RecordingRecord],
    formats: tuple[str, ...],
    out_dir: Path,
    *,
    codebook: Codebook | None = None,
    include_closed: bool = False,
    redactor: Redactor | None = None,
) -> ExportReport:
    """Export files of the recordings: those of one recording for each, then the project files over
    all of them. Closed recordings are left out unless `include_closed` (the caller asks
    `access.check_export_closed` who may)."""
    _check_formats(formats)
    report = ExportReport()
    taken = shared_stems(transcribed_paths(store, include_closed))
    exports = []
    for recording in {r.id: r for r in recordings}.values():  # each once, however often it was named
        if not access.exported(recording, include_closed):
            report.left_out.append((recording, access.consent_label(recording)))
            continue
        exports.append(gather(store, recording, codebook))
    if redactor:
        # All at once, before any file is written: a name one recording gives goes from all of them.
        exports, report.redactions = redactor.redact(exports)
        log.info("%d replacement(s) redacted in %d recording(s)", len(report.redactions), len(exports))
        codebook = exports[0].codebook if exports else codebook  # its labels redacted with them
    written = set()
    for export in exports:
        stem = export_stem(export.recording, taken)
        if stem in written:  # redacted file names can meet: "[NAME] interview" twice
            stem = f"{stem}-{export.recording.sha256[:8]}"
        written.add(stem)
        report.files += write_exports(export, out_dir, formats, stem)
    for fmt in formats:
        if fmt in PROJECT_WRITERS and exports:
            writer, name = PROJECT_WRITERS[fmt]
            out_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(
                out_dir / name, writer(exports, codebook), private=access.holds_closed(e.recording for e in exports)
            )
            report.files.append(out_dir / name)
    return report


def write_redaction_report(redactions: list[Redaction], path: Path) -> None:
    """The replacements as a table, for a person to check before the files are shared: readable by its owner only,
    for it lists every name found, with the words around it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(("recording", "segment", "start", "end", "field", "found", "replaced with", "because", "context"))
    for r in redactions:
        writer.writerow(
            csv_row(
                (
                    r.recording,
                    r.segment_id or "",
                    f"{r.start:.3f}",
                    f"{r.end:.3f}",
                    r.field,
                    r.found,
                    r.replacement,
                    r.source,
                    r.context,
                )
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\ufeff" + buffer.getvalue(), private=True)
