"""Redaction and consent over strings the entity stage does not give: Latin names run into Chinese text or
joined by underscores in file names, and the consent mark of every format that has a place for one."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import replace
from urllib.parse import quote

import pytest

from pipeline.formats.elan import to_eaf
from pipeline.formats.export import PROJECT_WRITERS, WRITERS, ExportFormat
from pipeline.formats.ohms import to_ohms
from pipeline.formats.redact import Redactor
from pipeline.records import AnnotationRecord, Entity, RecordingExport, RecordingRecord, Segment, SpeakerRecord, Word

NAMES = ("sheila", "brown", "dongguan", "tomasz", "baker")


def written(data: str | bytes) -> bytes:
    """Every byte a format writes, the members of a zip (docx, qdpx) with their names, in lower case."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            data = b"".join(name.encode() + z.read(name) for name in z.namelist())
    return data.lower()


@pytest.fixture
def code_switched() -> RecordingExport:
    """A Chinese interview with English names in it, as migrant workers use them and the recogniser writes
    them: no space between the name and the Chinese around it; a file named with underscores and digits."""
    recording = RecordingRecord(
        1,
        "ab" * 32,
        "/data/Sheila_Brown_2003/tape_sheila2.wav",
        10,
        "wav",
        60.0,
        "zh",
        interviewee="Sheila Brown",
        place="Dongguan",
        metadata={"media_url": "https://archive.example/Sheila_Brown.mp3"},
    )
    words = [Word(0.0, 1.0, "我叫Sheila", 0.5, doubtful=True), Word(1.0, 2.0, "，在Dongguan打工", 0.5, doubtful=True)]
    segments = [
        Segment(0.0, 2.0, "我叫Sheila，在Dongguan打工", "我叫Sheila，在Dongguan打工", "zh", words, speaker="S1", id=1),
        Segment(2.0, 4.0, "Tomasz问：Sheila好吗", "", "zh", speaker="S2", id=2),
    ]
    coded = AnnotationRecord(1, 1, 1, "wages", "alice", "accepted", 0.9, ((0, 9),), None, "alice", "2026-01-01", 1)
    annotations = {1: [coded]}
    speakers = [SpeakerRecord("S1", "Sheila Brown", "interviewee"), SpeakerRecord("S2", "Tomasz Baker", "interviewer")]
    entities = {1: [Entity("PLACE", "Dongguan", 10, 18)]}
    return RecordingExport(recording, segments, annotations, speakers, entities)


def test_latin_names_beside_chinese_underscores_and_digits_go(code_switched):
    """A Latin name is replaced as a whole word, and Chinese, digits and underscores are not part of a word:
    "我叫Sheila" and "Sheila_Brown_2003" name her as plainly as "Sheila Brown" does."""
    redacted, report = Redactor({"names", "places"})(code_switched)
    assert [s.text for s in redacted.segments] == ["我叫[NAME]，在[PLACE]打工", "[NAME]问：[NAME]好吗"]
    assert [w.text for w in redacted.segments[0].words] == ["我叫[NAME]", "，在[PLACE]打工"]
    assert redacted.recording.path == "/data/[NAME]_[NAME]_2003/tape_[NAME]2.wav"
    assert redacted.recording.metadata == {"media_url": "https://archive.example/[NAME]_[NAME].mp3"}
    assert ("text", "Dongguan", "[PLACE]") in {(r.field, r.found, r.replacement) for r in report}
    for writer, _ in WRITERS.values():
        data = written(writer(redacted))
        assert not [name for name in NAMES if name.encode() in data], writer.__name__
    for project_writer, _ in PROJECT_WRITERS.values():
        data = written(project_writer([redacted], None))
        assert not [name for name in NAMES if name.encode() in data], project_writer.__name__


def test_a_latin_name_inside_a_longer_word_stays(code_switched):
    """Letters on either side make another word: Mariana is not Maria, Tomato not Tom."""
    segment = Segment(0.0, 1.0, "Mariana吃Tomato，Maria_2 说", "", "zh", id=1)
    bare = RecordingExport(code_switched.recording, [segment])
    redacted, _ = Redactor({"names"}, {"Maria": "names", "Tom": "names"})(bare)
    assert redacted.segments[0].text == "Mariana吃Tomato，[NAME]_2 说"


def test_a_restriction_is_marked_in_every_format_that_has_a_place_for_it(code_switched):
    """The consent policy: a restricted recording is exported marked as restricted wherever the format can
    say so (SRT has no place for a note); ELAN's is a header property."""
    restricted = replace(code_switched.recording, consent="restricted", release_on="2999-01-01")
    export = replace(code_switched, recording=restricted)
    for fmt, (writer, _) in WRITERS.items():
        if fmt != ExportFormat.SRT:
            data = written(writer(export))
            assert b"restricted" in data and b"2999-01-01" in data, fmt
    for fmt, (project_writer, _) in PROJECT_WRITERS.items():
        assert b"restricted" in written(project_writer([export], None)), fmt
    eaf = ET.fromstring(to_eaf(export))
    properties = {p.get("NAME"): p.text for p in eaf.iterfind("HEADER/PROPERTY")}
    assert properties["ohp:consent"] == "restricted until 2999-01-01"
    opened = replace(export, recording=replace(restricted, release_on="2000-01-01"))  # released: open now
    assert "ohp:consent" not in {p.get("NAME") for p in ET.fromstring(to_eaf(opened)).iterfind("HEADER/PROPERTY")}


def test_a_name_percent_encoded_in_a_url_goes(code_switched):
    """A browser's address bar copies a link's Chinese percent-encoded (李秀英 as %E6%9D%8E...), and curl -O
    names the file it saves so: the OHMS media_url and the file name named her in that form."""
    media_url = "https://archive.example/audio/" + quote("李秀英访谈.mp3") + "?from=" + quote("东莞")
    recording = replace(
        code_switched.recording,
        path="/downloads/" + quote("李秀英访谈.mp3"),
        interviewee="李秀英",
        place="东莞",
        metadata={"media_url": media_url, "n": 1},
    )
    redacted, report = Redactor({"names", "places"})(replace(code_switched, recording=recording))
    assert redacted.recording.path == "/downloads/[NAME]访谈.mp3"
    assert redacted.recording.metadata == {
        "media_url": "https://archive.example/audio/[NAME]访谈.mp3?from=[PLACE]",
        "n": 1,
    }
    assert {("metadata: media_url", "李秀英"), ("metadata: media_url", "东莞")} <= {(r.field, r.found) for r in report}
    ohms = to_ohms(redacted)
    assert "李秀英" not in ohms and quote("李秀英") not in ohms and quote("东莞") not in ohms
    plain = {"media_url": "https://archive.example/audio/clip%20one.mp3"}  # nothing to redact: kept as it was
    untouched = replace(code_switched, recording=replace(recording, metadata=plain))
    assert Redactor({"names", "places"})(untouched)[0].recording.metadata == plain


def test_each_of_several_people_or_places_a_field_lists_goes(code_switched):
    """A couple interviewed together: the interviewee field lists both, as the place field may list two
    places; each is a name on its own wherever the text says it."""
    recording = replace(code_switched.recording, interviewee="李秀英、王建国", place="东莞; Shenzhen", path="/a.wav")
    text = "王建国和李秀英先到东莞，后来去Shenzhen。"
    segment = Segment(0.0, 2.0, text, text, "zh", id=1)
    bare = RecordingExport(recording, [segment], speakers=[SpeakerRecord("S1", "Sheila Brown, Tomasz Baker")])
    redacted, _ = Redactor({"names", "places"})(bare)
    assert redacted.segments[0].text == "[NAME]和[NAME]先到[PLACE]，后来去[PLACE]。"
    assert (redacted.recording.interviewee, redacted.recording.place) == ("[NAME]", "[PLACE]")  # each field whole
    said = replace(segment, text="Tomasz and Brown came.", original_text="")
    assert Redactor({"names"})(replace(bare, segments=[said]))[0].segments[0].text == "[NAME] and [NAME] came."
