"""The cluster's workers: each a Ray actor that runs one recording's pass at a time (pipeline.process) and
hands back its result as a plain record. No database here: the driver saves (pipeline.cluster.driver)."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import ray

from pipeline.batch import Pass
from pipeline.config import Config
from pipeline.process import Checkpoint, RunOptions, StageError, load_models
from pipeline.records import AudioInfo, RecordingResult
from pipeline.stages.audio import AudioError, file_sha256
from pipeline.utils import private_folder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Where:
    """A worker: its number in the batch, its node, and its process."""

    number: int
    node_id: str
    node: str  # the node's address
    pid: int

    def __str__(self) -> str:
        return f"worker {self.number} on {self.node}"


@dataclass
class Outcome:
    """What a worker hands back for a recording: its result, or the error of its pass (with the traceback as
    the worker saw it), or that it cannot read the file and needs its bytes."""

    where: Where
    result: RecordingResult | None = None
    error: Exception | None = None
    traceback: str = ""
    needs_audio: bool = False


def readable(info: AudioInfo) -> bool:
    """Whether this machine sees the file the driver probed: the same path, of the same bytes. Its sha256 is
    checked, not only its size: a file rewritten since the driver hashed it, or another machine's file at that
    path, would be transcribed and saved as the recording the driver hashed."""
    try:
        same_size = info.path.is_file() and info.path.stat().st_size == info.size_bytes
        return same_size and file_sha256(info.path) == info.sha256
    except OSError:
        return False


def reserved_threads() -> int:
    """The CPU threads a worker's models may use: the CPUs its actor reserved (Ray's num_cpus), at least one.
    Not the machine's cores: the other workers on the machine use theirs."""
    return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))


class Recogniser:
    """A worker. Its models load before it says it is ready and stay loaded (the engines are cached per process).
    Run options come whole from the driver; half-done transcripts are kept in this machine's own model cache
    (OHP_HOME), where its weights are. Its models run on as many threads as the CPUs it reserved."""

    def __init__(self, options: RunOptions, number: int) -> None:
        # Every model (recogniser, VAD, speaker encoder) takes them from the options.
        self.options = replace(options, home=Config.load().home, threads=reserved_threads())
        self.number = number

    def ready(self) -> Where:
        """Where this worker is, once its models are loaded: the driver counts each pass's time from then on."""
        load_models(self.options)
        return self.where()

    def where(self) -> Where:
        context = ray.get_runtime_context()
        return Where(self.number, context.get_node_id(), ray.util.get_node_ip_address(), os.getpid())

    def process(self, planned: Pass, audio: bytes | None = None) -> Outcome:
        """The recording's pass. The file is read by its path when this machine sees it; else from `audio`,
        its bytes, which the driver sends through Ray's object store when asked (needs_audio)."""
        where = self.where()
        if audio is None and not readable(planned.info):
            return Outcome(where, needs_audio=True)
        if audio is not None and hashlib.sha256(audio).hexdigest() != planned.info.sha256:
            # The driver's file itself changed after it was hashed: its pass is not that recording's.
            changed = AudioError(planned.info.path, "changed since this batch read it: run the batch again for it")
            return Outcome(where, error=StageError(planned.info.path, "send", changed))
        try:
            if audio is None:
                return Outcome(where, planned.run(self.options))
            with private_folder(Path(tempfile.gettempdir())) as folder:
                copy = folder / planned.info.path.name
                copy.write_bytes(audio)
                try:
                    result = replace(planned, info=replace(planned.info, path=copy)).run(self.options)
                except Exception as exc:
                    raise _named(exc, planned.info.path) from exc
                result.info = replace(result.info, path=planned.info.path)
                return Outcome(where, result)
        except Exception as exc:  # the driver reports it against the file, and the batch goes on
            log.exception("%s: the pass failed on %s", planned.info.path, where)
            return Outcome(where, error=portable(exc), traceback=traceback.format_exc())


def forget(info: AudioInfo, settings_key: str) -> None:
    """The recording is finished (saved, or failed for good): its half-done transcript on this machine goes. A
    Ray task of its own on each machine, not a worker's method: a worker's would wait behind the pass it runs, and
    be lost when the batch stops its workers."""
    Checkpoint(info, settings_key, Config.load().home).remove()


class WorkerError(Exception):
    """An error of a worker's pass whose class would not come back through Ray whole (a library's exception
    whose __init__ does not take its args back): its type's name and its message."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name, self.message = name, message

    def __reduce__(self) -> tuple:
        return type(self), (self.name, self.message)


def portable(exc: Exception) -> Exception:
    """The error as it travels to the driver: itself when it unpickles, else a WorkerError saying what it was
    (a StageError keeps its file and stage). Ray would fail to read the whole answer back on the driver."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        if isinstance(exc, StageError):
            return StageError(exc.path, exc.stage, portable(exc.cause))
        return WorkerError(type(exc).__name__, str(exc))


def _named(exc: Exception, path: Path) -> Exception:
    """The error of a pass over a copy of the file, naming the file itself."""
    if not isinstance(exc, StageError):
        return exc
    cause = AudioError(path, exc.cause.cause) if isinstance(exc.cause, AudioError) else exc.cause
    return StageError(path, exc.stage, cause)
