"""Batch runs: many recordings, each through decode -> segment -> transcribe -> speakers -> tag -> store -> export.

A bad file is reported and the batch goes on. A recording already done with the same settings is
skipped; one that a killed run left half-way resumes from its last finished chunk, which the
transcribe stage checkpoints to a file beside the model cache (the database only ever holds whole
recordings).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline import access
from pipeline.config import default_home
from pipeline.formats.elan import read_eaf
from pipeline.formats.export import DEFAULT_FORMATS, export_path, export_stem, gather, shared_stems, write_exports
from pipeline.formats.qdpx import read_qdpx
from pipeline.formats.readers import DESCRIPTION, read_transcript
from pipeline.records import AudioInfo, Coding, ImportedCodings, Segment, SpeakerRecord, SpeechRegion, Transcript, Word
from pipeline.stages.audio import AudioError, decode, is_audio_file, probe
from pipeline.stages.codebook import Codebook
from pipeline.stages.engines import load_engine
from pipeline.stages.segment import VadOptions, segment, speech_regions
from pipeline.stages.speakers import DiarizeOptions, diarize, label_roles, match_profiles, speaker_at, split_segment
from pipeline.stages.tag import TAGGER_VERSION, tag_segments
from pipeline.stages.transcribe import ChunkResult, TranscribeOptions, transcribe
from pipeline.store import Store, settings_key
from pipeline.utils import clock

log = logging.getLogger(__name__)
STAGE = "transcribe"
MAX_SPEAKERS = 8  # when the number is estimated: more voices than this in one interview are rare


@dataclass(frozen=True)
class SpeakerOptions:
    count: int | None = None  # None: estimated, at most MAX_SPEAKERS

    def settings(self) -> dict:
        """The speakers stage's settings, but for the enrolled voices (see find_speakers)."""
        return {"count": self.count, "max_speakers": max(MAX_SPEAKERS, self.count or 0), "diarize": asdict(DiarizeOptions())}


@dataclass(frozen=True)
class RunOptions:
    transcribe: TranscribeOptions = field(default_factory=TranscribeOptions)
    vad: VadOptions = field(default_factory=VadOptions)
    speakers: SpeakerOptions | None = field(default_factory=SpeakerOptions)  # None skips the speakers stage
    force: bool = False
    out_dir: Path | None = Path("transcripts")
    formats: tuple[str, ...] = DEFAULT_FORMATS
    codebook: Codebook | None = None  # themes to tag with; None skips the tag stage
    home: Path = field(default_factory=default_home)  # the model cache; partial transcripts are kept there too
    device: str = "auto"  # where models run: auto, cpu or cuda

    def settings(self) -> dict:
        """The transcribe stage's settings: the same settings give the same transcript."""
        return {"transcribe": self.transcribe.settings(), "vad": asdict(self.vad)}


@dataclass
class FileResult:
    path: Path
    status: str  # "done", "skipped" or "failed"
    recording_id: int | None = None
    duration: float = 0.0
    segments: int = 0
    language: str | None = None
    speakers: int | None = None  # found by the speakers stage (None: it did not run)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    guards: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class BatchReport:
    files: list[FileResult]

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]


class Progress(Protocol):
    """What a batch tells its caller as it goes (the CLI draws a progress bar from it)."""

    def file_started(self, path: Path, index: int, total: int) -> None: ...
    def stage_started(self, path: Path, stage: str, audio_seconds: float) -> None: ...
    def audio_done(self, path: Path, audio_seconds: float) -> None: ...
    def file_finished(self, result: FileResult) -> None: ...


def find_audio_files(paths: list[Path]) -> tuple[list[Path], list[FileResult]]:
    """Files named directly, and audio files (by extension) found recursively in folders.
    A path that does not exist is a failed result, so the batch reports it and goes on."""
    files: list[Path] = []
    missing: list[FileResult] = []
    for path in paths:
        try:
            if path.is_dir():
                files.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_audio_file(p) and not p.name.startswith(".")))
            elif path.exists():
                files.append(path)
            else:
                missing.append(FileResult(path, "failed", error=f"{path}: no such file or folder"))
        except OSError as e:  # a folder we may not enter
            missing.append(FileResult(path, "failed", error=f"{path}: cannot read: {e.strerror}"))
    unique: dict[Path, Path] = {}  # a file named twice (or found in two folders given) runs once
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values()), missing


class Checkpoint:
    """Finished chunks of a recording being transcribed, one JSON line each, so a killed run resumes."""

    def __init__(self, info: AudioInfo, key: str, home: Path) -> None:
        folder = home / "partial"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{info.sha256}-{key}.jsonl"

    def load(self) -> dict[int, ChunkResult]:
        done: dict[int, ChunkResult] = {}
        if not self.path.exists():
            return done
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # the line being written when the run was killed
                break
            segments = [Segment(**{**s, "words": [Word(**w) for w in s["words"]]}) for s in entry["segments"]]
            done[entry["index"]] = ChunkResult(segments, entry["guards"])
        return done

    def add(self, index: int, result: ChunkResult) -> None:
        line = json.dumps({"index": index, "segments": [asdict(s) for s in result.segments], "guards": result.guards}, ensure_ascii=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


Audio = tuple[np.ndarray, list[SpeechRegion]]  # decoded samples and their speech regions


def _transcribe(info: AudioInfo, store: Store, options: RunOptions, result: FileResult, progress: Progress | None) -> tuple[int, Audio]:
    """Decode, segment and transcribe a recording into the store (stage "transcribe"); its id, and
    its audio for the speakers stage."""
    path, started = result.path, time.monotonic()
    settings = options.settings()
    key = settings_key(settings)
    store.start_stage(info, STAGE, settings, key)
    if progress:
        progress.stage_started(path, "decode", info.duration)
    decoded = decode(info)
    result.duration = decoded.duration
    result.warnings.extend(decoded.warnings)
    if progress:
        progress.stage_started(path, "segment", decoded.duration)
    chunks = segment(decoded.samples, options.vad)
    if progress:
        progress.stage_started(path, "transcribe", decoded.duration)
    checkpoint = Checkpoint(info, key, options.home)
    if options.force:
        checkpoint.remove()
    done = checkpoint.load()

    def chunk_finished(index: int, chunk_result: ChunkResult) -> None:
        if index not in done:
            checkpoint.add(index, chunk_result)
        if progress:
            progress.audio_done(path, chunks[index].end)

    if chunks:
        engine = load_engine(options.transcribe.engine, options.transcribe.model, options.home, options.device)
        transcript = transcribe(decoded.samples, chunks, engine, options.transcribe, done=done, on_chunk=chunk_finished)
    else:  # silence: a valid recording with nothing to transcribe, and no model to load for it
        result.warnings.append(f"{path}: no speech found")
        transcript = Transcript(None, 0.0, [], options.transcribe.engine, options.transcribe.model)
    report = {
        "segments": len(transcript.segments),
        "chunks": len(chunks),
        "speech_seconds": round(sum(c.speech_duration for c in chunks), 3),
        "language_probability": transcript.language_probability,
        "guards": transcript.guards,
        "warnings": result.warnings,
        "resumed_chunks": len(done),
        "seconds": round(time.monotonic() - started, 3),
    }
    # The decoded length is the truth when a container misstates it (truncated files).
    recording_id = store.save_transcription(replace(info, duration=decoded.duration), transcript, settings, key, report)
    checkpoint.remove()
    result.segments, result.language, result.guards = len(transcript.segments), transcript.language, transcript.guards
    return recording_id, (decoded.samples, [region for chunk in chunks for region in chunk.regions])


def find_speakers(
    store: Store, info: AudioInfo, recording_id: int, options: SpeakerOptions, vad: VadOptions = VadOptions(),
    audio: Audio | None = None, force: bool = False, device: str = "auto",
) -> dict | None:  # fmt: skip
    """Who speaks when (stage "speakers"): speaker turns, every segment given its speaker and split where
    the speaker changes, roles, and enrolled voices named; the report, or None when already done with
    these settings and enrolled voices. Without `audio` (a recording transcribed earlier) the file is
    decoded again; the transcript is not redone. Names and roles people set are kept (Store.save_speakers)."""
    people = store.people()
    # A newly enrolled voice is looked for in every recording again, as a changed codebook re-tags.
    settings = {**options.settings(), "people": settings_key({p.name: p.enrolled_at for p in people})}
    key = settings_key(settings)
    stage = store.stage(recording_id, "speakers")
    if stage and stage.status == "done" and stage.settings_key == key and not force:
        return None
    started = time.monotonic()
    store.start_stage(info, "speakers", settings, key)
    decoded_again = audio is None
    if audio is None:
        samples = decode(info).samples
        audio = samples, speech_regions(samples, vad)
    samples, regions = audio
    turns = diarize(samples, regions, options.count, settings["max_speakers"], device=device)
    before = store.segments(recording_id)
    # A segment whose text a person corrected is not split (its parts would take the words' text): it
    # keeps its text and takes the speaker who says most of it.
    corrected = {sid for sid, version in store.segment_versions(recording_id).items() if version > 1}
    segments = [
        part
        for s in before
        for part in ([replace(s, speaker=speaker_at(s.start, s.end, turns))] if s.id in corrected else split_segment(s, turns))
    ]
    roles = label_roles(segments, turns)
    profiles = {p.name: np.asarray(p.profile, dtype=np.float32) for p in people}
    names = match_profiles(samples, turns, profiles, device=device)
    ids = {p.name: p.id for p in people}
    speakers = [
        SpeakerRecord(label, names.get(label), roles.get(label), person_id=ids.get(names.get(label)))
        for label in dict.fromkeys(turn.speaker for turn in turns)
    ]
    report = {
        "speakers": len(speakers),
        "turns": len(turns),
        "segments": len(segments),
        "segments_split": len(segments) - len(before),
        "roles": roles,
        "enrolled": names,
        "decoded_again": decoded_again,
        "seconds": round(time.monotonic() - started, 3),
    }
    store.save_speakers(recording_id, speakers, settings, key, report, segments)
    return report


def tag_recording(store: Store, recording_id: int, codebook: Codebook, force: bool = False) -> dict[str, int] | None:
    """Tag a recording's segments with the codebook's themes (stage "tag"); None when it was already
    tagged with this tagger and codebook. Human decisions are never touched (see Store.save_tags)."""
    settings = {"tagger": TAGGER_VERSION, "codebook": codebook.version}
    key = settings_key(settings)
    stage = store.stage(recording_id, "tag")
    if stage and stage.status == "done" and stage.settings_key == key and not force:
        return None
    segments = store.segments(recording_id)
    results = tag_segments([s.text for s in segments], [s.language for s in segments], codebook)
    return store.save_tags(
        recording_id,
        {s.id: r.themes for s, r in zip(segments, results)},
        {s.id: r.entities for s, r in zip(segments, results)},
        f"{TAGGER_VERSION}/{codebook.version}",
        settings,
        key,
    )


def import_file(path: Path, store: Store, audio: Path | None = None, codebook: Codebook | None = None) -> int:
    """Load an existing transcript (ohp JSON, SRT, WebVTT, plain text) as a recording's transcript; its id.

    With `audio` the transcript belongs to that recording; without, the transcript file itself is the
    recording (identified by its bytes). Nothing is stored unless the whole file reads (see importers).
    A transcript imported this way is never replaced by `ohp run`, except with --force.
    """
    imported = read_transcript(path)
    if audio is not None:
        info = probe(audio.resolve())
    else:
        data = path.read_bytes()
        info = AudioInfo(
            path=path.resolve(), sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
            format=f"transcript/{imported.source_format}", codec="", sample_rate=0, channels=0,
            duration=max((s.end for s in imported.segments), default=0.0),
        )  # fmt: skip
    transcript = Transcript(imported.language, 1.0, imported.segments, "import", imported.source_format)
    settings = {"imported": str(path.resolve()), "format": imported.source_format, "timed": imported.timed}
    report = {"segments": len(imported.segments), "metadata": imported.metadata}
    recording_id = store.save_transcription(info, transcript, settings, settings_key(settings), report)
    store.set_metadata(recording_id, **{key: imported.metadata[key] for key in DESCRIPTION if key in imported.metadata})
    # Its speakers are the file's: the labels its segments carry, with names and roles where it gives them.
    speakers = [SpeakerRecord(s["label"], s.get("name"), s.get("role")) for s in imported.metadata.get("speakers", [])]
    store.save_speakers(recording_id, speakers, settings, settings_key(settings), {"speakers": len(store.speakers(recording_id))})
    if codebook:
        tag_recording(store, recording_id, codebook)
    return recording_id


@dataclass
class CodingsReport:
    """What an import of codes (ELAN, REFI-QDA) did."""

    codings: int = 0
    added: int = 0  # annotations made or accepted by the coder
    unchanged: int = 0  # the coder's theme was already there, accepted, on that text
    recordings: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _coded_segments(segments: list[Segment], coding: Coding) -> list[Segment]:
    """The segments a coding covers: each overlapping it by over half of the shorter of the two (tools
    snap codes to their own boundaries, which are ohp's segments moved a little)."""
    if coding.end <= coding.start:
        return [s for s in segments if s.start <= coding.start < s.end][:1]
    return [
        s for s in segments
        if min(s.end, coding.end) - max(s.start, coding.start) > 0.5 * min(s.end - s.start or 1e-3, coding.end - coding.start)
    ]  # fmt: skip


# Exchange files that carry codes for recordings ohp has, rather than transcripts.
CODINGS_READERS: dict[str, Callable[[Path, Codebook], ImportedCodings]] = {".eaf": read_eaf, ".qdpx": read_qdpx}


def import_codings(imported: ImportedCodings, store: Store) -> CodingsReport:
    """The codes of an exchange file, as annotations by their coders: all of them in one transaction."""
    report = CodingsReport(warnings=list(imported.warnings))
    added, queued = [], set()
    for sha256, codings in imported.codings.items():
        recording = store.recording_by_sha256(sha256)
        if recording is None:
            report.warnings.append(f"{len(codings)} coding(s) belong to a recording that is not in this database (sha256 {sha256[:12]}…)")
            continue
        report.recordings.append(recording.id)
        segments = store.segments(recording.id)
        existing = {(a.segment_id, a.theme): a for a in store.annotations(recording.id)}
        for coding in codings:
            report.codings += 1
            covered = _coded_segments(segments, coding)
            if not covered:
                report.warnings.append(f"{coding.coder}'s {coding.theme} at {clock(coding.start)}-{clock(coding.end)} covers no segment")
            for target in covered:
                at = target.text.find(coding.text.strip()) if coding.text and coding.text.strip() else -1
                evidence = ((at, at + len(coding.text.strip())),) if at >= 0 else ()
                had = existing.get((target.id, coding.theme))
                item = (target.id, coding.theme, coding.coder, evidence)
                if (had and had.status == "accepted" and set(evidence) <= set(had.evidence)) or item in queued:
                    report.unchanged += 1  # or a coding a tool split in pieces over one segment
                else:
                    added.append(item)
                    queued.add(item)
    store.add_annotations(added)
    report.added = len(added)
    return report


def process_file(path: Path, store: Store, options: RunOptions, progress: Progress | None = None, taken_stems: set[str] | None = None) -> FileResult:
    """One recording through every stage; never raises for a bad file, returns a failed result instead.
    Stages already done with the same settings are skipped; the result is "skipped" if all were."""
    started = time.monotonic()
    result = FileResult(path, "failed")
    info: AudioInfo | None = None
    stage = STAGE
    try:
        if progress:
            progress.stage_started(path, "probe", 0.0)
        info = probe(path.resolve())
        result.duration = info.duration
        existing = store.recording_by_sha256(info.sha256)
        transcribed = existing and store.stage(existing.id, STAGE)
        # Done with these settings, or a transcript people made (imported): nothing to transcribe.
        done = transcribed and transcribed.status == "done" and (
            transcribed.settings_key == settings_key(options.settings()) or "imported" in transcribed.settings
        )
        audio = None
        if done and not options.force:
            if existing.path != str(info.path):
                store.update_path(existing.id, str(info.path))
            result.recording_id, result.language = existing.id, existing.language
            result.segments = transcribed.report.get("segments", 0)
            changed = False
        else:
            result.recording_id, audio = _transcribe(info, store, options, result, progress)
            changed = True
        # A transcript people made (imported) keeps the speakers it came with.
        if options.speakers and (audio is not None or "imported" not in transcribed.settings):
            stage = "speakers"
            if progress:
                progress.stage_started(path, stage, result.duration)
            report = find_speakers(
                store, info, result.recording_id, options.speakers, options.vad, audio, options.force, options.device
            )
            changed |= report is not None
            report = report or store.stage(result.recording_id, "speakers").report
            result.speakers, result.segments = report["speakers"], report["segments"]
        if options.codebook:
            stage = "tag"
            if progress:
                progress.stage_started(path, stage, result.duration)
            changed |= tag_recording(store, result.recording_id, options.codebook, options.force) is not None
        result.status = "done" if changed else "skipped"
        recording = store.recording(result.recording_id) if options.out_dir else None
        if recording and not access.writes_transcript_files(recording):
            result.warnings.append(f"{path}: closed recording: no transcript files (ohp export --include-restricted)")
        elif recording:
            stem = export_stem(recording, taken_stems)
            # Unchanged recordings keep their files, unless someone removed them.
            if changed or not all(export_path(options.out_dir, stem, fmt).exists() for fmt in options.formats):
                write_exports(gather(store, recording, options.codebook), options.out_dir, options.formats, stem)
    except AudioError as e:
        result.error = str(e)
        log.info("%s", e)
    except Exception as e:  # anything else: report it against this file and go on with the batch
        result.error = f"{path}: {stage}: {type(e).__name__}: {e}"
        log.exception("%s: the %s stage failed", path, stage)
    finally:
        result.seconds = time.monotonic() - started
        if result.status == "failed" and info is not None:
            try:
                store.fail_stage(info, stage, {}, "", result.error or "failed")
            except Exception as e:
                result.error = f"{result.error}; and recording the failure failed: {e}"
    return result


def run_batch(paths: list[Path | str], store: Store, options: RunOptions = RunOptions(), progress: Progress | None = None) -> BatchReport:
    files, results = find_audio_files([Path(p) for p in paths])
    # Stems shared by different files get the recording's short hash in their export names.
    known = {f.resolve() for f in files} | {Path(r.path) for r in store.list_recordings() if Path(r.path).exists()}
    taken = shared_stems(known)
    for index, path in enumerate(files):
        if progress:
            progress.file_started(path, index, len(files))
        result = process_file(path, store, options, progress, taken)
        results.append(result)
        if progress:
            progress.file_finished(result)
    return BatchReport(results)

