"""Batch runs: many recordings, each through one pass (pipeline.process) -> one save -> its export files.

    run_batch -> FileRun.process -> process_recording -> Store.save_result -> write_exports

A bad file is reported and the batch goes on. A recording already done with the same settings is
skipped; one that a killed run left half-way resumes from its last finished chunk (see pipeline.process;
the database only ever holds whole recordings).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pipeline import access
from pipeline.errors import OhpError
from pipeline.formats.export import (
    WRITERS,
    ExportFormat,
    export_path,
    export_stem,
    gather,
    shared_stems,
    transcribed_paths,
    write_exports,
)
from pipeline.process import (
    STAGES,
    RunOptions,
    StageError,
    StageProgress,
    clear_checkpoint,
    for_recording,
    is_done,
    pending_stages,
    process_recording,
    running,
    stored_result,
    tag_result,
    tag_settings,
)
from pipeline.records import (
    AudioInfo,
    Consent,
    PersonRecord,
    RecordingExport,
    RecordingRecord,
    RecordingResult,
    StageRecord,
    Transcript,
    settings_key,
)
from pipeline.stages.audio import AudioError, ChangedFileError, file_sha256, is_audio_file, probe
from pipeline.stages.codebook import Codebook
from pipeline.stages.learned import ThemeModel
from pipeline.utils import resolved

if TYPE_CHECKING:  # the store is the caller's: a cluster's workers import this module and never touch it
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
    # Where it failed: probe, store (its look-up), send, decode, segment, transcribe, speakers, tag, save or export.
    stage: str | None = None
    doubtful: float | None = None  # share of the transcript's text in doubtful words (None: no words)
    worker: str | None = None  # the cluster's worker that ran its pass, and its node (pipeline.cluster)
    copy_of: str | None = None  # the file the recording is at, when this file is a copy of it (FileRun.plan)


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


def _recording_in(folder: Path, path: Path) -> bool:
    """Whether a file found in a folder is one of its recordings: an audio file by its extension, neither hidden
    (macOS's ._ files) nor in a hidden folder (a memory card's .Trashes, whose recordings were deleted). A link to
    a file that is not there (on a drive not mounted) is one, which the batch reports."""
    hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
    return not hidden and is_audio_file(path) and (path.is_file() or path.is_symlink())


def find_audio_files(paths: list[Path]) -> tuple[list[Path], list[FileResult]]:
    """Files named directly, and audio files (by extension) found recursively in folders.
    A path that does not exist is a failed result, so the batch reports it and goes on."""
    files: list[Path] = []
    missing: list[FileResult] = []
    for path in paths:
        try:
            if path.is_dir():
                files.extend(sorted(p for p in path.rglob("*") if _recording_in(path, p)))
            else:
                path.stat()  # raises why it is not there: no such file, or a link that leads round in a loop
                files.append(path)
        except FileNotFoundError:
            missing.append(FileResult(path, "failed", error=f"{path}: no such file or folder"))
        except OSError as e:  # a folder we may not enter, a link in a loop
            missing.append(FileResult(path, "failed", error=f"{path}: cannot read: {e.strerror}"))
    unique: dict[Path, Path] = {}  # a file named twice (or found in two folders given) runs once
    for f in files:
        unique.setdefault(resolved(f), f)
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


def _copy_of(recording: RecordingRecord, path: Path) -> bool:
    """Whether `path` is a copy of the recording: the file the store has it at still holds its bytes, and is another
    file (not the same one under another name: a hard link, or another case of the name where case is not told)."""
    stored = Path(recording.path)
    try:
        same = stored.samefile(path)
        return not same and stored.stat().st_size == recording.size_bytes and file_sha256(stored) == recording.sha256
    except OSError:  # gone, or unreadable now: the file given is where the recording is
        return False


def _saved_at(stages: Iterable[StageRecord]) -> float:
    """When a recording was last saved, as a file time: the end of its latest stage."""
    return max((datetime.fromisoformat(s.finished_at).timestamp() for s in stages if s.finished_at), default=0.0)


def _write_exports(
    file: FileResult,
    store: Store,
    recording: RecordingRecord,
    export: RecordingExport | None,
    out_dir: Path,
    options: RunOptions,
    taken_stems: set[str] | None,
    saved_at: float = 0.0,
) -> None:
    """The recording's transcript files: from `export`, the recording as just saved; without it (nothing
    changed) the files stay, unless someone removed them or they are older than its last save (`saved_at`, a
    file time: a run killed between a save and its files left those of the save before)."""
    if not access.writes_transcript_files(recording):
        removed = _remove_transcript_files(recording, out_dir)
        done = f"removed its transcript files written before it was closed ({', '.join(removed)})" if removed else ""
        file.warnings.append(
            f"{file.path}: closed recording: {done or 'no transcript files'} (ohp export --include-restricted)"
        )
        return
    stem = export_stem(recording, taken_stems)
    paths = [export_path(out_dir, stem, fmt) for fmt in options.formats]
    if export is None and all(p.exists() and p.stat().st_mtime >= saved_at for p in paths):
        return
    write_exports(export or gather(store, recording, options.codebook), out_dir, options.formats, stem)


def _remove_transcript_files(recording: RecordingRecord, out_dir: Path) -> list[str]:
    """The names of the transcript files a run wrote of the recording while it was open, removed now that it is
    closed: they hold its interviewee, place and text. Found by their JSON file, the one that names the recording
    (by its sha256) as not closed, under its plain stem or the one with its short hash; another recording's files
    of that name, those a researcher exported of it closed (ohp export --include-restricted), and files not ohp's,
    stay."""
    removed = []
    plain = Path(recording.path).stem
    for stem in (plain, export_stem(recording, {plain})):
        try:
            written = json.loads(export_path(out_dir, stem, ExportFormat.JSON).read_bytes())["recording"]
            ours = written["sha256"] == recording.sha256 and written["consent"] != Consent.CLOSED
        except (OSError, ValueError, KeyError, TypeError):  # none there, or not an ohp JSON file
            continue
        if not ours:
            continue
        for fmt in WRITERS:
            path = export_path(out_dir, stem, fmt)
            if path.is_file():
                path.unlink()
                log.info("removed %s: its recording is closed", path)
                removed.append(path.name)
    return removed


@dataclass
class Pass:
    """What a recording's pass (process_recording) takes from the store, besides the run options."""

    info: AudioInfo
    people: list[PersonRecord]  # the enrolled voices
    stages: dict[str, StageRecord]  # the stages the store has of it, by name
    stored: Transcript | None  # its stored transcript, which a pass that does not transcribe works on
    recording: RecordingRecord | None = None  # as the store has it: its metadata is part of the vocabulary's hint

    def run(self, options: RunOptions, progress: StageProgress | None = None) -> RecordingResult:
        return process_recording(
            self.info,
            for_recording(options, self.recording),
            people=self.people,
            stages=self.stages,
            stored=self.stored,
            progress=progress,
        )

    def checkpoint_key(self, options: RunOptions) -> str:
        """The settings key under which its transcription keeps its finished chunks (process.Checkpoint)."""
        return settings_key(for_recording(options, self.recording).settings())


class FileRun:
    """The steps of one file of a batch around its pass, wherever the pass runs: this process (`process`)
    or a worker of a cluster (pipeline.cluster). `plan` probes the file and finds what the store has of it;
    `save` saves the pass's result in one transaction and writes its files. Inside `reporting`, a failure is
    recorded against the file (and the stage it happened in) and the batch goes on."""

    def __init__(
        self,
        path: Path,
        store: Store,
        options: RunOptions,
        progress: StageProgress | None = None,
        taken_stems: set[str] | None = None,
        people: list[PersonRecord] | None = None,
        write_files: bool = True,
    ) -> None:
        self.store, self.options, self.progress, self.taken_stems = store, options, progress, taken_stems
        self.people, self.write_files = people, write_files  # without write_files, its files are the batch's
        self.file = FileResult(path, "failed")
        self.info: AudioInfo | None = None
        self.stage = "probe"  # the step under way, which a failure is recorded against
        self.started = time.monotonic()
        log.info("%s: started", path)

    @contextmanager
    def reporting(self) -> Iterator[FileResult]:
        """A step of the file: never raises for a bad file, records a failed result instead (the traceback
        of an unexpected failure goes to the log)."""
        try:
            yield self.file
        except Exception as exc:  # anything: reported against this file, and the batch goes on
            self._failed(exc)
        self.file.seconds = time.monotonic() - self.started
        if self.file.status != "failed" or self.file.error:  # finished, not waiting for its pass
            log.info("%s: %s in %.1f s", self.file.path, self.file.status, self.file.seconds)

    def process(self) -> FileResult:
        """The file's pass here, its save and its files; never raises for a bad file, returns a failed result
        instead. Stages already done with the same settings are skipped; the result is "skipped" if all were."""
        with self.reporting() as file:
            planned = self.plan()
            if planned:
                self.save(planned, planned.run(self.options, self.progress))
        return file

    def plan(self) -> Pass | None:
        """Probe the file and look it up in the store: the pass it needs, or None when every stage is done
        with the same settings (then the file is "skipped", and its files are written if they are missing)."""
        store, options, file = self.store, self.options, self.file
        with running(file.path, "probe", self.progress):
            info = self.info = probe(resolved(file.path))
        file.duration = info.duration
        self.stage = "store"
        existing = store.recording_by_sha256(info.sha256)
        if existing:  # the length a pass decoded, which is the truth where the container misstates it
            file.duration = existing.duration
        elif before := store.recording_at_path(str(info.path)):  # the file was edited, or replaced by another
            file.warnings.append(
                f"{file.path}: its bytes changed since recording {before.id} was made from it: a new recording"
                f" (ohp status lists both; {before.id} keeps its transcript and what people did to it)"
            )
        options = for_recording(options, existing)
        stages = {s.stage: s for s in store.stages(existing.id)} if existing else {}
        if self.people is None:
            self.people = store.people() if options.speakers else []
        # The voices this recording's speakers may be named with; they are part of the speakers stage's settings,
        # so a voice withheld here, then released, is looked for on the next run.
        people = [person for person in self.people if not access.voice_withheld(person, info.sha256)]
        if pending_stages(options, people, stages):
            stored = store.transcript(existing.id) if existing else None
            return Pass(info, people, stages, stored, existing)
        # Nothing pending: the transcribe stage is stored, so the recording is.
        assert existing is not None
        recording = existing
        if existing.path != str(info.path) and _copy_of(existing, info.path):
            # Its file stays the recording's, and the transcript files that file's name, which the batch writes
            # once it knows the stems of the recordings read (Batch.write_waiting), not of the files.
            file.copy_of, self.write_files = existing.path, False
            file.warnings.append(f"{file.path}: a copy: the same recording as {existing.path}")
        elif existing.path != str(info.path):  # moved or renamed
            recording = replace(existing, path=str(info.path))
            store.update_path(existing.id, str(info.path))
        file.language, file.segments = existing.language, stages["transcribe"].report.get("segments", 0)
        self._finish("skipped", recording, None, None, stages)
        return None

    def save(self, planned: Pass, result: RecordingResult) -> None:
        """Save the pass's result in one transaction, then write the recording's files; a Ctrl-C meanwhile
        stops the batch once the file is finished (stop_if_asked)."""
        with finishing():
            self._save(planned, result)

    def _save(self, planned: Pass, result: RecordingResult) -> None:
        file, options = self.file, self.options
        self.stage = "save"
        export = replace(self.store.save_result(result).export, codebook=options.codebook)
        clear_checkpoint(result, options.home)
        file.duration, file.language = result.info.duration, result.transcript.language
        file.segments = len(result.transcript.segments)
        file.warnings.extend(result.transcript.warnings)
        file.guards = result.transcript.guards
        if "transcribe" in result.stages:  # why the new transcript is likely poor
            file.warnings.extend(export.recording.warnings)
        self._finish("done", export.recording, result, export, planned.stages)

    def _finish(
        self,
        status: str,
        recording: RecordingRecord,
        result: RecordingResult | None,
        export: RecordingExport | None,
        stages: dict[str, StageRecord],
    ) -> None:
        file = self.file
        speakers = _speakers_report(self.options, result, stages)
        if speakers:
            file.speakers, file.segments = speakers["speakers"], speakers["segments"]
        file.recording_id, file.status = recording.id, status
        file.doubtful = recording.doubtful
        if self.options.out_dir and self.write_files:
            self.stage = "export"
            saved_at = _saved_at(stages.values()) if export is None else 0.0
            out_dir, taken = self.options.out_dir, self.taken_stems
            _write_exports(file, self.store, recording, export, out_dir, self.options, taken, saved_at)

    def _failed(self, exc: Exception) -> None:
        stage, cause = (exc.stage, exc.cause) if isinstance(exc, StageError) else (self.stage, exc)
        _failed(self.file, stage, cause)
        if not isinstance(cause, ChangedFileError):  # bytes no longer there are no recording to mark as failed
            _record_failure(self.store, self.file, self.info, stage)


STOPPING = (signal.SIGINT, signal.SIGTERM)  # the signals a save holds back until its file is finished
_stop_asked: list[int] = []  # those that came while a recording was being saved (signals are per process)


@contextmanager
def finishing() -> Iterator[None]:
    """A Ctrl-C (SIGINT) or a SIGTERM (`kill`, a service stopped) while the block runs does not stop it: it is kept
    for `stop_if_asked`, where the batch stops once the file is finished (saved, its files written, reported). So
    a recording is never saved without the files that a run skipping it would not write again. Signals reach the
    main thread only; in another this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, lambda n, frame: _stop_asked.append(n)) for number in STOPPING}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop_if_asked() -> None:
    """Stop the batch, as the signal that came while a recording was being saved would have (Python's
    KeyboardInterrupt for a Ctrl-C, the end of the process for a SIGTERM, or whatever handles it here)."""
    if _stop_asked:
        number = _stop_asked[0]
        _stop_asked.clear()
        log.warning("%s while a recording was being saved: stopping now that it is", signal.Signals(number).name)
        signal.raise_signal(number)


def _failed(file: FileResult, stage: str, cause: Exception) -> None:
    """The file failed at `stage`: why, for its report; the traceback of an unexpected failure to the log."""
    file.status, file.stage = "failed", stage
    if isinstance(cause, AudioError):  # the file is bad, not ohp: its message says which and why
        file.error = str(cause)
        log.info("%s", cause)
    elif isinstance(cause, OhpError):  # ohp's own (the database locked or gone, a conflict): it says what, no bug
        file.error = f"{file.path}: {stage}: {cause}"
        log.info("%s", file.error)
    else:
        file.error = f"{file.path}: {stage}: {type(cause).__name__}: {cause} (the traceback is in the log)"
        log.error("%s: the %s stage failed", file.path, stage, exc_info=cause)


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


@dataclass
class Batch:
    """The files of a batch, and what their steps share."""

    files: list[Path]  # to run, in order
    results: list[FileResult]  # of paths that are not there: reported with the rest
    taken_stems: set[str]  # export file stems that more than one file has
    people: list[PersonRecord]  # the enrolled voices, read once for the batch
    stored: set[Path]  # the files of the recordings the store has transcripts of
    waiting: list[FileResult] = field(default_factory=list)  # read, their files not yet written

    def writes(self, path: Path) -> bool:
        """Whether a file's run writes its transcript files itself: not when its stem is shared, since which
        files take the stem depends on which of them fail."""
        return path.stem not in self.taken_stems

    def finished(self, result: FileResult) -> None:
        self.results.append(result)
        if (result.copy_of or not self.writes(result.path)) and result.status != "failed":
            self.waiting.append(result)

    def write_waiting(self, store: Store, options: RunOptions) -> None:
        """The transcript files of the recordings whose stem another file of the batch has, now that the
        batch knows which files were read."""
        if not (options.out_dir and self.waiting):
            return
        # A closed recording writes no files (access.writes_transcript_files: not those of closed_ids), so it takes
        # no stem either.
        recordings = {r.id: r for r in store.list_recordings()}
        closed = access.closed_ids(recordings.values())
        # The files the recordings are at: a copy of one (FileRun.plan) takes no stem of its own.
        read = {
            Path(recordings[f.recording_id].path)
            for f in self.results
            if f.status != "failed" and f.recording_id is not None and f.recording_id not in closed
        }
        taken = shared_stems(read | self.stored)
        for file in self.waiting:
            assert file.recording_id is not None  # read: saved or found in the store
            try:
                recording = store.recording(file.recording_id)
                export = gather(store, recording, options.codebook) if file.status == "done" else None
                saved_at = 0.0 if export else _saved_at(store.stages(recording.id))
                _write_exports(file, store, recording, export, options.out_dir, options, taken, saved_at)
            except Exception as exc:  # reported against this file; the others' files are written
                _failed(file, "export", exc)


def plan_batch(paths: Sequence[Path | str], store: Store, options: RunOptions) -> Batch:
    files, results = find_audio_files([Path(p) for p in paths])
    # Stems shared by different files get the recording's short hash in their export names. A file that
    # fails takes none: files sharing a stem write theirs once the batch knows which of them were read.
    stored = {Path(p) for p in transcribed_paths(store) if Path(p).exists()}
    people = store.people() if options.speakers else []  # the enrolled voices, read once for the batch
    return Batch(files, results, shared_stems({resolved(f) for f in files} | stored), people, stored)


def run_batch(
    paths: Sequence[Path | str], store: Store, options: RunOptions = RunOptions(), progress: Progress | None = None
) -> BatchReport:
    batch = plan_batch(paths, store, options)
    for index, path in enumerate(batch.files):
        if progress:
            progress.file_started(path, index, len(batch.files))
        result = FileRun(path, store, options, progress, batch.taken_stems, batch.people, batch.writes(path)).process()
        batch.finished(result)
        if progress:
            progress.file_finished(result)
        stop_if_asked()
    batch.write_waiting(store, options)
    return BatchReport(batch.results)
