"""REFI-QDA projects: the export is valid against the QDA-XML schema and reads back with plain zipfile and
lxml; codings added in a QDA tool come back with their coder, times and words; bad files are refused."""

from __future__ import annotations

import io
import uuid
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from lxml import etree

from pipeline.formats.qdpx import read_qdpx, to_qdpx
from pipeline.formats.readers import TranscriptFormatError
from pipeline.records import (
    TRANSCRIPT_FORMAT,
    AnnotationRecord,
    RecordingExport,
    RecordingRecord,
    Segment,
    SpeakerRecord,
)
from pipeline.stages.codebook import load_codebook

from conftest import STANDARDS, corpus_path

NS = {"q": "urn:QDA-XML:project:1.0"}
CODEBOOK = load_codebook()


def standard(name: str) -> Path:
    return corpus_path(name, STANDARDS)


def _annotation(id_, segment, recording, theme, source, status, evidence=(), updated_by=None):
    return AnnotationRecord(
        id_, segment, recording, theme, source, status, 0.8, evidence, None, updated_by, "2024-03-01T08:30:00+00:00", 1
    )


def _span(text: str, words: str) -> tuple[int, int]:
    start = text.index(words)
    return start, start + len(words)


ZH = [
    Segment(0.0, 4.0, "你老公在哪里打工？", "", "zh", speaker="S1", id=1),
    Segment(4.5, 10.0, "他在东莞，我在深圳，一年见一次面。", "", "zh", speaker="S2", id=2),
    Segment(10.6, 15.0, "孩子留在老家给爷爷奶奶带。", "", "zh", speaker="S2", id=3),
]
EN = [
    Segment(0.0, 3.0, "So when did you first leave home?", "", "en", speaker="S1", id=11),
    Segment(3.2, 9.0, "I left in 1998 to work in a shoe factory in Dongguan.", "", "en", speaker="S2", id=12),
    Segment(9.0, 14.0, "The wages were low, but we sent money home.", "", "en", speaker="S2", id=13),
]
ZH_RECORDING = RecordingRecord(
    1, "a" * 64, "/archive/访谈/张丽华 1.wav", 10, "wav", 15.0, "zh", interviewee="张丽华", place="深圳"
)
EN_RECORDING = RecordingRecord(
    2, "b" * 64, "/archive/chen.mp3", 10, "mp3", 14.0, "en", consent="restricted", release_on="2040-01-01"
)
EXPORTS = [
    RecordingExport(
        ZH_RECORDING,
        ZH,
        {
            2: [
                _annotation(1, 2, 1, "family_separation", "alice", "accepted", (_span(ZH[1].text, "一年见一次面"),)),
                _annotation(2, 2, 1, "wages", "auto", "suggested", (_span(ZH[1].text, "东莞"),)),
            ],
            3: [
                _annotation(
                    3, 3, 1, "left_behind_children", "auto", "accepted", (_span(ZH[2].text, "孩子留在老家"),), "alice"
                ),
                _annotation(4, 3, 1, "housing", "alice", "rejected", (_span(ZH[2].text, "老家"),)),
            ],
        },
        [SpeakerRecord("S1", "Interviewer"), SpeakerRecord("S2", "张丽华")],
        codebook=CODEBOOK,
    ),
    RecordingExport(
        EN_RECORDING,
        EN,
        {
            12: [
                _annotation(5, 12, 2, "migration_journey", "auto", "accepted"),  # no evidence: the whole segment
                _annotation(6, 12, 2, "working_conditions", "auto", "suggested", (_span(EN[1].text, "shoe factory"),)),
            ],
            13: [
                _annotation(
                    7,
                    13,
                    2,
                    "wages",
                    "alice",
                    "accepted",
                    (_span(EN[2].text, "wages were low"), _span(EN[2].text, "sent money home")),
                )
            ],
        },
        [SpeakerRecord("S1", "Interviewer"), SpeakerRecord("S2", "Chen Wei")],
        codebook=CODEBOOK,
    ),
]
# (sha256, theme, coder, coded words, segment) of every coding the export makes: accepted annotations only.
EXPORTED = {
    ("a" * 64, "family_separation", "alice", "一年见一次面", 1),
    ("a" * 64, "left_behind_children", "alice", "孩子留在老家", 2),
    ("b" * 64, "migration_journey", "ohp", EN[1].text, 1),
    ("b" * 64, "wages", "alice", "wages were low", 2),
    ("b" * 64, "wages", "alice", "sent money home", 2),
}


@pytest.fixture(scope="module")
def qdpx() -> bytes:
    return to_qdpx(EXPORTS, CODEBOOK)


def _open(data: bytes) -> tuple[zipfile.ZipFile, etree._Element]:
    archive = zipfile.ZipFile(io.BytesIO(data))
    return archive, etree.fromstring(archive.read("project.qde"))


def _transcript_file(archive: zipfile.ZipFile, transcript: etree._Element) -> str:
    return archive.read("sources/" + transcript.get("plainTextPath").removeprefix("internal://")).decode("utf-8")


def _seconds_at(segment: Segment, char: int) -> float:
    return segment.start + (segment.end - segment.start) * char / len(segment.text)


def _times(segment: Segment, words: str) -> tuple[float, float]:
    """When the words are said, by characters along the segment."""
    start, end = _span(segment.text, words)
    return _seconds_at(segment, start), _seconds_at(segment, end)


# ------------------------------------------------------------------------------------------- export


def test_project_is_valid_against_the_schema(qdpx):
    import xmlschema

    schema = xmlschema.XMLSchema(str(standard("refi-qda-Project-mrt2019.xsd")))
    archive, _ = _open(qdpx)
    schema.validate(archive.read("project.qde").decode("utf-8"))
    schema.validate(
        _open(to_qdpx([], CODEBOOK))[0].read("project.qde").decode("utf-8")
    )  # no recordings: still a project
    # Laid out as ATLAS.ti lays out its own: project.qde at the top, in the same namespace.
    with zipfile.ZipFile(standard("refi-qda-sample-atlas-project.qdpx")) as atlas:
        assert etree.fromstring(atlas.read("project.qde")).tag == etree.fromstring(archive.read("project.qde")).tag


def test_codebook_users_and_sources(qdpx):
    archive, root = _open(qdpx)
    assert root.get("origin") == "ohp" and root.get("creationDateTime").endswith("Z")
    users = {u.get("guid"): u.get("name") for u in root.iterfind("q:Users/q:User", NS)}
    assert sorted(users.values()) == ["alice", "ohp"]
    assert users[root.get("creatingUserGUID")] == "ohp"

    codes = root.find("q:CodeBook/q:Codes", NS)
    top = [c.get("name") for c in codes.iterfind("q:Code", NS)]
    assert "Family separation / 家人分离" in top and "Left-behind children / 留守儿童" not in top
    nested = codes.find("q:Code[@name='Family separation / 家人分离']/q:Code", NS)
    assert nested.get("name") == "Left-behind children / 留守儿童"
    assert "ohp theme: left_behind_children" in nested.findtext("q:Description", namespaces=NS)
    assert len(root.findall(".//q:Code", NS)) == len(CODEBOOK.themes)

    sources = root.findall("q:Sources/q:AudioSource", NS)
    assert [s.get("path") for s in sources] == ["absolute:///archive/访谈/张丽华 1.wav", "absolute:///archive/chen.mp3"]
    variables = {v.get("guid"): v.get("name") for v in root.iterfind("q:Variables/q:Variable", NS)}
    for source, recording in zip(sources, (ZH_RECORDING, EN_RECORDING), strict=True):
        values = {
            variables[v.find("q:VariableRef", NS).get("targetGUID")]: v.findtext("q:TextValue", namespaces=NS)
            for v in source.iterfind("q:VariableValue", NS)
        }
        assert values["sha256"] == recording.sha256
        assert f"sha256: {recording.sha256}" in source.findtext("q:Description", namespaces=NS)
    assert values["consent"] == "restricted until 2040-01-01"
    # The audio stays where it is: the zip holds the project and the two transcripts.
    assert len(archive.namelist()) == 3 and all(
        n == "project.qde" or n.startswith("sources/") for n in archive.namelist()
    )


def test_a_transcript_imported_without_audio_is_a_source_without_a_path(tmp_path):
    """It linked the transcript's own file (an .srt) as the source's audio."""
    recording = replace(ZH_RECORDING, path="/old/张丽华.srt", format=f"{TRANSCRIPT_FORMAT}srt")
    data = to_qdpx([replace(EXPORTS[0], recording=recording)], CODEBOOK)
    [source] = _open(data)[1].findall("q:Sources/q:AudioSource", NS)
    assert source.get("path") is None and source.get("name") == "张丽华.srt"
    path = tmp_path / "p.qdpx"
    path.write_bytes(data)
    assert list(read_qdpx(path, CODEBOOK).codings) == [recording.sha256]  # the codings still find their recording


def test_transcripts_turns_and_sync_points(qdpx):
    archive, root = _open(qdpx)
    transcripts = root.findall("q:Sources/q:AudioSource/q:Transcript", NS)
    text = _transcript_file(archive, transcripts[0])
    # One line per turn: the segments of one speaker run on (no spaces in Chinese, one in English).
    assert text == (
        "[00:00:00] Interviewer: 你老公在哪里打工？\n"
        "[00:00:04] 张丽华: 他在东莞，我在深圳，一年见一次面。孩子留在老家给爷爷奶奶带。\n"
    )
    assert (
        _transcript_file(archive, transcripts[1])
        .splitlines()[1]
        .endswith("Dongguan. The wages were low, but we sent money home.")
    )
    for transcript, segments in zip(transcripts, (ZH, EN), strict=True):
        text = _transcript_file(archive, transcript)
        points = {(int(p.get("position")), int(p.get("timeStamp"))) for p in transcript.iterfind("q:SyncPoint", NS)}
        for segment in segments:
            start = text.index(segment.text)
            assert (start, round(segment.start * 1000)) in points
            assert (start + len(segment.text), round(segment.end * 1000)) in points


def test_codings_are_the_accepted_evidence_by_its_coder(qdpx):
    archive, root = _open(qdpx)
    users = {u.get("guid"): u.get("name") for u in root.iterfind(".//q:User", NS)}
    themes = {
        c.get("guid"): c.findtext("q:Description", namespaces=NS).rsplit("ohp theme: ", 1)[1]
        for c in root.iterfind(".//q:Code", NS)
    }
    found = set()
    for source in root.iterfind("q:Sources/q:AudioSource", NS):
        sha256 = source.findtext("q:Description", namespaces=NS).rsplit("sha256: ", 1)[1]
        transcript = source.find("q:Transcript", NS)
        text = _transcript_file(archive, transcript)
        points = {
            p.get("guid"): (int(p.get("position")), int(p.get("timeStamp")))
            for p in transcript.iterfind("q:SyncPoint", NS)
        }
        for selection in transcript.iterfind("q:TranscriptSelection", NS):
            (start, start_ms), (end, end_ms) = (
                points[selection.get("fromSyncPoint")],
                points[selection.get("toSyncPoint")],
            )
            coding = selection.find("q:Coding", NS)
            assert coding.get("creatingUser") == selection.get("creatingUser")
            assert coding.get("creationDateTime") == "2024-03-01T08:30:00Z"
            segment = next(s for s in (ZH + EN) if text[start:end] in s.text)
            offset = segment.text.index(text[start:end])
            assert start_ms == round(1000 * _seconds_at(segment, offset))
            assert end_ms == round(1000 * _seconds_at(segment, offset + end - start))
            theme = themes[coding.find("q:CodeRef", NS).get("targetGUID")]
            found.add((sha256, theme, users[coding.get("creatingUser")], text[start:end]))
    assert found == {e[:4] for e in EXPORTED}


def test_without_a_codebook_codes_are_the_theme_ids(tmp_path):
    exports = [RecordingExport(e.recording, e.segments, e.annotations, e.speakers) for e in EXPORTS]
    data = to_qdpx(exports)
    assert sorted(c.get("name") for c in _open(data)[1].iterfind(".//q:Code", NS)) == sorted({e[1] for e in EXPORTED})
    path = tmp_path / "ids.qdpx"
    path.write_bytes(data)
    imported = read_qdpx(path, CODEBOOK)
    assert {(sha, c.theme, c.coder, c.text) for sha, codings in imported.codings.items() for c in codings} == {
        e[:4] for e in EXPORTED
    }
    # The caller's codebook missing, the recordings' own is used.
    assert len(_open(to_qdpx(EXPORTS))[1].findall(".//q:Code", NS)) == len(CODEBOOK.themes)


def test_a_re_export_is_the_same_project(qdpx):
    (first, first_root), (second, second_root) = _open(qdpx), _open(to_qdpx(EXPORTS, CODEBOOK))
    for root in (first_root, second_root):
        del root.attrib["creationDateTime"]
    assert etree.tostring(first_root) == etree.tostring(second_root)
    assert [first.read(n) for n in first.namelist()[1:]] == [second.read(n) for n in second.namelist()[1:]]


# ------------------------------------------------------------------------------------------- import


def _rezip(tmp_path: Path, data: bytes, root: etree._Element | None = None, drop: str | None = None) -> Path:
    """The project with project.qde replaced (as a QDA tool saves it) and a member left out."""
    path = tmp_path / "edited.qdpx"
    with zipfile.ZipFile(io.BytesIO(data)) as old, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as new:
        for name in old.namelist():
            if name == drop:
                continue
            edited = name == "project.qde" and root is not None
            new.writestr(
                name, etree.tostring(root, xml_declaration=True, encoding="utf-8") if edited else old.read(name)
            )
    return path


def _guid() -> str:
    return str(uuid.uuid4()).upper()  # as ATLAS.ti writes them


def _element(parent: etree._Element, tag: str, index: int | None = None, **attributes: str) -> etree._Element:
    element = etree.Element(f"{{{NS['q']}}}{tag}", attributes)
    parent.insert(len(parent) if index is None else index, element)
    return element


def test_codings_added_in_a_qda_tool_come_back(qdpx, tmp_path):
    archive, root = _open(qdpx)
    bob = _guid()
    _element(root.find("q:Users", NS), "User", guid=bob, name="bob")
    codes = root.find("q:CodeBook/q:Codes", NS)
    migration = codes.find("q:Code[@name='Migration and the journey home / 外出与返乡路']", NS).get("guid")
    wages, food = _guid(), _guid()
    _element(codes, "Code", guid=wages, name="工资", isCodable="true")  # bob's own code, by a theme's Chinese label
    _element(codes, "Code", guid=food, name="Food", isCodable="true")  # no theme: a warning
    source = root.find("q:Sources/q:AudioSource", NS)
    transcript = source.find("q:Transcript", NS)
    text = _transcript_file(archive, transcript)
    # Bob's codings, each also with a code of no theme; the tool adds sync points at their edges, without
    # times, and a selection between them. One within a segment, one over two, and two that end and start
    # where two segments meet (in Chinese at one position, with a pause between them).
    bobs = {
        "我在深圳": migration,
        "东莞，我在深圳，一年见一次面。孩子": wages,
        "一次面。": wages,
        "孩子留在": migration,
    }
    first_selection = list(transcript).index(transcript.find("q:TranscriptSelection", NS))
    for words, code in bobs.items():
        edges = [_guid(), _guid()]
        for guid, position in zip(edges, _span(text, words), strict=True):
            _element(transcript, "SyncPoint", first_selection, guid=guid, position=str(position))
        selection = _element(
            transcript,
            "TranscriptSelection",
            guid=_guid(),
            fromSyncPoint=edges[0],
            toSyncPoint=edges[1],
            creatingUser=bob,
        )
        for target in (code, food):
            _element(_element(selection, "Coding", guid=_guid(), creatingUser=bob), "CodeRef", targetGUID=target)
    # A stretch of the English audio's timeline coded directly, and bob's own notes, not ohp's.
    english = root.findall("q:Sources/q:AudioSource", NS)[1]
    after_transcript = len(english.findall("q:Transcript", NS)) + 1
    selection = _element(
        english, "AudioSelection", after_transcript, guid=_guid(), begin="9500", end="12250", creatingUser=bob
    )
    _element(_element(selection, "Coding", guid=_guid(), creatingUser=bob), "CodeRef", targetGUID=wages)
    notes = _element(root.find("q:Sources", NS), "TextSource", guid=_guid(), name="bob's notes")
    etree.SubElement(notes, f"{{{NS['q']}}}PlainTextContent").text = "family, wages"
    path = _rezip(tmp_path, qdpx, root)

    imported = read_qdpx(path, CODEBOOK)
    assert imported.source_format == "qdpx" and imported.path == path
    assert set(imported.codings) == {"a" * 64, "b" * 64}
    found = {c.text: (c.theme, c.start, c.end) for c in imported.codings["a" * 64] if c.coder == "bob"}
    expected = {
        "我在深圳": ("migration_journey", *_times(ZH[1], "我在深圳")),
        "东莞，我在深圳，一年见一次面。孩子": ("wages", _times(ZH[1], "东莞")[0], _times(ZH[2], "孩子")[1]),
        "一次面。": ("wages", _times(ZH[1], "一次面。")[0], ZH[1].end),  # ends when its segment ends
        "孩子留在": ("migration_journey", ZH[2].start, _times(ZH[2], "孩子留在")[1]),  # starts when the next starts
    }
    near = {
        words: (theme, pytest.approx(start, abs=0.001), pytest.approx(end, abs=0.001))
        for words, (theme, start, end) in expected.items()
    }
    assert found == near
    en = [c for c in imported.codings["b" * 64] if c.coder == "bob"]
    assert [(c.theme, c.start, c.end, c.text) for c in en] == [("wages", 9.5, 12.25, None)]

    # The exported codings come back too, with their times.
    exported = {
        (sha, c.theme, c.coder, c.text)
        for sha, codings in imported.codings.items()
        for c in codings
        if c.coder != "bob"
    }
    assert exported == {e[:4] for e in EXPORTED}
    whole = next(c for c in imported.codings["b" * 64] if c.theme == "migration_journey")
    assert (whole.start, whole.end) == (3.2, 9.0)
    assert any("'Food'" in w and "4 codings" in w for w in imported.warnings)
    assert any("bob's notes" in w and "sha256" in w for w in imported.warnings)


def test_a_users_name_written_with_other_code_points_for_its_letters_is_the_one_coder(qdpx, tmp_path):
    """An account's name is kept NFKC-normalised (José, U+00E9, codes in ohp); a QDA tool's user of that name
    written decomposed, or in full-width letters, looked the same and was another coder."""
    _, root = _open(qdpx)
    english = root.findall("q:Sources/q:AudioSource", NS)[1]
    wages = root.find("q:CodeBook/q:Codes/q:Code[@name='Wages / 工资']", NS).get("guid")
    for name, begin in (("Jose\u0301", "9500"), ("\uff2a\uff4f\uff53\u00e9 ", "13000")):
        user = _guid()
        _element(root.find("q:Users", NS), "User", guid=user, name=name)
        after_transcript = len(english.findall("q:Transcript", NS)) + 1
        selection = _element(
            english, "AudioSelection", after_transcript, guid=_guid(), begin=begin, end="15000", creatingUser=user
        )
        _element(_element(selection, "Coding", guid=_guid(), creatingUser=user), "CodeRef", targetGUID=wages)
    imported = read_qdpx(_rezip(tmp_path, qdpx, root), CODEBOOK)
    added = [c for c in imported.codings["b" * 64] if c.start in (9.5, 13.0)]
    assert [(c.coder, c.start) for c in sorted(added, key=lambda c: c.start)] == [
        ("Jos\u00e9", 9.5),
        ("Jos\u00e9", 13.0),
    ]


def test_a_tool_that_drops_variables_still_finds_the_recording_by_description(qdpx, tmp_path):
    _, root = _open(qdpx)
    for value in root.iterfind(".//q:VariableValue", NS):
        value.getparent().remove(value)
    root.remove(root.find("q:Variables", NS))
    imported = read_qdpx(_rezip(tmp_path, qdpx, root), CODEBOOK)
    assert sum(map(len, imported.codings.values())) == len(EXPORTED) and not imported.warnings


# --------------------------------------------------------------------------------------- bad files


def _zip(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "bad.qdpx"
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _bomb(tmp_path: Path) -> Path:
    """A zip whose project.qde declares 4 GB uncompressed (its central directory says so)."""
    path = _zip(tmp_path, {"project.qde": b"<Project/>"})
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")
    data[entry + 24 : entry + 28] = (0xFFFFFFF0).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE Project [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>
<Project xmlns="urn:QDA-XML:project:1.0" name="&c;"/>"""
EMPTY_ELEMENTS = b'<Project xmlns="urn:QDA-XML:project:1.0"><Notes>' + b"<x/>" * 1_000_001 + b"</Notes></Project>"


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda tmp: _file(tmp / "notes.qdpx", b"just text"), "not a .qdpx project"),
        (lambda tmp: _zip(tmp, {"sources/x.txt": b"hello"}), "no project.qde"),
        (lambda tmp: _zip(tmp, {"project.qde": b"<Project><unclosed></Project>"}), "not well-formed XML"),
        (lambda tmp: _zip(tmp, {"project.qde": b"<codebook xmlns='urn:other'/>"}), "not a REFI-QDA 1.0 project"),
        (lambda tmp: _zip(tmp, {"project.qde": LAUGHS}), "DOCTYPE"),
        (lambda tmp: _zip(tmp, {"project.qde": b"<Project/>", "../../etc/cron.d/x": b"boom"}), "unsafe file name"),
        (lambda tmp: _zip(tmp, {"project.qde": b"<Project/>", "/etc/passwd": b"boom"}), "unsafe file name"),
        (_bomb, "zip bomb"),
        # 4 MB of empty elements in a zip of 12 KB: 1.7 GB once parsed, before the count.
        (lambda tmp: _zip(tmp, {"project.qde": EMPTY_ELEMENTS}), "more than 1,000,000 XML elements in project.qde"),
        (lambda tmp: tmp / "missing.qdpx", "cannot read it"),
    ],
    ids=[
        "not-zip",
        "no-project",
        "not-xml",
        "not-refi",
        "entities",
        "traversal",
        "absolute",
        "bomb",
        "elements",
        "missing",
    ],
)
def test_bad_files_are_refused(tmp_path, make, cause):
    path = make(tmp_path)
    with pytest.raises(TranscriptFormatError) as error:
        read_qdpx(path, CODEBOOK)
    assert error.value.path == path and cause in error.value.cause
    assert str(error.value).startswith(str(path))


def test_broken_projects_are_refused(qdpx, tmp_path):
    _, root = _open(qdpx)
    transcript = root.find(".//q:Transcript", NS)
    missing = "sources/" + transcript.get("plainTextPath").removeprefix("internal://")
    with pytest.raises(TranscriptFormatError, match="not in the zip"):
        read_qdpx(_rezip(tmp_path, qdpx, drop=missing), CODEBOOK)
    start = transcript.find("q:TranscriptSelection", NS).get("fromSyncPoint")
    point = transcript.find(f"q:SyncPoint[@guid='{start}']", NS)
    point.set("position", "many")
    with pytest.raises(TranscriptFormatError, match="not a whole number") as error:
        read_qdpx(_rezip(tmp_path, qdpx, root), CODEBOOK)
    assert error.value.line is not None
    point.set("position", "100000")  # beyond the transcript's text
    with pytest.raises(TranscriptFormatError, match="not between sync points"):
        read_qdpx(_rezip(tmp_path, qdpx, root), CODEBOOK)
