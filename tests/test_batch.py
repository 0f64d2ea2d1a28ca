"""Batches end to end on real audio: the CLI, re-runs, and every kind of bad input the issue lists."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import event

from pipeline.batch import run_batch
from pipeline.formats.export import gather, to_json
from pipeline.imports import import_file
from pipeline.process import RunOptions, SpeakerOptions
from pipeline.stages.audio import SAMPLE_RATE, decode, ffmpeg_exe, probe
from pipeline.stages.codebook import load_codebook
from pipeline.stages.speakers import voice_profile
from pipeline.store import Store

from conftest import MODEL_CACHE, corpus_path

pytestmark = pytest.mark.slow

OHP = [str(Path(sys.executable).with_name("ohp"))]
MANDARIN = "zh/FireRedTeam_FireRedASR__examples_wav_BAC009S0764W0121.wav"  # 4.2 s
ENGLISH = "en/k2-fsa_sherpa___static_sense-voice_en.wav"  # 7.2 s: "... presented him with fifty pieces of gold."
TWO_VOICES = "en/pyannote_pyannote-audio__src_pyannote_audio_sample_sample.wav"  # 30 s, a phone call of two women


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def ohp(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*OHP, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", **(env or {})}, **kw
    )


def segment_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT r.sha256, s.start, s.end, s.text, s.original_text"
            " FROM segments s JOIN recordings r ON r.id = s.recording_id ORDER BY r.sha256, s.start"
        ).fetchall()


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as s:
        yield s


# --- the command line, end to end -------------------------------------------------------------


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`ohp run` over a folder of a Mandarin and an English recording, once for the tests that read what it made."""
    tmp_path = tmp_path_factory.mktemp("first_run")
    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(corpus_path(MANDARIN), audio / "worker.wav")
    ffmpeg("-i", str(corpus_path(ENGLISH)), str(audio / "interviewer.m4a"))
    (audio / "notes.txt").write_text("not audio, and not picked up from a folder")
    return tmp_path, ohp(
        "run", str(audio), "--db", f"sqlite:///{tmp_path / 'ohp.db'}", "--out", str(tmp_path / "transcripts")
    )


def test_run_writes_database_and_transcripts_then_skips_on_rerun(first_run):
    tmp_path, first = first_run
    audio, db, out = tmp_path / "audio", tmp_path / "ohp.db", tmp_path / "transcripts"
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}.{ext}" for stem in ("worker", "interviewer") for ext in ("json", "srt", "vtt", "txt")
    )

    doc = json.loads((out / "worker.json").read_text(encoding="utf-8"))
    assert set(doc) == {"recording", "segments"}
    assert set(doc["recording"]) == {
        "id",
        "path",
        "sha256",
        "duration",
        "language",
        "interviewee",
        "place",
        "recorded_on",
        "consent",
        "release_on",
        "speakers",
        "warnings",
    }
    assert doc["recording"]["language"] == "zh" and doc["recording"]["duration"] == pytest.approx(4.2, abs=0.05)
    first_segment = doc["segments"][0]
    assert set(first_segment) == {
        "id",
        "start",
        "end",
        "text",
        "original_text",
        "language",
        "speaker",
        "confidence",
        "words",
        "themes",
        "entities",
    }
    assert first_segment["speaker"] == "S1"
    assert {s["speaker"] for s in doc["segments"]} <= {s["label"] for s in doc["recording"]["speakers"]}
    assert "交易" in "".join(s["text"] for s in doc["segments"])
    assert set(first_segment["words"][0]) == {"start", "end", "text", "probability", "doubtful", "corrected"}
    english = json.loads((out / "interviewer.json").read_text(encoding="utf-8"))
    assert english["recording"]["language"] == "en"
    assert "gold" in " ".join(s["text"] for s in english["segments"]).lower()
    srt = (out / "worker.srt").read_text(encoding="utf-8")
    assert srt.startswith("1\n00:00:0") and " --> " in srt

    rows = segment_rows(db)
    second = ohp("run", str(audio), "--db", f"sqlite:///{db}", "--out", str(out))
    assert second.returncode == 0
    assert [line.split(": ")[1].split(",")[0] for line in second.stdout.splitlines()[:2]] == ["skipped", "skipped"]
    assert second.stdout.splitlines()[2].endswith(": 2 skipped")  # one line per file, then the totals
    assert segment_rows(db) == rows

    status = ohp("status", "--db", f"sqlite:///{db}")
    assert "worker.wav" in status.stdout and "transcribe: done" in status.stdout

    # A run killed between a save and its files leaves those of the save before: older than the save, they
    # are written again by the run that skips the recording (they were kept as they were).
    kept = (out / "worker.json").read_bytes()
    (out / "worker.json").write_text("{}", encoding="utf-8")
    os.utime(out / "worker.json", (946684800, 946684800))  # 2000-01-01: before the save
    third = ohp("run", str(audio), "--db", f"sqlite:///{db}", "--out", str(out))
    assert third.returncode == 0 and third.stdout.splitlines()[2].endswith(": 2 skipped")
    assert (out / "worker.json").read_bytes() == kept


def test_moved_file_is_the_same_recording_and_force_redoes(tmp_path, store):
    first = tmp_path / "a" / "zhang.wav"
    first.parent.mkdir()
    shutil.copy(corpus_path(MANDARIN), first)
    [done] = run_batch([first], store, RunOptions(out_dir=None)).files
    assert done.status == "done"

    moved = tmp_path / "b" / "zhang renamed.wav"
    moved.parent.mkdir()
    first.rename(moved)
    [skipped] = run_batch([moved], store, RunOptions(out_dir=None)).files
    assert skipped.status == "skipped"
    [recording] = store.list_recordings()
    assert recording.path == str(moved.resolve())

    [redone] = run_batch([moved], store, RunOptions(out_dir=None, force=True)).files
    assert redone.status == "done" and redone.recording_id == recording.id
    assert len(store.list_recordings()) == 1

    # A closed recording is worked on as before, but its transcript files are not written.
    store.set_metadata(recording.id, consent="closed")
    out = tmp_path / "transcripts"
    [closed] = run_batch([moved], store, RunOptions(out_dir=out, force=True)).files
    assert closed.status == "done" and not out.exists()
    assert any("closed recording: no transcript files" in w for w in closed.warnings)


def test_a_recording_is_saved_in_one_write_transaction_and_its_files_are_what_the_store_holds(tmp_path, store):
    audio = tmp_path / "zhang.wav"
    shutil.copy(corpus_path(MANDARIN), audio)
    writes = []

    def seen(conn, cursor, statement, *args):
        if statement.strip().upper() == "BEGIN IMMEDIATE":  # how every write transaction starts on SQLite
            writes.append(statement)

    event.listen(store._engine, "before_cursor_execute", seen)
    options = RunOptions(out_dir=tmp_path / "out", formats=("json",), codebook=load_codebook())
    [done] = run_batch([audio], store, options).files
    assert done.status == "done" and done.segments >= 1 and len(writes) == 1
    exported = (tmp_path / "out" / "zhang.json").read_text(encoding="utf-8")
    assert exported == to_json(gather(store, store.recording(done.recording_id), options.codebook))


def test_export_rewrites_files_from_the_database(first_run, tmp_path):
    ran, first = first_run
    db = ran / "ohp.db"
    assert first.returncode == 0, first.stderr
    result = ohp(
        "export",
        "worker",
        "--format",
        "txt",
        "--format",
        "vtt",
        "--out",
        str(tmp_path / "again"),
        "--db",
        f"sqlite:///{db}",
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["worker.txt", "worker.vtt"]
    assert (tmp_path / "again" / "worker.vtt").read_text(encoding="utf-8").startswith("WEBVTT\n")
    missing = ohp("export", "nobody", "--db", f"sqlite:///{db}")
    assert missing.returncode == 2 and "nobody" in missing.stderr and "Traceback" not in missing.stderr


def test_a_file_that_fails_takes_no_transcript_stem(first_run, tmp_path):
    """A broken other/worker.wav beside the good worker.wav: the good one's files keep their plain name."""
    ran, first = first_run
    assert first.returncode == 0, first.stderr
    (tmp_path / "other").mkdir()
    broken = tmp_path / "other" / "worker.wav"
    broken.write_text("not audio at all\n" * 10)
    db = f"sqlite:///{ran / 'ohp.db'}"
    out = tmp_path / "out"
    result = ohp("run", str(ran / "audio" / "worker.wav"), str(broken), "--db", db, "--out", str(out))
    assert result.returncode == 1 and "other/worker.wav" in result.stdout  # reported, and the batch went on
    assert sorted(p.name for p in out.iterdir()) == [f"worker.{ext}" for ext in ("json", "srt", "txt", "vtt")]
    again = ohp("export", "worker", "--out", str(tmp_path / "again"), "--db", db)
    assert again.returncode == 0 and [p.name for p in (tmp_path / "again").iterdir()] == ["worker.json"]


# --- bad input: each reported with the file and the cause; the batch goes on ---------------------


def run_one(tmp_path: Path, store: Store, make) -> tuple:
    """Run a batch of a good file and the bad one; return the bad one's result."""
    good = tmp_path / "good.wav"
    shutil.copy(corpus_path(MANDARIN), good)
    bad = make(tmp_path)
    report = run_batch([good, bad], store, RunOptions(out_dir=tmp_path / "out"))
    results = {r.path: r for r in report.files}
    assert results[good].status == "done", results[good].error  # the batch went on past the bad file
    return results[bad]


def test_empty_file(tmp_path, store):
    def make(d):
        (d / "empty.wav").touch()
        return d / "empty.wav"

    result = run_one(tmp_path, store, make)
    assert result.status == "failed" and "empty.wav" in result.error and "empty file" in result.error


def test_text_file_named_wav(tmp_path, store):
    def make(d):
        (d / "notes.wav").write_text("Interview notes, not audio.\n" * 20)
        return d / "notes.wav"

    result = run_one(tmp_path, store, make)
    assert result.status == "failed" and "notes.wav" in result.error and "not an audio file" in result.error


def test_truncated_mp3_keeps_what_decodes(tmp_path, store):
    def make(d):
        full = d / "full.mp3"
        ffmpeg("-i", str(corpus_path(ENGLISH)), "-b:a", "64k", str(full))
        data = full.read_bytes()
        cut = d / "cut.mp3"
        cut.write_bytes(data[: len(data) // 2 + 17])  # mid-frame
        return cut

    result = run_one(tmp_path, store, make)
    assert result.status == "done"
    assert 2.5 < result.duration < 5  # about half of the 7.2 s
    assert result.segments >= 1


def test_a_skipped_file_shows_the_length_its_pass_decoded_not_what_its_container_says(tmp_path, store):
    # A cut MP3 declares the length of the whole (its bitrate times its size) and decodes to half of it: the
    # line of a file skipped on the next run shows what the first run's line showed.
    full, cut = tmp_path / "full.mp3", tmp_path / "cut.mp3"
    ffmpeg("-i", str(corpus_path(ENGLISH)), "-b:a", "64k", str(full))
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2 + 17])
    options = RunOptions(out_dir=None, speakers=None)
    [done] = run_batch([cut], store, options).files
    [skipped] = run_batch([cut], store, options).files
    assert (done.status, skipped.status) == ("done", "skipped")
    assert skipped.duration == done.duration < 5


def test_very_short_clip(tmp_path, store):
    def make(d):
        ffmpeg("-i", str(corpus_path(MANDARIN)), "-t", "0.3", str(d / "short.wav"))
        return d / "short.wav"

    result = run_one(tmp_path, store, make)
    assert result.status == "done" and result.duration == pytest.approx(0.3, abs=0.01)


def test_near_silence_succeeds_with_no_segments(tmp_path, store):
    def make(d):
        ffmpeg(
            "-f",
            "lavfi",
            "-i",
            "anoisesrc=color=pink:amplitude=0.001:duration=60:sample_rate=16000",
            str(d / "quiet.flac"),
        )
        return d / "quiet.flac"

    result = run_one(tmp_path, store, make)
    assert result.status == "done" and result.segments == 0
    assert any("no speech" in w and "quiet.flac" in w for w in result.warnings)
    assert store.stage(result.recording_id, "transcribe").status == "done"


def test_8khz_stereo(tmp_path, store):
    def make(d):
        ffmpeg("-i", str(corpus_path(ENGLISH)), "-ar", "8000", "-ac", "2", str(d / "phone.wav"))
        return d / "phone.wav"

    result = run_one(tmp_path, store, make)
    assert result.status == "done" and result.language == "en" and result.segments >= 1
    assert any("8000 Hz" in w and "phone.wav" in w for w in result.warnings)


def test_path_with_spaces_and_chinese(tmp_path, store):
    def make(d):
        folder = d / "访谈 录音"
        folder.mkdir()
        shutil.copy(corpus_path(ENGLISH), folder / "张 长华 第一次.wav")
        return folder / "张 长华 第一次.wav"

    result = run_one(tmp_path, store, make)
    assert result.status == "done" and result.segments >= 1
    assert (tmp_path / "out" / "张 长华 第一次.json").exists()


def test_unreadable_file(tmp_path):
    if os.geteuid() == 0:  # the ordinary user below must be able to reach the folder
        tmp_path = Path(tempfile.mkdtemp(prefix="ohp-unreadable-"))
        tmp_path.chmod(0o777)
        try:
            _run_unreadable(tmp_path)
        finally:  # pytest's tmp_path is cleaned up for us; this folder is not
            shutil.rmtree(tmp_path)
    else:
        _run_unreadable(tmp_path)


def _run_unreadable(tmp_path: Path) -> None:
    bad = tmp_path / "locked.wav"
    shutil.copy(corpus_path(MANDARIN), bad)
    bad.chmod(0)
    db = tmp_path / "ohp.db"
    command = [*OHP, "run", str(bad), "--db", f"sqlite:///{db}", "--out", str(tmp_path / "out")]
    if os.geteuid() == 0:  # root reads anything: run the batch as an ordinary user
        setpriv = shutil.which("setpriv")
        if not setpriv:
            pytest.skip("running as root without setpriv")
        command = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # a folder the ordinary user may use
        env={**os.environ, "OHP_HOME": str(tmp_path / "home"), "COLUMNS": "200"},
    )
    assert result.returncode == 1
    assert "locked.wav" in result.stdout + result.stderr and "permission denied" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_file_that_disappears_mid_batch(tmp_path, store):
    first, second = tmp_path / "first.wav", tmp_path / "second.wav"
    shutil.copy(corpus_path(MANDARIN), first)
    shutil.copy(corpus_path(ENGLISH), second)

    class RemoveSecond:
        def file_started(self, path, index, total):
            if index == 0:
                second.unlink()

        def stage_started(self, *a): ...
        def audio_done(self, *a): ...
        def file_finished(self, result): ...

    report = run_batch([first, second], store, RunOptions(out_dir=None), RemoveSecond())
    assert [r.status for r in report.files] == ["done", "failed"]
    assert "second.wav" in report.files[1].error and "not found" in report.files[1].error


def test_killed_batch_resumes_and_matches_an_uninterrupted_run(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(corpus_path(MANDARIN), audio / "a_short.wav")
    # The first 40 s of the long-form recording: four chunks, a batch each, decoded by two models side by side,
    # killed once two are kept, while the others are decoded (a kill timed by the last batch would race the
    # recording's save; with two batches of two, one for each model, both are kept at about the same time, and
    # on a loaded machine the test missed the moment between them and the save).
    ffmpeg("-i", str(corpus_path("longform_zh_dev.wav")), "-t", "40", str(audio / "b_long.wav"))
    shutil.copy(corpus_path(ENGLISH), audio / "c_english.wav")
    env = {"OHP_HOME": str(tmp_path / "home")}
    # The weights are assembled once in the shared cache; the test's own home links to them.
    (tmp_path / "home").mkdir()
    from pipeline.weights import faster_whisper_base_dir

    (tmp_path / "home" / "models").symlink_to(faster_whisper_base_dir(MODEL_CACHE).parent)
    db = tmp_path / "killed.db"

    batches = ["--batch-size", "1"]
    proc = subprocess.Popen(
        [*OHP, "run", str(audio), "--db", f"sqlite:///{db}", "--out", str(tmp_path / "out"), *batches],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial = tmp_path / "home" / "partial"

    def kept() -> int:  # chunks in checkpoints: the short recording's one, then the long one's, a batch at a time
        return sum(len(p.read_text().splitlines()) for p in partial.glob("*.jsonl")) if partial.exists() else 0

    # Kill once the long recording has its first batch in its checkpoint, however long that takes (no deadline:
    # on a loaded machine the short recording alone can take minutes, and a kill before it was saved tests
    # nothing).
    while proc.poll() is None and kept() < 2:
        time.sleep(0.05)
    assert proc.poll() is None, "the batch finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_with = kept()  # 2, or more when other batches too were kept before the kill landed

    with sqlite3.connect(db) as conn:
        finished = dict(
            conn.execute(
                "SELECT r.path, s.finished_at FROM stages s JOIN recordings r ON r.id = s.recording_id"
                " WHERE s.status = 'done'"
            ).fetchall()
        )
        half = conn.execute(
            "SELECT count(*) FROM segments s JOIN recordings r ON r.id = s.recording_id WHERE r.path LIKE '%b_long.wav'"
        ).fetchone()[0]
    assert [Path(p).name for p in finished] == ["a_short.wav"]
    assert half == 0  # nothing of the recording being transcribed reached the database

    rerun = ohp("run", str(audio), "--db", f"sqlite:///{db}", "--out", str(tmp_path / "out"), *batches, env=env)
    assert rerun.returncode == 0, rerun.stderr
    with sqlite3.connect(db) as conn:
        after = dict(
            conn.execute(
                "SELECT r.path, s.finished_at FROM stages s JOIN recordings r ON r.id = s.recording_id"
            ).fetchall()
        )
        resumed = json.loads(
            conn.execute(
                "SELECT s.report FROM stages s JOIN recordings r ON r.id = s.recording_id"
                " WHERE r.path LIKE '%b_long.wav' AND s.stage = 'transcribe'"
            ).fetchone()[0]
        )
    assert {p: after[p] for p in finished} == finished  # nothing finished was redone
    assert resumed["resumed_chunks"] == killed_with >= 2  # what the killed run kept, and nothing else
    assert not list(partial.glob("*.jsonl"))

    clean = tmp_path / "clean.db"
    assert (
        ohp(
            "run", str(audio), "--db", f"sqlite:///{clean}", "--out", str(tmp_path / "out2"), *batches, env=env
        ).returncode
        == 0
    )
    assert segment_rows(db) == segment_rows(clean)


# --- speakers ------------------------------------------------------------------------------------


def test_two_voices_get_speakers_and_roles_then_are_found_again_without_transcribing(tmp_path, store):
    call = tmp_path / "call.wav"
    shutil.copy(corpus_path(TWO_VOICES), call)
    out = tmp_path / "out"
    [done] = run_batch([call], store, RunOptions(out_dir=out, formats=("txt", "json"))).files
    assert done.status == "done" and done.speakers >= 2, done.error
    segments = store.segments(done.recording_id)
    assert all(s.speaker for s in segments) and len({s.speaker for s in segments}) >= 2
    speakers = store.speakers(done.recording_id)
    assert {s.role for s in speakers} >= {"interviewer", "interviewee"}
    txt = [line for line in (out / "call.txt").read_text(encoding="utf-8").split("\n\n", 2)[2].splitlines() if line]
    assert txt and all(re.match(r"\[00:00:\d\d\] S\d: \S", line) for line in txt), txt  # a turn a paragraph
    recording = json.loads((out / "call.json").read_text(encoding="utf-8"))["recording"]
    assert [s["label"] for s in recording["speakers"]] == [s.label for s in speakers]
    stage = store.stage(done.recording_id, "speakers")
    assert stage.report["speakers"] == done.speakers and stage.report["decoded_again"] is False

    # Found again with the number given: the audio is decoded again, the transcript is not redone; a
    # name a person gave stays with its voice, and the other voice, enrolled meanwhile, gets its name.
    transcribed = store.stage(done.recording_id, "transcribe")
    store.rename_speaker(done.recording_id, "S1", "Sheila", "mei")
    longest = max(segments, key=lambda s: len(s.words))
    store.correct_text(longest.id, longest.text + " (corrected)", "mei", 1)
    samples = decode(probe(call)).samples
    other = [samples[int(s.start * SAMPLE_RATE) : int(s.end * SAMPLE_RATE)] for s in segments if s.speaker == "S2"]
    store.enroll("Diane", voice_profile(other).tolist(), "mei", [str(call)])
    options = RunOptions(out_dir=out, formats=("txt",), speakers=SpeakerOptions(2))
    [again] = run_batch([call], store, options).files
    assert again.status == "done" and again.speakers == 2, again.error
    assert store.stage(done.recording_id, "transcribe") == transcribed  # same finished_at
    stage = store.stage(done.recording_id, "speakers")
    assert stage.report["decoded_again"] and stage.settings["count"] == 2
    assert all(s.speaker in ("S1", "S2") for s in store.segments(done.recording_id))
    assert longest.text + " (corrected)" in [s.text for s in store.segments(done.recording_id)]  # not split, not lost
    assert sorted(s.name for s in store.speakers(done.recording_id)) == ["Diane", "Sheila"]
    lines = (out / "call.txt").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith("Sheila: ", 11) for line in lines) and any(
        line.startswith("Diane: ", 11) for line in lines
    )
    [skipped] = run_batch([call], store, options).files
    assert skipped.status == "skipped"


def test_an_imported_transcript_keeps_the_speakers_of_its_file(tmp_path, store):
    audio = tmp_path / "zhang.wav"
    shutil.copy(corpus_path(MANDARIN), audio)
    vtt = tmp_path / "zhang.vtt"
    vtt.write_text(
        "WEBVTT\n\n00:00.500 --> 00:02.000\n<v 采访者>您好。\n\n00:02.000 --> 00:04.000\n<v 张长华>你好。\n",
        encoding="utf-8",
    )
    recording_id = import_file(vtt, store, audio)
    [result] = run_batch([audio], store, RunOptions(out_dir=None)).files
    assert result.status == "skipped" and result.speakers is None
    assert [s.label for s in store.speakers(recording_id)] == ["采访者", "张长华"]
    assert "imported" in store.stage(recording_id, "speakers").settings


def test_a_ctrl_c_while_a_recording_is_saved_stops_the_batch_once_it_is_finished():
    from pipeline.batch import finishing, stop_if_asked

    stop_if_asked()  # nothing asked: goes on
    steps = []
    with finishing():
        signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of the save
        steps.append("saved and written")
    steps.append("reported")
    with pytest.raises(KeyboardInterrupt):
        stop_if_asked()
    assert steps == ["saved and written", "reported"]
    stop_if_asked()  # asked once, stopped once
    with pytest.raises(KeyboardInterrupt):  # outside a save, Ctrl-C stops at once, as always
        signal.raise_signal(signal.SIGINT)


def test_a_sigterm_while_a_recording_is_saved_stops_the_batch_once_it_is_finished():
    """`kill`, a service stopped, a CI timeout: killed between the save and the files, a run that had made the
    recording's files before (--force, a new codebook) left them as they were, and the next run, finding the
    recording done and its files there, never wrote them again."""
    from pipeline.batch import finishing, stop_if_asked

    class Terminated(Exception):
        pass

    def terminate(number, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)  # the default ends the process: this test's too
    try:
        steps = []
        with finishing():
            signal.raise_signal(signal.SIGTERM)
            steps.append("saved and written")
        steps.append("reported")
        with pytest.raises(Terminated):
            stop_if_asked()
        assert steps == ["saved and written", "reported"]
        stop_if_asked()
        with pytest.raises(Terminated):  # outside a save, it stops at once
            signal.raise_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
