"""What error messages, logs and the files ohp keeps beside its work tell of a closed recording: nothing that the
listings and exports leave out. SQLite only: none of it depends on the database."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from saving import save_transcription

from pipeline.batch import run_batch
from pipeline.errors import NotFoundError
from pipeline.formats.export import export_recordings, write_redaction_report
from pipeline.formats.redact import Redactor
from pipeline.process import Checkpoint, RunOptions
from pipeline.records import AudioInfo, Segment, Transcript, settings_key
from pipeline.stages.audio import probe
from pipeline.stages.transcribe import ChunkResult

from conftest import SQLITE_ONLY
from test_save_result import quiet_wav

CLOSED = AudioInfo(Path("/audio/li.wav"), "ab" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 20.0)


def closed_recording(store) -> int:
    segments = [Segment(0.0, 0.9, "我叫李秀英。", "我叫李秀英。", "zh", speaker="S1")]
    rid = save_transcription(store, CLOSED, Transcript("zh", 0.9, segments, "faster-whisper", "base"), {}, "t", {})
    store.set_metadata(rid, consent="closed")
    return rid


@SQLITE_ONLY
def test_an_unknown_voice_is_not_answered_with_the_names_of_voices_from_closed_recordings(store):
    closed_recording(store)
    store.enroll("李秀英", [1.0] * 256, "mei", origins=[CLOSED.sha256])  # her name: `ohp speakers list` hides it
    store.enroll("Chen Jie", [1.0] * 256, "mei", origins=["cd" * 32])
    with pytest.raises(NotFoundError) as raised:
        store.forget_person("Chen Jia")
    assert "李秀英" not in str(raised.value)
    assert "Chen Jie" in str(raised.value)  # a voice anyone may list is still offered for a typo


def test_a_checkpoint_of_chunks_is_readable_by_its_owner_only(tmp_path):
    """Its lines are the transcript, of a closed recording too (ohp run writes no files of it), and one stays
    in OHP_HOME after a run killed or failed: with the umask's 0644 anyone on the machine read it."""
    home = tmp_path / "home"
    previous = os.umask(0o022)
    try:
        checkpoint = Checkpoint(CLOSED, "key", home)
        checkpoint.add(0, ChunkResult([Segment(0.0, 0.9, "我叫李秀英。", "我叫李秀英。", "zh")], {}))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(checkpoint.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(checkpoint.path.stat().st_mode) == 0o600


@SQLITE_ONLY
def test_a_recording_closed_since_its_transcript_files_were_written_has_them_removed_by_the_next_run(store, tmp_path):
    """ohp run writes no transcript files of a closed recording, and said so while those it wrote when the
    recording was open stayed in transcripts/: the interviewee, the place and every word, for whoever reads there."""
    options = RunOptions(out_dir=tmp_path / "transcripts", speakers=None)
    audio = probe(quiet_wav(tmp_path / "li.wav"))
    segments = [Segment(0.0, 0.9, "我叫李秀英。", "我叫李秀英。", "zh", speaker="S1")]
    transcript = Transcript("zh", 0.9, segments, "faster-whisper", "base")
    rid = save_transcription(store, audio, transcript, options.settings(), settings_key(options.settings()), {})
    store.set_metadata(rid, interviewee="李秀英")
    [written] = run_batch([audio.path], store, options).files
    assert written.status == "skipped" and sorted(p.name for p in options.out_dir.iterdir()) == [
        "li.json",
        "li.srt",
        "li.txt",
        "li.vtt",
    ]
    (options.out_dir / "notes.txt").write_text("mine", encoding="utf-8")  # not ohp's: stays

    store.set_metadata(rid, consent="closed")
    [closed] = run_batch([audio.path], store, options).files
    assert [p.name for p in options.out_dir.iterdir()] == ["notes.txt"]
    assert any("removed its transcript files" in w for w in closed.warnings)

    # Files of that name that are another recording's (a JSON naming another) stay, as do those a researcher
    # exported of it closed (there on purpose).
    other = {"recording": {"sha256": "ef" * 32, "consent": "open"}}
    (options.out_dir / "li.json").write_text(json.dumps(other), encoding="utf-8")
    run_batch([audio.path], store, options)
    assert sorted(p.name for p in options.out_dir.iterdir()) == ["li.json", "notes.txt"]
    export_recordings(store, store.list_recordings(), ("json", "txt"), options.out_dir, include_closed=True)
    run_batch([audio.path], store, options)
    assert sorted(p.name for p in options.out_dir.iterdir()) == ["li.json", "li.txt", "notes.txt"]


@SQLITE_ONLY
def test_the_files_of_a_closed_recording_a_researcher_exports_are_readable_by_their_owner_only(store, tmp_path):
    """--include-restricted wrote a closed interview's files with the umask's 0644, as an open one's: on a shared
    machine anyone could read them, and the redactions report (every name found, with the words around it) too."""
    closed_recording(store)
    opened = AudioInfo(Path("/audio/wang.wav"), "cd" * 32, 1000, "wav", "pcm_s16le", 16000, 1, 20.0)
    segments = [Segment(0.0, 0.9, "工资很低。", "工资很低。", "zh", speaker="S1")]
    save_transcription(store, opened, Transcript("zh", 0.9, segments, "faster-whisper", "base"), {}, "t", {})
    out = tmp_path / "out"
    previous = os.umask(0o022)
    try:
        redactor = Redactor({"names"}, {"李秀英": "name"})
        formats = ("json", "txt", "csv")
        report = export_recordings(store, store.list_recordings(), formats, out, include_closed=True, redactor=redactor)
        write_redaction_report(report.redactions, tmp_path / "out-redactions.csv")
    finally:
        os.umask(previous)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in [*out.iterdir(), tmp_path / "out-redactions.csv"]}
    assert modes == {
        "li.json": 0o600,
        "li.txt": 0o600,
        "coded-segments.csv": 0o600,  # it holds the closed one's segments
        "wang.json": 0o644,
        "wang.txt": 0o644,
        "out-redactions.csv": 0o600,
    }
