"""The driver of a cluster batch: connects to Ray, starts the workers, hands each one recording at a time,
and saves each result as it comes back, through the single-process batch's own steps (batch.FileRun).

A worker whose process or node dies is restarted by Ray (max_restarts); the recording it was working on
goes back to the front of the queue, to whichever worker is free first, once more at most; so does one whose
pass hangs (no answer long past its recording's length), its worker restarted. A worker loads its models before
it is ready. One that cannot start (its __init__ fails on its machine, or its models cannot load), or that Ray
has not started, its models loaded, in START_TIMEOUT (no machine has the CPUs or GPUs it asks for free, or its
restart finds none), is not used; when none can, the files are reported failed with its cause. Each result is
saved once, by this process, in one transaction, so a retried recording is never stored twice; Ctrl-C cancels what
runs on the workers and leaves what was saved as it is.

A recording's pass keeps its finished chunks in a checkpoint on its worker's machine. Once the recording is
finished (saved, or failed for good) its checkpoint is removed on every machine of the cluster (a try on a worker
that died may have left one on another); a second path of a recording waits for the first's pass and that removal,
so no pass writes a checkpoint that a removal has gone past, and none being written is removed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ObjectLostError, RayActorError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import pipeline
from pipeline.batch import Batch, BatchReport, FileResult, FileRun, Pass, Progress, plan_batch, stop_if_asked
from pipeline.cluster.actors import Outcome, Recogniser, Where, forget
from pipeline.errors import InvalidInputError
from pipeline.process import RunOptions, StageError
from pipeline.store import Store

log = logging.getLogger(__name__)

LOCAL = "local"  # --ray local: a Ray of this machine only, started for the batch and stopped after it
CORES_PER_WORKER = 1  # on CPUs, one worker per core: two one-thread workers beat one of two threads (bench/scale.py)
ATTEMPTS = 2  # a recording whose worker died is tried once more; twice lost, it is reported as failed
# Waiting for the workers in steps this long: a Ctrl-C is acted on between two (Ray's wait does not return
# for it), not once the recordings on the workers are finished.
WAIT_SECONDS = 0.5
# A pass with no answer after HANG_ALLOWANCE seconds and HANG_FACTOR times its recording's length is taken to hang
# (a decoder waiting for ever): its worker is restarted and the recording tried again (ATTEMPTS). Its worker's
# models are loaded before the worker is ready (START_TIMEOUT), not in its passes' time. Generous: a one-thread
# worker on a large model is a few times slower than real time, and a busy machine slower still.
HANG_ALLOWANCE = 900.0
HANG_FACTOR = 20.0
# A worker that Ray has not started START_TIMEOUT seconds after it was asked for (or restarted) is not used: Ray
# keeps an actor that no machine has room for pending, without an error. Room for an autoscaler to add a machine
# (a few minutes); a worker's start itself, its models loading, takes seconds.
START_TIMEOUT = 600.0


@dataclass
class Cluster:
    """What the driver knows of the Ray cluster it is connected to."""

    nodes: int
    cpus: float
    gpus: float
    largest_node_cpus: float
    started: float  # seconds that connecting (and, for a local Ray, starting it) took


@contextmanager
def connect(address: str) -> Iterator[Cluster]:
    """Connected to the Ray cluster at `address` (or a new local one) while the block runs. A local Ray's
    workers import the same ohp as this process."""
    started = time.monotonic()
    if address == LOCAL:
        package_root = str(Path(pipeline.__file__).resolve().parents[1])
        paths = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        ray.init(
            address="local",
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": paths}},
        )
    else:
        answers = check_answers(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as e:
            if answers:  # something there took the connection: a Ray that would not have this driver
                raise InvalidInputError(
                    f"--ray {address}: the Ray cluster there refused this driver ({e}): a cluster with token "
                    "authentication (Ray 2.52 and later) needs its token here, in ~/.ray/auth_token or "
                    "RAY_AUTH_TOKEN; and the driver needs the cluster's Ray version"
                ) from e
            raise InvalidInputError(f"--ray {address}: no Ray cluster answers there ({e})") from e
        except ValueError as e:  # Ray's word on an address it cannot use: "Invalid address format", ray:// ...
            raise InvalidInputError(f"--ray {address}: {e}") from e
    try:
        alive = [n for n in ray.nodes() if n["Alive"]]
        resources = ray.cluster_resources()
        yield Cluster(
            nodes=len(alive),
            cpus=resources.get("CPU", 0.0),
            gpus=resources.get("GPU", 0.0),
            largest_node_cpus=max((n["Resources"].get("CPU", 0.0) for n in alive), default=0.0),
            started=time.monotonic() - started,
        )
    finally:
        ray.shutdown()  # the batch's workers go with it


def check_answers(address: str, seconds: float = 10.0) -> bool:
    """Refuse at once an address HOST:PORT where nothing listens (Ray tries one for minutes, with warnings);
    whether it was checked."""
    host, _, port = address.rpartition(":")
    if not (host and port.isdigit()):
        return False  # not HOST:PORT (auto, ray://...): Ray says what it makes of it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=seconds).close()
    except OSError as e:
        raise InvalidInputError(f"--ray {address}: no Ray cluster answers there ({e.strerror or e})") from e
    return True


def check_database(store: Store, cluster: Cluster) -> None:
    """A batch over several machines keeps its results where all of them, and the people who work on the
    results, can reach: PostgreSQL. A SQLite file lives on one machine's disk (and its locking is not safe
    on a network file system)."""
    if cluster.nodes > 1 and store.dialect == "sqlite":
        raise InvalidInputError(
            f"{store.url}: a SQLite file, and the Ray cluster has {cluster.nodes} machines: a batch over several "
            "machines needs PostgreSQL (--db postgresql+psycopg://user@host/ohp)"
        )


@dataclass(frozen=True)
class Sizing:
    workers: int
    cpus: float  # reserved for each worker
    gpus: float


def size_workers(cluster: Cluster, options: RunOptions, workers: int | None) -> Sizing:
    """How many workers, and what each reserves: a GPU each when the models run on CUDA (and `auto` does
    where the cluster has GPUs), one worker per GPU by default; else one per CORES_PER_WORKER cores, the
    cluster's cores shared out among them."""
    on_gpu = options.device == "cuda" or (options.device == "auto" and cluster.gpus >= 1)
    if on_gpu:
        count = workers or int(cluster.gpus)
        if count > cluster.gpus:
            raise InvalidInputError(
                f"--workers {count}: the Ray cluster has {cluster.gpus:g} GPUs, one for each worker on CUDA"
            )
        return Sizing(count, 1.0, 1.0)
    count = workers or max(1, int(cluster.cpus // CORES_PER_WORKER))
    if count > cluster.cpus:
        raise InvalidInputError(f"--workers {count}: the Ray cluster has {cluster.cpus:g} CPUs, one at least each")
    return Sizing(count, float(max(1, min(cluster.cpus // count, cluster.largest_node_cpus))), 0.0)


@dataclass
class Job:
    """A file of the batch on its way: planned here when a worker is free for it, its pass on a worker,
    saved here."""

    index: int
    path: Path
    run: FileRun | None = None  # its steps, from when it is planned
    planned: Pass | None = None
    sent: Pass | None = None  # the pass last sent to a worker, whose chunks a checkpoint there may keep
    attempts: int = 0
    hung: float = 0.0  # the seconds after which its pass was taken to hang, and its worker stopped

    @property
    def file(self) -> FileResult:
        assert self.run is not None
        return self.run.file


@dataclass
class Worker:
    actor: Any  # the Ray actor handle of a Recogniser
    number: int
    where: Where | None = None  # known once it answers


def run_on_ray(
    paths: Sequence[Path | str],
    store: Store,
    options: RunOptions,
    progress: Progress | None = None,
    *,
    address: str,
    workers: int | None = None,
) -> BatchReport:
    """The batch over a Ray cluster (or a local Ray): the same results, skips and failures as
    batch.run_batch, each file's result telling which worker did it."""
    batch = plan_batch(paths, store, options)
    if not batch.files:
        return BatchReport(batch.results)
    with connect(address) as cluster:
        check_database(store, cluster)
        sizing = size_workers(cluster, options, workers)
        log.info(
            "Ray cluster of %d node(s), %g CPUs, %g GPUs, connected in %.1f s; %s",
            *(cluster.nodes, cluster.cpus, cluster.gpus, cluster.started, sizing),
        )
        jobs = [Job(index, path) for index, path in enumerate(batch.files)]
        Driver(store, options, progress, batch, sizing).run(jobs)
    for job in jobs:
        batch.finished(job.file)
    batch.write_waiting(store, options)
    return BatchReport(batch.results)


class Driver:
    def __init__(
        self, store: Store, options: RunOptions, progress: Progress | None, batch: Batch, sizing: Sizing
    ) -> None:
        self.store, self.options, self.progress, self.batch, self.sizing = store, options, progress, batch, sizing
        remote = ray.remote(Recogniser).options(
            num_cpus=sizing.cpus, num_gpus=sizing.gpus, max_restarts=-1, max_task_retries=0
        )
        self.workers = [Worker(remote.remote(options, number), number) for number in range(1, sizing.workers + 1)]
        self.saved_sha256: set[str] = set()
        self.nodes_seeing_files: dict[str, bool] = {}  # by node id; a node not in it is taken to see them
        self.broken: list[str] = []  # why each worker that could not start did not
        self.forget = ray.remote(num_cpus=0)(forget)  # a checkpoint's removal, on a machine given
        self.forgetting: dict[ray.ObjectRef, Job] = {}  # the removals under way, of each finished job's checkpoints

    def run(self, jobs: list[Job]) -> None:
        queue = deque(jobs)
        idle: deque[Worker] = deque()
        waiting: dict[ray.ObjectRef, tuple[Worker, Job | None]] = {}
        deadlines: dict[ray.ObjectRef, float] = {}  # of the workers starting and the passes under way
        for worker in self.workers:
            self._ask_ready(worker, waiting, deadlines)
        try:
            while queue or any(job for _, job in waiting.values()):
                self._wait_forgetting(0.0)
                held: list[Job] = []
                while queue and idle:
                    next_job = queue.popleft()
                    if self._stale(next_job) and not self._plan(next_job):
                        continue
                    assert next_job.planned is not None
                    if next_job.planned.info.sha256 in self._under_way(waiting):
                        held.append(next_job)  # the same recording by another path: after it is finished
                        continue
                    sent = self._submit(idle[0], next_job)
                    if sent is not None:
                        waiting[sent] = (idle.popleft(), next_job)
                        deadlines[sent] = time.monotonic() + self._patience(next_job)
                queue.extendleft(reversed(held))
                if not waiting:  # nothing on the workers: only a checkpoint's removal holds a recording back
                    self._wait_forgetting(WAIT_SECONDS)
                    continue
                ready, _ = ray.wait(list(waiting), num_returns=1, timeout=WAIT_SECONDS)
                for answered in ready:
                    deadlines.pop(answered, None)
                self._stop_late(queue, waiting, deadlines)  # every turn: the other workers' answers may never stop
                if not ready:
                    continue
                [ref] = ready
                worker, job = waiting.pop(ref)
                try:
                    answer = ray.get(ref)
                except (RayActorError, ObjectLostError) as e:
                    if isinstance(e, RayActorError) and e.actor_init_failed:
                        # It cannot start on its machine (ohp or its models missing there): Ray does not
                        # restart it, and asking it again would go round for ever.
                        log.error("a worker could not start: %s", e)
                        if job:
                            queue.appendleft(job)
                        self._not_started(last_line(e), queue)
                        continue
                    # Ray restarts the worker; it rejoins when it answers. Its recording (or the result that
                    # was lost with its node) goes to whoever is free.
                    log.warning("%s died (%s)", worker.where or "a worker", e)
                    self._ask_ready(worker, waiting, deadlines)
                    if job:
                        self._lost(job, queue, e)
                    continue
                except RayError as e:  # its answer could not be read back here: reported, the batch goes on
                    if job:
                        idle.append(worker)
                        self._unreadable(job, e)
                    else:  # it could not load its models, or cannot tell where it is: not used
                        log.error("a worker could not get ready: %s", e)
                        self._not_started(last_line(e), queue)
                    continue
                idle.append(worker)
                if job is None:
                    worker.where = answer
                    log.info("%s ready (pid %d)", answer, answer.pid)
                elif answer.needs_audio:
                    self.nodes_seeing_files[answer.where.node_id] = False
                    queue.appendleft(job)
                else:
                    self._save(job, answer)
                    stop_if_asked()
        finally:  # done, or stopped (Ctrl-C): what runs on the workers stops, what was saved stays
            for worker in self.workers:
                ray.kill(worker.actor)
            # The finished recordings' checkpoints go before the batch ends (with a local Ray, the machine's Ray).
            self._wait_forgetting(START_TIMEOUT)

    def _start(self, job: Job) -> FileRun:
        if self.progress:
            self.progress.file_started(job.path, job.index, len(self.batch.files))
        job.run = FileRun(
            job.path,
            self.store,
            self.options,
            None,
            self.batch.taken_stems,
            self.batch.people,
            self.batch.writes(job.path),
        )
        return job.run

    def _stale(self, job: Job) -> bool:
        """Whether the job is to be planned: not yet, or planned before its recording was saved by another path
        of the batch (then, as in the single-process batch, it is skipped unless --force)."""
        if job.planned is None:
            return True
        return job.planned.info.sha256 in self.saved_sha256 and not self.options.force

    def _plan(self, job: Job) -> bool:
        """Probe the file and look it up: whether it needs a pass (if not, it is finished: skipped or failed)."""
        run = job.run or self._start(job)
        with run.reporting():
            job.planned = run.plan()
        if job.planned is None:
            self._finished(job)
        return job.planned is not None

    def _submit(self, worker: Worker, job: Job) -> ray.ObjectRef | None:
        """The job's pass started on the worker; None if its bytes, for a worker that does not see the file,
        could not be read or put in the object store (gone since it was hashed, larger than the store): the
        file is reported as failed, and the batch goes on."""
        assert job.planned is not None and job.run is not None and worker.where is not None
        audio = None
        if not self.nodes_seeing_files.get(worker.where.node_id, True):
            job.run.stage = "send"
            with job.run.reporting():
                audio = ray.put(job.planned.info.path.read_bytes())
            if audio is None:
                self._finished(job)
                return None
        log.info("%s: to %s, pid %d", job.path, worker.where, worker.where.pid)
        job.sent = job.planned
        return worker.actor.process.remote(job.planned, audio)

    def _ask_ready(
        self, worker: Worker, waiting: dict[ray.ObjectRef, tuple[Worker, Job | None]], deadlines: dict
    ) -> None:
        """Ask a worker starting (or restarting) to get ready (its models loaded) and say where it is, by
        START_TIMEOUT."""
        asked = worker.actor.ready.remote()
        waiting[asked] = (worker, None)
        deadlines[asked] = time.monotonic() + START_TIMEOUT

    def _not_started(self, why: str, queue: deque[Job]) -> None:
        """A worker is not used; when none is left, the files not finished are reported failed."""
        self.broken.append(why)
        if len(self.broken) == len(self.workers):
            while queue:
                self._unsent(queue.popleft(), f"no worker could start ({self.broken[0]})")

    def _unsent(self, job: Job, why: str) -> None:
        """A file that no worker can take: reported as failed."""
        run = job.run or self._start(job)
        run.stage = "send"
        with run.reporting():
            raise WorkerLost(f"{job.path}: {why}")
        self._finished(job)

    def _patience(self, job: Job) -> float:
        assert job.planned is not None
        return HANG_ALLOWANCE + HANG_FACTOR * job.planned.info.duration

    def _stop_late(
        self, queue: deque[Job], waiting: dict[ray.ObjectRef, tuple[Worker, Job | None]], deadlines: dict
    ) -> None:
        """Give up on the workers not started by their deadline, and restart those of the passes past theirs:
        each pass then ends as its worker's death."""
        now = time.monotonic()
        for ref, deadline in list(deadlines.items()):
            if now <= deadline:
                continue
            del deadlines[ref]
            worker, job = waiting[ref]
            if job is None:
                del waiting[ref]
                ray.kill(worker.actor)  # its request for a machine's CPUs (or GPUs) goes with it
                cpus, gpus = self.sizing.cpus, self.sizing.gpus
                wanted = f"{cpus:g} CPUs" + (f" and {gpus:g} GPUs" if gpus else "")
                why = (
                    f"worker {worker.number} was not started in {START_TIMEOUT:.0f} s: no machine of the Ray "
                    f"cluster had {wanted} free for it, or it did not come up there"
                )
                log.error("%s", why)
                self._not_started(why, queue)
                continue
            job.hung = self._patience(job)
            log.warning("%s: no answer from %s in %.0f s: restarting it", job.path, worker.where, job.hung)
            ray.kill(worker.actor, no_restart=False)

    def _lost(self, job: Job, queue: deque[Job], error: Exception) -> None:
        job.attempts += 1
        # Ray's message runs over several lines (the actor's ids, its pid, ...): the log has it whole.
        why = f"no answer from its worker in {job.hung:.0f} s" if job.hung else "its worker died"
        job.hung = 0.0
        if job.attempts < ATTEMPTS:
            log.warning("%s: %s; trying again on another", job.path, why)
            queue.appendleft(job)
            return
        assert job.run is not None
        last = str(error).strip().splitlines()[-1:] or [type(error).__name__]
        with job.run.reporting():
            raise WorkerLost(f"{job.path}: {why}, {job.attempts} times ({last[0].strip()})")
        self._finished(job)

    def _unreadable(self, job: Job, error: RayError) -> None:
        assert job.run is not None
        log.error("%s: the answer of its worker could not be read", job.path, exc_info=error)
        first = str(error).strip().splitlines()[0]  # the rest is Ray's traceback, in the log
        with job.run.reporting():
            raise WorkerLost(f"{job.path}: its worker's answer could not be read back ({first})")
        self._finished(job)

    def _save(self, job: Job, outcome: Outcome) -> None:
        run, planned = job.run, job.planned
        assert run is not None and planned is not None
        run.file.worker = str(outcome.where)
        with run.reporting():
            if outcome.error is not None:
                # On the cause of a stage's failure, which is what the batch logs (batch._failed).
                error = outcome.error
                logged = error.cause if isinstance(error, StageError) else error
                logged.add_note(f"on {outcome.where} (pid {outcome.where.pid}):\n{outcome.traceback}")
                raise outcome.error
            assert outcome.result is not None
            run.save(planned, outcome.result)
            self.saved_sha256.add(planned.info.sha256)
        self._finished(job)

    def _finished(self, job: Job) -> None:
        if job.sent is not None:
            self._forget(job)
        if self.progress:
            self.progress.file_finished(job.file)

    def _forget(self, job: Job) -> None:
        """Remove the finished job's checkpoint on every machine of the cluster: its tries may have left one on
        the machines of workers that died, or a run stopped before this one on any."""
        assert job.sent is not None
        info, key = job.sent.info, job.sent.checkpoint_key(self.options)
        for node in ray.nodes():
            if node["Alive"]:
                on_node = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
                self.forgetting[self.forget.options(scheduling_strategy=on_node).remote(info, key)] = job

    def _wait_forgetting(self, seconds: float) -> None:
        """Let the checkpoint removals under way finish, for `seconds` at most (in steps of WAIT_SECONDS, so that a
        Ctrl-C is acted on); one that failed is logged."""
        deadline = time.monotonic() + seconds
        while self.forgetting:
            step = min(WAIT_SECONDS, max(0.0, deadline - time.monotonic()))
            done, _ = ray.wait(list(self.forgetting), num_returns=len(self.forgetting), timeout=step)
            for ref in done:
                job = self.forgetting.pop(ref)
                try:
                    ray.get(ref)
                except RayError as e:
                    log.warning("%s: its checkpoint on a machine of the cluster was not removed: %s", job.path, e)
            if time.monotonic() >= deadline:
                break
        if seconds and self.forgetting:
            log.warning("%d checkpoint removals not done in %.0f s", len(self.forgetting), seconds)

    def _under_way(self, waiting: dict[ray.ObjectRef, tuple[Worker, Job | None]]) -> set[str]:
        """The recordings (sha256) whose passes are on the workers or whose checkpoints are being removed."""
        jobs = [job for _, job in waiting.values() if job] + list(self.forgetting.values())
        return {job.sent.info.sha256 for job in jobs if job.sent is not None}


def last_line(error: RayError) -> str:
    """Why a worker's __init__ or its getting ready failed: Ray's message ends with its traceback, whose last line
    is the exception and its message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


class WorkerLost(Exception):
    """A recording whose workers kept dying on it (out of memory, say)."""
