"""Batch runs: many recordings, each through one pass (pipeline.process) -> one save -> its export files.

    run_batch -> process_file -> process_recording -> Store.save_result -> write_exports

A bad file is reported and the batch goes on. A recording already done with the same settings is
skipped; one that a killed run left half-way resumes from its last finished chunk (see pipeline.process;
the database only ever holds whole recordings).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from pipeline import access
from pipeline.formats.export import export_path, export_stem, gather, shared_stems, write_exports
from pipeline.process import (
    STAGES,
    RunOptions,
    StageError,
    StageProgress,
    clear_checkpoint,
    is_done,
    pending_stages,
    process_recording,
    running,
    stored_result,
    tag_result,
    tag_settings,
)
from pipeline.records import AudioInfo, PersonRecord, RecordingExport, RecordingRecord, RecordingResult, StageRecord
from pipeline.stages.audio import AudioError, is_audio_file, probe
from pipeline.stages.codebook import Codebook
from pipeline.stages.learned import ThemeModel
from pipeline.store import Store

log = logging.getLogger(__name__)


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
    stage: str | None = None  # where it failed: probe, decode, segment, transcribe, speakers, tag, save or export


@dataclass
class BatchReport:
    files: list[FileResult]

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]


class Progress(StageProgress, Protocol):
    """What a batch tells its caller as it goes (the CLI draws a progress bar from it)."""

    def file_started(self, path: Path, index: int, total: int) -> None: ...
    def file_finished(self, result: FileResult) -> None: ...


def find_audio_files(paths: list[Path]) -> tuple[list[Path], list[FileResult]]:
    """Files named directly, and audio files (by extension) found recursively in folders.
    A path that does not exist is a failed result, so the batch reports it and goes on."""
    files: list[Path] = []
    missing: list[FileResult] = []
    for path in paths:
        try:
            if path.is_dir():
                files.extend(
                    sorted(
                        p for p in path.rglob("*") if p.is_file() and is_audio_file(p) and not p.name.startswith(".")
                    )
                )
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


def tag_recording(
    store: Store, recording_id: int, codebook: Codebook, force: bool = False, model: ThemeModel | None = None
) -> dict[str, int] | None:
    """Tag a stored recording again with the codebook's themes and the model (stage "tag"), saved as a pass's
    result; what changed (added, updated, withdrawn, kept), or None when this tagger, codebook and model
    tagged it already. Human decisions are never touched."""
    if is_done(store.stage(recording_id, "tag"), tag_settings(codebook, model)) and not force:
        return None
    result = stored_result(store.recording(recording_id), store.transcript(recording_id))
    tag_result(result, codebook, model=model)
    return store.save_result(result).tag_counts


def _speakers_report(
    options: RunOptions, result: RecordingResult | None, stages: dict[str, StageRecord]
) -> dict | None:
    """The report of the speakers stage on the recording as it is now; None when the stage did not find its
    speakers (turned off, or they are an imported file's)."""
    if not options.speakers:
        return None
    if result and "speakers" in result.stages:
        return result.stages["speakers"].report
    stored = stages.get("speakers")
    superseded = result is not None and result.new_segments
    return stored.report if stored and "imported" not in stored.settings and not superseded else None


def _write_exports(
    file: FileResult,
    store: Store,
    recording: RecordingRecord,
    export: RecordingExport | None,
    out_dir: Path,
    options: RunOptions,
    taken_stems: set[str] | None,
) -> None:
    """The recording's transcript files: from `export`, the recording as just saved; without it (nothing
    changed) the files stay, unless someone removed them."""
    if not access.writes_transcript_files(recording):
        file.warnings.append(f"{file.path}: closed recording: no transcript files (ohp export --include-restricted)")
        return
    stem = export_stem(recording, taken_stems)
    if export is None and all(export_path(out_dir, stem, fmt).exists() for fmt in options.formats):
        return
    write_exports(export or gather(store, recording, options.codebook), out_dir, options.formats, stem)


def process_file(
    path: Path,
    store: Store,
    options: RunOptions,
    progress: Progress | None = None,
    taken_stems: set[str] | None = None,
    people: list[PersonRecord] | None = None,
) -> FileResult:
    """One recording: its pass, its save and its files; never raises for a bad file, returns a failed result
    instead (the traceback of an unexpected failure goes to the log). Stages already done with the same
    settings are skipped; the result is "skipped" if all were. `people` are the enrolled voices (read from
    the store if not given)."""
    started = time.monotonic()
    file = FileResult(path, "failed")
    info, stage = None, "probe"
    log.info("%s: started", path)
    try:
        with running(path, "probe", progress):
            info = probe(path.resolve())
        file.duration = info.duration
        stage = "store"
        existing = store.recording_by_sha256(info.sha256)
        stages = {s.stage: s for s in store.stages(existing.id)} if existing else {}
        if people is None:
            people = store.people() if options.speakers else []
        changed = bool(pending_stages(options, people, stages))
        if changed:
            stored = store.transcript(existing.id) if existing else None
            result = process_recording(info, options, people=people, stages=stages, stored=stored, progress=progress)
            stage = "save"
            export = replace(store.save_result(result).export, codebook=options.codebook)
            clear_checkpoint(result, options.home)
            file.duration, file.language = result.info.duration, result.transcript.language
            file.segments = len(result.transcript.segments)
            file.warnings.extend(result.transcript.warnings)
            file.guards = result.transcript.guards
            recording = export.recording
        else:
            # Nothing pending: the transcribe stage is stored, so the recording is.
            assert existing is not None
            result, export = None, None
            recording = replace(existing, path=str(info.path))
            if existing.path != str(info.path):
                store.update_path(existing.id, str(info.path))
            file.language, file.segments = existing.language, stages["transcribe"].report.get("segments", 0)
        speakers = _speakers_report(options, result, stages)
        if speakers:
            file.speakers, file.segments = speakers["speakers"], speakers["segments"]
        file.recording_id, file.status = recording.id, "done" if changed else "skipped"
        if options.out_dir:
            stage = "export"
            _write_exports(file, store, recording, export, options.out_dir, options, taken_stems)
    except Exception as exc:  # anything: reported against this file, and the batch goes on
        stage, cause = (exc.stage, exc.cause) if isinstance(exc, StageError) else (stage, exc)
        file.status, file.stage = "failed", stage
        if isinstance(cause, AudioError):  # the file is bad, not ohp: its message says which and why
            file.error = str(cause)
            log.info("%s", cause)
        else:
            file.error = f"{path}: {stage}: {type(cause).__name__}: {cause} (the traceback is in the log)"
            log.exception("%s: the %s stage failed", path, stage)
        _record_failure(store, file, info, stage)
    finally:
        file.seconds = time.monotonic() - started
    log.info("%s: %s in %.1f s", path, file.status, file.seconds)
    return file


def _record_failure(store: Store, file: FileResult, info: AudioInfo | None, stage: str) -> None:
    """Mark the stage that failed as failed in the store; what an earlier run stored stays."""
    stage_row = "transcribe" if stage in ("decode", "segment") else stage
    if info is None or stage_row not in STAGES:
        return
    try:
        store.fail_stage(info, stage_row, {}, "", file.error or "failed")
    except Exception as e:
        log.exception("%s: recording the failure failed", file.path)
        file.error = f"{file.error}; and recording the failure failed: {e}"


def run_batch(
    paths: list[Path | str], store: Store, options: RunOptions = RunOptions(), progress: Progress | None = None
) -> BatchReport:
    files, results = find_audio_files([Path(p) for p in paths])
    # Stems shared by different files get the recording's short hash in their export names.
    known = {f.resolve() for f in files} | {Path(r.path) for r in store.list_recordings() if Path(r.path).exists()}
    taken = shared_stems(known)
    people = store.people() if options.speakers else []  # the enrolled voices, read once for the batch
    for index, path in enumerate(files):
        if progress:
            progress.file_started(path, index, len(files))
        result = process_file(path, store, options, progress, taken, people)
        results.append(result)
        if progress:
            progress.file_finished(result)
    return BatchReport(results)
