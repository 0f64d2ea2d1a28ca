"""Speakers: segments split at a change of voice, turns without flicker, roles, and real diarization and
enrolled-voice matching on a two-person phone call with reference turns."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.records import Segment, SpeakerTurn, SpeechRegion, Word
from pipeline.stages.speakers import (
    DiarizeOptions,
    diarize,
    is_question,
    label_frames,
    label_roles,
    make_turns,
    match_profiles,
    split_segment,
    voice_profile,
)

from conftest import corpus_path

TURNS = [SpeakerTurn(0.0, 2.0, "S1"), SpeakerTurn(2.0, 5.0, "S2"), SpeakerTurn(6.0, 9.0, "S1")]


def words(*items: tuple[float, float, str]) -> list[Word]:
    return [Word(start, end, text, 0.9) for start, end, text in items]


# --- split_segment -----------------------------------------------------------------------------------


def test_english_segment_is_split_at_the_change_of_speaker_with_spaces():
    segment = Segment(
        0.0,
        4.0,
        "Where were you born? In Wuhan.",
        "Where were you born? In Wuhan.",
        "en",
        words(
            (0.0, 0.4, "Where"),
            (0.4, 0.7, "were"),
            (0.7, 1.0, "you"),
            (1.0, 1.8, "born?"),
            (2.2, 2.6, "In"),
            (2.6, 3.4, "Wuhan."),
        ),
        avg_logprob=-0.2,
        id=41,
    )
    first, second = split_segment(segment, TURNS)
    assert (first.text, first.original_text, first.speaker) == ("Where were you born?", "Where were you born?", "S1")
    assert (second.text, second.original_text, second.speaker) == ("In Wuhan.", "In Wuhan.", "S2")
    assert (first.start, first.end, second.start, second.end) == (0.0, 1.8, 2.2, 4.0)
    assert [w.text for w in second.words] == ["In", "Wuhan."]
    assert first.id == 41 and second.id is None  # the second part is new
    assert second.avg_logprob == -0.2 and second.language == "en"


def test_chinese_segment_is_split_without_spaces_and_original_text_cut_alike():
    # text is simplified, original_text traditional: same length, so it is cut at the same offsets.
    segment = Segment(
        1.0,
        3.5,
        "你在哪儿出生的？武汉。",
        "你在哪兒出生的？武漢。",
        "zh",
        words((1.0, 1.3, "你"), (1.3, 1.6, "在"), (1.6, 1.9, "哪儿"), (1.9, 1.95, "出生的？"), (2.1, 2.8, "武汉。")),
    )
    parts = split_segment(segment, TURNS)
    assert [(p.text, p.original_text, p.speaker) for p in parts] == [
        ("你在哪儿出生的？", "你在哪兒出生的？", "S1"),
        ("武汉。", "武漢。", "S2"),
    ]


def test_original_text_of_another_length_stays_whole_on_the_first_part():
    segment = Segment(
        1.0, 3.5, "你好。我好。", "妳好啊。我好。", "zh", words((1.0, 1.5, "你好。"), (2.5, 3.0, "我好。"))
    )
    first, second = split_segment(segment, TURNS)
    assert (first.text, first.original_text) == ("你好。", "妳好啊。我好。")
    assert (second.text, second.original_text) == ("我好。", "")


def test_segment_within_one_turn_is_kept_whole():
    segment = Segment(
        2.5,
        4.5,
        "I was born in Wuhan.",
        "I was born in Wuhan.",
        "en",
        words((2.5, 3.0, "I"), (3.0, 4.5, "was born in Wuhan.")),
        id=3,
    )
    assert split_segment(segment, TURNS) == [Segment(**{**segment.__dict__, "speaker": "S2"})]


def test_segments_without_words_take_the_speaker_overlapping_them_most():
    segments = [
        Segment(1.5, 4.0, "mostly the second", "mostly the second", "en"),  # 0.5 s of S1, 2 s of S2
        Segment(0.0, 2.6, "mostly the first", "mostly the first", "en"),  # 2 s of S1, 0.6 s of S2
        Segment(5.2, 5.6, "in a pause", "in a pause", "en"),  # no turn: the nearest (S2 ended 0.2 s before)
    ]
    assert [part.speaker for s in segments for part in split_segment(s, TURNS)] == ["S2", "S1", "S2"]


def test_no_turns_leave_segments_unassigned():
    segment = Segment(0.0, 1.0, "hello", "hello", "en", words((0.0, 1.0, "hello")))
    assert split_segment(segment, [])[0].speaker is None


# --- turns --------------------------------------------------------------------------------------------


def scores_for(labels: list[int], hop: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Window times and similarities to two speakers for windows labelled in order, 1.6 s long."""
    times = np.array([(i * hop, i * hop + 1.6) for i in range(len(labels))])
    similarities = np.array([[0.9, 0.5] if label == 0 else [0.5, 0.9] for label in labels])
    return times, similarities


def test_turns_do_not_flicker_inside_continuous_speech():
    # 30 windows of speaker 0 with three stray windows of speaker 1 among them, then 20 of speaker 1.
    labels = [0] * 12 + [1] * 3 + [0] * 15 + [1] * 20
    times, similarities = scores_for(labels)
    region = SpeechRegion(0.0, float(times[-1, 1]))
    unsmoothed = DiarizeOptions(smooth=0.0, min_turn=0.0)
    flicker = make_turns(label_frames([region], times, similarities, unsmoothed), unsmoothed.merge_gap)
    assert [t.speaker for t in flicker] == ["S1", "S2", "S1", "S2"]  # the stray windows make a 0.8 s turn
    options = DiarizeOptions(smooth=0.0)  # the minimum turn alone must remove it
    turns = make_turns(label_frames([region], times, similarities, options), options.merge_gap)
    assert [t.speaker for t in turns] == ["S1", "S2"]
    assert all(t.end - t.start >= options.min_turn for t in turns)
    assert 11.0 < turns[0].end < 13.5  # the real change (window 30 starts at 12 s)
    assert (turns[0].start, turns[-1].end) == (region.start, region.end)


def test_a_short_region_of_its_own_keeps_its_speaker_and_names_follow_first_appearance():
    stretches = [(0.0, 3.0, 4), (3.2, 5.0, 4), (6.0, 6.5, 1), (7.0, 9.0, 4), (9.1, 12.0, 0)]
    turns = make_turns(stretches, merge_gap=0.5)
    # Cluster 4 speaks first: S1; one speaker's stretches 0.2 s apart are one turn; the 0.5 s of cluster 1
    # between pauses is a turn of its own.
    assert turns == [
        SpeakerTurn(0.0, 5.0, "S1"),
        SpeakerTurn(6.0, 6.5, "S2"),
        SpeakerTurn(7.0, 9.0, "S1"),
        SpeakerTurn(9.1, 12.0, "S3"),
    ]


# --- roles --------------------------------------------------------------------------------------------


def test_questions_in_chinese_and_english():
    assert all(
        map(
            is_question,
            [
                "你是哪一年出生的",
                "那时候你家里有几口人？",
                "你还记得吗",
                "Where did you grow up",
                "Did you go to school then",
            ],
        )
    )
    assert not any(
        map(is_question, ["我是一九五二年出生的。", "I grew up near the river.", "Then we moved to Shanghai."])
    )


def dialogue(lines: list[tuple[str, str, float]], language: str) -> tuple[list[Segment], list[SpeakerTurn]]:
    segments, turns, t = [], [], 0.0
    for speaker, text, length in lines:
        segments.append(Segment(t, t + length, text, text, language, speaker=speaker))
        turns.append(SpeakerTurn(t, t + length, speaker))
        t += length + 0.5
    return segments, turns


def test_label_roles_on_a_synthetic_interview():
    segments, turns = dialogue(
        [
            ("S1", "请您先介绍一下自己好吗？", 3.0),
            ("S2", "我叫张长华，一九五二年生在湖北。小时候家里很穷，兄弟姐妹六个。", 20.0),
            ("S1", "那时候您家住在什么地方？", 3.0),
            ("S2", "住在汉口的一条小巷子里。后来搬到了武昌。我父亲在码头上做工。", 25.0),
            ("S3", "茶来了。", 1.5),
            ("S1", "您父亲每个月挣多少钱？", 2.5),
            ("S2", "不多，三十来块钱吧。够一家人吃饭。", 12.0),
        ],
        "zh",
    )
    assert label_roles(segments, turns) == {"S1": "interviewer", "S2": "interviewee", "S3": "other"}


def test_label_roles_when_the_interviewer_speaks_first_and_long():
    # A long introduction by the interviewer does not make them the interviewee: they ask, the other answers.
    segments, turns = dialogue(
        [
            ("S1", "This is an interview for the river project. Today is the fifth of May. We are in Wuhan.", 30.0),
            ("S1", "Where were you born?", 2.0),
            ("S2", "I was born in Hankou. My father worked on the docks.", 15.0),
            ("S1", "What did your mother do?", 2.0),
            ("S2", "She sewed clothes at home. We had a small room.", 12.0),
            ("S1", "Did you go to school?", 2.0),
            ("S2", "For four years. Then I worked too.", 8.0),
        ],
        "en",
    )
    assert label_roles(segments, turns) == {"S1": "interviewer", "S2": "interviewee"}


def test_label_roles_of_a_monologue():
    segments, turns = dialogue([("S1", "我叫张长华。", 10.0)], "zh")
    assert label_roles(segments, turns) == {"S1": "interviewee"}
    assert label_roles([], []) == {}


# --- real speech: a phone call of two women (pyannote's sample.wav with its reference turns) -------------

SAMPLE = "en/pyannote_pyannote-audio__src_pyannote_audio_sample_sample.wav"
SAMPLE_RTTM = "en/pyannote_pyannote-audio__src_pyannote_audio_sample_sample.rttm"
TARGET_DER = 0.20  # issue 6, with the number of speakers given; collar 0.25 s on either side


def load_sample():
    from pipeline.stages.audio import decode, probe
    from pipeline.stages.segment import speech_regions

    samples = decode(probe(corpus_path(SAMPLE))).samples
    return samples, speech_regions(samples)


def reference():
    from pyannote.database.util import load_rttm

    return load_rttm(str(corpus_path(SAMPLE_RTTM)))["sample"]


def der(turns: list[SpeakerTurn]) -> float:
    from pyannote.core import Annotation
    from pyannote.core import Segment as Span
    from pyannote.metrics.diarization import DiarizationErrorRate

    hypothesis = Annotation(uri="sample")
    for turn in turns:
        hypothesis[Span(turn.start, turn.end)] = turn.speaker
    return DiarizationErrorRate(collar=0.5)(reference(), hypothesis)  # pyannote's collar is the whole width


@pytest.mark.corpus
def test_diarization_of_a_phone_call_is_within_the_target():
    samples, regions = load_sample()
    turns = diarize(samples, regions, n_speakers=2)
    assert {t.speaker for t in turns} == {"S1", "S2"} and turns[0].speaker == "S1"
    assert all(a.end <= b.start for a, b in itertools.pairwise(turns))
    assert der(turns) <= TARGET_DER
    # The one-speaker answer is far off: the measure does see the speakers.
    assert der([SpeakerTurn(r.start, r.end, "S1") for r in regions]) > 0.3


@pytest.mark.corpus
def test_enrolled_voice_is_found_in_another_part_of_the_recording():
    samples, regions = load_sample()
    # Enrolled from the reference turns of speaker91 in the first 20 s (overlapped speech left out) ...
    pieces = [(14.70, 17.92), (7.55, 8.32)]
    profile = voice_profile([samples[int(a * 16000) : int(b * 16000)] for a, b in pieces])
    # ... and found among the diarized speakers of the last 10 s, where she speaks 21.78-28.5.
    later = [SpeechRegion(max(20.0, r.start), r.end) for r in regions if r.end > 20.0]
    turns = diarize(samples, later, n_speakers=2)
    matched = match_profiles(samples, turns, {"Sheila": profile})
    assert list(matched.values()) == ["Sheila"]
    speaker = next(iter(matched))
    her_time = sum(max(0.0, min(t.end, 28.5) - max(t.start, 21.78)) for t in turns if t.speaker == speaker)
    assert her_time > 4.0
    # Nobody matches a profile of someone else.
    other = voice_profile([load_other()])
    assert match_profiles(samples, turns, {"someone else": other}) == {}


def load_other() -> np.ndarray:
    from pipeline.stages.audio import decode, probe

    return decode(probe(corpus_path("en/lhotse-speech_lhotse__test_fixtures_libri_libri-1088-134315-0000.wav"))).samples
