"""Redaction: names out of every field of an export, times and evidence kept, each replacement reported."""

from __future__ import annotations

import csv
import re
from dataclasses import replace

import pytest

from pipeline.formats.export import to_json, write_redaction_report
from pipeline.formats.redact import Redaction, Redactor, load_list
from pipeline.records import AnnotationRecord, Entity, RecordingExport, RecordingRecord, Segment, SpeakerRecord, Word

NAMES = ("张伟", "石门村", "Maria", "Li Hua", "Dongguan")


def annotation(segment_id: int, theme: str, evidence) -> AnnotationRecord:
    return AnnotationRecord(1, segment_id, 1, theme, "auto", "suggested", 0.9, evidence, "1/x", None, "2026-01-01", 1)


@pytest.fixture
def export() -> RecordingExport:
    recording = RecordingRecord(
        1, "ab" * 32, "/data/Li Hua 2019.wav", 10, "wav", 60.0, "zh", interviewee="Li Hua", place="Dongguan"
    )
    words = [
        Word(0.0, 0.4, "我", 0.9),
        Word(0.4, 0.8, "儿子", 0.9),
        Word(0.8, 1.0, "张", 0.9),
        Word(1.0, 1.3, "伟", 0.9),
        Word(1.3, 2.0, "在老家上学", 0.9),
    ]
    segments = [
        Segment(0.0, 2.0, "我儿子张伟在老家上学", "我兒子張偉在老家上學", "zh", words, speaker="S2", id=1),
        Segment(2.0, 4.0, "张伟跟着爷爷奶奶住在石门村", "張偉跟著爺爺奶奶住在石門村", "zh", speaker="S2", id=2),
        Segment(
            4.0,
            6.0,
            "Maria asked about Mariana's wages in Dongguan.",
            "",
            "en",
            [Word(4.0, 4.5, " Maria", 0.9), Word(4.5, 6.0, " asked about Mariana's wages in Dongguan.", 0.9)],
            speaker="S1",
            id=3,
        ),
        Segment(6.0, 7.0, "王", "王", "zh", speaker="S2", id=4),
    ]
    return RecordingExport(
        recording,
        segments,
        annotations={
            1: [annotation(1, "left_behind_children", ((1, 3), (5, 10)))],
            3: [annotation(3, "wages", ((28, 33),))],
        },
        speakers=[SpeakerRecord("S1", "Maria", "interviewer"), SpeakerRecord("S2", "Li Hua", "interviewee")],
        entities={1: [Entity("PERSON", "张伟", 3, 5)], 4: [Entity("PERSON", "王", 0, 1)]},
    )


def test_names_go_from_every_field_and_times_stay(export, tmp_path):
    listed = tmp_path / "redact.txt"
    listed.write_text("# the village\nplace: 石门村\n", encoding="utf-8")
    redacted, report = Redactor({"names", "places"}, load_list(listed))(export)
    document = to_json(redacted)
    for name in NAMES:  # (Mariana is not Maria)
        assert not re.search(rf"\b{name}\b", document) and name not in redacted.recording.path
    texts = [s.text for s in redacted.segments]
    # The entity stage found 张伟 once; every mention goes. One-character entities are not trusted.
    assert texts[:2] == ["我儿子[NAME]在老家上学", "[NAME]跟着爷爷奶奶住在[PLACE]"]
    assert texts[2] == "[NAME] asked about Mariana's wages in [PLACE]."  # whole words only: Mariana stays
    assert texts[3] == "王"
    assert [(s.start, s.end) for s in redacted.segments] == [(s.start, s.end) for s in export.segments]
    # Word timings keep their times; the name split over two words is gone from both.
    assert [(w.start, w.text) for w in redacted.segments[0].words] == [
        (0.0, "我"),
        (0.4, "儿子"),
        (0.8, "[NAME]"),
        (1.0, ""),
        (1.3, "在老家上学"),
    ]
    assert redacted.segments[2].words[0].text == " [NAME]"
    # Evidence still points at the same words.
    evidence = redacted.annotations[1][0].evidence
    assert [redacted.segments[0].text[a:b] for a, b in evidence] == ["儿子", "在老家上学"]
    assert redacted.segments[2].text[slice(*redacted.annotations[3][0].evidence[0])] == "wages"
    assert redacted.entities[1] == [Entity("PERSON", "[NAME]", 3, 9)]
    # Speakers by role, the recording's own fields replaced.
    assert [(s.label, s.name) for s in redacted.speakers] == [("S1", "Interviewer"), ("S2", "Interviewee")]
    assert (redacted.recording.interviewee, redacted.recording.place) == ("[NAME]", "[PLACE]")
    # The report says what went where and why, with the words around it.
    rows = {(r.segment_id, r.field, r.found, r.replacement, r.source) for r in report}
    assert (2, "text", "石门村", "[PLACE]", "list") in rows and (2, "text", "张伟", "[NAME]", "entity") in rows
    assert (3, "text", "Maria", "[NAME]", "speaker") in rows and (
        None,
        "file name",
        "Li Hua",
        "[NAME]",
        "interviewee",
    ) in rows
    assert next(r for r in report if r.found == "石门村").context == "张伟跟着爷爷奶奶住在石门村"


def test_only_the_kinds_asked_for(export):
    redacted, report = Redactor({"places"})(export)
    assert redacted.segments[0].text == export.segments[0].text
    assert redacted.segments[2].text == "Maria asked about Mariana's wages in [PLACE]."
    assert redacted.speakers == export.speakers and {r.replacement for r in report} == {"[PLACE]"}


def test_nothing_to_redact_changes_nothing(export):
    bare = replace(export, speakers=[], entities={}, recording=replace(export.recording, interviewee=None, place=None))
    redacted, report = Redactor({"names"})(bare)
    assert report == [] and [s.text for s in redacted.segments] == [s.text for s in bare.segments]


def test_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="cannot redact faces: choose from names, places"):
        Redactor({"faces"})


def test_a_surname_is_a_name_where_the_words_around_it_say_so(export):
    text = "他姓王，在张老板的厂里，黄姐也在。王老板来自王国，我们向老师请教。"
    segment = Segment(8.0, 9.0, text, text, "zh", id=5)
    entities = {5: [Entity("PERSON", "王老板", 17, 20)]}
    bare = replace(export, segments=[segment], entities=entities, annotations={}, speakers=[])
    redacted, report = Redactor({"names"})(bare)
    assert redacted.segments[0].text == "他姓[NAME]，在[NAME]老板的厂里，[NAME]姐也在。[NAME]来自王国，我们向老师请教。"
    assert [(r.found, r.source) for r in report if r.segment_id == 5] == [
        ("王", "surname"),
        ("张", "surname"),
        ("黄", "surname"),
        ("王老板", "entity"),
    ]
    assert Redactor({"places"})(bare)[0].segments[0].text == text  # a surname is no place


def test_speaker_labels_that_are_names_words_paths_and_metadata(export):
    """An imported transcript's "李秀英:" lines make the speaker's label a name; words stored without their
    spaces; a name in both Chinese scripts; the recording's folder and metadata."""
    texts = ["Sheila", "went", "to", "Chicago-Texas."]
    words = [Word(i / 2, i / 2 + 0.5, text, 0.9) for i, text in enumerate(texts)]
    segments = [
        Segment(0.0, 2.0, "Sheila went to Chicago-Texas.", "", "en", words, speaker="王芳", id=1),
        Segment(2.0, 4.0, "李秀英说張偉和秀英都在", "", "zh", speaker="李秀英", id=2),
        Segment(4.0, 5.0, "Interviewer asks", "", "en", speaker="Interviewer", id=3),
    ]
    metadata = {"media_url": "https://x.example/李秀英.mp3", "n": 3}
    recording = replace(
        export.recording, path="/data/李秀英/tape.wav", metadata=metadata, interviewee="李秀英", place=None
    )
    entities = {
        1: [Entity("PERSON", "Sheila", 0, 6), Entity("PLACE", "Chicago", 15, 22), Entity("PLACE", "Texas", 23, 28)],
        2: [Entity("PERSON", "张伟", 4, 6)],
    }
    speakers = [SpeakerRecord("王芳"), SpeakerRecord("李秀英"), SpeakerRecord("Interviewer")]
    imported = RecordingExport(recording, segments, {}, speakers, entities)
    redacted, report = Redactor({"names", "places"})(imported)
    assert [w.text for w in redacted.segments[0].words] == ["[NAME]", "went", "to", "[PLACE]-[PLACE]."]
    assert redacted.segments[1].text == "[NAME]说[NAME]和[NAME]都在"  # 秀英: her given name alone
    assert [s.label for s in redacted.speakers] == ["S1", "S2", "Interviewer"]  # a role is no name
    assert [s.speaker for s in redacted.segments] == ["S1", "S2", "Interviewer"]
    assert redacted.segments[2].text == "Interviewer asks"
    assert redacted.recording.path == "/data/[NAME]/tape.wav"
    assert redacted.recording.metadata == {"media_url": "https://x.example/[NAME].mp3", "n": 3}
    rows = {(r.field, r.found, r.replacement) for r in report}
    assert {("speaker label", "王芳", "S1"), ("speaker label", "李秀英", "S2")} <= rows
    assert {("metadata: media_url", "李秀英", "[NAME]"), ("text", "張偉", "[NAME]")} <= rows


def test_a_name_left_in_the_words_by_a_correction_goes_and_is_reported(export):
    words = [Word(0.0, 0.5, " Mandy", 0.9), Word(0.5, 1.0, " came", 0.9)]
    corrected = Segment(0.0, 1.0, "My cousin came", "", "en", words, id=1)
    bare = RecordingExport(replace(export.recording, interviewee=None, place=None), [corrected])
    redacted, report = Redactor({"names"}, {"Mandy": "names"})(bare)
    assert [w.text for w in redacted.segments[0].words] == [" [NAME]", " came"]
    reported = [(r.field, r.found, r.context) for r in report if r.field != "file name"]
    assert reported == [("words", "Mandy", " Mandy came")]


def test_the_redaction_report_keeps_formulas_as_text(tmp_path):
    """A file name (and any cell) a spreadsheet would run as a formula stays text in the report."""
    path = tmp_path / "share-redactions.csv"
    write_redaction_report([Redaction("=1+1.wav", None, 0.0, 0.0, "file name", "-Li", "@NAME", "list", "+ctx")], path)
    with open(path, encoding="utf-8-sig", newline="") as f:
        [_, row] = list(csv.reader(f))
    assert [cell for cell in row if cell.startswith(("=", "+", "-", "@", "\t", "\r"))] == []
    assert row[0] == "'=1+1.wav"


def test_places_go_from_speakers_and_a_label_that_would_be_anothers_becomes_an_s_number(export):
    """With places alone redacted, speakers keep their names but not the places in them; two villages'
    speakers both labelled [PLACE] would be one speaker, so the second becomes the next free S-number."""
    segments = [
        Segment(0.0, 1.0, "工资是计件的", "", "zh", speaker="石门村", id=1),
        Segment(1.0, 2.0, "多少？", "", "zh", speaker="啟明村", id=2),
        Segment(2.0, 3.0, "一个月两千", "", "zh", speaker="S1", id=3),
    ]
    speakers = [SpeakerRecord("石门村"), SpeakerRecord("啟明村", "启明村村长"), SpeakerRecord("S1", "Sheila")]
    recording = replace(export.recording, interviewee=None, place=None)
    listed = {"石门村": "places", "启明村": "places"}
    redacted, report = Redactor({"places"}, listed)(RecordingExport(recording, segments, {}, speakers, {}))
    expected = [("[PLACE]", None), ("S2", "[PLACE]村长"), ("S1", "Sheila")]
    assert [(s.label, s.name) for s in redacted.speakers] == expected
    assert [s.speaker for s in redacted.segments] == ["[PLACE]", "S2", "S1"]
    rows = {(r.field, r.found, r.replacement) for r in report}
    assert {("speaker label", "石门村", "[PLACE]"), ("speaker label", "啟明村", "S2")} <= rows


def test_a_latin_name_is_a_whole_word_in_a_list_of_thousands(export):
    """A list of 2,000 names (an archive's name authority file): each Latin name a whole word (Maria is not in
    Mariana or Mariaø), while Chinese, digits and underscores beside it are no letters of a word. Compiling such
    a list took 27 s before the class of letters was made small (bench/RESULTS.md)."""
    listed = {f"Name{n:04d}x": "names" for n in range(2000)} | {"Maria": "names"}
    text = "Maria, Mariana, Mariaø, 我叫Maria在, Maria_2003, Name0042x and Name00421x."
    segment = Segment(0.0, 1.0, text, text, "en", id=1)
    bare = replace(export, segments=[segment], entities={}, annotations={}, speakers=[])
    redacted, _ = Redactor({"names"}, listed)(replace(bare, recording=replace(bare.recording, interviewee=None)))
    assert redacted.segments[0].text == "[NAME], Mariana, Mariaø, 我叫[NAME]在, [NAME]_2003, [NAME] and Name00421x."
