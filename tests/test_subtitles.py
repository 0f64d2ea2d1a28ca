"""Subtitles: cues of at most two lines that fit, timed from the words, read back by independent readers."""

from __future__ import annotations

import html
import itertools
import re
import unicodedata

import pytest
import srt
import webvtt

from pipeline.formats.subtitles import MIN_DURATION, cues, to_srt, to_vtt
from pipeline.records import RecordingExport, RecordingRecord, Segment, SpeakerRecord, Word

RECORDING = RecordingRecord(1, "ab" * 32, "/archive/王秀英 01.wav", 1, "wav", 3600.0, "zh")

ZH = (
    "我们那时候住在乡下，家里很穷，一年到头吃不上几顿肉。后来我父亲去城里做工，每个月寄钱回来，日子才慢慢好起来。"
    "我记得那是一九六二年的事情，那年我刚满十岁。"
)
EN = (
    "Well, I was born in 1932 in a small village by the river, and my father was a teacher there. "
    "We moved to the city when I was ten, because the school closed down."
)
MIXED = "我用iPhone拍了很多照片，比如说在Shanghai的时候，还有去New York看我女儿的时候。"
QUOTES = "他说：“我们走吧！”然后大家就一起走了，走到村口的时候，他又回头看了一眼，说：“以后再也回不来了。”"
ZH_300 = (ZH * 3)[:299] + "。"
EN_300 = (EN + " " + EN)[:299] + "."
URL = "See https://example.org/archive/interviews/2024/wang-xiuying/transcript-full-version.html for more."
CLOSING = "，。！？、；：”’）」』】》,.!?;:)"


def export(
    *segments: Segment, speakers: list[SpeakerRecord] = (), recording: RecordingRecord = RECORDING
) -> RecordingExport:
    return RecordingExport(recording, list(segments), speakers=list(speakers))


def columns(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def read_srt(text: str) -> list[tuple[float, float, list[str]]]:
    return [(s.start.total_seconds(), s.end.total_seconds(), s.content.split("\n")) for s in srt.parse(text)]


def read_vtt(text: str) -> list[tuple[float, float, list[str], str | None]]:
    captions = webvtt.from_string(text).captions
    return [
        (seconds(c.start), seconds(c.end), html.unescape(c.text).split("\n"), c.voice and html.unescape(c.voice))
        for c in captions
    ]


def assert_fits(lines: list[str]) -> None:
    assert 1 <= len(lines) <= 2, lines
    for line in lines:
        assert line == line.strip() and columns(line) <= 42, line
        if line.isascii():
            assert len(line) <= 42, line
        if all(unicodedata.east_asian_width(c) in "WF" for c in line):
            assert len(line) <= 21, line  # Chinese: two columns a character
        assert line[0] not in CLOSING, line  # kinsoku
        assert line[-1] not in "“‘（「『《", line


def squeeze(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize(
    "text", [ZH, EN, MIXED, QUOTES, ZH_300, EN_300, URL], ids=["zh", "en", "mixed", "quotes", "zh300", "en300", "url"]
)
def test_cues_fit_and_give_back_the_text(text):
    segment = Segment(10.0, 40.0, text, text, "zh")
    for subtitles, read in ((to_srt, read_srt), (to_vtt, read_vtt)):
        found = read(subtitles(export(segment)))
        assert len(found) > 1
        previous_end = segment.start
        for start, end, lines, *_ in found:
            assert_fits(lines)
            assert previous_end <= start < end <= segment.end
            previous_end = end
        assert squeeze("".join(line for _, _, lines, *_ in found for line in lines)) == squeeze(text)


@pytest.mark.parametrize("text", [EN, EN_300])
def test_latin_lines_break_at_spaces(text):
    lines = [line for cue in cues(export(Segment(0.0, 60.0, text, text, "en"))) for line in cue.lines]
    assert " ".join(lines) == text


def test_latin_tokens_are_never_split_in_mixed_text():
    lines = [line for cue in cues(export(Segment(0.0, 10.0, MIXED, MIXED, "zh"))) for line in cue.lines]
    latin = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*")
    assert {w for line in lines for w in latin.findall(line)} <= {"iPhone", "Shanghai", "New York", "New", "York"}
    assert all(columns(line) <= 42 for line in lines)


def test_breaks_fall_after_punctuation_when_they_can():
    for text in (ZH, QUOTES):
        found = cues(export(Segment(0.0, 30.0, text, text, "zh")))
        assert all(line[-1] in "，。！？：”" for cue in found for line in cue.lines), found
    assert [c.lines for c in cues(export(Segment(0.0, 30.0, ZH, ZH, "zh")))] == [
        ("我们那时候住在乡下，家里很穷，", "一年到头吃不上几顿肉。"),
        ("后来我父亲去城里做工，", "每个月寄钱回来，日子才慢慢好起来。"),
        ("我记得那是一九六二年的事情，", "那年我刚满十岁。"),
    ]


def test_short_text_is_one_line_and_long_cues_are_balanced():
    assert [c.lines for c in cues(export(Segment(1.0, 2.0, "Thank you.", "Thank you.", "en")))] == [("Thank you.",)]
    text = "and then we went to the market and bought some rice and some vegetables"  # 71: two lines
    ((first, second),) = [c.lines for c in cues(export(Segment(0.0, 5.0, text, text, "en")))]
    assert abs(len(first) - len(second)) <= 8


def test_a_long_token_is_cut_where_the_line_is_full():
    token = "https://example.org/" + "x" * 150
    found = read_srt(to_srt(export(Segment(0.0, 20.0, token, token, "en"))))
    lines = [line for _, _, lines in found for line in lines]
    assert "".join(lines) == token and all(len(line) <= 42 for line in lines)


def test_cues_are_timed_from_the_words():
    text = (
        "One two three four five six seven eight nine ten. "
        "Eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen."
    )
    words = [Word(0.5 * k, 0.5 * k + 0.4, " " + w, 0.9) for k, w in enumerate(text.split())]
    words[10:] = [
        Word(w.start + 5.0, w.end + 5.0, w.text, w.probability) for w in words[10:]
    ]  # a pause before "Eleven"
    found = cues(export(Segment(0.0, 15.0, text, text, "en", words)))
    assert [c.lines[0].split()[0] for c in found] == ["One", "Eleven"]
    assert (found[0].start, found[0].end, found[1].start, found[1].end) == (0.0, words[10].start, words[10].start, 15.0)


def test_words_in_the_other_script_still_time_the_cues():
    simplified = "我们那时候住在乡下，家里很穷，一年到头吃不上几顿肉。后来我父亲去城里做工，每个月寄钱回来。"
    traditional = "我們那時候住在鄉下，家裡很窮，一年到頭吃不上幾頓肉。後來我父親去城裡做工，每個月寄錢回來。"
    words = [Word(1.0 + k, 1.5 + k, c, 0.9) for k, c in enumerate(traditional)]  # one character a second
    found = cues(export(Segment(1.0, 60.0, simplified, traditional, "zh", words)))
    second = simplified.index(found[1].lines[0])
    assert found[1].start == 1.0 + second


@pytest.mark.parametrize(
    "words", [[], [Word(0.0, 1.0, "not", 0.9), Word(1.0, 2.0, " these", 0.9)]], ids=["none", "edited"]
)
def test_without_matching_words_times_are_proportional_to_characters(words):
    found = cues(export(Segment(10.0, 30.0, ZH, ZH, "zh", words)))
    before = ZH.index(found[1].lines[0])
    assert found[1].start == pytest.approx(10.0 + 20.0 * before / len(ZH))


def test_overlapping_segments_are_clipped_in_order():
    first = Segment(0.0, 5.3, "We moved to the city.", "", "en")
    second = Segment(5.0, 8.0, "That was in 1942.", "", "en")
    inside = Segment(6.0, 7.0, "Yes.", "", "en")  # within the previous one: clipped, not reordered
    found = read_srt(to_srt(export(first, second, inside)))
    assert [(start, end, lines[0]) for start, end, lines in found] == [
        (0.0, 5.0, "We moved to the city."),
        (5.0, 6.0, "That was in 1942."),
        (6.0, 7.0, "Yes."),
    ]


def test_cues_last_at_least_the_minimum():
    short = Segment(10.0, 10.2, "嗯。", "嗯。", "zh")
    soon = Segment(10.4, 12.0, "对，就是那一年。", "", "zh")  # starts within the minimum: waits for it
    later = Segment(20.0, 30.0, ZH, ZH, "zh", [Word(20.0, 20.1, c, 0.9) for c in ZH])  # all said in 0.1 s
    found = cues(export(short, soon, later))
    assert (found[0].start, found[0].end) == (10.0, 10.0 + MIN_DURATION)
    assert (found[1].start, found[1].end) == (10.0 + MIN_DURATION, 12.0)
    assert all(c.end - c.start >= MIN_DURATION - 1e-9 for c in found)
    assert all(a.end <= b.start for a, b in itertools.pairwise(found))
    assert found[-1].end == 30.0


def test_vtt_names_the_voice_of_every_cue_and_srt_each_change_of_speaker():
    speakers = [SpeakerRecord("S1", "王秀英"), SpeakerRecord("S2", None)]
    segments = [
        Segment(0.0, 20.0, ZH, ZH, "zh", speaker="S1"),
        Segment(21.0, 22.0, "对。", "对。", "zh", speaker="S1"),
        Segment(23.0, 24.0, "Why then?", "", "en", speaker="S2"),
        Segment(25.0, 26.0, "Nobody knows.", "", "en"),
        Segment(27.0, 28.0, "因为没有钱。", "", "zh", speaker="S1"),
    ]
    vtt = read_vtt(to_vtt(export(*segments, speakers=speakers)))
    assert [voice for *_, voice in vtt] == ["王秀英"] * 4 + ["S2", None, "王秀英"]
    texts = [lines[0] for _, _, lines in read_srt(to_srt(export(*segments, speakers=speakers)))]
    assert texts[0].startswith("王秀英: 我们") and not any(t.startswith("王秀英") for t in texts[1:4])
    assert texts[4:] == ["S2: Why then?", "Nobody knows.", "王秀英: 因为没有钱。"]


def test_the_name_counts_toward_the_line():
    text = "x" * 20 + " " + "y" * 21  # 42: one line alone, two with a name before it
    segment = Segment(0.0, 5.0, text, text, "en", speaker="S1")
    speakers = [SpeakerRecord("S1", "Wang Xiuying")]
    assert [lines for _, _, lines in read_srt(to_srt(export(segment, speakers=speakers)))] == [
        ["Wang Xiuying: " + "x" * 20, "y" * 21]
    ]
    assert [lines for _, _, lines, _ in read_vtt(to_vtt(export(segment, speakers=speakers)))] == [[text]]
    long_name = [SpeakerRecord("S1", "Wang Xiuying of the Chengdu Oral History Project")]  # 48 columns
    found = read_srt(to_srt(export(segment, speakers=long_name)))
    assert all(len(line) <= 42 for _, _, lines in found for line in lines)
    assert squeeze("".join(line for _, _, lines in found for line in lines)).endswith(squeeze(text))


def test_a_name_longer_than_a_cue_still_gives_subtitles():
    # A name may be 255 characters: one wider than a cue's two lines is cut, and a cue begins inside it.
    name = "Margaret Elizabeth Thompson-Hughes, Professor of Sociology, Peking University (interviewer)"
    segment = Segment(2.0, 6.0, "We moved to the city when I was ten.", "", "en", speaker="S1")
    found = read_srt(to_srt(export(segment, speakers=[SpeakerRecord("S1", name)])))
    assert squeeze("".join(line for _, _, lines in found for line in lines)) == squeeze(f"{name}: {segment.text}")
    assert found[0][0] == 2.0 and found[-1][1] == 6.0
    assert all(b[0] - a[0] >= MIN_DURATION - 1e-9 for a, b in itertools.pairwise(found))


def test_markup_is_escaped_in_vtt():
    text = "Thank you & goodbye <laughs> a<&>b"
    segment = Segment(1.0, 3.0, text, text, "en", speaker="S1")
    vtt = to_vtt(export(segment, speakers=[SpeakerRecord("S1", "Li <Mei> & Co")]))
    assert "\n<v Li &lt;Mei&gt; &amp; Co>Thank you &amp; goodbye &lt;laughs&gt; a&lt;&amp;&gt;b\n" in vtt
    assert read_vtt(vtt) == [(1.0, 3.0, [text], "Li <Mei> & Co")]
    assert read_srt(to_srt(export(segment))) == [(1.0, 3.0, ["S1: " + text])]  # SRT has no escapes


@pytest.mark.parametrize("name", ["Wang --", "王秀英--"])
def test_a_voice_name_ending_in_dashes_does_not_end_the_cue(name):
    # "<v Wang -->": the tag's ">" after the name's "--" makes "-->", and a WebVTT parser takes a cue
    # line holding "-->" for the timing of a new cue: the cue lost its text and the file had one more.
    segment = Segment(1.0, 3.0, "我们那时候住在乡下。", "", "zh", speaker="S1")
    vtt = to_vtt(export(segment, speakers=[SpeakerRecord("S1", name)]))
    assert all("-->" not in line for line in vtt.splitlines() if not re.match(r"[\d:.]+ --> ", line))
    [(start, end, lines, voice)] = read_vtt(vtt)
    assert (start, end, lines, voice.strip()) == (1.0, 3.0, ["我们那时候住在乡下。"], name)


def test_srt_numbers_cues_from_one_with_comma_milliseconds():
    text = to_srt(export(Segment(3723.25, 3760.0, ZH, ZH, "zh"), Segment(3800.0, 3801.5, "Thank you.", "", "en")))
    blocks = text.split("\n\n")
    assert len(blocks) == 4 and text.endswith("\n") and not text.endswith("\n\n")
    for number, block in enumerate(blocks, 1):
        lines = block.strip("\n").split("\n")
        assert lines[0] == str(number)
        assert re.fullmatch(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", lines[1])
    assert blocks[0].split("\n")[1].startswith("01:02:03,250 --> ")
    assert blocks[3].split("\n")[1] == "01:03:20,000 --> 01:03:21,500"


def test_vtt_notes_a_consent_restriction():
    segment = Segment(1.0, 2.0, "我们那时候住在乡下。", "", "zh")
    restricted = RecordingRecord(
        1, "ab" * 32, "/a.wav", 1, "wav", 10.0, "zh", consent="restricted", release_on="2999-01-01"
    )
    text = to_vtt(export(segment, recording=restricted))
    assert text.startswith("WEBVTT\n\nNOTE Consent: restricted until 2999-01-01.")
    assert read_vtt(text) == [(1.0, 2.0, ["我们那时候住在乡下。"], None)]
    closed = RecordingRecord(1, "ab" * 32, "/a.wav", 1, "wav", 10.0, "zh", consent="closed")
    assert "\nNOTE Consent: closed. " in to_vtt(export(segment, recording=closed))
    released = RecordingRecord(
        1, "ab" * 32, "/a.wav", 1, "wav", 10.0, "zh", consent="restricted", release_on="2000-01-01"
    )
    assert "NOTE" not in to_vtt(export(segment, recording=released)) and "NOTE" not in to_vtt(export(segment))


def test_segments_without_text_are_skipped():
    segments = [
        Segment(0.0, 1.0, "", "", "zh"),
        Segment(1.0, 2.0, "Hello.", "", "en"),
        Segment(2.0, 3.0, " \n ", "", "en"),
    ]
    assert read_srt(to_srt(export(*segments))) == [(1.0, 2.0, ["Hello."])]
    assert read_vtt(to_vtt(export(*segments))) == [(1.0, 2.0, ["Hello."], None)]
    assert to_srt(export()) == "" and to_vtt(export()) == "WEBVTT\n"
    assert webvtt.from_string(to_vtt(export())).captions == []


def test_a_long_text_in_a_short_segment_does_not_push_the_later_cues_late():
    """An audit's export: a 5,000-character segment of 2 s pushed every later cue 44 s late (each cue stretched to
    the minimum duration, the next segment waiting for it). Now a segment stretches at most one minimum past the
    next segment's start, and its cues share the time it has where that is not enough for each."""
    long = Segment(10.0, 12.0, "word " * 1000, "", "en")
    later = Segment(14.0, 15.0, "Then we left.", "", "en")
    found = cues(export(long, later))
    assert all(a.start < a.end <= b.start for a, b in itertools.pairwise(found))
    assert found[-1].start <= 14.0 + MIN_DURATION and found[-1].lines == ("Then we left.",)


def test_control_characters_are_left_out_of_subtitles():
    """A NUL (or another control character) in stored text made ohp's own reader take the .srt for binary."""
    text = "hello\x00there\x0bagain"
    for written in (
        to_srt(export(Segment(0.0, 2.0, text, "", "en"))),
        to_vtt(export(Segment(0.0, 2.0, text, "", "en"))),
    ):
        assert "\x00" not in written and "\x0b" not in written and "hellothere again" in written
