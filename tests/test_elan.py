"""ELAN export and import: the file read back with pympi and lxml (not our reader), then coded as in
ELAN and read back with ours; bad files are refused with the file's name and the cause."""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pympi
import pytest
from lxml import etree

from pipeline.formats.elan import SHA256_PROPERTY, read_eaf, to_eaf
from pipeline.formats.readers import TranscriptFormatError
from pipeline.records import (
    TRANSCRIPT_FORMAT,
    AnnotationRecord,
    Coding,
    RecordingExport,
    RecordingRecord,
    Segment,
    SpeakerRecord,
    Word,
)
from pipeline.stages.codebook import load_codebook

CODEBOOK = load_codebook()
AUNT = "张阿姨"
LI = 'Li "Xiao" O\'Brien <&> 李'
RECORDING = RecordingRecord(
    id=7,
    sha256="ab12cd34ef56" + "0" * 52,
    path="/archive/访谈 #1/张阿姨 & co.wav",
    size_bytes=1,
    format="wav",
    duration=60.0,
    language="zh",
)
SEGMENTS = [
    Segment(0.0, 3.2, "我十六岁就出来打工了，在东莞的电子厂。", "", "zh", speaker="S1", id=1),
    Segment(3.1, 5.0, "How much were you paid? <&> \x0bpaid", "", "en", speaker="S2", id=2),
    Segment(5.0, 9.5, "工资一个月八百块，加班到晚上十一点。", "", "zh", speaker="S1", id=3),
    Segment(9.0, 9.4, "嗯。", "", "zh", speaker="S1", id=4),  # inside the segment before: Whisper's overlap
    Segment(12.0, 12.0, "对", "", "zh", speaker="S1", id=5),  # zero length
    Segment(13.0, 14.0, "[music]", "", "", speaker=None, id=6),
]


def annotation(
    id: int, segment: int, theme: str, source: str, status: str, updated_by: str | None = None
) -> AnnotationRecord:
    return AnnotationRecord(
        id, segment, RECORDING.id, theme, source, status, 0.8, (), "t", updated_by, "2026-11-25T10:00:00+00:00", 1
    )


ANNOTATIONS = {
    1: [
        annotation(1, 1, "family_separation", "auto", "suggested"),
        annotation(2, 1, "migration_journey", "auto", "accepted", "alice"),
    ],
    2: [annotation(3, 2, "migration_journey", "alice", "accepted")],  # overlaps segment 1's on one tier
    3: [
        annotation(4, 3, "wages", "alice", "accepted"),
        annotation(5, 3, "working_conditions", "auto", "rejected", "alice"),
        annotation(6, 3, "wages", "auto", "suggested"),
    ],
    4: [annotation(7, 4, "wages", "alice", "accepted")],
}
EXPORT = RecordingExport(
    RECORDING, SEGMENTS, ANNOTATIONS, [SpeakerRecord("S1", AUNT), SpeakerRecord("S2", LI)], codebook=CODEBOOK
)


@pytest.fixture
def eaf_path(tmp_path: Path) -> Path:
    path = tmp_path / "张阿姨 & co.eaf"
    path.write_text(to_eaf(EXPORT), encoding="utf-8")
    return path


def tiers(eaf: pympi.Elan.Eaf) -> dict[str, list[tuple[int, int, str]]]:
    return {tier: sorted(eaf.get_annotation_data_for_tier(tier)) for tier in eaf.get_tier_names()}


# --- export, read by pympi -------------------------------------------------------------------------


def test_speaker_tiers_hold_the_transcript_in_milliseconds(eaf_path):
    eaf = pympi.Elan.Eaf(str(eaf_path))
    assert tiers(eaf)[AUNT] == [
        (0, 3200, SEGMENTS[0].text),
        (5000, 9500, SEGMENTS[2].text + " 嗯。"),  # the segment inside it joins it: an ELAN tier cannot overlap
        (12000, 12001, "对"),  # a zero-length segment lasts a millisecond
    ]
    assert tiers(eaf)[LI] == [(3100, 5000, "How much were you paid? <&> paid")]  # no control character
    assert tiers(eaf)["Transcript"] == [(13000, 14000, "[music]")]
    assert eaf.get_parameters_for_tier(AUNT)["PARTICIPANT"] == AUNT
    assert eaf.get_parameters_for_tier(LI)["PARTICIPANT"] == LI
    assert "PARTICIPANT" not in eaf.get_parameters_for_tier("Transcript")


def test_themes_tiers_one_per_theme_and_coder(eaf_path):
    eaf = pympi.Elan.Eaf(str(eaf_path))
    themes = {t: a for t, a in tiers(eaf).items() if eaf.get_parameters_for_tier(t)["LINGUISTIC_TYPE_REF"] == "theme"}
    assert themes == {
        "family_separation (suggested by ohp)": [(0, 3200, "family_separation")],
        "migration_journey (alice)": [(0, 3200, "migration_journey"), (3200, 5000, "migration_journey")],
        "wages (alice)": [(5000, 9500, "wages")],
        "wages (suggested by ohp)": [(5000, 9500, "wages")],
    }  # the rejected working_conditions is left out
    annotators = {t: eaf.get_parameters_for_tier(t)["ANNOTATOR"] for t in themes}
    assert annotators == {
        "family_separation (suggested by ohp)": "ohp",
        "migration_journey (alice)": "alice",
        "wages (alice)": "alice",
        "wages (suggested by ohp)": "ohp",
    }


def test_controlled_vocabulary_is_the_codebook(eaf_path):
    eaf = pympi.Elan.Eaf(str(eaf_path))
    assert eaf.get_parameters_for_linguistic_type("theme")["CONTROLLED_VOCABULARY_REF"] == "themes"
    entries = eaf.get_cv_entries("themes")
    assert [values[0][0] for values, _ in entries.values()] == CODEBOOK.ids
    wages = dict((lang, (value, description)) for value, lang, description in entries["cveid_wages"][0])
    theme = CODEBOOK.theme("wages")
    assert wages == {"eng": ("wages", theme.label["en"]), "zho": ("wages", theme.label["zh"])}
    assert set(eaf.get_languages()) == {"eng", "zho"}


def test_media_and_recording_are_named(eaf_path):
    eaf = pympi.Elan.Eaf(str(eaf_path))
    [media] = eaf.get_linked_files()
    url = media["MEDIA_URL"]
    assert url.isascii() and " " not in url and "#" not in url
    assert url == Path(RECORDING.path).as_uri() and unquote(urlparse(url).path) == RECORDING.path
    assert media["RELATIVE_MEDIA_URL"] == "./%E5%BC%A0%E9%98%BF%E5%A7%A8%20%26%20co.wav"
    assert media["MIME_TYPE"] == "audio/x-wav"
    assert dict(eaf.get_properties())[SHA256_PROPERTY] == RECORDING.sha256
    assert dict(eaf.get_properties())["ohp:recording-id"] == "7"


def test_a_transcript_imported_without_audio_links_no_media(tmp_path):
    """It linked the transcript's own file (an .srt) as the audio for ELAN to play."""
    recording = RecordingRecord(1, "c" * 64, "/old/zhang.srt", 1, f"{TRANSCRIPT_FORMAT}srt", 9.0, "zh")
    path = tmp_path / "zhang.eaf"
    path.write_text(
        to_eaf(RecordingExport(recording, SEGMENTS[:1], {1: [annotation(1, 1, "wages", "alice", "accepted")]}))
    )
    assert pympi.Elan.Eaf(str(path)).get_linked_files() == []
    assert list(read_eaf(path, CODEBOOK).codings) == [recording.sha256]  # the codes still find their recording


@pytest.mark.parametrize(
    "name, mime",
    [
        ("a.WAV", "audio/x-wav"),
        ("a.mp3", "audio/*"),
        ("a.m4a", "audio/*"),
        ("a.amr", "audio/*"),
        ("a.mp4", "video/mp4"),
        ("a.mov", "video/quicktime"),
    ],
)
def test_mime_type_as_elan_names_it(tmp_path, name, mime):
    recording = RecordingRecord(1, "0" * 64, f"/x/{name}", 1, "", 1.0, None)
    path = tmp_path / "a.eaf"
    path.write_text(to_eaf(RecordingExport(recording, [])), encoding="utf-8")
    assert pympi.Elan.Eaf(str(path)).get_linked_files()[0]["MIME_TYPE"] == mime


def test_the_file_is_a_valid_eaf_document(eaf_path):
    # No package ships ELAN's XSD, so this checks what it demands of such a file: the root's attributes,
    # the order of the elements, unique ids, references that resolve, and tiers ELAN can hold.
    root = etree.parse(str(eaf_path)).getroot()
    assert root.tag == "ANNOTATION_DOCUMENT"
    assert root.get("VERSION") and root.get("FORMAT") and root.get("AUTHOR") == "ohp"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", root.get("DATE"))
    assert root.get("{http://www.w3.org/2001/XMLSchema-instance}noNamespaceSchemaLocation").endswith(".xsd")
    order = [
        "LICENSE",
        "HEADER",
        "TIME_ORDER",
        "TIER",
        "LINGUISTIC_TYPE",
        "LOCALE",
        "LANGUAGE",
        "CONSTRAINT",
        "CONTROLLED_VOCABULARY",
    ]
    tags = [child.tag for child in root]
    assert tags == sorted(tags, key=order.index)
    ids = root.xpath("//@ANNOTATION_ID | //@TIME_SLOT_ID | //@CVE_ID")
    assert len(ids) == len(set(ids))
    slots = {s.get("TIME_SLOT_ID"): int(s.get("TIME_VALUE")) for s in root.iter("TIME_SLOT")}
    assert set(root.xpath("//@TIME_SLOT_REF1 | //@TIME_SLOT_REF2")) <= set(slots)
    assert set(root.xpath("//TIER/@LINGUISTIC_TYPE_REF")) <= set(root.xpath("//LINGUISTIC_TYPE/@LINGUISTIC_TYPE_ID"))
    assert set(root.xpath("//@CONTROLLED_VOCABULARY_REF")) <= set(root.xpath("//CONTROLLED_VOCABULARY/@CV_ID"))
    assert set(root.xpath("//@LANG_REF")) <= set(root.xpath("//LANGUAGE/@LANG_ID"))
    for tier in root.iter("TIER"):
        spans = sorted(
            (slots[a.get("TIME_SLOT_REF1")], slots[a.get("TIME_SLOT_REF2")]) for a in tier.iter("ALIGNABLE_ANNOTATION")
        )
        assert all(start < end for start, end in spans), tier.get("TIER_ID")
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), tier.get("TIER_ID")
    used = max(int(i[1:]) for i in root.xpath("//@ANNOTATION_ID"))
    assert root.xpath("//PROPERTY[@NAME='lastUsedAnnotationId']/text()") == [str(used)]


def test_a_recording_without_codebook_or_segments(tmp_path):
    export = RecordingExport(RECORDING, SEGMENTS[:1], {1: [annotation(1, 1, "retired_theme", "alice", "accepted")]})
    path = tmp_path / "a.eaf"
    path.write_text(to_eaf(export), encoding="utf-8")
    eaf = pympi.Elan.Eaf(str(path))
    assert [values[0][0] for values, _ in eaf.get_cv_entries("themes").values()] == ["retired_theme"]
    assert tiers(eaf)["retired_theme (alice)"] == [(0, 3200, "retired_theme")]
    path.write_text(to_eaf(RecordingExport(RECORDING, [])), encoding="utf-8")
    assert pympi.Elan.Eaf(str(path)).get_tier_names() == {}.keys()


def test_a_speaker_named_like_another_tier_keeps_their_transcript(tmp_path):
    # pympi replaces a tier of the same name, annotations and all: the speaker's transcript vanished.
    said = Segment(
        0.0, 2.0, "我们那时候", "", "zh", [Word(0.0, 2.0, "我们那时候", 0.1, doubtful=True)], speaker="S1", id=1
    )
    coded = {1: [annotation(1, 1, "wages", "alice", "accepted"), annotation(2, 1, "hukou", "auto", "suggested")]}
    # Named like the tagger's suggestions tier too: renumbered, that tier is still not read back as codings.
    speakers = [
        SpeakerRecord("S1", "doubtful"),
        SpeakerRecord("S2", "wages (alice)"),
        SpeakerRecord("S3", "hukou (suggested by ohp)"),
    ]
    heard = Segment(3.0, 4.0, "对", "", "zh", speaker="S2", id=2)
    asked = Segment(4.0, 5.0, "嗯", "", "zh", speaker="S3", id=3)
    path = tmp_path / "a.eaf"
    path.write_text(
        to_eaf(RecordingExport(RECORDING, [said, heard, asked], coded, speakers, codebook=CODEBOOK)), encoding="utf-8"
    )
    found = sorted(tiers(pympi.Elan.Eaf(str(path))).values())
    assert found == sorted(
        [
            [(0, 2000, "我们那时候")],
            [(0, 2000, "我们那时候")],
            [(3000, 4000, "对")],
            [(4000, 5000, "嗯")],
            [(0, 2000, "wages")],
            [(0, 2000, "hukou")],
        ]
    )
    assert read_eaf(path, CODEBOOK).codings[RECORDING.sha256] == [Coding("wages", "alice", 0.0, 2.0)]


# --- coded in ELAN, read back ----------------------------------------------------------------------


def code_as_bob(eaf_path: Path) -> Path:
    """The export as a coder leaves it: bob's themes tier, a tier by participant only (the speaker carol, not a
    coder), a dependent tier."""
    eaf = pympi.Elan.Eaf(str(eaf_path))
    eaf.add_tier("bob's themes", ling="theme", ann="bob")
    eaf.add_annotation("bob's themes", 20000, 21500, "hukou")
    eaf.add_annotation("bob's themes", 22000, 23000, " 工资 ")  # a label, as a coder may type it
    eaf.add_annotation("bob's themes", 30000, 31000, "overtime??")
    eaf.add_tier("carol", ling="theme", part="carol")
    eaf.add_annotation("carol", 40000, 41000, "HOUSING")
    eaf.add_linguistic_type(
        "theme-ref",
        param_dict={
            "LINGUISTIC_TYPE_ID": "theme-ref",
            "TIME_ALIGNABLE": "false",
            "CONSTRAINTS": "Symbolic_Association",
            "GRAPHIC_REFERENCES": "false",
            "CONTROLLED_VOCABULARY_REF": "themes",
        },
    )
    eaf.add_tier("aunt's themes", ling="theme-ref", parent=AUNT)
    eaf.add_ref_annotation("aunt's themes", AUNT, 1000, "Schooling")
    eaf.add_tier("notes", ling="transcript", ann="bob")  # not a themes tier
    eaf.add_annotation("notes", 1000, 2000, "wages")
    coded = eaf_path.with_name("coded.eaf")
    pympi.Elan.to_eaf(str(coded), eaf)
    return coded


def test_codings_come_back_by_coder(eaf_path):
    imported = read_eaf(code_as_bob(eaf_path), CODEBOOK)
    assert imported.source_format == "eaf"
    assert list(imported.codings) == [RECORDING.sha256]
    assert imported.codings[RECORDING.sha256] == [
        Coding("migration_journey", "alice", 0.0, 3.2),
        Coding("schooling", "tier/aunt's themes", 0.0, 3.2),  # no annotator: the tier is the coder
        Coding("migration_journey", "alice", 3.2, 5.0),
        Coding("wages", "alice", 5.0, 9.5),
        Coding("hukou", "bob", 20.0, 21.5),
        Coding("wages", "bob", 22.0, 23.0),
        Coding("housing", "tier/(participant)", 40.0, 41.0),  # never its participant, carol
    ]  # the tagger's suggestions (annotator ohp) are not read back as anybody's coding
    assert imported.warnings == [
        "tier \"bob's themes\" at 00:00:30.000: 'overtime??' is not a theme of the codebook; left out"
    ]


def test_without_the_sha256_property_the_media_file_names_the_recording(tmp_path):
    audio = tmp_path / "录音 1.wav"
    audio.write_bytes(b"RIFF fake audio")
    export = RecordingExport(RecordingRecord(1, "0" * 64, str(audio), 1, "wav", 1.0, None), SEGMENTS[:1])
    (tmp_path / "a.eaf").write_text(to_eaf(export), encoding="utf-8")
    eaf = pympi.Elan.Eaf(str(tmp_path / "a.eaf"))
    eaf.remove_property(key=SHA256_PROPERTY)
    pympi.Elan.to_eaf(str(tmp_path / "b.eaf"), eaf)
    expected = hashlib.sha256(b"RIFF fake audio").hexdigest()
    assert list(read_eaf(tmp_path / "b.eaf", CODEBOOK).codings) == [expected]

    # Copied to another machine next to the audio: the relative URL finds it.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    audio.rename(elsewhere / audio.name)
    (tmp_path / "b.eaf").rename(elsewhere / "b.eaf")
    assert list(read_eaf(elsewhere / "b.eaf", CODEBOOK).codings) == [expected]

    (elsewhere / audio.name).unlink()
    with pytest.raises(TranscriptFormatError, match="names no recording ohp knows"):
        read_eaf(elsewhere / "b.eaf", CODEBOOK)


# --- bad files -------------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<ANNOTATION_DOCUMENT>&lol4;</ANNOTATION_DOCUMENT>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<ANNOTATION_DOCUMENT><HEADER><PROPERTY NAME="x">&secret;</PROPERTY></HEADER></ANNOTATION_DOCUMENT>"""
BROKEN_REFERENCE = (
    b'<ANNOTATION_DOCUMENT><HEADER><PROPERTY NAME="ohp:recording-sha256">' + b"a" * 64 + b"</PROPERTY></HEADER>"
    b'<TIME_ORDER/><TIER TIER_ID="t" LINGUISTIC_TYPE_REF="theme"><ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a1" '
    b'TIME_SLOT_REF1="ts1" TIME_SLOT_REF2="ts2"><ANNOTATION_VALUE>wages</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION>'
    b"</ANNOTATION></TIER></ANNOTATION_DOCUMENT>"
)


@pytest.mark.parametrize(
    "content, cause",
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"WEBVTT\n\n00:01.000 --> 00:02.000\nhello\n", "not well-formed XML"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "not well-formed XML"),
        (b"<html><body>hello</body></html>", "root element is <html>"),
        (to_eaf(EXPORT).encode()[:1500], "not well-formed XML"),  # truncated
        (BILLION_LAUGHS, "DOCTYPE"),
        (EXTERNAL_ENTITY, "DOCTYPE"),
        (b'<?xml version="1.0" encoding="GBK"?><ANNOTATION_DOCUMENT/>', "encoding"),
        (b"<ANNOTATION_DOCUMENT/>", "names no recording ohp knows"),
        (BROKEN_REFERENCE, "'ts1' is missing or names nothing"),
    ],
)
def test_bad_files_are_refused_with_the_cause(tmp_path, content, cause):
    path = tmp_path / "坏 file.eaf"
    path.write_bytes(content)
    with pytest.raises(TranscriptFormatError, match=re.escape(cause)) as error:
        read_eaf(path, CODEBOOK)
    assert str(path) in str(error.value)


def test_huge_missing_and_folder_are_refused(tmp_path):
    huge = tmp_path / "huge.eaf"
    with open(huge, "wb") as f:
        f.truncate(51 * 2**20)  # sparse: nothing is written, nothing must be read
    with pytest.raises(TranscriptFormatError, match="too big"):
        read_eaf(huge, CODEBOOK)
    with pytest.raises(TranscriptFormatError, match="cannot read it"):
        read_eaf(tmp_path / "missing.eaf", CODEBOOK)
    with pytest.raises(TranscriptFormatError, match="folder"):
        read_eaf(tmp_path, CODEBOOK)


def _chained(path, links: int, last: str):
    """A file whose reference annotations each refer to the next, the last to `last`."""
    from pipeline.formats.elan import _parse

    aligned = (
        '<ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="base" TIME_SLOT_REF1="t1" TIME_SLOT_REF2="t2">'
        "<ANNOTATION_VALUE>w</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>"
    )
    chain = "".join(
        f'<ANNOTATION><REF_ANNOTATION ANNOTATION_ID="r{i}" ANNOTATION_REF="{f"r{i + 1}" if i + 1 < links else last}">'
        "<ANNOTATION_VALUE></ANNOTATION_VALUE></REF_ANNOTATION></ANNOTATION>"
        for i in range(links)
    )
    path.write_text(
        '<ANNOTATION_DOCUMENT><TIME_ORDER><TIME_SLOT TIME_SLOT_ID="t1" TIME_VALUE="0"/>'
        '<TIME_SLOT TIME_SLOT_ID="t2" TIME_VALUE="10"/></TIME_ORDER>'
        f'<TIER TIER_ID="a">{aligned}</TIER><TIER TIER_ID="b" PARENT_REF="a">{chain}</TIER></ANNOTATION_DOCUMENT>',
        encoding="utf-8",
    )
    return _parse(path)


def test_a_long_chain_of_references_each_link_gets_the_times_it_leads_to(tmp_path):
    """An audit's file: 32,000 reference annotations each referring to the next took 135 s, each chain walked
    again from every link (now each link once: bench/RESULTS.md). A chain that goes round, or ends nowhere,
    is still refused."""
    from pipeline.formats.elan import _times

    path = tmp_path / "chain.eaf"
    times = _times(path, _chained(path, 20_000, "base"))
    assert {times[f"r{i}"] for i in range(20_000)} == {(0, 10)}
    for last, cause in (("r0", "refers to r0, which has no times"), ("nowhere", "refers to nowhere")):
        with pytest.raises(TranscriptFormatError, match=cause):
            _times(path, _chained(path, 50, last))
