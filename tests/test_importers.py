"""Reading existing transcripts: ohp's JSON (round trip through export), SRT, WebVTT, plain text, bad files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.formats import readers as importers
from pipeline.formats.export import to_json, to_srt, to_txt, to_vtt
from pipeline.formats.readers import TranscriptFormatError, guess_language, read_transcript
from pipeline.records import AnnotationRecord, RecordingExport, RecordingRecord, Segment, SpeakerRecord, Word

RECORDING = RecordingRecord(
    id=7,
    sha256="ab" * 32,
    path="/archive/王秀英 01.wav",
    size_bytes=1,
    format="wav",
    duration=3725.5,
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
        [Word(1.0, 1.4, "我们", 0.9877), Word(1.4, 2.5, "那时候住在乡下。", 0.81)],
        speaker="S1",
        id=101,
    ),
    Segment(61.25, 65.5, "后来搬到了城里。", "後來搬到了城裡。", "zh", [], speaker=None, id=102),
    Segment(3723.25, 3725.0, "Thank you & goodbye <laughs>", "Thank you & goodbye <laughs>", "en", id=103),
]
THEME = AnnotationRecord(
    id=1,
    segment_id=102,
    recording_id=7,
    theme="migration",
    source="auto",
    status="accepted",
    score=0.8,
    evidence=((2, 4),),
    tagger="t1",
    updated_by=None,
    updated_at="2026-01-01T00:00:00+00:00",
    version=1,
)
EXPORT = RecordingExport(RECORDING, SEGMENTS, {102: [THEME]})


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def rows(transcript) -> list[tuple]:
    return [(s.start, s.end, s.speaker, s.text) for s in transcript.segments]


# --------------------------------------------------------------------------------------- ohp JSON


def test_json_round_trip(tmp_path):
    imported = read_transcript(write(tmp_path, "a.json", to_json(EXPORT)))
    assert imported.source_format == "json" and imported.timed and imported.language == "zh"
    expected = [
        Segment(s.start, s.end, s.text, s.original_text, s.language, s.words, speaker=s.speaker) for s in SEGMENTS
    ]
    assert imported.segments == expected  # ids are the exporting database's: not carried over
    assert imported.metadata == {
        "path": RECORDING.path,
        "sha256": RECORDING.sha256,
        "duration": 3725.5,
        "id": 7,
        "consent": "open",
        "interviewee": "王秀英",
        "place": "成都",
        "recorded_on": "1998-05-03",
        "themes": {
            1: [
                {
                    "id": "migration",
                    "label": "migration",
                    "status": "accepted",
                    "source": "auto",
                    "origin": None,
                    "coder": "ohp",
                    "evidence": [[2, 4]],
                }
            ]
        },
    }


def test_json_speakers_names_and_roles_are_read(tmp_path):
    speakers = [SpeakerRecord("S1", "王秀英", "interviewee", named_by="mei"), SpeakerRecord("S2")]
    imported = read_transcript(
        write(tmp_path, "a.json", to_json(RecordingExport(RECORDING, SEGMENTS, speakers=speakers)))
    )
    assert imported.metadata["speakers"] == [
        {"label": "S1", "name": "王秀英", "role": "interviewee"},
        {"label": "S2", "name": None, "role": None},
    ]
    for bad in ([{"name": "x"}], [{"label": "S1", "role": "boss"}], {"S1": "x"}, [{"label": "S1", "name": 3}]):
        with pytest.raises(TranscriptFormatError, match='"speakers" must be a list of objects with a "label"'):
            read_transcript(
                write(
                    tmp_path,
                    "bad.json",
                    json.dumps({"recording": {"speakers": bad}, "segments": [{"start": 0, "end": 1, "text": "x"}]}),
                )
            )


def test_json_found_by_content_whatever_its_name(tmp_path):
    assert read_transcript(write(tmp_path, "export", to_json(EXPORT))).source_format == "json"


def test_json_minimal_segments_get_a_language(tmp_path):
    path = write(tmp_path, "m.json", '{"segments": [{"start": 0, "end": 1.5, "text": "We were paid low wages."}]}')
    imported = read_transcript(path)
    assert imported.language == "en"
    assert imported.segments == [Segment(0.0, 1.5, "We were paid low wages.", "We were paid low wages.", "en")]


@pytest.mark.parametrize(
    "text,cause,line",
    [
        ('{"segments": [', "not valid JSON", 1),
        ('{\n "segments": [\n  {"start": 1,}\n ]\n}', "not valid JSON", 3),
        ('[{"start": 0, "end": 1, "text": "x"}]', 'JSON, but not an ohp transcript: it has no "segments" list', None),
        ('{"results": []}', 'JSON, but not an ohp transcript: it has no "segments" list', None),
        ('{"segments": []}', "the transcript has no segments", None),
        ('{"segments": [{"start": 0, "text": "x"}]}', 'segment 1 has no "end"', None),
        (
            '{"segments": [{"start": "0:01", "end": 2, "text": "x"}]}',
            'segment 1: start must be a number, not "0:01"',
            None,
        ),
        ('{"segments": [{"start": 3, "end": 2, "text": "x"}]}', "segment 1 ends (2.0) before it starts (3.0)", None),
        ('{"segments": [{"start": 0, "end": 2, "text": null}]}', "segment 1 has no text", None),
        (
            '{"segments": [{"start": 0, "end": 2, "text": "x", "speaker": 3}]}',
            "segment 1: speaker must be text, not 3",
            None,
        ),
        (
            '{"segments": [{"start": 0, "end": 2, "text": "x", "themes": ["a"]}]}',
            'segment 1: "themes" must be a list',
            None,
        ),
        (
            '{"segments": [{"start": 0, "end": 2, "text": "x", "words": [{"text": "x"}]}]}',
            "segment 1, word 1: start must be a number, not null",
            None,
        ),
    ],
)
def test_bad_json(tmp_path, text, cause, line):
    with pytest.raises(TranscriptFormatError) as caught:
        read_transcript(write(tmp_path, "bad.json", text))
    assert caught.value.cause.startswith(cause) and caught.value.line == line
    assert str(caught.value).startswith(str(tmp_path / "bad.json"))


def segment_of(**changes) -> dict:
    return {"start": 0, "end": 2, "text": "x", **changes}


@pytest.mark.parametrize(
    "document,cause",
    [
        (
            '{"segments": [{"start": 0, "end": 2, "text": "x",'
            ' "words": [{"start": 0, "end": 1, "text": "x", "probability": 1e999}]}]}',
            "segment 1, word 1: probability must be a finite number",
        ),
        (
            {"segments": [segment_of(words=[{"start": 1, "end": 0.5, "text": "x", "probability": 1}])]},
            "segment 1, word 1 ends (0.5) before it starts (1.0)",
        ),
        ({"recording": {"duration": "1h"}, "segments": [segment_of()]}, "recording: duration must be a number"),
        ({"recording": {"duration": -1}, "segments": [segment_of()]}, "recording: duration is -1 s"),
        ({"recording": {"id": "seven"}, "segments": [segment_of()]}, 'recording: id must be a whole number, not "s'),
        ({"recording": {"path": ["a"]}, "segments": [segment_of()]}, 'recording: path must be text, not ["a"]'),
        (
            {"recording": {"consent": "x" * 100}, "segments": [segment_of()]},
            f"the recording's consent must be one of open, restricted, closed, not \"{'x' * 38}…",
        ),
        ({"segments": [segment_of(speaker="s" * 256)]}, "segment 1: speaker is 256 characters long (at most 255)"),
    ],
)
def test_bad_json_values(tmp_path, document, cause):
    """Values of the right type that no recording has, and strings too long to show or store."""
    with pytest.raises(TranscriptFormatError) as caught:
        read_transcript(write(tmp_path, "bad.json", document if isinstance(document, str) else json.dumps(document)))
    assert caught.value.cause == cause or caught.value.cause.startswith(cause)
    assert str(caught.value).startswith(str(tmp_path / "bad.json"))


# --------------------------------------------------------------------------------------------- SRT

SRT = """1
00:00:01,000 --> 00:00:02,500
<i>我们那时候</i>
住在乡下。

2
00:01:01,250 --> 00:01:05,500 X1:10 X2:20
{\\an8}<font color="#ffff00">后来搬到了城里。</font>

3
01:02:03,250 --> 01:02:05,000
Thank you & goodbye <laughs>
"""


def test_srt(tmp_path):
    imported = read_transcript(write(tmp_path, "a.srt", SRT))
    assert imported.source_format == "srt" and imported.timed and imported.language == "zh"
    assert rows(imported) == [
        (1.0, 2.5, None, "我们那时候住在乡下。"),  # a line break in Chinese is no space
        (61.25, 65.5, None, "后来搬到了城里。"),
        (3723.25, 3725.0, None, "Thank you & goodbye <laughs>"),  # not an SRT tag: kept
    ]
    assert all(s.original_text == s.text for s in imported.segments)
    assert [s.language for s in imported.segments] == ["zh", "zh", "en"]  # each in its own text's language


def test_srt_from_export_with_crlf_and_bom(tmp_path):
    text = "\ufeff" + to_srt(EXPORT).replace("\n", "\r\n")
    imported = read_transcript(write(tmp_path, "a.srt", text))
    assert [(s.start, s.end, s.text) for s in imported.segments] == [
        (1.0, 2.5, "S1: 我们那时候住在乡下。"),  # one speaker label in three cues: not taken for one
        (61.25, 65.5, "后来搬到了城里。"),
        (3723.25, 3725.0, "Thank you & goodbye <laughs>"),
    ]


def test_srt_speaker_labels(tmp_path):
    text = (
        "1\n00:00:01,000 --> 00:00:02,000\n采访者：您是哪年出生的？\n\n"
        "2\n00:00:02,000 --> 00:00:04,000\n王秀英：1932年。\n"
    )
    assert rows(read_transcript(write(tmp_path, "a.srt", text))) == [
        (1.0, 2.0, "采访者", "您是哪年出生的？"),
        (2.0, 4.0, "王秀英", "1932年。"),
    ]


@pytest.mark.parametrize(
    "text,cause,line",
    [
        ("1\n00:00:01,000 --> 00:00:0x,500\nhi\n", "'00:00:0x,500' is not a time", 2),
        (
            "1\n00:00:01,000 --> 00:00:02,000\nhi\n\n2\n00:00:05,000 --> 00:00:04,000\nho\n",
            "the cue ends (00:00:04,000) before it starts (00:00:05,000)",
            6,
        ),
        ("1\n00:00:01,000 --> 00:00:02,000\n<i> </i>\n", "the cue has no text", 2),
        ("1\n00:00:01,000 --> 00:00:02,000\n", "the cue has no text", 2),
        ("1\n00:00:01,000 --> 00:00:02,000\nhi\n\nstray words\n", "expected a cue's times", 5),
        ("1\n00:00:61,000 --> 00:01:02,000\nhi\n", "'00:00:61,000': minutes and seconds go up to 59", 2),
    ],
)
def test_bad_srt(tmp_path, text, cause, line):
    with pytest.raises(TranscriptFormatError) as caught:
        read_transcript(write(tmp_path, "bad.srt", text))
    assert caught.value.cause.startswith(cause), caught.value.cause
    assert caught.value.line == line
    assert f"bad.srt, line {line}: " in str(caught.value)


# ------------------------------------------------------------------------------------------ WebVTT

VTT = """WEBVTT - an interview
Kind: captions
Language: zh

STYLE
::cue { color: yellow }

NOTE transcribed by hand,
two lines of comment

intro
00:01.000 --> 00:02.500	align:start position:10%
<v.loud 采访者>您好 &amp; 欢迎</v>

00:00:03.000 --> 00:00:05.000
<v Wang Xiuying><i>我们</i>那时候<00:00:04.000>住在乡下</v>

NOTE another

00:06.000 --> 00:08.000
<v A>Did you?</v> <v B>No.</v>
"""


def test_vtt(tmp_path):
    imported = read_transcript(write(tmp_path, "a.vtt", VTT))
    assert imported.source_format == "vtt" and imported.timed
    assert imported.language == "zh" and imported.metadata == {"language": "zh"}  # "Kind" is the player's
    assert rows(imported) == [
        (1.0, 2.5, "采访者", "您好 & 欢迎"),
        (3.0, 5.0, "Wang Xiuying", "我们那时候住在乡下"),
        (6.0, 8.0, "A", "Did you?"),  # one segment per voice
        (6.0, 8.0, "B", "No."),
    ]


def test_vtt_from_export(tmp_path):
    imported = read_transcript(write(tmp_path, "a.vtt", to_vtt(EXPORT)))
    assert [(s.start, s.end, s.text) for s in imported.segments] == [(s.start, s.end, s.text) for s in SEGMENTS]
    assert imported.language == "zh"  # guessed: the header does not say


def test_vtt_content_wins_over_extension(tmp_path):
    assert read_transcript(write(tmp_path, "a.srt", to_vtt(EXPORT))).source_format == "vtt"


@pytest.mark.parametrize(
    "text,cause,line",
    [
        ("1\n00:00:01.000 --> 00:00:02.000\nhi\n", "a WebVTT file must begin with the line WEBVTT", 1),
        ("WEBVTT\n\n00:01.000 --> 00:00.500\nhi\n", "the cue ends (00:00.500) before it starts (00:01.000)", 3),
        ("WEBVTT\n\n00:01.000 --> 00:02.000\n<v A></v>\n", "the cue has no text", 3),
        ("WEBVTT\n\n00:01.000 --> 00:02:000\nhi\n", "'00:02:000' is not a time", 3),
        ("WEBVTT\n\ncue-1\nhello\n", "expected a cue's times", 4),
        ("WEBVTT\n", "no cues with text in it", None),
    ],
)
def test_bad_vtt(tmp_path, text, cause, line):
    with pytest.raises(TranscriptFormatError) as caught:
        read_transcript(write(tmp_path, "bad.vtt", text))
    assert caught.value.cause.startswith(cause), caught.value.cause
    assert caught.value.line == line


# -------------------------------------------------------------------------------------- plain text


def test_plain_text_is_untimed_lines(tmp_path):
    text = "我们那时候住在乡下。\n\n   \n后来搬到了城里。\r\n说：好的\n"
    imported = read_transcript(write(tmp_path, "a.txt", text))
    assert imported.source_format == "txt" and not imported.timed and imported.language == "zh"
    assert rows(imported) == [
        (0.0, 0.0, None, "我们那时候住在乡下。"),
        (0.0, 0.0, None, "后来搬到了城里。"),
        (0.0, 0.0, None, "说：好的"),
    ]


def test_plain_text_speakers(tmp_path):
    text = "Interviewer: Where were you born?\nMrs Chen: In Chengdu.\nInterviewer: And then?\nWe moved.\n"
    assert rows(read_transcript(write(tmp_path, "a.txt", text))) == [
        (0.0, 0.0, "Interviewer", "Where were you born?"),
        (0.0, 0.0, "Mrs Chen", "In Chengdu."),
        (0.0, 0.0, "Interviewer", "And then?"),
        (0.0, 0.0, None, "We moved."),
    ]


def test_a_colon_here_and_there_is_no_speaker(tmp_path):
    text = "He said: no.\nWe left at 10:30 that day.\nThen it rained.\nNote: the tape ends here.\nThat was all.\n"
    assert all(s.speaker is None for s in read_transcript(write(tmp_path, "a.txt", text)).segments)


def test_ohp_text_export_reads_back_timed(tmp_path):
    imported = read_transcript(write(tmp_path, "a.txt", to_txt(EXPORT)))
    assert imported.timed and imported.language == "zh"
    assert imported.metadata == {
        "duration": 3725.0,
        "interviewee": "王秀英",
        "place": "成都",
        "recorded_on": "1998-05-03",
    }
    assert [(s.start, s.end, s.text) for s in imported.segments] == [
        (1.0, 61.0, "S1: 我们那时候住在乡下。"),  # one speaker label in three lines: not taken for one
        (61.0, 3723.0, "后来搬到了城里。"),
        (3723.0, 3725.0, "Thank you & goodbye <laughs>"),
    ]


def test_consent_comes_back_with_the_text_export(tmp_path):
    closed = RecordingExport(replace(RECORDING, consent="closed", release_on="2999-01-01"), SEGMENTS)
    imported = read_transcript(write(tmp_path, "a.txt", to_txt(closed)))
    assert (imported.metadata["consent"], imported.metadata["release_on"]) == ("closed", "2999-01-01")
    with pytest.raises(TranscriptFormatError, match="recorded_on must be a date"):
        read_transcript(write(tmp_path, "b.txt", "tape\nDate: May 1998\n\n[00:00:01] hello\n"))


def test_timed_text_going_backwards(tmp_path):
    with pytest.raises(TranscriptFormatError) as caught:
        read_transcript(write(tmp_path, "a.txt", "[00:00:05] a\n[00:00:03] b\n"))
    assert caught.value.line == 2 and "earlier" in caught.value.cause


# ------------------------------------------------------------------------------------- whole files


@pytest.mark.parametrize("name", ["a.txt", "a.srt", "a.vtt", "a.json"])
def test_empty_files(tmp_path, name):
    with pytest.raises(TranscriptFormatError, match="the file is empty"):
        read_transcript(write(tmp_path, name, " \n\ufeff\n"[:2]))


def test_not_utf8(tmp_path):
    path = write(tmp_path, "gbk.txt", "第一行\n".encode() + "我们那时候".encode("gbk"))
    with pytest.raises(TranscriptFormatError) as caught:
        read_transcript(path)
    assert caught.value.line == 2 and "not UTF-8" in caught.value.cause and "iconv" in caught.value.cause


def test_utf16(tmp_path):
    """UTF-16 with its byte-order mark (Windows Notepad's "Unicode") is read; without it, refused saying so."""
    cue = "1\n00:00:01,000 --> 00:00:02,000\n我们那时候\n"
    assert read_transcript(write(tmp_path, "a.srt", cue.encode("utf-16"))).segments[0].text == "我们那时候"
    with pytest.raises(TranscriptFormatError, match="UTF-16 without a byte-order mark"):
        read_transcript(write(tmp_path, "b.txt", "hello there".encode("utf-16-le")))


def test_a_file_of_more_segments_than_an_interview_has_is_refused_before_they_are_made(tmp_path):
    """An audit's file: 1 MB of "x" lines made 500,000 segments in 684 MB (50 MB would need 30 GB)."""
    for name, text in (
        ("lines.txt", "x\n" * 100_001),
        ("cues.srt", "1\n00:00:01,000 --> 00:00:02,000\nx\n\n" * 100_001),
    ):
        with pytest.raises(TranscriptFormatError, match="more than 100,000 segments"):
            read_transcript(write(tmp_path, name, text.encode()))
    many = {"segments": [{"start": 0, "end": 1, "text": "x"}] * 100_001}
    with pytest.raises(TranscriptFormatError, match="more than 100,000 segments"):
        read_transcript(write(tmp_path, "many.json", json.dumps(many).encode()))


def test_binary(tmp_path):
    with pytest.raises(TranscriptFormatError, match="NUL"):
        read_transcript(write(tmp_path, "a.txt", b"PK\x03\x04\x00\x00"))


def test_too_big(tmp_path, monkeypatch):
    monkeypatch.setattr(importers, "MAX_BYTES", 100)
    with pytest.raises(TranscriptFormatError, match="too big"):
        read_transcript(write(tmp_path, "a.txt", "x" * 101))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(TranscriptFormatError, match="cannot read it"):
        read_transcript(tmp_path / "nope.srt")
    with pytest.raises(TranscriptFormatError, match="is a folder"):
        read_transcript(tmp_path)


@pytest.mark.parametrize(
    "text,language",
    [
        ("我们那时候住在乡下 OK", "zh"),
        ("We lived in 成都 then.", "en"),
        ("My name is 王秀英, born in 成都", "en"),
        ("私たちはそこに住んでいました", "ja"),
        ("우리는 거기 살았어요", "ko"),
        ("1998 2001", None),
        ("", None),
    ],
)
def test_guess_language(text, language):
    assert guess_language(text) == language
