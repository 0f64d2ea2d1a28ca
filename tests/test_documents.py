"""Readable transcripts: plain text and Word, read back (the .docx with docx2python, an independent reader)."""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace

import pytest
from docx2python import docx2python
from docx2python.iterators import iter_paragraphs
from lxml import etree

from pipeline.formats.documents import join_texts, to_docx, to_txt
from pipeline.records import AnnotationRecord, Entity, RecordingExport, RecordingRecord, Segment, SpeakerRecord
from pipeline.stages.codebook import load_codebook

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def annotation(
    id: int, segment: int, theme: str, status: str, evidence=(), source="auto", updated_by=None
) -> AnnotationRecord:
    return AnnotationRecord(
        id, segment, 7, theme, source, status, 0.8, tuple(evidence), "tagger 1", updated_by, "2024-03-01T10:00:00", 1
    )


RECORDING = RecordingRecord(
    id=7,
    sha256="ab12cd34" * 8,
    path="/archive/tapes/访谈 01.wav",
    size_bytes=1,
    format="wav",
    duration=3725.4,
    language="zh",
    interviewee="王秀英",
    place="深圳",
    recorded_on="2019-01-20",
    metadata={"accession": "OH-2019-007"},
    consent="restricted",
    release_on="2090-01-01",
)
SEGMENTS = [
    Segment(0.5, 4.0, "你在深圳做什么工作？", "", "zh", speaker="S1", id=1),
    Segment(4.2, 9.0, "我在电子厂上班，每个月工资两千块。", "", "zh", speaker="S2", id=2),
    Segment(9.0, 14.0, "加班很多。", "", "zh", speaker="S2", id=3),
    Segment(65.0, 70.0, " What about your children?", "", "en", speaker="S1", id=4),
    Segment(70.5, 80.0, "孩子留在老家，跟奶奶一起。", "", "zh", speaker="S2", id=5),
    Segment(80.0, 85.0, "I miss them & call every week <sometimes>.", "", "en", speaker="S2", id=6),
    Segment(125.0, 130.0, "谢谢。", "", "yue", speaker="S1", id=7),
]
ANNOTATIONS = {
    2: [
        annotation(1, 2, "wages", "accepted", [(11, 13)], updated_by="mei"),
        annotation(2, 2, "working_conditions", "suggested"),
    ],
    3: [annotation(3, 3, "wages", "suggested")],
    5: [
        annotation(4, 5, "left_behind_children", "accepted", [(0, 2)], source="李梅"),
        annotation(5, 5, "hukou", "rejected", [(4, 6)]),
    ],
    6: [annotation(6, 6, "family_separation", "suggested", [(2, 6), (12, 18)])],
}
ENTITIES = {
    1: [Entity("PLACE", "深圳", 2, 4)],
    2: [Entity("MONEY", "两千块", 13, 16)],
    5: [Entity("PLACE", "老家", 4, 6)],
}
SPEAKERS = [SpeakerRecord("S1", "李梅", "interviewer"), SpeakerRecord("S2", "Wang Xiuying", "interviewee")]
EXPORT = RecordingExport(RECORDING, SEGMENTS, ANNOTATIONS, SPEAKERS, ENTITIES, load_codebook())
# Odd input: nobody identified, XML's special characters, control characters, one very long segment.
ODD = RecordingExport(
    replace(RECORDING, consent="open", interviewee=None, place=None, recorded_on=None, release_on=None),
    [Segment(1.0, 2.0, "a <b> & c\x00\x07\x1b", "", "en", id=1), Segment(3.0, 900.0, "工资" * 20_000, "", "zh", id=2)],
    {2: [annotation(1, 2, "wages", "accepted", [(39_998, 40_000)])]},
    codebook=load_codebook(),
)


def test_join_texts_spaces_latin_but_not_chinese():
    assert join_texts(["我们", " 住在乡下。", "Then", "we moved.", "后来", ""]) == "我们住在乡下。Then we moved.后来"


# --- plain text --------------------------------------------------------------------------------------


def test_txt_header():
    lines = to_txt(EXPORT).splitlines()
    assert lines[:10] == [
        "访谈 01",
        "",
        "Interviewee: 王秀英",
        "Date: 2019-01-20",
        "Place: 深圳",
        "Duration: 01:02:05",
        "Languages: Chinese, English, Cantonese",
        "Speakers: 李梅 (interviewer); Wang Xiuying (interviewee)",
        "Access: restricted until 2090-01-01",
        "",
    ]


def test_txt_turns_with_times_names_and_themes():
    paragraphs = to_txt(EXPORT).split("\n\n")[2:]
    assert paragraphs == [
        "[00:00:00] 李梅: 你在深圳做什么工作？",
        "[00:00:04] Wang Xiuying: 我在电子厂上班，每个月工资两千块。加班很多。"
        "\nThemes: Wages / 工资; Working conditions / 劳动条件 (suggested)",
        "[00:01:05] 李梅: What about your children?",
        "[00:01:10] Wang Xiuying: 孩子留在老家，跟奶奶一起。I miss them & call every week <sometimes>.\n"
        "Themes: Left-behind children / 留守儿童; Family separation / 家人分离 (suggested)",
        "[00:02:05] 李梅: 谢谢。\n",
    ]
    assert "Household registration" not in to_txt(EXPORT)  # rejected


def test_txt_odd_input():
    text = to_txt(ODD)
    assert "Access" not in text and "Speakers" not in text and "Interviewee" not in text
    assert "[00:00:01] a <b> & c\n" in text  # no speaker, no control characters
    assert text.count("工资") == 20_001 and text.endswith("\nThemes: Wages / 工资\n")  # the label has one
    empty = to_txt(RecordingExport(RECORDING, []))
    assert empty.startswith("访谈 01\n\nInterviewee: 王秀英\n") and "[" not in empty


# --- Word --------------------------------------------------------------------------------------------


def read_docx(data: bytes) -> dict:
    """What docx2python finds: the title, the header table's rows, the turns (bold as <b>), the comments."""
    with docx2python(io.BytesIO(data), html=True) as document:
        body = document.body
        return {
            "title": next((p.style, "".join(r.text for r in p.runs)) for p in iter_paragraphs(document.document_pars)),
            "table": [[cell[0] for cell in row] for row in body[1]],  # the title, the table, the turns
            "turns": body[2][0][0] if len(body) > 2 else [],
            "comments": [(anchored, author, text) for anchored, author, _, text in document.comments],
            "properties": document.core_properties,
        }


def test_docx_title_header_and_turns():
    document = read_docx(to_docx(EXPORT))
    assert document["title"] == ("Title", "访谈 01")
    assert document["table"] == [
        ["<b>Interviewee</b>", "王秀英"],
        ["<b>Date</b>", "2019-01-20"],
        ["<b>Place</b>", "深圳"],
        ["<b>Duration</b>", "01:02:05"],
        ["<b>Languages</b>", "Chinese, English, Cantonese"],
        ["<b>Speakers</b>", "李梅 (interviewer); Wang Xiuying (interviewee)"],
        ["<b>Access</b>", "restricted until 2090-01-01"],
    ]
    assert document["turns"] == [
        "[00:00:00] <b>李梅:</b> 你在深圳做什么工作？",
        "[00:00:04] <b>Wang Xiuying:</b> 我在电子厂上班，每个月工资两千块。加班很多。",
        "[00:01:05] <b>李梅:</b> What about your children?",
        "[00:01:10] <b>Wang Xiuying:</b> 孩子留在老家，跟奶奶一起。"
        "I miss them &amp; call every week &lt;sometimes&gt;.",
        "[00:02:05] <b>李梅:</b> 谢谢。",
    ]
    properties = document["properties"]
    assert properties["title"] == "访谈 01" and properties["creator"] == "ohp" and properties["language"] == "zh"
    assert properties["subject"] == "Oral history interview with 王秀英"
    assert (
        properties["keywords"]
        == "Wages / 工资; Working conditions / 劳动条件; Left-behind children / 留守儿童; Family separation / 家人分离"
    )
    assert properties["identifier"] == RECORDING.sha256
    assert properties["description"] == "Transcript of 访谈 01.wav; access restricted until 2090-01-01"


def test_docx_comments_are_numbered_in_order():
    """ohp numbers the comments itself (python-docx reads every comment's id for each new one)."""
    import docx

    comments = list(docx.Document(io.BytesIO(to_docx(EXPORT))).comments)
    assert [c.comment_id for c in comments] == list(range(len(comments))) and len(comments) >= 5


def test_docx_themes_are_comments_on_their_evidence():
    assert read_docx(to_docx(EXPORT))["comments"] == [
        ("工资", "mei", "Wages / 工资 (accepted)"),
        (
            "我在电子厂上班，每个月工资两千块。",
            "ohp",
            "Working conditions / 劳动条件 (suggested)",
        ),  # no evidence: the segment
        ("加班很多。", "ohp", "Wages / 工资 (suggested)"),
        ("孩子", "李梅", "Left-behind children / 留守儿童 (accepted)"),
        (
            "miss them &amp; call",
            "ohp",
            "Family separation / 家人分离 (suggested)",
        ),  # from its first evidence to its last
    ]  # the rejected theme has none


def test_docx_chinese_font_and_language():
    with zipfile.ZipFile(io.BytesIO(to_docx(EXPORT))) as archive:
        styles = etree.fromstring(archive.read("word/styles.xml"))
    defaults = styles.find(f"{W}docDefaults/{W}rPrDefault/{W}rPr")
    title = styles.find(f"{W}style[@{W}styleId='Title']/{W}rPr/{W}rFonts")
    for fonts in (defaults.find(f"{W}rFonts"), title):
        assert fonts.get(f"{W}eastAsia") == "SimSun" and fonts.get(f"{W}eastAsiaTheme") is None
    assert defaults.find(f"{W}lang").get(f"{W}eastAsia") == "zh-CN"


def test_docx_odd_input():
    document = read_docx(to_docx(ODD))
    assert [row[0] for row in document["table"]] == ["<b>Duration</b>", "<b>Languages</b>"]
    assert document["turns"][0] == "[00:00:01] a &lt;b&gt; &amp; c"  # no speaker, no control characters
    assert document["turns"][1] == "[00:00:03] " + "工资" * 20_000
    assert document["comments"] == [("工资", "ohp", "Wages / 工资 (accepted)")]
    empty = read_docx(to_docx(RecordingExport(RECORDING, [])))
    assert (
        empty["title"] == ("Title", "访谈 01") and empty["comments"] == [] and len(empty["table"]) == 6
    )  # no speakers


@pytest.mark.parametrize("writer", [to_txt, to_docx])
def test_unknown_theme_and_no_codebook_show_the_id(writer):
    export = RecordingExport(RECORDING, SEGMENTS[1:2], {2: [annotation(1, 2, "not_in_codebook", "accepted")]})
    out = writer(export)
    if isinstance(out, bytes):
        out = read_docx(out)["comments"][0][2]
    assert "not_in_codebook" in out
