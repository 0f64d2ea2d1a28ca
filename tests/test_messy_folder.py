"""A researcher's messy folder: odd names, copies, files still being copied, odd channels and containers. Each
good file is done, each bad one named with its cause before any model loads, and the batch goes on."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pipeline.batch import FileResult, find_audio_files, run_batch
from pipeline.cli.output import file_line, write_report
from pipeline.process import RunOptions
from pipeline.stages.audio import decode, ffmpeg_exe, probe
from pipeline.store import Store

BEEP = "sine=f=440:r=16000:d=0.5"


def lavfi(graph: str, out: Path, *options: str) -> Path:
    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-f", "lavfi", "-i", graph, *options, str(out)], check=True)
    return out


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as s:
        yield s


def test_a_name_that_is_not_utf8_fails_before_the_pass_and_the_report_still_writes(tmp_path, store):
    """A name in another encoding (a zip made on an old Windows, a GBK folder): saving it failed with a traceback
    after the whole pass, on every run, and --report then failed on it, losing every file's result."""
    bad = lavfi(BEEP, tmp_path / os.fsdecode(b"\xd5\xc5\xb3\xa4\xbb\xaa.wav"))  # 张长华 in GBK
    [result] = run_batch([bad], store, RunOptions(out_dir=None, speakers=None)).files
    assert (result.status, result.stage) == ("failed", "probe")
    assert "not UTF-8" in (result.error or "") and "Traceback" not in (result.error or "")
    report = tmp_path / "run.json"
    write_report([result, FileResult(tmp_path / "good.wav", "done")], report)
    files = json.loads(report.read_text(encoding="utf-8"))["files"]
    assert os.fsencode(files[0]["path"]) == os.fsencode(bad)  # the name's bytes, as a script can find the file
    assert files[1]["status"] == "done"


def test_a_file_still_being_copied_fails_with_its_cause_and_is_done_once_whole(tmp_path, store):
    """A recording copied into the folder while the batch runs: the part there when it was hashed and decoded was
    saved as done under the hash of those bytes, and the whole file became another recording on the next run."""
    whole = lavfi(BEEP, tmp_path / "whole.wav").read_bytes()
    growing = tmp_path / "growing.wav"
    growing.write_bytes(whole[: len(whole) // 2])

    class CopyGoesOn:
        def file_started(self, path, index, total): ...
        def file_finished(self, result): ...
        def audio_done(self, path, seconds): ...

        def stage_started(self, path, stage, seconds):
            if stage == "decode":
                growing.write_bytes(whole)

    options = RunOptions(out_dir=None, speakers=None)
    [result] = run_batch([growing], store, options, CopyGoesOn()).files
    assert (result.status, result.stage) == ("failed", "decode")
    assert "changed while it was read" in (result.error or "")
    assert store.list_recordings() == []
    [again] = run_batch([growing], store, options).files
    assert again.status == "done" and again.duration == pytest.approx(0.5, abs=0.01)


def test_a_copy_of_a_recording_in_the_folder_is_named_as_one_and_leaves_the_recording_where_it_was(tmp_path, store):
    """The same recording twice (a backup copy in a subfolder): the copy moved the recording's path to itself on
    every run, and the next file back again, and wrote a second set of transcript files under its own name."""
    folder, out = tmp_path / "interviews", tmp_path / "out"
    (folder / "backup").mkdir(parents=True)
    original = lavfi(BEEP, folder / "2019 zhang.wav")  # found first
    copy = folder / "backup" / "zhang_copy.wav"
    copy.write_bytes(original.read_bytes())
    options = RunOptions(out_dir=out, formats=("json",), speakers=None)
    for status in ("done", "skipped"):
        done, copied = run_batch([folder], store, options).files
        assert (done.path, done.status, copied.path, copied.status) == (original, status, copy, "skipped")
        assert any(f"the same recording as {original}" in w for w in copied.warnings), copied.warnings
        assert copied.copy_of == str(original) and done.copy_of is None
        [recording] = store.list_recordings()
        assert recording.path == str(original)
        assert sorted(p.name for p in out.iterdir()) == ["2019 zhang.json"]
    # Another name of the same file (a hard link; another case of the name on macOS) is no copy: the file moved.
    linked = folder / "2019 Zhang.wav"
    original.rename(linked)
    original.hardlink_to(linked)
    [named] = run_batch([linked], store, options).files
    assert named.status == "skipped" and not named.warnings and store.list_recordings()[0].path == str(linked)
    linked.unlink()
    original.unlink()  # the copy is the recording's file now
    [moved] = run_batch([folder], store, options).files
    assert moved.status == "skipped" and not moved.warnings
    assert store.list_recordings()[0].path == str(copy)
    # A backup of the same name in another folder: still one recording, whose files keep its plain name.
    (folder / "later").mkdir()
    (folder / "later" / copy.name).write_bytes(copy.read_bytes())
    for stale in ("2019 zhang.json", "2019 Zhang.json"):
        (out / stale).unlink()
    assert [r.status for r in run_batch([folder], store, options).files] == ["skipped", "skipped"]
    assert sorted(p.name for p in out.iterdir()) == ["zhang_copy.json"]


def test_stereo_whose_channels_cancel_out_is_heard_from_one_channel(tmp_path):
    """A stereo recorder with one channel wired out of phase: mixed to mono, the channels cancelled to silence and
    the interview was "done" with no speech found."""
    opposed = lavfi(f"{BEEP},pan=stereo|c0=c0|c1=-1*c0", tmp_path / "opposed.wav")
    decoded = decode(probe(opposed))
    rms = float((decoded.samples**2).mean()) ** 0.5
    assert rms > 0.08 and any("cancel out" in w for w in decoded.warnings)
    # A quiet recording whose channels agree stays the mix of them, without a warning.
    quiet = lavfi("sine=f=440:r=16000:d=0.5,volume=0.04,pan=stereo|c0=c0|c1=c0", tmp_path / "quiet.wav")
    decoded = decode(probe(quiet))
    assert 0.002 < float((decoded.samples**2).mean()) ** 0.5 < 0.005 and not decoded.warnings


def test_a_folder_finds_camcorder_and_phone_recordings_and_leaves_what_is_no_audio(tmp_path):
    """A camcorder's AVCHD video (.MTS), an iPhone's Core Audio file (.caf), an audiobook-style .m4b were left out
    of a folder's batch without a word; .DS_Store, Thumbs.db and macOS's ._ files beside them are no recordings,
    nor are the files of a hidden folder."""
    folder = tmp_path / "fieldwork"
    (folder / "day 2").mkdir(parents=True)
    found = [lavfi(BEEP, folder / name) for name in ("00001.MTS", "memo.caf", "day 2/talk.m4b")]
    for junk in (".DS_Store", "Thumbs.db", "._memo.caf", "notes.docx"):
        (folder / junk).write_bytes(b"\x00\x05\x16\x07 not audio")
    # A memory card's trash: recordings deleted on the recorder, which were transcribed as the interviews.
    (folder / ".Trashes" / "501").mkdir(parents=True)
    lavfi(BEEP, folder / ".Trashes" / "501" / "deleted take.wav")
    files, missing = find_audio_files([folder])
    assert sorted(files) == sorted(found) and not missing
    assert all(probe(f).duration > 0 for f in found)


def test_a_file_edited_after_it_was_transcribed_is_a_new_recording_and_the_run_says_so(tmp_path, store):
    """A recording trimmed or replaced under the same name: it was transcribed again as a new recording, "done"
    without a word, and the earlier one, with the corrections and decisions people made, stayed under the same
    name, so that `ohp export NAME` found two."""
    interview = lavfi(BEEP, tmp_path / "zhang.wav")
    options = RunOptions(out_dir=None, speakers=None)
    [first] = run_batch([interview], store, options).files
    lavfi("sine=f=300:r=16000:d=0.4", interview)  # trimmed, say
    [edited] = run_batch([interview], store, options).files
    assert edited.status == "done" and edited.recording_id != first.recording_id
    assert any(f"changed since recording {first.recording_id} was made from it" in w for w in edited.warnings)
    [again] = run_batch([interview], store, options).files
    assert again.status == "skipped" and not again.warnings


def test_a_name_with_a_line_break_is_still_one_line_of_the_log(tmp_path):
    """A name typed with Enter in a file manager broke the plain line of its file in two, against `ohp run`'s one
    line per file that a log's readers count on."""
    name = tmp_path / "zhang\nsecond visit.wav"
    done = FileResult(name, "done", 1, 61.0, 12, "zh", warnings=[f"{name}: truncated?"], seconds=3.2)
    failed = FileResult(name, "failed", error=f"{name}: empty file (0 bytes)")
    for line in (file_line(done), file_line(failed)):
        assert "\n" not in line and "zhang\u240asecond visit.wav: " in line, line


def test_a_batch_stopped_between_files_or_finding_nothing_reports_what_it_did(tmp_path, monkeypatch):
    """Ctrl-C between two files: the finished file's line had no line of totals after it, and --report was not
    written, so the report of an earlier run stayed under its name as if it were this one's; so too when the run
    found no recordings."""
    from typer.testing import CliRunner

    from pipeline import batch, cli

    folder = tmp_path / "audio"
    folder.mkdir()
    first, _ = lavfi(BEEP, folder / "a.wav"), lavfi("sine=f=300:r=16000:d=0.5", folder / "b.wav")
    report = tmp_path / "run.json"
    report.write_text('{"files": [], "counts": {"done": 0, "skipped": 0, "failed": 0}}', encoding="utf-8")

    def ctrl_c() -> None:  # where the batch stops for a Ctrl-C that came during the first file
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "stop_if_asked", ctrl_c)
    args = ["run", str(folder), "--no-tag", "--speakers", "off", "--report", str(report), "--db"]
    args += [f"sqlite:///{tmp_path / 'ohp.db'}", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli.app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 130
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{first}: done") and lines[1].endswith(": 1 done") and len(lines) == 2
    document = json.loads(report.read_text(encoding="utf-8"))
    assert [f["path"] for f in document["files"]] == [str(first)] and document["stopped"] is True
    # A folder with no recordings left (moved elsewhere): the report says so, not what the run before did.
    for recording in folder.iterdir():
        recording.rename(recording.with_suffix(".moved"))
    result = CliRunner().invoke(cli.app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "no audio files found" in result.stderr
    assert json.loads(report.read_text(encoding="utf-8"))["files"] == []


def test_a_wav_copied_in_part_is_said_to_be_truncated(tmp_path):
    """A WAV cut off half-way (a copy from a card pulled out too soon): ffmpeg takes its length from its size, so the
    check of the decoded length against the declared one never fired, and half an interview was done without a
    word."""
    whole = lavfi("sine=f=440:r=16000:d=2", tmp_path / "whole.wav").read_bytes()
    half = tmp_path / "half.wav"
    half.write_bytes(whole[: len(whole) // 2])
    decoded = decode(probe(half))
    assert decoded.duration == pytest.approx(1.0, abs=0.01)
    assert any("truncated?" in w and f"of the {len(whole):,} bytes" in w for w in decoded.warnings), decoded.warnings
    assert not decode(probe(tmp_path / "whole.wav")).warnings


def test_a_link_in_a_folder_to_a_recording_that_is_not_there_is_reported(tmp_path, store):
    """A link to a recording on a drive not mounted now was left out of the folder's batch without a word."""
    folder = tmp_path / "interviews"
    folder.mkdir()
    lavfi(BEEP, folder / "here.wav")
    (folder / "on the drive.wav").symlink_to(tmp_path / "drive" / "zhang.wav")
    report = run_batch([folder], store, RunOptions(out_dir=None, speakers=None))
    assert [(r.path.name, r.status) for r in report.files] == [("here.wav", "done"), ("on the drive.wav", "failed")]
    assert "zhang.wav: file not found" in (report.files[1].error or "")
