"""A Ray batch's workers that fail, hang, cannot start or are never started, files that cannot be sent or changed
since they were hashed, and addresses where no cluster answers: each reported with its cause, the batch going on or
ending in time. On a real Ray cluster of this file's own (tests/conftest.py), beside tests/test_cluster.py's."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import ray
import typer

from pipeline.batch import BatchReport, Pass, run_batch
from pipeline.cli import app
from pipeline.cluster.actors import Recogniser
from pipeline.cluster.driver import Cluster, Sizing, check_database, run_on_ray, size_workers
from pipeline.errors import InvalidInputError
from pipeline.process import RunOptions, SpeakerOptions, StageError
from pipeline.stages.audio import probe
from pipeline.store import Store

from conftest import REPO, corpus_path
from raycluster import OHP, OPTIONS, RAY, SHORT, free_port, stored

pytestmark = pytest.mark.slow


def test_a_batch_over_several_machines_needs_postgresql(tmp_path):
    several = Cluster(nodes=2, cpus=16, gpus=0, largest_node_cpus=8, started=0.0)
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        with pytest.raises(InvalidInputError, match=r"ohp\.db: a SQLite file, .* 2 machines: .* needs PostgreSQL"):
            check_database(store, several)
        check_database(store, replace(several, nodes=1))  # one machine: the driver alone writes to the file


def test_workers_are_sized_to_the_cluster():
    cpus = Cluster(nodes=2, cpus=16, gpus=0, largest_node_cpus=8, started=0.0)
    assert size_workers(cpus, OPTIONS, None) == Sizing(16, 1.0, 0.0)  # one per core
    assert size_workers(cpus, OPTIONS, 2) == Sizing(2, 8.0, 0.0)  # the cores shared out, a node's at most
    gpus = replace(cpus, gpus=4)
    assert size_workers(gpus, OPTIONS, None) == Sizing(4, 1.0, 1.0)  # one per GPU, each reserving it
    assert size_workers(gpus, replace(OPTIONS, device="cpu"), 3) == Sizing(3, 5.0, 0.0)
    with pytest.raises(InvalidInputError, match="--workers 5: the Ray cluster has 4 GPUs"):
        size_workers(gpus, OPTIONS, 5)
    with pytest.raises(InvalidInputError, match="--workers 17: the Ray cluster has 16 CPUs"):
        size_workers(cpus, OPTIONS, 17)


def test_the_help_of_workers_gives_the_default_the_driver_uses():
    """`ohp run --help` said one worker per 2 CPU cores, after the default had become one per core."""
    cpus = Cluster(nodes=1, cpus=8, gpus=0, largest_node_cpus=8, started=0.0)
    assert size_workers(cpus, OPTIONS, None).workers == 8  # one per core
    run = typer.main.get_command(app).commands["run"]
    (workers,) = [param for param in run.params if param.name == "workers"]
    assert workers.help.endswith("(default one per GPU, or one per CPU core)")


def test_without_ray_the_run_says_which_extra_to_install(tmp_path):
    hidden = tmp_path / "no-ray"
    (hidden / "ray").mkdir(parents=True)
    (hidden / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    result = subprocess.run(
        [*OHP, "run", str(corpus_path(SHORT[0])), "--ray", "local", "--db", f"sqlite:///{tmp_path / 'ohp.db'}"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(hidden), str(REPO)])},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "ohp run --ray needs Ray" in result.stderr and "pip install 'ohp[cluster]'" in result.stderr
    assert ray.__name__ == "ray"  # the real one, for the other tests


def test_a_workers_models_use_the_cpus_it_reserved_not_every_core(cluster, short_files, cluster_options):
    """Two workers on two cores must not each take both: the CPUs a worker reserves decide the threads of the
    recogniser (CTranslate2), the VAD (onnxruntime) and torch (the speaker encoder), whatever OMP_NUM_THREADS
    it inherited. Run as a task reserving one CPU in a fresh process, which sees what the models were given."""

    def one_pass(cluster_options: RunOptions, path: Path) -> tuple:
        import faster_whisper
        import onnxruntime
        import torch

        from pipeline.batch import Pass
        from pipeline.cluster.actors import Recogniser

        given: list[int] = []
        vad: list[int] = []

        class Recorded(faster_whisper.WhisperModel):
            def __init__(self, *args, **kwargs) -> None:
                given.append(kwargs["cpu_threads"])
                super().__init__(*args, **kwargs)

        class RecordedSession(onnxruntime.InferenceSession):
            def __init__(self, *args, **kwargs) -> None:
                vad.append(kwargs["sess_options"].intra_op_num_threads if "sess_options" in kwargs else None)
                super().__init__(*args, **kwargs)

        faster_whisper.WhisperModel = Recorded
        onnxruntime.InferenceSession = RecordedSession
        outcome = Recogniser(cluster_options, 1).process(Pass(probe(path), [], {}, None))
        assert outcome.result is not None and "speakers" in outcome.result.stages, outcome.traceback
        return given, vad[-1], torch.get_num_threads()  # the VAD's session: the last opened

    ray.init(address=cluster, log_to_driver=False)
    try:
        inherited = {"env_vars": {"OMP_NUM_THREADS": "2"}}
        task = ray.remote(max_calls=1)(one_pass).options(num_cpus=1, runtime_env=inherited)
        recogniser, vad, speaker_encoder = ray.get(
            task.remote(replace(cluster_options, speakers=SpeakerOptions()), short_files[0])
        )
    finally:
        ray.shutdown()
    assert (recogniser, vad, speaker_encoder) == ([1], 1, 1)


def alive_nodes(address: str) -> int:
    ray.init(address=address, log_to_driver=False)
    try:
        return sum(node["Alive"] for node in ray.nodes())
    finally:
        ray.shutdown()


def test_a_cluster_of_two_machines_refuses_a_sqlite_file(cluster, short_files, cluster_options, tmp_path):
    """A second node joins the cluster (a raylet of its own on this machine, as another machine would run
    one: `ray start --address`), with no CPUs so that nothing runs there; the batch is refused before any
    worker starts, and the database is left as it was."""
    join = [RAY, "start", "--block", f"--address={cluster}", "--node-ip-address=127.0.0.1", "--num-cpus=0"]
    node = subprocess.Popen(
        [*join, "--disable-usage-stats"],
        env={**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while alive_nodes(cluster) < 2:
            assert node.poll() is None, "ray start --address failed"
            assert time.monotonic() < deadline, "the second node did not join in 2 minutes"
            time.sleep(0.5)
        db = tmp_path / "ohp.db"
        with Store(f"sqlite:///{db}") as store:
            refused = rf"{re.escape(str(db))}: a SQLite file, and the Ray cluster has 2 machines"
            with pytest.raises(InvalidInputError, match=refused):
                run_on_ray(short_files[:1], store, cluster_options, address=cluster)
            assert store.list_recordings() == []
    finally:
        node.terminate()  # ray start --block stops its raylet, which leaves the cluster
        node.wait(timeout=60)
        while alive_nodes(cluster) > 1 and time.monotonic() < deadline + 120:  # the next test sees one machine
            time.sleep(0.5)


class OddError(Exception):
    """A library's error that does not unpickle: its __init__ takes two arguments, its args hold one."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")


class FailsOddly(Recogniser):
    """A worker whose passes fail with an OddError, raised where a library's would be."""

    def __init__(self, options: RunOptions, number: int) -> None:
        super().__init__(options, number)

        def run(planned: Pass, options: RunOptions, progress: object = None) -> None:
            raise StageError(planned.info.path, "transcribe", OddError(planned.info.path.name, "the decoder gave up"))

        Pass.run = run  # type: ignore[method-assign,assignment]  # in this actor's process only


class CannotStart(Recogniser):
    """A worker that cannot start on its machine (no model cache there, ohp not installed, ...)."""

    def __init__(self, options: RunOptions, number: int) -> None:
        raise RuntimeError("no model cache on this machine")


@pytest.fixture
def fake_worker(monkeypatch):
    """The batch's workers made of a class of this module, which the workers get by value (they do not
    import the tests)."""
    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    try:
        yield lambda worker: monkeypatch.setattr("pipeline.cluster.driver.Recogniser", worker)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)


def in_time(run, seconds: float = 120):
    """run() in a thread, which must end within `seconds`: its result (or what it raised)."""
    outcome: list = []

    def target() -> None:
        try:
            outcome.append(run())
        except BaseException as e:  # handed to the test
            outcome.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def errors_of(report: BatchReport) -> list[str]:
    """The errors of a batch whose files all failed, each checked to hold no traceback (the log has it)."""
    assert [f.status for f in report.files] == ["failed"] * len(report.files), report.files
    for f in report.files:
        assert f.error and "Traceback" not in f.error, f.error
    return [f.error for f in report.files if f.error]


def test_an_error_of_a_pass_that_does_not_unpickle_is_reported_and_the_batch_goes_on(
    cluster, short_files, cluster_options, fake_worker, tmp_path
):
    fake_worker(FailsOddly)
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        report = in_time(lambda: run_on_ray(short_files[:2], store, cluster_options, address=cluster, workers=1))
        for f, error in zip(report.files, errors_of(report), strict=True):
            assert "OddError" in error and f"{f.path.name}: the decoder gave up" in error, error
        assert store.count_segments() == 0  # only the failure is recorded


def test_workers_that_cannot_start_fail_the_batch_with_their_cause_not_hang_it(
    cluster, short_files, cluster_options, fake_worker, tmp_path
):
    fake_worker(CannotStart)
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        report = in_time(lambda: run_on_ray(short_files[:2], store, cluster_options, address=cluster, workers=2))
        for error in errors_of(report):
            assert "no worker could start" in error and "RuntimeError: no model cache on this machine" in error, error


def test_workers_whose_models_cannot_load_fail_the_batch_with_the_cause_not_hang_it(
    cluster, short_files, cluster_options, tmp_path
):
    """The workers load their models before they take a recording: models that cannot load on their machine (here
    a folder without weights) leave the workers out, and the files are reported with the loader's error."""
    (tmp_path / "no-weights").mkdir()
    missing = replace(
        cluster_options, transcribe=replace(cluster_options.transcribe, model=str(tmp_path / "no-weights"))
    )
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        report = in_time(lambda: run_on_ray(short_files[:2], store, missing, address=cluster, workers=2))
        for error in errors_of(report):
            assert "no worker could start" in error and "model.bin" in error and "\n" not in error, error


def test_a_wrong_cluster_address_is_the_users_error(short_files, cluster_options, tmp_path):
    refused = pytest.raises(InvalidInputError, match=r"--ray nonsense: .*Invalid address format")
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store, refused:
        run_on_ray(short_files[:1], store, cluster_options, address="nonsense")


def backwards(source: Path, target: Path) -> None:
    """A WAV file of the same size as `source` with other bytes: its samples (16-bit) in reverse order."""
    data = source.read_bytes()
    start = data.index(b"data") + 8
    samples = [data[i : i + 2] for i in range(start, len(data) - 1, 2)]
    target.write_bytes(data[:start] + b"".join(reversed(samples)) + data[start + 2 * len(samples) :])


def test_a_file_that_changed_since_it_was_hashed_is_not_saved_under_its_old_identity(
    cluster, short_files, cluster_options, tmp_path
):
    """The driver hashes a file when a worker is free for it; the worker reads it afterwards. Where it has
    changed since (rewritten in place, the same size), or the worker's machine has another file at that path,
    the worker must not transcribe what it finds as the recording the driver hashed."""
    from pipeline.batch import FileRun, plan_batch
    from pipeline.cluster.driver import Driver, Job

    here = tmp_path / "here.wav"
    backwards(short_files[0], here)
    assert here.stat().st_size == short_files[0].stat().st_size and probe(here).sha256 != probe(short_files[0]).sha256
    ray.init(address=cluster, log_to_driver=False)
    try:
        # The worker's machine has another file of the same size where the driver's is: it asks for the bytes.
        worker = ray.remote(Recogniser).remote(cluster_options, 1)
        asked = ray.get(worker.process.remote(Pass(replace(probe(short_files[0]), path=here), [], {}, None)))
        assert asked.needs_audio and asked.result is None

        # The driver's own file changed after it was hashed: reported, nothing saved.
        changed = tmp_path / "changed.wav"
        shutil.copy(short_files[0], changed)
        with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
            batch = plan_batch([changed], store, cluster_options)
            run = FileRun(changed, store, cluster_options, None, batch.taken_stems, batch.people, False)
            job = Job(0, changed, run, run.plan())
            backwards(short_files[0], changed)
            Driver(store, cluster_options, None, batch, Sizing(1, 1.0, 0.0)).run([job])
            assert job.file.status == "failed" and job.file.error, job.file
            assert "changed since" in job.file.error and job.file.error.startswith(str(changed))
            assert store.list_recordings() == []
    finally:
        ray.shutdown()


def test_the_traceback_of_a_pass_that_failed_on_a_worker_is_in_the_drivers_log(
    cluster, short_files, cluster_options, fake_worker, tmp_path, caplog
):
    """The report says "the traceback is in the log": the driver's, where the worker's is (the workers' own
    logs stay on their machines)."""
    fake_worker(FailsOddly)
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store, caplog.at_level(logging.ERROR, "pipeline.batch"):
        [failed] = in_time(
            lambda: run_on_ray(short_files[:1], store, cluster_options, address=cluster, workers=1)
        ).files
    assert failed.error and failed.error.endswith("(the traceback is in the log)")
    [logged] = [r for r in caplog.records if r.name == "pipeline.batch" and r.exc_info]
    text = logging.Formatter().formatException(logged.exc_info)  # type: ignore[arg-type]
    assert "on worker 1 on " in text and "Traceback (most recent call last)" in text
    assert 'raise StageError(planned.info.path, "transcribe"' in text, text


class HangsOnTheFirst(Recogniser):
    """A worker whose pass hangs on the batch's first short file (a decoder waiting for ever) and runs the
    others."""

    def __init__(self, options: RunOptions, number: int) -> None:
        super().__init__(options, number)
        run = Pass.run

        def hanging(planned: Pass, options: RunOptions, progress: object = None) -> object:
            if planned.info.path.name == Path(SHORT[0]).name:
                time.sleep(3600)
            return run(planned, options, progress)

        Pass.run = hanging  # type: ignore[method-assign]  # in this actor's process only


def test_a_worker_that_hangs_is_stopped_its_file_reported_and_the_batch_goes_on(
    cluster, short_files, cluster_options, fake_worker, tmp_path, monkeypatch
):
    fake_worker(HangsOnTheFirst)
    # A pass is taken to hang after its allowance and so many times its recording's length: here 8 s and none.
    monkeypatch.setattr("pipeline.cluster.driver.HANG_ALLOWANCE", 8.0)
    monkeypatch.setattr("pipeline.cluster.driver.HANG_FACTOR", 0.0)
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        report = in_time(lambda: run_on_ray(short_files[:2], store, cluster_options, address=cluster, workers=1), 120)
        hung, done = report.files
        assert hung.status == "failed" and hung.error, hung
        assert "no answer from its worker in 8 s, 2 times" in hung.error and "\n" not in hung.error, hung.error
        assert done.status == "done" and done.worker and done.worker.startswith("worker 1 on ")


def until(condition, seconds: float = 120) -> None:
    """Wait for condition() to hold, at most `seconds` (then go on: the test's assertions say what went wrong)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


class LateAndFailing(Recogniser):
    """A worker whose pass over a file in a folder named "copy" (a second path of a recording of the batch) starts
    only once that recording's checkpoint has come and gone (its first path saved, its checkpoint removed), so that
    the copy's chunks are written after the driver's cleanup; and whose pass over the batch's second short file
    fails after transcribing it, its chunks in its checkpoint."""

    def __init__(self, options: RunOptions, number: int) -> None:
        super().__init__(options, number)
        run, partial = Pass.run, self.options.home / "partial"

        def late_or_failing(planned: Pass, options: RunOptions, progress: object = None) -> object:
            if planned.info.path.parent.name == "copy":
                kept = lambda: list(partial.glob(f"{planned.info.sha256}-*.jsonl"))  # noqa: E731
                until(lambda: bool(kept()))
                until(lambda: not kept())
            result = run(planned, options, progress)
            if planned.info.path.name == Path(SHORT[1]).name:
                raise StageError(planned.info.path, "speakers", RuntimeError("the speaker encoder gave up"))
            return result

        Pass.run = late_or_failing  # type: ignore[method-assign,assignment]  # in this actor's process only


def test_no_checkpoint_outlives_its_recording_on_the_workers(
    cluster, short_files, cluster_options, fake_worker, own_ohp_home, tmp_path
):
    """A recording saved, one that failed after its chunks were kept, and a second path of the first, whose
    pass would write its chunks after the first was saved: once the batch is over, none has a checkpoint left."""
    fake_worker(LateAndFailing)
    copy = tmp_path / "copy" / short_files[0].name
    copy.parent.mkdir()
    shutil.copy(short_files[0], copy)
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        report = in_time(
            lambda: run_on_ray(
                [short_files[0], copy, short_files[1]], store, cluster_options, address=cluster, workers=2
            )
        )
        saved, again, failed = report.files
        assert (saved.status, again.status, failed.status) == ("done", "skipped", "failed"), report.files
        assert again.worker is None  # transcribed once
        assert failed.error and "the speaker encoder gave up" in failed.error
    recordings = {probe(f).sha256 for f in short_files[:2]}
    left = [p.name for p in (own_ohp_home / "partial").glob("*.jsonl") if p.name.split("-")[0] in recordings]
    assert left == []


def test_a_worker_the_cluster_never_starts_fails_the_batch_in_time_not_hangs_it(
    cluster, short_files, cluster_options, tmp_path, monkeypatch
):
    """A worker asking for more than any machine has (here 3 CPUs of a machine of two) is never started by Ray,
    which keeps it pending without an error: the batch gives up on it after START_TIMEOUT (here 5 s), and what
    the store has stays as it was (a recording transcribed before, which --force would have done again)."""
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        assert [f.status for f in run_batch(short_files[:1], store, cluster_options).files] == ["done"]
        before = stored(store)
        monkeypatch.setattr("pipeline.cluster.driver.size_workers", lambda *args: Sizing(1, 3.0, 0.0))
        monkeypatch.setattr("pipeline.cluster.driver.START_TIMEOUT", 5.0)
        forced = replace(cluster_options, force=True)
        report = in_time(lambda: run_on_ray(short_files[:2], store, forced, address=cluster))
        for error in errors_of(report):
            assert "no worker could start" in error and "\n" not in error, error
            assert "worker 1 was not started in 5 s" in error and "3 CPUs" in error, error
        assert stored(store) == before
        [recording] = store.list_recordings()
        assert {s.stage: s.status for s in store.stages(recording.id)} == {"transcribe": "done"}


def test_an_address_where_no_cluster_answers_is_refused_at_once(short_files, cluster_options, tmp_path):
    """Ray itself tries an address that does not answer for minutes, writing warnings as it goes."""
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    refused = pytest.raises(InvalidInputError, match=rf"--ray {re.escape(address)}: no Ray cluster answers there")
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store, refused:
        in_time(lambda: run_on_ray(short_files[:1], store, cluster_options, address=address), 60)
    assert time.monotonic() - started < 30


def test_a_cluster_that_refuses_the_driver_is_not_said_to_be_absent(
    short_files, cluster_options, tmp_path, monkeypatch
):
    """A Ray with token authentication (2.52 and later) takes the connection and refuses a driver without its
    token: after 20 s, Ray's ConnectionError says only that it failed to connect."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"

        def refusing(**kwargs: object) -> None:
            raise ConnectionError(f"Failed to connect to Ray cluster at {address}")

        monkeypatch.setattr(ray, "init", refusing)
        refused = pytest.raises(InvalidInputError, match=r"refused this driver.*RAY_AUTH_TOKEN")
        with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store, refused:
            run_on_ray(short_files[:1], store, cluster_options, address=address)
