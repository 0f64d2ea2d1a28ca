"""Transcript files: JSON (the reference format), SRT, WebVTT and plain text.

Every writer is a function from a `RecordingExport` (a recording, its speakers, its segments and their
themes) to text; `write_exports` puts them in a folder as `<recording file stem>.<ext>`. Segments name
their speaker by label in the JSON (its recording part gives each label's name and role); the other
formats show the speaker's display name, or the label when it has none.
"""

from __future__ import annotations

import html
import json
import os
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from .codebook import Codebook
from .records import AnnotationRecord, RecordingExport, RecordingRecord, Segment
from .utils import clock, timestamp

FORMATS = ("json", "srt", "vtt", "txt")


def gather(store, recording: RecordingRecord, codebook: Codebook | None = None) -> RecordingExport:
    """A recording's export from the store (the codebook gives themes their labels)."""
    annotations: dict[int, list[AnnotationRecord]] = {}
    for annotation in store.annotations(recording.id):
        annotations.setdefault(annotation.segment_id, []).append(annotation)
    return RecordingExport(
        recording, store.segments(recording.id), annotations, store.speakers(recording.id), store.entities(recording.id), codebook
    )


def to_json(export: RecordingExport) -> str:
    recording = export.recording
    document = {
        "recording": {
            "id": recording.id,
            "path": recording.path,
            "sha256": recording.sha256,
            "duration": recording.duration,
            "language": recording.language,
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
                "words": [
                    {"start": round(w.start, 3), "end": round(w.end, 3), "text": w.text, "probability": round(w.probability, 4)}
                    for w in s.words
                ],
                "themes": [
                    {"id": a.theme, "status": a.status, "source": a.source, "evidence": [list(span) for span in a.evidence]}
                    for a in export.annotations.get(s.id, [])
                ],
            }
            for s in export.segments
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"


def _said(export: RecordingExport, segment: Segment) -> str:
    """The segment's text after its speaker's name, "Name: text" (just the text when nobody is known)."""
    name = export.speaker_name(segment)
    return f"{name}: {segment.text}" if name else segment.text


def to_srt(export: RecordingExport) -> str:
    blocks = [
        f"{i}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{_said(export, s)}\n" for i, s in enumerate(export.segments, 1)
    ]
    return "\n".join(blocks)


def _cue_text(export: RecordingExport, segment: Segment) -> str:
    # Cue text is markup in WebVTT: "<" opens a tag (the text after it vanishes) and "&" an entity; the
    # speaker is a voice tag, <v Name>, whose name is escaped alike.
    name = export.speaker_name(segment)
    text = html.escape(segment.text, quote=False)
    return f"<v {html.escape(name, quote=False)}>{text}" if name else text


def to_vtt(export: RecordingExport) -> str:
    blocks = [f"{timestamp(s.start)} --> {timestamp(s.end)}\n{_cue_text(export, s)}\n" for s in export.segments]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_txt(export: RecordingExport) -> str:
    recording = export.recording
    header = [
        f"Recording: {Path(recording.path).name}",
        f"Duration: {clock(recording.duration)}",
        f"Language: {recording.language or 'unknown'}",
    ]
    header += [f"{label}: {value}" for label, value in (("Interviewee", recording.interviewee), ("Place", recording.place), ("Date", recording.recorded_on)) if value]
    lines = [f"[{clock(s.start)}] {_said(export, s)}" for s in export.segments]
    return "\n".join(header) + "\n\n" + "\n".join(lines) + "\n"


WRITERS: dict[str, Callable[[RecordingExport], str]] = {
    "json": to_json,
    "srt": to_srt,
    "vtt": to_vtt,
    "txt": to_txt,
}


def shared_stems(paths: Iterable[Path | str]) -> set[str]:
    """File stems that more than one of the paths has: their exports need telling apart."""
    counts = Counter(Path(p).stem for p in set(map(str, paths)))
    return {stem for stem, n in counts.items() if n > 1}


def export_stem(recording: RecordingRecord, taken: set[str] | None = None) -> str:
    """The file stem of the recording; with a short hash when another recording has the same stem."""
    stem = Path(recording.path).stem
    return f"{stem}-{recording.sha256[:8]}" if taken and stem in taken else stem


def _write_atomic(path: Path, content: str | bytes) -> None:
    # A reader (or a crash) never sees half a transcript file. Not mkstemp: its files are private
    # (0600), and the transcript would keep that mode; open(..., "x") gives the umask's mode.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_exports(
    export: RecordingExport, out_dir: Path, formats: tuple[str, ...] = FORMATS, stem: str | None = None
) -> list[Path]:
    unknown = [f for f in formats if f not in WRITERS]
    if unknown:
        raise ValueError(f"unknown export format {', '.join(unknown)}: choose from {', '.join(FORMATS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or export_stem(export.recording)
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        _write_atomic(path, WRITERS[fmt](export))
        paths.append(path)
    return paths
