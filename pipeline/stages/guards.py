"""Guards against Whisper's known long-form failures.

Each guard looks at the segments decoded from one chunk and removes what cannot be speech: text in
silence, repetition loops, text that drifts away from its chunk, and phantom phrases learned from
subtitled video. What each removes is counted, so a run's report says how often the model misbehaved.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace

from pipeline.records import Chunk, DecodeMark, Segment
from pipeline.script import to_simplified
from pipeline.utils import HAN_CHAR, overlap

# Phrases from the subtitles of Whisper's training video: it writes them into silence and noise.
# Matched on simplified, lower-case text, ignoring spaces and punctuation.
PHANTOM_PHRASES = (
    "字幕由amara.org社群提供",
    "由amara.org社区提供的字幕",
    "subtitles by the amara.org community",
    "请不吝点赞订阅转发打赏支持明镜与点点栏目",
    "明镜需要您的支持欢迎订阅明镜",
    "欢迎订阅明镜",
    "点赞订阅转发打赏",
    "中文字幕志愿者",
    "字幕志愿者",
    "字幕by索兰娅",
    "小编字幕",
    "优优独播剧场",
    "yoyo television series exclusive",
    "请订阅我的频道",
    "订阅我的频道",
    "感谢观看",
    "谢谢观看",
    "谢谢大家观看",
    "thanks for watching",
    "thank you for watching",
    "thank you so much for watching",
    "please subscribe",
    "like and subscribe",
    "see you in the next video",
)


_SENTENCE_START = r"(?:^|(?<=[^\w\s]))\s*"  # the text's start, or after punctuation
_SENTENCE_END = r"\s*(?:[^\w\s]+|$)"  # punctuation (removed with the phrase), or the text's end


def _flexible(phrase: str) -> re.Pattern[str]:
    """A pattern for the phrase as a sentence of its own, tolerating spaces and punctuation between
    its characters. Only a whole sentence is a phantom: "thank you for watching over my kids" is speech.
    Chinese writes no spaces between words, so a Chinese phrase may follow any character."""
    chars = [re.escape(c) for c in phrase if c.isalnum()]
    start = "" if HAN_CHAR.match(phrase) else _SENTENCE_START
    return re.compile(start + r"[\W_]*".join(chars) + _SENTENCE_END, re.IGNORECASE)


_PHANTOMS = tuple(_flexible(p) for p in PHANTOM_PHRASES)
# A unit of 2-30 characters repeated at least 4 times in a row, or one character at least 8 times.
_LOOP = re.compile(r"(\S.{1,29}?)(?:[\s,，、。.!！?？]*\1){3,}|(\S)\2{7,}", re.DOTALL)


@dataclass(frozen=True)
class GuardOptions:
    no_speech_prob: float = 0.6  # Whisper's own silence rule: high no-speech probability ...
    avg_logprob: float = -1.0  # ... and low confidence together
    min_speech_overlap: float = 0.2  # share of a segment that must lie in detected speech
    # Fast Mandarin reaches 10-12 characters a second and segment times are rough: only far more
    # than that is text the audio cannot hold.
    max_cjk_chars_per_second: float = 20.0
    max_chars_per_second: float = 40.0  # letters and digits, for alphabetic scripts
    edge_tolerance: float = 1.0  # seconds a segment may stick out of its chunk before it is drift


def _drop_spans(segment: Segment, spans: list[tuple[int, int]]) -> Segment | None:
    """The segment without the given character spans of its text (and the words inside them)."""
    text = segment.text
    keep = [True] * len(text)
    for span_start, span_end in spans:
        keep[span_start:span_end] = [False] * (span_end - span_start)
    words, cursor = [], 0
    for word in segment.words:
        token = word.text.strip()
        at = text.find(token, cursor) if token else -1
        if at < 0:
            words.append(word)
            continue
        cursor = at + len(token)
        # A word stays when its letters do: the last "know." of a loop goes, though its full stop stays.
        letters = [i for i in range(at, cursor) if text[i].isalnum()] or range(at, cursor)
        if any(keep[i] for i in letters):
            words.append(word)
    new_text = "".join(c for c, k in zip(text, keep, strict=True) if k).strip(" ,，、")
    if not re.search(r"\w", new_text):
        return None
    start = words[0].start if words else segment.start
    end = words[-1].end if words else segment.end
    return replace(segment, text=new_text, words=words, start=start, end=end)


def marked(segment: Segment, mark: DecodeMark) -> Segment:
    """The segment noted as touched by decoding or a guard (the doubt stage reads it)."""
    return segment if mark in segment.marks else replace(segment, marks=(*segment.marks, mark))


def strip_phantoms(segment: Segment) -> Segment | None:
    # Matching on the simplified text finds traditional variants too; t2s keeps positions when it
    # keeps the length, which it does for these phrases.
    simplified = to_simplified(segment.text)
    haystack = simplified if len(simplified) == len(segment.text) else segment.text
    spans = [m.span() for pattern in _PHANTOMS for m in pattern.finditer(haystack)]
    return _drop_spans(segment, spans) if spans else segment


def _loops(text: str) -> list[tuple[int, int]]:
    """Spans of text repeating a phrase over and over, each without the phrase's first occurrence."""
    spans = []
    for m in _LOOP.finditer(text):
        unit = m.group(1) or m.group(2)
        if not any(c.isalpha() for c in unit):
            continue  # digits and punctuation repeat in real text: 100000000, 88888888, ......
        spans.append((text.index(unit, m.start()) + len(unit), m.end()))
    return spans


def has_loop(segment: Segment) -> bool:
    return bool(_loops(segment.text))


def collapse_loops(segment: Segment) -> Segment | None:
    """Keep the first occurrence of a phrase that repeats over and over."""
    spans = _loops(segment.text)
    return _drop_spans(segment, spans) if spans else segment


def is_silence(segment: Segment, chunk: Chunk, options: GuardOptions = GuardOptions()) -> bool:
    if (
        segment.no_speech_prob is not None
        and segment.avg_logprob is not None
        and segment.no_speech_prob > options.no_speech_prob
        and segment.avg_logprob < options.avg_logprob
    ):
        return True
    length = segment.end - segment.start
    if length <= 0:
        return False
    speech = sum(overlap(segment.start, segment.end, r.start, r.end) for r in chunk.regions)
    return speech / length < options.min_speech_overlap


def is_drift(segment: Segment, chunk: Chunk, options: GuardOptions = GuardOptions()) -> bool:
    """Text placed outside its chunk, or more text than its time could hold."""
    if segment.start > chunk.end + options.edge_tolerance or segment.end < chunk.start - options.edge_tolerance:
        return True
    length = max(overlap(segment.start, segment.end, chunk.start, chunk.end), 0.5)
    cjk = len(HAN_CHAR.findall(segment.text))
    other = len(re.findall(r"\w", segment.text)) - cjk
    return cjk / length > options.max_cjk_chars_per_second or other / length > options.max_chars_per_second


def guard(
    segments: list[Segment], chunk: Chunk, counts: Counter, options: GuardOptions = GuardOptions()
) -> list[Segment]:
    """Apply every guard to one chunk's segments (recording time), counting what each removes."""
    kept = []
    for segment in segments:
        stripped = strip_phantoms(segment)
        if stripped is None:
            counts["phantom"] += 1
            continue
        if stripped is not segment:
            counts["phantom"] += 1
            stripped = marked(stripped, DecodeMark.PHANTOM)
        collapsed = collapse_loops(stripped)
        if collapsed is None:
            counts["repetition"] += 1
            continue
        if collapsed is not stripped:
            counts["repetition"] += 1
            collapsed = marked(collapsed, DecodeMark.LOOP)
        # Drift first: text placed outside the chunk also lies outside its speech, and would
        # otherwise always be counted as silence.
        if is_drift(collapsed, chunk, options):
            counts["drift"] += 1
            continue
        if is_silence(collapsed, chunk, options):
            counts["silence"] += 1
            continue
        kept.append(collapsed)
    return kept
