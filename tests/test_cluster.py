"""Batches on a real Ray cluster (`ohp run --ray`), started here on 127.0.0.1 with two CPUs, so two workers: what
they store against what the single-process batch stores, with workers killed, the driver killed, Ctrl-C, and a
worker that does not see the files. The workers that fail, hang or never start: tests/test_cluster_faults.py, on a
cluster of its own."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import ray

from pipeline.batch import Pass, run_batch
from pipeline.cluster.actors import Recogniser
from pipeline.cluster.driver import Sizing, run_on_ray
from pipeline.stages.audio import ffmpeg_exe, probe
from pipeline.store import Store

from conftest import POSTGRESQL_ONLY, REPO, SQLITE_ONLY, corpus_path
from raycluster import OHP, stored

pytestmark = pytest.mark.slow

# 70 s of Mandarin, of which the first 40 s (long_clip) make two chunks (26 s and 13 s): long enough to kill
# its worker in the middle of it.
LONG = (
    "zh/modelscope_FunASR__funasr_runtime_csharp_AliFsmnVad.Examples_speech_fsmn_vad_"
    "zh-cn-16k-common-onnx_example_0.wav"
)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """The first 40 s of LONG: two chunks, what the kill tests need (the rest would only cost time)."""
    clip = tmp_path_factory.mktemp("long") / "long.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(corpus_path(LONG)), "-t", "40", str(clip)], check=True)
    return clip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, short_files, long_clip, cluster_options):
    """What the single-process batch stores of the short files and the long one: segments by sha256."""
    db = tmp_path_factory.mktemp("single") / "ohp.db"
    with Store(f"sqlite:///{db}") as store:
        report = run_batch([*short_files, long_clip], store, cluster_options)
        assert [f.status for f in report.files] == ["done"] * 4
        return stored(store)


def test_a_batch_on_the_cluster_stores_what_the_single_process_batch_does(
    cluster, short_files, uninterrupted, db_url, tmp_path, cluster_options
):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all")
    with Store(db_url) as store:
        report = run_on_ray([short_files[0], bad, *short_files[1:]], store, cluster_options, address=cluster, workers=2)
        by_name = {f.path.name: f for f in report.files}
        assert [by_name[p.name].status for p in short_files] == ["done"] * 3
        assert all(re.fullmatch(r"worker [12] on [\d.]+", by_name[p.name].worker or "") for p in short_files)
        # The bad file is named with its cause, and the batch went on.
        failed = by_name["notes.wav"]
        assert failed.status == "failed" and failed.error.startswith(f"{bad.resolve()}: not an audio file")
        got = stored(store)
        assert got == {sha: uninterrupted[sha] for sha in got} and len(got) == 3

        again = run_on_ray(short_files, store, cluster_options, address=cluster, workers=2)
        assert [f.status for f in again.files] == ["skipped"] * 3
        forced = run_on_ray(short_files[:1], store, replace(cluster_options, force=True), address=cluster, workers=1)
        assert [f.status for f in forced.files] == ["done"]
        assert stored(store) == got


def test_a_worker_that_does_not_see_the_file_gets_its_bytes_through_the_object_store(
    cluster, short_files, uninterrupted, cluster_options
):

    info = probe(short_files[0].resolve())
    elsewhere = replace(
        info, path=Path("/nowhere/on/this/machine") / short_files[0].name
    )  # the driver's path, not here
    ray.init(address=cluster, log_to_driver=False)
    try:
        worker = ray.remote(Recogniser).remote(cluster_options, 1)
        asked = ray.get(worker.process.remote(Pass(elsewhere, [], {}, None)))
        assert asked.needs_audio and asked.result is None
        sent = ray.get(worker.process.remote(Pass(elsewhere, [], {}, None), ray.put(short_files[0].read_bytes())))
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
    cluster, short_files, long_clip, uninterrupted, db_url, own_ohp_home, cluster_options
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
            report = run_on_ray([long, *short_files], store, cluster_options, address=cluster, workers=2)
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
    cluster, short_files, long_clip, uninterrupted, db_url, tmp_path
):
    long = long_clip
    batch = [*short_files[:2], long, short_files[2]]  # one worker: in this order; killed once the first two are saved
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


def test_ctrl_c_stops_the_batch_with_what_finished_saved_and_the_workers_stopped(
    cluster, short_files, uninterrupted, db_url, own_ohp_home, tmp_path
):
    long = corpus_path(LONG)
    run = [*OHP, "run", str(short_files[0]), str(long), "--db", db_url, "--speakers", "off", "--no-tag"]
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
        assert list(saved) == [probe(short_files[0]).sha256] and saved == {sha: uninterrupted[sha] for sha in saved}
        assert (tmp_path / f"{short_files[0].stem}.json").exists() and not (tmp_path / f"{long.stem}.json").exists()
        # It stopped at once, not once the worker was done: the long recording's three chunks are not all in
        # its checkpoint.
        chunks = own_ohp_home.glob(f"partial/{probe(long).sha256}-*.jsonl")
        assert sum(len(c.read_text().splitlines()) for c in chunks) < 3
        # The plain line of the file that finished names the worker and its node.
        [line] = [line for line in out.splitlines() if line.startswith(f"{short_files[0].resolve()}: done, ")]
        assert re.search(r", by worker 1 on [\d.]+(;|$)", line), line
    # The worker stopped with the batch: the CPUs it reserved are free again.
    ray.init(address=cluster, log_to_driver=False)
    try:
        while ray.available_resources().get("CPU", 0) < 2:
            assert time.monotonic() < deadline, "the worker still holds its CPUs"
            time.sleep(0.2)
    finally:
        ray.shutdown()


def test_a_file_that_cannot_be_sent_to_a_worker_is_reported_and_the_batch_goes_on(
    cluster, short_files, uninterrupted, cluster_options, tmp_path
):
    """For a worker that does not see the files the driver sends their bytes; one gone since it was hashed
    fails at "send", named, and the next goes through the object store and is saved."""
    from pipeline.batch import FileRun, plan_batch
    from pipeline.cluster.driver import Driver, Job

    gone = tmp_path / "gone.wav"
    shutil.copy(short_files[0], gone)
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as store:
        batch = plan_batch([gone, short_files[1]], store, cluster_options)
        jobs = []
        for index, path in enumerate(batch.files):  # hashed and looked up, as when a worker is free for it
            run = FileRun(path, store, cluster_options, None, batch.taken_stems, batch.people, False)
            jobs.append(Job(index, path, run, run.plan()))
        gone.unlink()
        ray.init(address=cluster, log_to_driver=False)
        try:
            driver = Driver(store, cluster_options, None, batch, Sizing(1, 1.0, 0.0))
            driver.nodes_seeing_files[ray.get_runtime_context().get_node_id()] = False  # the only node
            driver.run(jobs)
        finally:
            ray.shutdown()
        failed, done = (job.file for job in jobs)
        assert (failed.status, failed.stage) == ("failed", "send")
        assert failed.error and failed.error.startswith(f"{gone}: send: FileNotFoundError")
        assert done.status == "done" and done.worker and done.worker.startswith("worker 1 on ")
        sha256 = probe(short_files[1]).sha256
        assert stored(store) == {sha256: uninterrupted[sha256]}
