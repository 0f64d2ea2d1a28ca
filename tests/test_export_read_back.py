"""ohp reads back what it exports, whatever the stored text: an audit of the exports (2026-12-02) found files ohp
wrote that its own importer could not read back as written. Recordings go in as `ohp import` of an ohp JSON file and
come out through `ohp export`, on a SQLite database of the test's own."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.formats.readers import read_transcript
from pipeline.store import Store

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def _imported(tmp_path: Path, document: dict) -> str:
    """A database holding the ohp JSON document, imported as `ohp import` imports it."""
    source = tmp_path / "interview.json"
    source.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'ohp.db'}"
    result = invoke("import", source, "--no-tag", "--db", db)
    assert result.exit_code == 0, result.output
    return db


def _exported(tmp_path: Path, db: str, fmt: str) -> Path:
    out = tmp_path / "out"
    result = invoke("export", "--all", "--format", fmt, "--out", out, "--db", db)
    assert result.exit_code == 0, result.output
    return out / f"interview.{fmt}"


def test_txt_export_with_a_line_break_in_a_name_reads_back_timed(tmp_path):
    # A name with a line break (an ohp JSON file's speaker or interviewee, `ohp describe`) was written as is into the
    # header and the turn's "[00:00:05] Name: " line: the .txt then no longer had every line stamped, and ohp read
    # its own export as untimed text, the header's lines as segments, every time 0.
    said = [("S1", "When did you leave home?"), ("S2", "In 1998, for the factory."), ("S1", "And the wages?")]
    speakers = [("S1", "Wang\nMei", "interviewer"), ("S2", "Li Ming", "interviewee")]
    recording = {
        "interviewee": "Li\nMing",
        "place": "Dongguan",
        "speakers": [dict(zip(("label", "name", "role"), speaker, strict=True)) for speaker in speakers],
    }
    segments = [{"start": 5.0 * i, "end": 5.0 * i + 4, "text": t, "speaker": who} for i, (who, t) in enumerate(said)]
    db = _imported(tmp_path, {"recording": recording, "segments": segments})
    back = read_transcript(_exported(tmp_path, db, "txt"))
    assert back.timed
    assert [s.start for s in back.segments] == [0.0, 5.0, 10.0]
    assert back.metadata.get("place") == "Dongguan"


def test_json_export_of_a_segment_corrected_to_nothing_reads_back(tmp_path):
    # An annotator may correct a segment to no text (the web app's TextChange has no minimum length; the store takes
    # it): ohp's reference format then held "text": "" and `ohp import` refused the whole file.
    db = _imported(
        tmp_path,
        {
            "segments": [
                {"start": 0.0, "end": 4.0, "text": "When did you leave home?"},
                {"start": 5.0, "end": 9.0, "text": "uh uh [noise]"},
            ]
        },
    )
    with Store(db) as store:
        recording = store.list_recordings()[0]
        segment = store.segments(recording.id)[1]
        store.correct_text(segment.stored_id, "", "alice", segment.version)
    exported = _exported(tmp_path, db, "json")
    back = read_transcript(exported)
    assert [s.text for s in back.segments] == ["When did you leave home?", ""]


def test_subtitle_cues_stay_inside_48_hours(tmp_path):
    # A segment may end at 48 h (MAX_SECONDS, the importer's bound); subtitles.cues stretches a segment for its cues'
    # minimum duration (0.8 s each) past its own end, so a long last segment was shown after 48:00:00 and ohp's own
    # importer refused the .srt/.vtt ("a time must be from 0 to 48 hours").
    said = " ".join(["word"] * 60)
    db = _imported(tmp_path, {"segments": [{"start": 172799.0, "end": 172800.0, "text": said}]})
    for fmt in ("srt", "vtt"):
        back = read_transcript(_exported(tmp_path, db, fmt))
        assert max(s.end for s in back.segments) <= 172800.0
