"""The doubt stage: which words an annotator should check, how sure each segment is, and whether the whole
recording is likely poor.

A word is doubtful when the recogniser was unsure of it, and more readily so in context: when, in Chinese,
its characters make no word of the language with their neighbours (a misheard name or term comes out as
rare single characters: 钦点 as 清典), in a segment that decoding or a guard touched (a loop cut out, a
phantom phrase removed, audio the recogniser skipped and decoded again), or in a language or script the
recording is not in; and, when a second decode was made (`ohp run --second-decode`), where it wrote the
word differently. The weights and thresholds were chosen
by measuring them against reference transcripts (bench/doubt.py; the figures are in bench/RESULTS.md), not
guessed. Text a person corrected is never doubtful.
"""

from __future__ import annotations

import logging
import marshal
import math
import re
import tempfile
import threading
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from pipeline.records import Segment, Transcript, Word
from pipeline.script import CHINESE_LANGUAGES, to_simplified
from pipeline.stages.engines import DecodeOptions
from pipeline.utils import HAN_CHAR, join_texts

log = logging.getLogger(__name__)

_LATIN = re.compile(r"[A-Za-z]")
_FLOOR = 1e-3  # a probability of 0 is no surer than this


@dataclass(frozen=True)
class DoubtRule:
    """When a word is doubtful: when its doubt score, ln(probability) + fragment_weight * log10(how often its
    rarest lone character is a word of its own, when jieba's dictionary puts it in no longer word) -
    touched_weight (in a segment decoding or a guard touched) - disputed_weight * (the share of its
    characters a second decode wrote differently, when there is one), is below `threshold`. Chosen with
    bench/doubt.py --tune (bench/RESULTS.md)."""

    threshold: float = -1.3
    fragment_weight: float = 0.3
    touched_weight: float = 0.3
    disputed_weight: float = 0.6
    foreign: bool = True  # words in a script the recording's language does not write are doubtful


# The second decode whose disagreement makes words doubtful: greedy, where the first decode searches a beam.
# Measured beside sampling at temperature 0.6, which did as well on all the reference clips but worse on
# halves it was not tuned on (bench/doubt_signals.py, bench/RESULTS.md).
SECOND_DECODE = DecodeOptions(beam_size=1, best_of=1, temperatures=(0.0,))


@dataclass(frozen=True)
class WarningRule:
    """When a recording is likely poor. Chosen with bench/doubt.py."""

    language_probability: float = 0.8  # the recogniser was unsure which language it hears
    doubtful_share: float = 0.45  # this share of the text is doubtful
    mean_probability: float = 0.65  # the words' mean probability (by characters) is below this


def characters(text: str) -> int:
    """What a word weighs: its letters and digits (punctuation and spaces are not text to check)."""
    return sum(map(str.isalnum, text))  # map: half the time of a generator (the store recounts on each correction)


def is_foreign(word: Word, language: str | None) -> bool:
    """A word in a script the language does not write: Latin letters in Chinese, Chinese characters elsewhere."""
    if not language:
        return False
    if language in CHINESE_LANGUAGES or language == "ja":
        return bool(_LATIN.search(word.text)) and not HAN_CHAR.search(word.text)
    return bool(HAN_CHAR.search(word.text))


@cache
def jieba_dictionary() -> tuple[dict[str, int], int]:
    import jieba  # not at the top: loading its dictionary takes a second, and only Chinese needs it

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.dt
    with tokenizer.lock:  # jieba's own, which its initialize() takes
        if not tokenizer.initialized and not _read_jieba_cache(tokenizer):
            tokenizer.initialize()
    return tokenizer.FREQ, tokenizer.total


def _read_jieba_cache(tokenizer) -> bool:
    """Load jieba's default dictionary from the cache jieba keeps of it (jieba.cache in its temp folder, written
    by the first initialize() on the machine), as initialize() does, but read whole before it is unmarshalled:
    jieba's marshal.load from the open file reads it a few bytes at a time, 1.5 s for its 9 MB against 0.35 s.
    False where there is no such cache or it does not hold a dictionary: initialize() builds it then."""
    import jieba

    if tokenizer.dictionary != jieba.DEFAULT_DICT or tokenizer.cache_file:
        return False
    cache_file = Path(tokenizer.tmp_dir or tempfile.gettempdir()) / "jieba.cache"
    try:
        frequencies, total = marshal.loads(cache_file.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return False
    if not isinstance(frequencies, dict) or not isinstance(total, int) or total <= 0:
        return False
    tokenizer.FREQ, tokenizer.total, tokenizer.initialized = frequencies, total, True
    return True


def prepare_doubt(language: str) -> None:
    """Start loading what marking words of `language` needs on a thread of its own: jieba's dictionary for
    Chinese (1.3 s), which then loads while the recogniser decodes (CTranslate2 lets go of the GIL) instead of
    after it. jieba loads it once, under its own lock."""
    if language in CHINESE_LANGUAGES:
        threading.Thread(target=jieba_dictionary, name="jieba-dictionary", daemon=True).start()


def fragment_rarity(words: list[Word]) -> list[float]:
    """Per word: log10 of how often the rarest of its characters that jieba leaves alone (in no word of two or
    more characters with its neighbours) is a word of its own in jieba's dictionary; 0 for a word without
    such a character. A lone character jieba does not know at all is as rare as can be."""
    import jieba

    frequencies, total = jieba_dictionary()
    text = to_simplified("".join(w.text for w in words))
    lone: list[float] = []
    for token in jieba.lcut(text, HMM=False):
        if len(token) == 1 and HAN_CHAR.match(token):
            lone.append(math.log10((frequencies.get(token, 0) + 1) / total))
        else:
            lone.extend([0.0] * len(token))
    rarity, at = [], 0
    for word in words:
        # The conversion may change a text's length (rarely): then each word takes what is there.
        rarity.append(min(lone[at : at + len(word.text)], default=0.0))
        at += len(word.text)
    return rarity


def _letters(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def disputed(transcript: Transcript, second: Transcript) -> list[list[float]]:
    """Per segment, per word: the share of the word's letters and digits that the second decode of the same
    recording wrote differently (the two texts aligned by edit distance, rapidfuzz's Levenshtein)."""
    from rapidfuzz.distance import Levenshtein

    words = [w for s in transcript.segments for w in s.words]
    owner = [i for i, w in enumerate(words) for _ in _letters(w.text)]
    text = "".join(_letters(w.text) for w in words)
    other = "".join(_letters(w.text) for s in second.segments for w in s.words)
    changed = [0] * len(text)
    for op in Levenshtein.opcodes(text, other):
        if op.tag in ("replace", "delete"):
            changed[op.src_start : op.src_end] = [1] * (op.src_end - op.src_start)
    letters, differ = [0] * len(words), [0] * len(words)
    for at, i in enumerate(owner):
        letters[i] += 1
        differ[i] += changed[at]
    share = [d / n if n else 0.0 for d, n in zip(differ, letters, strict=True)]
    shares, at = [], 0
    for s in transcript.segments:
        shares.append(share[at : at + len(s.words)])
        at += len(s.words)
    return shares


def doubt_scores(
    segment: Segment, language: str | None, rule: DoubtRule, disputes: list[float] | None = None
) -> list[float]:
    """Each word's doubt score (see DoubtRule): the lower, the more doubtful. `disputes`: per word, the share
    a second decode wrote differently (`disputed`); None without a second decode."""
    chinese = segment.language in CHINESE_LANGUAGES
    rarity = fragment_rarity(segment.words) if chinese else [0.0] * len(segment.words)
    touched = rule.touched_weight if segment.marks else 0.0
    disputes = disputes or [0.0] * len(segment.words)
    return [
        math.log(max(w.probability, _FLOOR)) + rule.fragment_weight * r - touched - rule.disputed_weight * d
        for w, r, d in zip(segment.words, rarity, disputes, strict=True)
    ]


def _doubtful_words(
    segment: Segment, language: str | None, rule: DoubtRule, disputes: list[float] | None
) -> list[bool]:
    scores = doubt_scores(segment, language, rule, disputes)
    other_language = bool(language) and segment.language != language
    return [
        score < rule.threshold or (rule.foreign and (other_language or is_foreign(word, language)))
        for word, score in zip(segment.words, scores, strict=True)
    ]


def confidence(segment: Segment) -> float | None:
    """How sure the recogniser was of the segment: its words' probabilities averaged by characters, times one
    less half the share of characters in doubtful words; 1 for text a person corrected, None without words."""
    if segment.corrected:
        return 1.0
    weights = [max(characters(w.text), 1) for w in segment.words]
    if not weights:
        return None
    total = sum(weights)
    mean = sum(w.probability * n for w, n in zip(segment.words, weights, strict=True)) / total
    doubtful = sum(n for w, n in zip(segment.words, weights, strict=True) if w.doubtful) / total
    return round(mean * (1 - doubtful / 2), 3)


def doubtful_share(segments: list[Segment]) -> float | None:
    """The share of the segments' characters in doubtful words; None when they have no words."""
    total = doubtful = 0
    for segment in segments:
        for word in segment.words:
            n = characters(word.text)
            total += n
            doubtful += n if word.doubtful else 0
    return doubtful / total if total else None


def mark_segment(
    segment: Segment, language: str | None, rule: DoubtRule = DoubtRule(), disputes: list[float] | None = None
) -> Segment:
    """The segment with its words' doubt and its confidence; a person's correction clears the doubt."""
    marks = [False] * len(segment.words) if segment.corrected else _doubtful_words(segment, language, rule, disputes)
    words = [replace(w, doubtful=m) for w, m in zip(segment.words, marks, strict=True)]
    marked = replace(segment, words=words)
    return replace(marked, confidence=confidence(marked))


# The warnings about the text itself, which people's corrections change (text_warnings), and the others,
# about how it was transcribed, which they do not: by how they start, as the store keeps them as text.
_LANGUAGE_WARNING = "language unsure ("
_TEXT_WARNINGS = ("recogniser unsure (", "much doubtful text (")


def text_warnings(segments: list[Segment], rule: WarningRule = WarningRule()) -> list[str]:
    """The warnings about the segments' text: the recogniser's mean word probability (where no person
    corrected it) and the share of doubtful text."""
    warnings = []
    words = [w for s in segments if not s.corrected for w in s.words]
    weights = [characters(w.text) for w in words]
    if sum(weights):
        mean = sum(w.probability * n for w, n in zip(words, weights, strict=True)) / sum(weights)
        if mean < rule.mean_probability:
            warnings.append(f"{_TEXT_WARNINGS[0]}mean word probability {mean:.2f})")
    share = doubtful_share(segments)
    if share is not None and share >= rule.doubtful_share:
        warnings.append(f"{_TEXT_WARNINGS[1]}{share:.0%})")
    return warnings


def recording_warnings(transcript: Transcript, rule: WarningRule = WarningRule()) -> list[str]:
    """Why the transcript is likely poor, in words an annotator reads; empty when nothing says so. (No ": " in
    them: a run's summary line cuts a warning's path off at the first one.)"""
    warnings = []
    language, probability = transcript.language, transcript.language_probability
    if language and probability < rule.language_probability:
        dialect = ", a dialect?" if language in CHINESE_LANGUAGES else ""
        warnings.append(f"{_LANGUAGE_WARNING}{language} at {probability:.0%}{dialect})")
    warnings.extend(text_warnings(transcript.segments, rule))
    loops = transcript.guards.get("repetition", 0)
    if loops:
        warnings.append(f"recogniser looped {loops} time(s), text may be missing")
    return warnings


def rewarn(warnings: list[str], segments: list[Segment], rule: WarningRule = WarningRule()) -> list[str]:
    """A recording's warnings once people corrected some of its text: those about the text made anew from
    `segments`, the others (the language, loops) kept as transcribing found them, in the same order."""
    kept = [w for w in warnings if not w.startswith(_TEXT_WARNINGS)]
    at = sum(1 for w in kept if w.startswith(_LANGUAGE_WARNING))
    return [*kept[:at], *text_warnings(segments, rule), *kept[at:]]


def mark_doubt(
    transcript: Transcript,
    rule: DoubtRule = DoubtRule(),
    warn: WarningRule = WarningRule(),
    second: Transcript | None = None,
) -> Transcript:
    """The transcript with each word's doubt, each segment's confidence and the recording's warnings; with
    `second`, a second decode of the recording (SECOND_DECODE), the words it wrote differently more doubtful."""
    disputes = disputed(transcript, second) if second is not None else [None] * len(transcript.segments)
    segments = [
        mark_segment(s, transcript.language, rule, d) for s, d in zip(transcript.segments, disputes, strict=True)
    ]
    marked = replace(transcript, segments=segments)
    return replace(marked, quality_warnings=recording_warnings(marked, warn))


@dataclass(frozen=True)
class Passage:
    """A run of doubtful words in one segment: what an annotator listens to again."""

    segment: Segment
    start: float  # its first word's start, its last word's end
    end: float
    text: str
    words: tuple[int, int]  # [first, last + 1) into segment.words
    chars: tuple[int, int] | None  # [start, end) into segment.text; None where the text no longer has its words

    @property
    def probability(self) -> float:
        """Its words' mean probability: the lower, the likelier it is wrong."""
        words = self.segment.words[self.words[0] : self.words[1]]
        return sum(w.probability for w in words) / len(words)


def _word_offsets(segment: Segment) -> list[int | None]:
    """Where each word's text starts in the segment's text, found in order; None for a word not there."""
    offsets: list[int | None] = []
    cursor = 0
    for word in segment.words:
        at = segment.text.find(word.text.strip(), cursor) if word.text.strip() else -1
        offsets.append(at if at >= 0 else None)
        cursor = at + len(word.text.strip()) if at >= 0 else cursor
    return offsets


def doubtful_passages(segments: list[Segment]) -> list[Passage]:
    """The doubtful words of the segments, consecutive ones in a segment joined, in the segments' order."""
    passages = []
    for segment in segments:
        words = segment.words
        offsets = _word_offsets(segment) if any(w.doubtful for w in words) else []
        i = 0
        while i < len(words):
            if not words[i].doubtful:
                i += 1
                continue
            end = i
            while end < len(words) and words[end].doubtful:
                end += 1
            first, last = offsets[i], offsets[end - 1]
            chars = (first, last + len(words[end - 1].text.strip())) if first is not None and last is not None else None
            text = join_texts(w.text for w in words[i:end])
            passages.append(Passage(segment, words[i].start, words[end - 1].end, text, (i, end), chars))
            i = end
    return passages


def by_risk(passages: list[Passage]) -> list[Passage]:
    """The passages most likely wrong first: by their words' mean probability, lowest first."""
    return sorted(passages, key=lambda p: p.probability)
