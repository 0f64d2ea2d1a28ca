"""Batches on a real Ray cluster (`ohp run --ray`): started here on 127.0.0.1 with two CPUs, so two workers.

The cluster's processes import this checkout's pipeline (PYTHONPATH) and use the session's model cache
(OHP_HOME, set before the cluster starts). It is started with `ray start --block` and stopped by ending that
process, which takes down the processes it started and no other Ray on the machine (`ray stop` would stop
them all)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import ray
import typer

from pipeline.batch import Pass, run_batch
from pipeline.cli import app
from pipeline.cluster.actors import Recogniser
from pipeline.cluster.driver import Cluster, Sizing, check_database, run_on_ray, size_workers
from pipeline.errors import InvalidInputError
from pipeline.process import RunOptions, SpeakerOptions, StageError
from pipeline.stages.audio import ffmpeg_exe, probe
from pipeline.store import Store

from conftest import POSTGRESQL_ONLY, REPO, SQLITE_ONLY, corpus_path

pytestmark = pytest.mark.slow

SHORT = [
    "zh/FireRedTeam_FireRedASR__examples_wav_IT0011W0001.wav",  # 2 s
    "zh/FireRedTeam_FireRedASR__examples_wav_BAC009S0764W0121.wav",  # 4.2 s
    "en/k2-fsa_sherpa___static_sense-voice_en.wav",  # 7.2 s
]
# 70 s of Mandarin, of which the first 40 s (long_clip) make two chunks (26 s and 13 s): long enough to kill
# its worker in the middle of it.
LONG = (
    "zh/modelscope_FunASR__funasr_runtime_csharp_AliFsmnVad.Examples_speech_fsmn_vad_"
    "zh-cn-16k-common-onnx_example_0.wav"
)
OPTIONS = RunOptions(speakers=None, codebook=None, out_dir=None)  # --speakers off --no-tag
RAY = str(Path(sys.executable).with_name("ray"))
OHP = [sys.executable, "-c", "from pipeline.cli import app; app()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """The address of a Ray cluster of this machine: a head node with two CPUs. Without token authentication
    (which a Ray of 2.52 and later turns on where ~/.ray has a token): the test processes have no token."""
    # Ray's unix sockets live under its temp dir, and a socket's path may be 107 bytes at most: keep it short.
    temp = Path(tempfile.mkdtemp(prefix="ohpray", dir="/tmp"))
    port = free_port()
    start = [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        head = subprocess.Popen(
            [*start, "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while not (temp / "ray_current_cluster").exists():  # written once the head is up
                assert head.poll() is None, "ray start failed"
                assert time.monotonic() < deadline, "the Ray cluster did not come up in 2 minutes"
                time.sleep(0.2)
            yield f"127.0.0.1:{port}"
        finally:
            head.terminate()  # ray start --block stops the processes it started
            head.wait(timeout=60)
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def options(own_ohp_home):
    """--speakers off --no-tag, half-done transcripts in the session's own model cache (as the workers')."""
    return replace(OPTIONS, home=own_ohp_home)


@pytest.fixture(scope="module")
def files():
    return [corpus_path(name) for name in SHORT]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """The first 40 s of LONG: two chunks, what the kill tests need (the rest would only cost time)."""
    clip = tmp_path_factory.mktemp("long") / "long.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(corpus_path(LONG)), "-t", "40", str(clip)], check=True)
    return clip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, files, long_clip, options):
    """What the single-process batch stores of the short files and the long one: segments by sha256."""
    db = tmp_path_factory.mktemp("single") / "ohp.db"
    with Store(f"sqlite:///{db}") as store:
        report = run_batch([*files, long_clip], store, options)
        assert [f.status for f in report.files] == ["done"] * 4
        return stored(store)


def stored(store: Store) -> dict[str, list[tuple]]:
    """Each recording's segments with their words, by sha256, as the database holds them."""
    return {
        r.sha256: [
            (s.start, s.end, s.text, s.original_text, [(w.start, w.end, w.text) for w in s.words])
            for s in store.segments(r.id)
        ]
        for r in store.list_recordings()
    }


def test_a_batch_on_the_cluster_stores_what_the_single_process_batch_does(
    cluster, files, uninterrupted, db_url, tmp_path, options
):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all")
    with Store(db_url) as store:
        report = run_on_ray([files[0], bad, *files[1:]], store, options, address=cluster, workers=2)
        by_name = {f.path.name: f for f in report.files}
        assert [by_name[p.name].status for p in files] == ["done"] * 3
        assert all(re.fullmatch(r"worker [12] on [\d.]+", by_name[p.name].worker or "") for p in files)
        # The bad file is named with its cause, and the batch went on.
        failed = by_name["notes.wav"]
        assert failed.status == "failed" and failed.error.startswith(f"{bad.resolve()}: not an audio file")
        got = stored(store)
        assert got == {sha: uninterrupted[sha] for sha in got} and len(got) == 3

        again = run_on_ray(files, store, options, address=cluster, workers=2)
        assert [f.status for f in again.files] == ["skipped"] * 3
        forced = run_on_ray(files[:1], store, replace(options, force=True), address=cluster, workers=1)
        assert [f.status for f in forced.files] == ["done"]
        assert stored(store) == got


def test_a_worker_that_does_not_see_the_file_gets_its_bytes_through_the_object_store(
    cluster, files, uninterrupted, options
):
    from pipeline.batch import Pass
    from pipeline.cluster.actors import Recogniser

    info = probe(files[0].resolve())
    elsewhere = replace(info, path=Path("/nowhere/on/this/machine") / files[0].name)  # the driver's path, not here
    ray.init(address=cluster, log_to_driver=False)
    try:
        worker = ray.remote(Recogniser).remote(options, 1)
        asked = ray.get(worker.process.remote(Pass(elsewhere, [], {}, None)))
        assert asked.needs_audio and asked.result is None
        sent = ray.get(worker.process.remote(Pass(elsewhere, [], {}, None), ray.put(files[0].read_bytes())))
        assert sent.error is None and sent.result is not None
        assert sent.result.info.path == elsewhere.path  # saved under the driver's path, not the worker's copy
        got = [(s.start, s.end, s.text) for s in sent.result.transcript.segments]
        assert got == [(start, end, text) for start, end, text, *_ in uninterrupted[info.sha256]]
    finally:
        ray.shutdown()


class Dispatches(logging.Handler):
    """The driver's "file: to worker N on NODE, pid P" lines: which process got which file."""

    def __init__(self) -> None:
        super().__init__()
        self.pids: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"^(.*): to worker \d+ on \S+, pid (\d+)$", record.getMessage())
        if found:
            self.pids[found[1]] = int(found[2])


@SQLITE_ONLY  # workers never touch the database
def test_a_worker_killed_in_the_middle_of_a_recording_loses_and_repeats_nothing(
    cluster, files, long_clip, uninterrupted, db_url, own_ohp_home, options
):
    long = long_clip
    checkpoint = own_ohp_home / "partial" / f"{probe(long).sha256}-"
    dispatches, driver_log = Dispatches(), logging.getLogger("pipeline.cluster.driver")
    driver_log.addHandler(dispatches)
    level, batch_over = driver_log.level, threading.Event()
    driver_log.setLevel(logging.INFO)
    killed: list[int] = []

    def kill_when_half_way() -> None:
        # The long recording's first chunk is in its worker's checkpoint: the worker is in the middle of it.
        while not batch_over.wait(0.05):
            started = list(checkpoint.parent.glob(checkpoint.name + "*.jsonl")) if checkpoint.parent.exists() else []
            if started and started[0].stat().st_size and str(long) in dispatches.pids:
                pid = dispatches.pids[str(long)]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return

    killer = threading.Thread(target=kill_when_half_way)
    killer.start()
    try:
        with Store(db_url) as store:
            report = run_on_ray([long, *files], store, options, address=cluster, workers=2)
            batch_over.set()
            killer.join()
            assert killed, "the long recording finished before its worker could be killed"
            assert [f.status for f in report.files] == ["done"] * 4
            # Exactly the rows of an uninterrupted run: every recording once, every segment once.
            assert stored(store) == uninterrupted
            assert store.count_segments() == sum(len(s) for s in uninterrupted.values())
            # Its second try picked up the chunks the killed worker had finished.
            [recording] = [r for r in store.list_recordings() if r.path == str(long.resolve())]
            [transcribe] = [s for s in store.stages(recording.id) if s.stage == "transcribe"]
            assert transcribe.report["resumed_chunks"] >= 1
    finally:
        batch_over.set()
        killer.join()
        driver_log.setLevel(level)
        driver_log.removeHandler(dispatches)


@POSTGRESQL_ONLY  # one machine's killed batch, on SQLite: tests/test_batch.py
def test_a_killed_driver_started_again_finishes_the_rest_and_redoes_nothing(
    cluster, files, long_clip, uninterrupted, db_url, tmp_path
):
    long = long_clip
    batch = [*files[:2], long, files[2]]  # one worker: in this order; killed once the first two are saved
    run = [*OHP, "run", *map(str, batch), "--db", db_url, "--speakers", "off", "--no-tag", "--out", str(tmp_path)]
    command = [*run, "--ray", cluster, "--workers", "1"]
    # Run where no project vocabulary is (the repository has one): as the uninterrupted batch, without a hint.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with Store(db_url) as store:
        deadline = time.monotonic() + 600
        while len(done_stages(store)) < 2 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.05)
        assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        finished = done_stages(store)
        assert 2 <= len(finished) < 4

        again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        lines = {line.split(": ")[0]: line for line in again.stdout.splitlines() if ": " in line}
        for recording in store.list_recordings():
            status = "skipped" if recording.sha256 in finished else "done"
            assert lines[recording.path].startswith(f"{recording.path}: {status}, ")
        assert {sha: when for sha, when in done_stages(store).items() if sha in finished} == finished
        assert stored(store) == {sha: uninterrupted[sha] for sha in stored(store)} and len(stored(store)) == 4


def done_stages(store: Store) -> dict[str, str | None]:
    """When each recording's transcription was saved, by sha256."""
    return {
        r.sha256: s.finished_at
        for r in store.list_recordings()
        for s in store.stages(r.id)
        if s.stage == "transcribe" and s.status == "done"
    }


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


def test_a_workers_models_use_the_cpus_it_reserved_not_every_core(cluster, files, options):
    """Two workers on two cores must not each take both: the CPUs a worker reserves decide the threads of the
    recogniser (CTranslate2), the VAD (onnxruntime) and torch (the speaker encoder), whatever OMP_NUM_THREADS
    it inherited. Run as a task reserving one CPU in a fresh process, which sees what the models were given."""

    def one_pass(options: RunOptions, path: Path) -> tuple:
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
        outcome = Recogniser(options, 1).process(Pass(probe(path), [], {}, None))
        assert outcome.result is not None and "speakers" in outcome.result.stages, outcome.traceback
        return given, vad[-1], torch.get_num_threads()  # the VAD's session: the last opened

    ray.init(address=cluster, log_to_driver=False)
    try:
        inherited = {"env_vars": {"OMP_NUM_THREADS": "2"}}
        task = ray.remote(max_calls=1)(one_pass).options(num_cpus=1, runtime_env=inherited)
        recogniser, vad, speaker_encoder = ray.get(task.remote(replace(options, speakers=SpeakerOptions()), files[0]))
    finally:
        ray.shutdown()
    assert (recogniser, vad, speaker_encoder) == ([1], 1, 1)


def test_ctrl_c_stops_the_batch_with_what_finished_saved_and_the_workers_stopped(
    cluster, files, uninterrupted, db_url, own_ohp_home, tmp_path
):
    long = corpus_path(LONG)
    run = [*OHP, "run", str(files[0]), str(long), "--db", db_url, "--speakers", "off", "--no-tag"]
    run += ["--out", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen(
        [*run, "--ray", cluster, "--workers", "1"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with Store(db_url) as store:
        deadline = time.monotonic() + 600
        while not done_stages(store) and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.05)
        assert driver.poll() is None, driver.communicate()
        driver.send_signal(signal.SIGINT)  # the long recording is on the worker
        out, err = driver.communicate(timeout=300)
        assert driver.returncode == 130, err
        assert "stopped (Ctrl-C); the recordings finished are saved" in err and "Traceback" not in err
        # What finished is saved whole, with its file; the one on the worker is not saved at all.
        saved = stored(store)
        assert list(saved) == [probe(files[0]).sha256] and saved == {sha: uninterrupted[sha] for sha in saved}
        assert (tmp_path / f"{files[0].stem}.json").exists() and not (tmp_path / f"{long.stem}.json").exists()
        # It stopped at once, not once the worker was done: the long recording's three chunks are not all in
        # its checkpoint.
        chunks = own_ohp_home.glob(f"partial/{probe(long).sha256}-*.jsonl")
        assert sum(len(c.read_text().splitlines()) for c in chunks) < 3
        # The plain line of the file that finished names the worker and its node.
        [line] = [line for line in out.splitlines() if line.startswith(f"{files[0].resolve()}: done, ")]
        assert re.search(r", by worker 1 on [\d.]+(;|$)", line), line
    # The worker stopped with the batch: the CPUs it reserved are free again.
    ray.init(address=cluster, log_to_driver=False)
    try:
        while ray.available_resources().get("CPU", 0) < 2:
            assert time.monotonic() < deadline, "the worker still holds its CPUs"
            time.sleep(0.2)
    finally:
        ray.shutdown()


def alive_nodes(address: str) -> int:
    ray.init(address=address, log_to_driver=False)
    try:
        return sum(node["Alive"] for node in ray.nodes())
    finally:
        ray.shutdown()


def test_a_cluster_of_two_machines_refuses_a_sqlite_file(cluster, files, options, tmp_path):
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
                run_on_ray(files[:1], store, options, address=cluster)
            assert store.list_recordings() == []
    finally:
        node.terminate()  # ray start --block stops its raylet, which leaves the cluster
        node.wait(timeout=60)
        while alive_nodes(cluster) > 1 and time.monotonic() < deadline + 120:  # the next test sees one machine
            time.sleep(0.5)


def test_a_file_that_cannot_be_sent_to_a_worker_is_reported_and_the_batch_goes_on(
    cluster, files, uninterrupted, options, tmp_path
):
    """For a worker that does not see the files the driver sends their bytes; one gone since it was hashed
    fails at "send", named, and the next goes through the object store and is saved."""
    from pipeline.batch import FileRun, plan_batch
    from pipeline.cluster.driver import Driver, Job

    gone = tmp_path / "gone.wav"
    shutil.copy(files[0], gone)
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        batch = plan_batch([gone, files[1]], store, options)
        jobs = []
        for index, path in enumerate(batch.files):  # hashed and looked up, as when a worker is free for it
            run = FileRun(path, store, options, None, batch.taken_stems, batch.people, False)
            jobs.append(Job(index, path, run, run.plan()))
        gone.unlink()
        ray.init(address=cluster, log_to_driver=False)
        try:
            driver = Driver(store, options, None, batch, Sizing(1, 1.0, 0.0))
            driver.nodes_seeing_files[ray.get_runtime_context().get_node_id()] = False  # the only node
            driver.run(jobs)
        finally:
            ray.shutdown()
        failed, done = (job.file for job in jobs)
        assert (failed.status, failed.stage) == ("failed", "send")
        assert failed.error and failed.error.startswith(f"{gone}: send: FileNotFoundError")
        assert done.status == "done" and done.worker and done.worker.startswith("worker 1 on ")
        sha256 = probe(files[1]).sha256
        assert stored(store) == {sha256: uninterrupted[sha256]}


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


def test_an_error_of_a_pass_that_does_not_unpickle_is_reported_and_the_batch_goes_on(
    cluster, files, options, fake_worker, tmp_path
):
    fake_worker(FailsOddly)
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        report = in_time(lambda: run_on_ray(files[:2], store, options, address=cluster, workers=1))
        assert [f.status for f in report.files] == ["failed"] * 2
        for f in report.files:
            assert f.error and "OddError" in f.error and f"{f.path.name}: the decoder gave up" in f.error, f.error
            assert "Traceback" not in f.error
        assert store.count_segments() == 0  # only the failure is recorded


def test_workers_that_cannot_start_fail_the_batch_with_their_cause_not_hang_it(
    cluster, files, options, fake_worker, tmp_path
):
    fake_worker(CannotStart)
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        report = in_time(lambda: run_on_ray(files[:2], store, options, address=cluster, workers=2))
        assert [f.status for f in report.files] == ["failed"] * 2
        for f in report.files:
            assert f.error and "no worker could start" in f.error, f.error
            assert "RuntimeError: no model cache on this machine" in f.error and "Traceback" not in f.error


def test_workers_whose_models_cannot_load_fail_the_batch_with_the_cause_not_hang_it(cluster, files, options, tmp_path):
    """The workers load their models before they take a recording: models that cannot load on their machine (here
    a folder without weights) leave the workers out, and the files are reported with the loader's error."""
    (tmp_path / "no-weights").mkdir()
    missing = replace(options, transcribe=replace(options.transcribe, model=str(tmp_path / "no-weights")))
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        report = in_time(lambda: run_on_ray(files[:2], store, missing, address=cluster, workers=2))
        assert [f.status for f in report.files] == ["failed"] * 2
        for f in report.files:
            assert f.error and "no worker could start" in f.error and "model.bin" in f.error, f.error
            assert "Traceback" not in f.error and "\n" not in f.error, f.error


def test_a_wrong_cluster_address_is_the_users_error(files, options, tmp_path):
    refused = pytest.raises(InvalidInputError, match=r"--ray nonsense: .*Invalid address format")
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store, refused:
        run_on_ray(files[:1], store, options, address="nonsense")


def backwards(source: Path, target: Path) -> None:
    """A WAV file of the same size as `source` with other bytes: its samples (16-bit) in reverse order."""
    data = source.read_bytes()
    start = data.index(b"data") + 8
    samples = [data[i : i + 2] for i in range(start, len(data) - 1, 2)]
    target.write_bytes(data[:start] + b"".join(reversed(samples)) + data[start + 2 * len(samples) :])


def test_a_file_that_changed_since_it_was_hashed_is_not_saved_under_its_old_identity(cluster, files, options, tmp_path):
    """The driver hashes a file when a worker is free for it; the worker reads it afterwards. Where it has
    changed since (rewritten in place, the same size), or the worker's machine has another file at that path,
    the worker must not transcribe what it finds as the recording the driver hashed."""
    from pipeline.batch import FileRun, plan_batch
    from pipeline.cluster.driver import Driver, Job

    here = tmp_path / "here.wav"
    backwards(files[0], here)
    assert here.stat().st_size == files[0].stat().st_size and probe(here).sha256 != probe(files[0]).sha256
    ray.init(address=cluster, log_to_driver=False)
    try:
        # The worker's machine has another file of the same size where the driver's is: it asks for the bytes.
        worker = ray.remote(Recogniser).remote(options, 1)
        asked = ray.get(worker.process.remote(Pass(replace(probe(files[0]), path=here), [], {}, None)))
        assert asked.needs_audio and asked.result is None

        # The driver's own file changed after it was hashed: reported, nothing saved.
        changed = tmp_path / "changed.wav"
        shutil.copy(files[0], changed)
        with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
            batch = plan_batch([changed], store, options)
            run = FileRun(changed, store, options, None, batch.taken_stems, batch.people, False)
            job = Job(0, changed, run, run.plan())
            backwards(files[0], changed)
            Driver(store, options, None, batch, Sizing(1, 1.0, 0.0)).run([job])
            assert job.file.status == "failed" and job.file.error, job.file
            assert "changed since" in job.file.error and job.file.error.startswith(str(changed))
            assert store.list_recordings() == []
    finally:
        ray.shutdown()


def test_the_traceback_of_a_pass_that_failed_on_a_worker_is_in_the_drivers_log(
    cluster, files, options, fake_worker, tmp_path, caplog
):
    """The report says "the traceback is in the log": the driver's, where the worker's is (the workers' own
    logs stay on their machines)."""
    fake_worker(FailsOddly)
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store, caplog.at_level(logging.ERROR, "pipeline.batch"):
        [failed] = in_time(lambda: run_on_ray(files[:1], store, options, address=cluster, workers=1)).files
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
    cluster, files, options, fake_worker, tmp_path, monkeypatch
):
    fake_worker(HangsOnTheFirst)
    # A pass is taken to hang after its allowance and so many times its recording's length: here 8 s and none.
    monkeypatch.setattr("pipeline.cluster.driver.HANG_ALLOWANCE", 8.0)
    monkeypatch.setattr("pipeline.cluster.driver.HANG_FACTOR", 0.0)
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        report = in_time(lambda: run_on_ray(files[:2], store, options, address=cluster, workers=1), 120)
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
    cluster, files, options, fake_worker, own_ohp_home, tmp_path
):
    """A recording saved, one that failed after its chunks were kept, and a second path of the first, whose
    pass would write its chunks after the first was saved: once the batch is over, none has a checkpoint left."""
    fake_worker(LateAndFailing)
    copy = tmp_path / "copy" / files[0].name
    copy.parent.mkdir()
    shutil.copy(files[0], copy)
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        report = in_time(lambda: run_on_ray([files[0], copy, files[1]], store, options, address=cluster, workers=2))
        saved, again, failed = report.files
        assert (saved.status, again.status, failed.status) == ("done", "skipped", "failed"), report.files
        assert again.worker is None  # transcribed once
        assert failed.error and "the speaker encoder gave up" in failed.error
    recordings = {probe(f).sha256 for f in files[:2]}
    left = [p.name for p in (own_ohp_home / "partial").glob("*.jsonl") if p.name.split("-")[0] in recordings]
    assert left == []


def test_a_worker_the_cluster_never_starts_fails_the_batch_in_time_not_hangs_it(
    cluster, files, options, tmp_path, monkeypatch
):
    """A worker asking for more than any machine has (here 3 CPUs of a machine of two) is never started by Ray,
    which keeps it pending without an error: the batch gives up on it after START_TIMEOUT (here 5 s), and what
    the store has stays as it was (a recording transcribed before, which --force would have done again)."""
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        assert [f.status for f in run_batch(files[:1], store, options).files] == ["done"]
        before = stored(store)
        monkeypatch.setattr("pipeline.cluster.driver.size_workers", lambda *args: Sizing(1, 3.0, 0.0))
        monkeypatch.setattr("pipeline.cluster.driver.START_TIMEOUT", 5.0)
        forced = replace(options, force=True)
        report = in_time(lambda: run_on_ray(files[:2], store, forced, address=cluster))
        assert [f.status for f in report.files] == ["failed"] * 2
        for f in report.files:
            assert f.error and "no worker could start" in f.error and "\n" not in f.error, f.error
            assert "worker 1 was not started in 5 s" in f.error and "3 CPUs" in f.error, f.error
        assert stored(store) == before
        [recording] = store.list_recordings()
        assert {s.stage: s.status for s in store.stages(recording.id)} == {"transcribe": "done"}


def test_an_address_where_no_cluster_answers_is_refused_at_once(files, options, tmp_path):
    """Ray itself tries an address that does not answer for minutes, writing warnings as it goes."""
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    refused = pytest.raises(InvalidInputError, match=rf"--ray {re.escape(address)}: no Ray cluster answers there")
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store, refused:
        in_time(lambda: run_on_ray(files[:1], store, options, address=address), 60)
    assert time.monotonic() - started < 30


def test_a_cluster_that_refuses_the_driver_is_not_said_to_be_absent(files, options, tmp_path, monkeypatch):
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
            run_on_ray(files[:1], store, options, address=address)
