"""Guards against Whisper's long-form failures: phantoms, loops, text in silence, drift; and their counts."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.records import Chunk, Segment, SpeechRegion, Word
from pipeline.stages.guards import GuardOptions, collapse_loops, guard, is_drift, is_silence, strip_phantoms

# Speech 10-14 s and 16-20 s; the chunk spans both.
CHUNK = Chunk(10.0, 20.0, (SpeechRegion(10.0, 14.0), SpeechRegion(16.0, 20.0)))


def seg(
    text: str, start: float = 10.0, end: float = 13.0, words: list[str] | None = None, language: str = "zh", **kw
) -> Segment:
    """A segment as the engine gives it; words (if given) share its time evenly."""
    step = (end - start) / len(words) if words else 0
    timed = [Word(start + i * step, start + (i + 1) * step, w, 0.9) for i, w in enumerate(words or [])]
    assert not words or text in ("".join(words), " ".join(words)), "words must spell the text"
    return Segment(start, end, text, text, language, timed, **kw)


# --- phantoms ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "字幕由Amara.org社群提供",
        "字幕由Amara.org社群提供",  # traditional
        "請不吝點贊 訂閱 轉發 打賞支持明鏡與點點欄目",
        "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
        "明镜需要您的支持 欢迎订阅明镜",
        "Thanks for watching!",
        " Thank you for watching.",
        " THANK YOU SO MUCH FOR WATCHING",
        "Subtitles by the Amara.org community",
    ],
)
def test_phantom_segment_is_removed_whole(text):
    assert strip_phantoms(seg(text)) is None
    counts = Counter()
    assert guard([seg(text)], CHUNK, counts) == []
    assert counts == {"phantom": 1}


@pytest.mark.parametrize(
    ("words", "real"),
    [
        (["我们", "那时候", "住在", "乡下。", "字幕", "由", "Amara", ".org", "社群", "提供"], 4),
        (
            [
                "我們",
                "那時候",
                "住在",
                "鄉下",
                " 請",
                "不吝",
                "點贊",
                " 訂閱",
                " 轉發",
                " 打賞",
                "支持",
                "明鏡",
                "與",
                "點點",
                "欄目",
            ],
            4,
        ),
        ([" We", " moved", " to", " the", " city", " in", " 1962.", " Thanks", " for", " watching!"], 7),
        ([" Okay,", " thank", " you", " for", " watching."], 1),
    ],
)
def test_phantom_after_real_text_leaves_the_real_text_and_its_words(words, real):
    segment = seg("".join(words), words=words)
    stripped = strip_phantoms(segment)
    assert stripped is not None
    kept = segment.words[:real]
    assert stripped.text == "".join(w.text for w in kept).strip(" ,")
    assert stripped.words == kept
    assert (stripped.start, stripped.end) == (kept[0].start, kept[-1].end)
    assert stripped.original_text == segment.original_text  # the engine's text stays as it was


def test_phantom_with_words_as_the_engines_give_them():
    # The engines strip the words' spaces; the words are found in the text all the same.
    words = ["We", "moved", "in", "1962.", "Thanks", "for", "watching!"]
    segment = seg(" ".join(words), 10.0, 13.5, words, language="en")
    stripped = strip_phantoms(segment)
    assert stripped.text == "We moved in 1962."
    assert stripped.words == segment.words[:4]
    assert stripped.end == 12.0


def test_phantom_sentence_between_real_sentences():
    stripped = strip_phantoms(seg(" We left. Thanks for watching. Then we came back."))
    assert stripped.text == "We left. Then we came back."


@pytest.mark.parametrize(
    "text",
    [
        " I'd like to thank you for watching over my kids.",
        " Thanks for watching the children, Mrs. Li.",
        " So please subscribe to the newsletter.",
        "我很感谢观看我们演出的人",
        "我们看了三遍，谢谢观看的机会难得",
    ],
)
def test_phantom_words_inside_real_speech_are_kept(text):
    segment = seg(text)
    assert strip_phantoms(segment) is segment


# --- repetition loops --------------------------------------------------------------------------------


def test_chinese_loop_keeps_the_first_phrase_and_its_words():
    words = ["后来", "我们", "去了", "北京"] + ["我们", "去了", "北京"] * 6
    segment = seg("".join(words), 10.0, 13.0, words)
    collapsed = collapse_loops(segment)
    assert collapsed.text == "后来我们去了北京"
    assert collapsed.words == segment.words[:4]
    assert collapsed.end == segment.words[3].end


def test_english_loop_is_collapsed():
    words = [" And", " then", " I", " said"] + [" I", " don't", " know."] * 5
    segment = seg("".join(words), words=words, language="en")
    collapsed = collapse_loops(segment)
    assert collapsed.text.startswith("And then I said I don't know")
    assert collapsed.text.count("know") == 1
    assert [w.text for w in collapsed.words] == words[:7]


def test_one_character_loop_is_collapsed():
    collapsed = collapse_loops(seg("他说" + "啊" * 30))
    assert collapsed is not None and len(collapsed.text) < 6 and collapsed.text.startswith("他说啊")


@pytest.mark.parametrize(
    "text",
    [
        "对对对",
        "对对对，是这样",
        "no, no",
        " No, no, no, I never said that.",
        "哈哈哈哈",
        "好好好好好",
        "谢谢谢谢",
        "是的是的是的",
        "他借了100000000元",  # digits repeat in numbers
        "电话是88888888",
        "从1990年到2000年",
        "嗯......",
    ],
)
def test_ordinary_repetition_is_kept(text):
    segment = seg(text)
    assert collapse_loops(segment) is segment
    counts = Counter()
    assert guard([segment], CHUNK, counts) == [segment]
    assert counts == {}


# --- silence -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("no_speech_prob", "avg_logprob", "silent"),
    [(0.9, -1.5, True), (0.9, -0.3, False), (0.3, -1.5, False), (None, -1.5, False), (0.9, None, False)],
)
def test_whispers_silence_rule_needs_both_signs(no_speech_prob, avg_logprob, silent):
    segment = seg("我们那时候住在乡下", 10.5, 13.5, no_speech_prob=no_speech_prob, avg_logprob=avg_logprob)
    assert is_silence(segment, CHUNK) is silent


@pytest.mark.parametrize(
    ("start", "end", "silent"),
    [
        (14.2, 15.8, True),  # wholly in the pause between the regions
        (13.8, 15.8, True),  # 0.2 of 2 s in speech: 10%
        (13.0, 15.0, False),  # half in speech
        (12.0, 17.0, False),
        (15.0, 15.0, False),  # no length to judge
    ],
)
def test_segment_outside_the_speech_regions_is_silence(start, end, silent):
    assert is_silence(seg("我们那时候住在乡下", start, end), CHUNK) is silent


def test_silence_overlap_share_is_an_option():
    segment = seg("我们那时候住在乡下", 13.0, 15.0)  # half in speech
    assert not is_silence(segment, CHUNK)
    assert is_silence(segment, CHUNK, GuardOptions(min_speech_overlap=0.6))


# --- drift -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "drift"),
    [
        (22.0, 24.0, True),  # starts 2 s after the chunk ends
        (20.5, 21.5, False),  # within the 1 s tolerance
        (6.0, 8.5, True),  # ends 1.5 s before the chunk starts
        (8.5, 10.5, False),
        (18.0, 26.0, False),  # sticks out, but starts inside
    ],
)
def test_text_placed_outside_its_chunk_is_drift(start, end, drift):
    assert is_drift(seg("是的", start, end), CHUNK) is drift


@pytest.mark.parametrize(
    ("text", "seconds", "drift"),
    [
        ("我" * 20, 2.0, False),  # 10 characters a second: fast, but speech
        ("我" * 30, 2.0, False),  # 15 a second: very fast speech with rough segment times
        ("我" * 50, 2.0, True),  # 25 a second
        ("我" * 30, 0.0, True),  # no length: judged over 0.5 s
        ("a" * 50, 2.0, False),
        ("a" * 100, 2.0, True),
        (" We moved to the city in nineteen sixty-two.", 2.5, False),
    ],
)
def test_more_text_than_its_time_can_hold_is_drift(text, seconds, drift):
    assert is_drift(seg(text, 11.0, 11.0 + seconds), CHUNK) is drift


def test_characters_per_second_count_only_the_time_inside_the_chunk():
    # 12 s long, but only 2 s of it inside the chunk: 50 characters there is 25 a second.
    assert is_drift(seg("我" * 50, 18.0, 30.0), CHUNK)
    assert not is_drift(seg("我" * 50, 18.0, 30.0), CHUNK, GuardOptions(max_cjk_chars_per_second=26))


# --- guard -------------------------------------------------------------------------------------------


def test_guard_counts_each_kind_and_keeps_the_rest_in_order():
    real = seg("我们那时候住在乡下", 10.0, 12.0)
    with_phantom = seg(
        "后来搬到城里。字幕由Amara.org社群提供", 12.0, 13.5, ["后来", "搬到", "城里。", "字幕由Amara.org社群提供"]
    )
    loop = seg("我记得" + "我记得" * 5, 16.0, 18.0)
    segments = [
        real,
        seg("字幕由Amara.org社群提供", 14.0, 15.0),  # phantom only
        with_phantom,
        seg("谢谢大家", 14.1, 15.9),  # in the pause: silence
        loop,
        seg("他们都走了", 23.0, 25.0),  # after the chunk: drift
        seg("我们那时候住在乡下后来搬到城里父亲在工厂上班", 18.0, 19.0),  # 22 characters in 1 s: drift
        seg("嗯", 19.0, 19.5, no_speech_prob=0.95, avg_logprob=-2.0),  # silence by Whisper's rule
    ]
    counts = Counter()
    kept = guard(segments, CHUNK, counts)
    assert [s.text for s in kept] == ["我们那时候住在乡下", "后来搬到城里。", "我记得"]
    assert kept[0] is real
    assert kept[1].words == with_phantom.words[:3]
    assert counts == {"phantom": 2, "repetition": 1, "silence": 2, "drift": 2}
    # The counter adds up over chunks.
    guard(segments, CHUNK, counts)
    assert counts == {"phantom": 4, "repetition": 2, "silence": 4, "drift": 4}


def test_guard_of_nothing():
    counts = Counter()
    assert guard([], CHUNK, counts) == [] and counts == {}
