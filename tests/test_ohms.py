"""OHMS XML, parsed back with lxml: the record, the index's points at topic changes, the transcript and its sync."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from lxml import etree

from pipeline.formats.ohms import to_ohms
from pipeline.records import TRANSCRIPT_FORMAT, Entity, RecordingExport, Segment, SpeakerRecord, Word
from pipeline.stages.codebook import load_codebook

from test_documents import EXPORT, ODD, RECORDING, SPEAKERS, annotation

NS = {"o": "https://www.weareavp.com/nunncenter/ohms"}
# The record's elements in the order OHMS's schema (version 5.4) lists them.
SCHEMA_ORDER = (
    "version date date_nonpreferred_format cms_record_id title accession duration "
    "collection_id collection_name series_id "
    "series_name repository funding repository_url subject keyword interviewee "
    "interviewer format file_name sync sync_alt "
    "transcript_alt_lang translate media_id media_url mediafile kembed language user_notes index type description rel "
    "transcript transcript_alt rights fmt usage userestrict xmllocation xmlfilename collection_link series_link"
).split()


def parse(export: RecordingExport) -> etree._Element:
    xml = to_ohms(export)
    assert xml.startswith("<?xml version='1.0' encoding='UTF-8'?>")
    root = etree.fromstring(xml.encode("utf-8"))
    assert root.tag == "{https://www.weareavp.com/nunncenter/ohms}ROOT"
    return root.find("o:record", NS)


def field(record, path: str) -> str | None:
    return record.findtext(path, namespaces=NS)


def points(record) -> list[dict[str, str]]:
    return [
        {etree.QName(child).localname: child.text or "" for child in point}
        for point in record.iterfind("o:index/o:point", NS)
    ]


def sync_marks(record) -> list[tuple[int, int, int]]:
    """(seconds, line, word) of each mark, read as OHMS's viewer reads them: the n-th mark is at n intervals."""
    sync = field(record, "o:sync")
    assert re.fullmatch(r"(\d+:(\|\d+\(\d+\))+)?", sync)
    interval = int(sync.split(":")[0] or 0) * 60
    return [
        (interval * n, int(line), int(word)) for n, (line, word) in enumerate(re.findall(r"\|(\d+)\((\d+)\)", sync), 1)
    ]


def transcript_lines(record) -> list[str]:
    return field(record, "o:transcript").split("\n")


def test_a_transcript_imported_without_audio_names_no_media_file():
    """Its file_name was the transcript's own file, which an OHMS viewer would try to play."""
    recording = replace(RECORDING, path="/old/访谈 01.srt", format=f"{TRANSCRIPT_FORMAT}srt")
    record = parse(replace(EXPORT, recording=recording))
    assert record.find("o:file_name", NS) is not None and not field(record, "o:file_name")


def test_record():
    record = parse(EXPORT)
    tags = [etree.QName(child).localname for child in record]
    assert sorted(set(tags), key=SCHEMA_ORDER.index) == list(dict.fromkeys(tags))  # in the schema's order
    assert record.get("id") == "7" and re.fullmatch(r"\d{4}-\d\d-\d\d", record.get("dt"))
    assert field(record, "o:version") == "5.4"
    assert record.find("o:date", NS).attrib == {"value": "2019-01-20", "format": "yyyy-mm-dd"}
    assert field(record, "o:title") == "访谈 01" and field(record, "o:accession") == "OH-2019-007"
    assert field(record, "o:duration") == "01:02:05" and field(record, "o:file_name") == "访谈 01.wav"
    assert field(record, "o:interviewee") == "王秀英" and field(record, "o:interviewer") == "李梅"
    assert [s.text for s in record.iterfind("o:subject", NS)] == [
        "Wages",
        "工资",
        "Working conditions",
        "劳动条件",
        "Left-behind children",
        "留守儿童",
        "Family separation",
        "家人分离",
    ]  # a catalogue's terms, one a language
    assert field(record, "o:language") == "Chinese"
    assert field(record, "o:userestrict") == "1" and "restricted until 2090-01-01" in field(record, "o:rights")


def test_index_points_at_topic_changes():
    assert points(parse(EXPORT)) == [
        {
            "time": "0",
            "title": "Wages / 工资; Working conditions / 劳动条件",
            "partial_transcript": "李梅: 你在深圳做什么工作？",
            "synopsis": "你在深圳做什么工作？ 我在电子厂上班，每个月工资两千块。加班很多。",
            "keywords": "Wages;工资;Working conditions;劳动条件;深圳;两千块",
            "subjects": "Wages;工资;Working conditions;劳动条件",
        },
        {
            # the question that leads to the new topic opens its point
            "time": "65",
            "title": "Left-behind children / 留守儿童; Family separation / 家人分离",
            "partial_transcript": "李梅: What about your children?",
            "synopsis": "What about your children? 孩子留在老家，跟奶奶一起。"
            "I miss them & call every week <sometimes>. 谢谢。",
            "keywords": "Left-behind children;留守儿童;Family separation;家人分离;老家",
            "subjects": "Left-behind children;留守儿童;Family separation;家人分离",
        },
    ]  # the rejected theme (hukou) is nowhere


def interview(*turns: tuple[float, str, str, tuple[str, ...]]) -> RecordingExport:
    """An export of turns given as (start, speaker, text, themes), each theme accepted on the whole segment."""
    segments = [
        Segment(start, start + 5, text, "", "en", speaker=speaker, id=i)
        for i, (start, speaker, text, _) in enumerate(turns, 1)
    ]
    annotations = {
        i: [annotation(i * 10 + j, i, t, "accepted") for j, t in enumerate(themes)]
        for i, (*_, themes) in enumerate(turns, 1)
    }
    return RecordingExport(RECORDING, segments, annotations, SPEAKERS, codebook=load_codebook())


def test_points_only_where_the_themes_change():
    export = interview(
        (2.0, "S1", "Hello. Shall we begin with your village? It was far from the city.", ()),
        (10.0, "S2", "We grew rice.", ()),  # the answer: no lead-in to what follows
        (20.0, "S1", "And your wages?", ("wages",)),
        (30.0, "S2", "Two thousand.", ("wages",)),  # the same themes: no new point
        (40.0, "S1", "Hm.", ()),  # no themes: the topic goes on (then opens the next, as an interviewer's turn)
        (50.0, "S2", "Still low.", ("wages",)),
        (60.0, "S2", "And the dormitory was crowded.", ("wages", "housing")),  # one speaker: the same turn
        (70.0, "S1", "Where did you live?", ()),  # the interviewer's question opens the next topic
        (80.0, "S2", "A dormitory.", ("housing",)),
        (90.0, None, "(a door opens)", ()),
        (95.0, None, "Sorry! Is this about hukou?", ("hukou",)),  # no interviewer's question before it
    )
    found = points(parse(export))
    assert [(p["time"], p["title"]) for p in found] == [
        ("2", "Hello. Shall we begin with your village?"),  # no themes: its first words
        ("20", "Wages / 工资"),
        ("40", "Wages / 工资; Housing / 住房"),
        ("70", "Housing / 住房"),
        ("95", "Household registration (hukou) / 户口"),
    ]
    assert found[0]["synopsis"] == "Hello. Shall we begin with your village? It was far from the city. We grew rice."
    assert (
        found[0]["keywords"] == ""
        and found[0]["partial_transcript"] == "李梅: Hello. Shall we begin with your village? It was far from the city."
    )


def test_a_long_first_sentence_is_shortened_at_a_word():
    record = parse(interview((0.0, None, "word " * 200 + "end.", ())))
    point = points(record)[0]
    assert (
        point["title"] == "word " * 7 + "word…"
        and len(point["synopsis"]) <= 201
        and point["synopsis"].endswith("word…")
    )


def test_sync_points_to_the_lines_heard_each_minute():
    record = parse(EXPORT)
    lines = transcript_lines(record)
    assert lines == [
        "李梅: 你在深圳做什么工作？",
        "",
        "WANG XIUYING: 我在电子厂上班，每个月工资两千块。加班很多。",  # a turn is a paragraph; names in capitals
        "",
        "李梅: What about your children?",
        "",
        "WANG XIUYING: 孩子留在老家，跟奶奶一起。I miss them & call every week",  # 80 columns at most
        "<sometimes>.",
        "",
        "李梅: 谢谢。",
    ]
    # At 60 s nobody speaks: the mark is at the next words (the question at 65 s); likewise at 120 s.
    assert sync_marks(record) == [(60, 5, 2), (120, 10, 2)]


def columns(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def test_sync_with_word_times_in_wrapped_lines():
    words = [Word(2.0 * k, 2.0 * k + 1.5, f" word{k:02d}", 0.9) for k in range(100)]
    segment = Segment(0.0, 200.0, "".join(w.text for w in words).strip(), "", "en", words, speaker="S1", id=1)
    record = parse(RecordingExport(RECORDING, [segment], speakers=[SpeakerRecord("S1", "Mei Lin", "interviewer")]))
    lines = transcript_lines(record)
    assert lines[0].startswith("MEI LIN: word00 word01") and len(lines) > 5  # capitals, as OHMS sets off speakers
    assert all(len(line) <= 80 for line in lines) and " ".join(lines).split()[2:] == [w.text.strip() for w in words]
    marks = sync_marks(record)
    assert [seconds for seconds, _, _ in marks] == [60, 120, 180]  # none after the last words
    for seconds, line, word in marks:
        assert lines[line - 1].split()[word - 1] == f"word{seconds // 2:02d}"  # the word spoken then


def test_chinese_wraps_at_80_columns_and_syncs_by_time():
    segment = Segment(0.0, 400.0, "工资" * 200, "", "zh", id=1)  # no word times: interpolated in the segment
    record = parse(RecordingExport(RECORDING, [segment]))
    lines = transcript_lines(record)
    assert lines == ["工资" * 20] * 10  # 40 characters, two columns each
    # minute n is heard at character 60 n of 400, on line 60 n // 40 + 1
    assert sync_marks(record) == [(60, 2, 1), (120, 4, 1), (180, 5, 1), (240, 7, 1), (300, 8, 1), (360, 10, 1)]
    comma = Segment(0.0, 10.0, "很" * 40 + "，" + "好" * 10, "", "zh", id=1)
    lines = transcript_lines(parse(RecordingExport(RECORDING, [comma])))
    assert lines == ["很" * 39, "很，" + "好" * 10]  # a line does not start with a comma
    mixed = Segment(0.0, 10.0, "我在Shenzhen打工，" * 10, "", "zh", id=1)
    lines = transcript_lines(parse(RecordingExport(RECORDING, [mixed])))
    assert all(columns(line) <= 80 for line in lines) and "".join(lines) == mixed.text and len(lines) > 2


def test_odd_input():
    record = parse(ODD)
    lines = transcript_lines(record)
    assert lines[0] == "a <b> & c"  # escaped in the XML, no control characters
    assert "".join(lines[2:]) == "工资" * 20_000
    assert field(record, "o:interviewer") is None and field(record, "o:userestrict") == "0"
    assert [(p["time"], p["title"]) for p in points(record)] == [("1", "a <b> & c"), ("3", "Wages / 工资")]
    empty = parse(RecordingExport(replace(RECORDING, language=None), []))
    assert points(empty) == [] and field(empty, "o:transcript") == "" and field(empty, "o:sync") == ""
    broken = Segment(0.0, 100.0, "one line\nbroken by an editor\r\n", "", "en", id=1)
    record = parse(RecordingExport(RECORDING, [broken]))
    assert transcript_lines(record) == ["one line broken by an editor"] and sync_marks(record) == [(60, 1, 4)]
    named = parse(RecordingExport(replace(RECORDING, interviewee=None), EXPORT.segments, speakers=EXPORT.speakers))
    assert field(named, "o:interviewee") == "Wang Xiuying"  # from the speakers when the recording has none


def test_entities_with_control_characters_and_xml_characters():
    segment = Segment(0.0, 5.0, "I worked for A&B <Ltd>\x0b in Dongguan.", "", "en", id=1)
    export = RecordingExport(
        RECORDING,
        [segment],
        entities={1: [Entity("ORG", "A&B <Ltd>\x0b", 13, 24), Entity("PLACE", "Dongguan", 28, 36)]},
    )
    assert points(parse(export))[0]["keywords"] == "A&B <Ltd>;Dongguan"
