"""Transcript files: the JSON reference format, SRT, WebVTT, plain text; atomic writes; file names."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.formats.documents import to_txt
from pipeline.formats.export import DEFAULT_FORMATS as FORMATS
from pipeline.formats.export import (
    PROJECT_WRITERS,
    WRITERS,
    ExportFormat,
    export_stem,
    shared_stems,
    to_csv,
    to_json,
    to_srt,
    to_vtt,
    write_exports,
)
from pipeline.formats.readers import read_transcript
from pipeline.records import AnnotationRecord, RecordingExport, RecordingRecord, Segment, SpeakerRecord, Word
from pipeline.utils import clock, timestamp

RECORDING = RecordingRecord(
    id=7,
    sha256="ab12cd34ef56" + "0" * 52,
    path="/archive/tapes/访谈 录音 01.wav",
    size_bytes=123456,
    format="wav",
    duration=3725.4321,
    language="zh",
    interviewee="王秀英",
    place="成都",
    recorded_on="1998-05-03",
)
SEGMENTS = [
    Segment(
        1.0,
        2.5,
        "我们那时候住在乡下。",
        "我們那時候住在鄉下。",
        "zh",
        [Word(1.0, 1.4, "我们", 0.98765), Word(1.4, 2.0, "那时候", 0.9), Word(2.0, 2.5, "住在乡下。", 0.81234)],
        avg_logprob=-0.2,
        no_speech_prob=0.01,
        speaker="SPEAKER_00",
        id=101,
    ),
    Segment(61.0004, 65.5, "后来搬到了城里。", "後來搬到了城裡。", "zh", [], speaker=None, id=102),
    Segment(
        3723.25, 3725.0, "Thank you & goodbye <laughs>", "Thank you & goodbye <laughs>", "en", speaker="S2", id=103
    ),
]
# SPEAKER_00 has a display name, S2 only its label.
SPEAKERS = [
    SpeakerRecord("SPEAKER_00", "王秀英", "interviewee"),
    SpeakerRecord("S2", None, "interviewer", role_by="mei"),
]
EXPORT = RecordingExport(RECORDING, SEGMENTS, speakers=SPEAKERS)


def test_timestamp():
    assert timestamp(0) == "00:00:00.000"
    assert timestamp(1.5, ",") == "00:00:01,500"
    assert timestamp(61.0004) == "00:01:01.000"
    assert timestamp(59.9996) == "00:01:00.000"  # rounding carries into the minutes
    assert timestamp(3723.25) == "01:02:03.250"
    assert timestamp(36000 + 59 * 60 + 59.999) == "10:59:59.999"
    assert timestamp(-0.2) == "00:00:00.000"
    assert timestamp(75.5, hours=False) == "01:15.500"
    assert timestamp(3723.25, hours=False) == "01:02:03.250"  # hours are kept when there are some
    assert clock(3725.4321) == "01:02:05"
    assert clock(0.9) == "00:00:00"


# --- JSON --------------------------------------------------------------------------------------------


def test_json_is_the_reference_format():
    document = json.loads(to_json(EXPORT))
    assert list(document) == ["recording", "segments"]
    assert document["recording"] == {
        "id": 7,
        "path": "/archive/tapes/访谈 录音 01.wav",
        "sha256": RECORDING.sha256,
        "duration": 3725.4321,
        "language": "zh",
        "interviewee": "王秀英",
        "place": "成都",
        "recorded_on": "1998-05-03",
        "consent": "open",
        "release_on": None,
        "warnings": [],
        "speakers": [
            {"label": "SPEAKER_00", "name": "王秀英", "role": "interviewee"},
            {"label": "S2", "name": None, "role": "interviewer"},
        ],
    }
    assert list(document["recording"]) == [
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
        "warnings",
        "speakers",
    ]
    assert list(document["recording"]["speakers"][0]) == ["label", "name", "role"]
    first = document["segments"][0]
    assert list(first) == [
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
    ]
    assert first == {
        "id": 101,
        "start": 1.0,
        "end": 2.5,
        "text": "我们那时候住在乡下。",
        "original_text": "我們那時候住在鄉下。",
        "language": "zh",
        "speaker": "SPEAKER_00",  # the label: the name is the recording's to give
        "confidence": None,  # no doubt stage ran on these
        "words": [
            {"start": 1.0, "end": 1.4, "text": "我们", "probability": 0.9877, "doubtful": False, "corrected": False},
            {"start": 1.4, "end": 2.0, "text": "那时候", "probability": 0.9, "doubtful": False, "corrected": False},
            {
                "start": 2.0,
                "end": 2.5,
                "text": "住在乡下。",
                "probability": 0.8123,
                "doubtful": False,
                "corrected": False,
            },
        ],
        "themes": [],
        "entities": [],
    }
    assert list(first["words"][0]) == ["start", "end", "text", "probability", "doubtful", "corrected"]
    assert [s["id"] for s in document["segments"]] == [101, 102, 103]
    assert document["segments"][1]["start"] == 61.0 and document["segments"][1]["speaker"] is None
    assert document["segments"][1]["words"] == []
    # The engine's fields (confidence, no-speech probability) are not part of the format.
    assert "avg_logprob" not in first and "no_speech_prob" not in first


def test_json_segments_carry_their_themes():
    annotation = AnnotationRecord(
        id=5,
        segment_id=101,
        recording_id=7,
        theme="housing",
        source="auto",
        status="accepted",
        score=0.8,
        evidence=((5, 7),),
        tagger="t",
        updated_by="mei",
        updated_at="2026-11-25T10:00:00+00:00",
        version=2,
        origin="model",
    )
    document = json.loads(to_json(RecordingExport(RECORDING, SEGMENTS, {101: [annotation]})))
    assert document["segments"][0]["themes"] == [
        {
            "id": "housing",
            "label": "housing",
            "status": "accepted",
            "source": "auto",
            "origin": "model",
            "coder": "mei",
            "evidence": [[5, 7]],
        }
    ]  # the label is the codebook's when the export has one; the coder decided the tagger's suggestion
    assert document["segments"][1]["themes"] == []


def test_json_writes_chinese_as_text_and_ends_with_a_newline():
    text = to_json(RecordingExport(RECORDING, SEGMENTS))
    assert "我们那时候住在乡下" in text and "\\u" not in text
    assert text.endswith("}\n")


def test_json_of_a_recording_without_speech():
    silent = RecordingRecord(8, "f" * 64, "/a/quiet.wav", 10, "wav", 30.0, None)
    assert json.loads(to_json(RecordingExport(silent, []))) == {
        "recording": {
            "id": 8,
            "path": "/a/quiet.wav",
            "sha256": "f" * 64,
            "duration": 30.0,
            "language": None,
            "interviewee": None,
            "place": None,
            "recorded_on": None,
            "consent": "open",
            "release_on": None,
            "warnings": [],
            "speakers": [],
        },
        "segments": [],
    }


# --- SRT, VTT, TXT -----------------------------------------------------------------------------------


def test_srt():
    assert to_srt(EXPORT) == (
        "1\n00:00:01,000 --> 00:00:02,500\n王秀英: 我们那时候住在乡下。\n"
        "\n"
        "2\n00:01:01,000 --> 00:01:05,500\n后来搬到了城里。\n"
        "\n"
        "3\n01:02:03,250 --> 01:02:05,000\nS2: Thank you & goodbye <laughs>\n"
    )


def test_srt_blocks_are_separated_by_one_blank_line():
    blocks = to_srt(RecordingExport(RECORDING, SEGMENTS)).split("\n\n")
    assert len(blocks) == 3
    for number, block in enumerate(blocks, 1):
        lines = block.strip("\n").split("\n")
        assert lines[0] == str(number)
        assert re.fullmatch(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", lines[1])
        assert len(lines) == 3


def test_vtt():
    assert to_vtt(EXPORT) == (
        "WEBVTT\n"
        "\n"
        "00:00:01.000 --> 00:00:02.500\n<v 王秀英>我们那时候住在乡下。\n"
        "\n"
        "00:01:01.000 --> 00:01:05.500\n后来搬到了城里。\n"
        "\n"
        "01:02:03.250 --> 01:02:05.000\n<v S2>Thank you &amp; goodbye &lt;laughs&gt;\n"  # cue text is markup
    )


def test_vtt_voice_names_are_escaped_and_read_back(tmp_path):
    speakers = [SpeakerRecord("SPEAKER_00", "Li <Mei> & Co"), SpeakerRecord("S2", "Wang>Fang")]
    vtt = to_vtt(RecordingExport(RECORDING, SEGMENTS, speakers=speakers))
    assert "\n<v Li &lt;Mei&gt; &amp; Co>我们那时候住在乡下。\n" in vtt and "\n<v Wang&gt;Fang>Thank you &amp;" in vtt
    (tmp_path / "voices.vtt").write_text(vtt, encoding="utf-8")
    imported = read_transcript(tmp_path / "voices.vtt")
    assert [s.speaker for s in imported.segments] == ["Li <Mei> & Co", None, "Wang>Fang"]


def test_vtt_without_segments_is_still_a_vtt_file():
    assert to_vtt(RecordingExport(RECORDING, [])).startswith("WEBVTT\n")


# --- writing -----------------------------------------------------------------------------------------


def test_write_exports_writes_every_format(tmp_path):
    out = tmp_path / "transcripts" / "1998"
    paths = write_exports(RecordingExport(RECORDING, SEGMENTS), out)
    assert paths == [out / f"访谈 录音 01.{fmt}" for fmt in FORMATS]
    writers = {"json": to_json, "srt": to_srt, "vtt": to_vtt, "txt": to_txt}
    for path, fmt in zip(paths, FORMATS, strict=True):
        assert path.read_bytes() == writers[fmt](RecordingExport(RECORDING, SEGMENTS)).encode("utf-8")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temp files left


def test_write_exports_replaces_and_chooses_formats_and_stem(tmp_path):
    write_exports(RecordingExport(RECORDING, SEGMENTS), tmp_path, ("srt",), stem="tape-1")
    paths = write_exports(RecordingExport(RECORDING, SEGMENTS[:1]), tmp_path, ("srt", "json"), stem="tape-1")
    assert paths == [tmp_path / "tape-1.srt", tmp_path / "tape-1.json"]
    assert paths[0].read_text(encoding="utf-8") == to_srt(RecordingExport(RECORDING, SEGMENTS[:1]))
    assert sorted(os.listdir(tmp_path)) == ["tape-1.json", "tape-1.srt"]


def test_write_exports_rejects_unknown_formats_before_writing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown export format pdf") as e:
        write_exports(RecordingExport(RECORDING, SEGMENTS), out, ("json", "pdf"))
    assert "json, srt, vtt, txt, docx, eaf, ohms, csv, qdpx" in str(e.value)
    assert not out.exists()


def test_every_format_has_one_writer():
    assert sorted([*WRITERS, *PROJECT_WRITERS]) == sorted(ExportFormat)


def test_files_get_the_usual_mode(tmp_path):
    # Transcripts are shared: a file written atomically must not stay private like a temp file.
    old = os.umask(0o022)
    try:
        (path,) = write_exports(RecordingExport(RECORDING, SEGMENTS), tmp_path, ("txt",))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    (path,) = write_exports(RecordingExport(RECORDING, SEGMENTS), tmp_path, ("srt",))
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="No space"):
        write_exports(RecordingExport(RECORDING, SEGMENTS[:1]), tmp_path, ("srt",))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


# --- file names --------------------------------------------------------------------------------------


def test_export_stem_adds_the_hash_only_when_the_stem_is_taken():
    assert export_stem(RECORDING) == "访谈 录音 01"
    assert export_stem(RECORDING, set()) == "访谈 录音 01"
    assert export_stem(RECORDING, {"访谈 录音 02"}) == "访谈 录音 01"
    assert export_stem(RECORDING, {"访谈 录音 01"}) == "访谈 录音 01-ab12cd34"


def test_same_stem_from_two_folders_gives_two_files(tmp_path):
    other = RecordingRecord(9, "99887766" + "1" * 56, "/archive/copies/访谈 录音 01.mp3", 1, "mp3", 5.0, "zh")
    taken = {"访谈 录音 01"}
    a = write_exports(RecordingExport(RECORDING, SEGMENTS), tmp_path, ("json",), export_stem(RECORDING, taken))
    b = write_exports(RecordingExport(other, []), tmp_path, ("json",), export_stem(other, taken))
    assert [p.name for p in a + b] == ["访谈 录音 01-ab12cd34.json", "访谈 录音 01-99887766.json"]
    assert json.loads(b[0].read_text(encoding="utf-8"))["recording"]["id"] == 9


def test_shared_stems_are_the_stems_of_more_than_one_file():
    paths = ["/a/zhang.wav", "/b/zhang.m4a", "/a/li.wav", Path("/a/li.wav"), "/c/wang.mp3"]
    assert shared_stems(paths) == {"zhang"}  # the same file named twice is one file


def test_coded_segments_csv_keeps_formulas_as_text():
    """A theme id and its label (a project's codebook), a file name: a spreadsheet must not run them."""
    formula = '=HYPERLINK("http:evil.example","x")'
    recording = replace(RECORDING, path=f"/archive/{formula}.wav")
    note = AnnotationRecord(1, 101, 7, formula, "mei", "accepted", None, (), None, "mei", "", 1)
    export = RecordingExport(recording, SEGMENTS[:1], annotations={101: [note]}, speakers=SPEAKERS)
    [columns, row] = list(csv.reader(io.StringIO(to_csv([export]).removeprefix("\ufeff"))))
    assert [cell for cell in row if cell.startswith(("=", "+", "-", "@", "\t", "\r"))] == []
    cells = dict(zip(columns, row, strict=True))
    assert (cells["recording"], cells["theme"], cells["theme_label"]) == (
        f"'{formula}.wav",
        f"'{formula}",
        f"'{formula}",
    )
