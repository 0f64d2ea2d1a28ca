"""The doubt stage: which words an annotator should check, how sure each segment is, and whether the whole
recording is likely poor.

A word is doubtful when the recogniser was unsure of it, and more readily so in context: inside a run of
unsure words (a misheard name or term comes out as several unsure pieces), in a segment that decoding or a
guard touched (a loop cut out, a phantom phrase removed, audio the recogniser skipped and decoded again), or
in a language or script the recording is not in. The thresholds were chosen by measuring them against
reference transcripts (bench/doubt.py; the figures are in bench/RESULTS.md), not guessed. Text a person
corrected is never doubtful.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pipeline.records import Segment, Transcript, Word
from pipeline.script import CHINESE_LANGUAGES
from pipeline.utils import HAN_CHAR

_LATIN = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class DoubtRule:
    """When a word is doubtful. Chosen with bench/doubt.py."""

    word_probability: float = 0.35  # a word this unsure is doubtful on its own
    run_probability: float = 0.55  # ... and one whose run (itself and `run_width` words each side) averages below
    run_width: int = 1
    touched_probability: float = 0.7  # ... and, in a segment decoding or a guard touched, one below this
    foreign: bool = True  # words in a script the recording's language does not write are doubtful

    def settings(self) -> dict:
        return {
            "word_probability": self.word_probability,
            "run_probability": self.run_probability,
            "run_width": self.run_width,
            "touched_probability": self.touched_probability,
            "foreign": self.foreign,
        }


@dataclass(frozen=True)
class WarningRule:
    """When a recording is likely poor. Chosen with bench/doubt.py."""

    language_probability: float = 0.8  # the recogniser was unsure which language it hears
    doubtful_share: float = 0.3  # this share of the text is doubtful
    mean_probability: float = 0.65  # the words' mean probability (by characters) is below this


def characters(text: str) -> int:
    """What a word weighs: its letters and digits (punctuation and spaces are not text to check)."""
    return sum(1 for c in text if c.isalnum())


def is_foreign(word: Word, language: str | None) -> bool:
    """A word in a script the language does not write: Latin letters in Chinese, Chinese characters elsewhere."""
    if not language:
        return False
    if language in CHINESE_LANGUAGES or language == "ja":
        return bool(_LATIN.search(word.text)) and not HAN_CHAR.search(word.text)
    return bool(HAN_CHAR.search(word.text))


def _doubtful_words(segment: Segment, language: str | None, rule: DoubtRule) -> list[bool]:
    words = segment.words
    probabilities = [w.probability for w in words]
    touched = bool(segment.marks)
    other_language = bool(language) and segment.language != language
    marks = []
    for i, word in enumerate(words):
        run = probabilities[max(0, i - rule.run_width) : i + rule.run_width + 1]
        marks.append(
            word.probability < rule.word_probability
            or sum(run) / len(run) < rule.run_probability
            or (touched and word.probability < rule.touched_probability)
            or (rule.foreign and (other_language or is_foreign(word, language)))
        )
    return marks


def confidence(segment: Segment) -> float | None:
    """How sure the recogniser was of the segment: its words' probabilities averaged by characters, less the
    share of characters in doubtful words; 1 for text a person corrected, None without words."""
    if segment.version > 1:
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


def mark_segment(segment: Segment, language: str | None, rule: DoubtRule = DoubtRule()) -> Segment:
    """The segment with its words' doubt and its confidence; a person's correction clears the doubt."""
    marks = [False] * len(segment.words) if segment.version > 1 else _doubtful_words(segment, language, rule)
    words = [replace(w, doubtful=m) for w, m in zip(segment.words, marks, strict=True)]
    marked = replace(segment, words=words)
    return replace(marked, confidence=confidence(marked))


def recording_warnings(transcript: Transcript, rule: WarningRule = WarningRule()) -> list[str]:
    """Why the transcript is likely poor, in words an annotator reads; empty when nothing says so."""
    warnings = []
    language, probability = transcript.language, transcript.language_probability
    if language and probability < rule.language_probability:
        dialect = " (a dialect?)" if language in CHINESE_LANGUAGES else ""
        warnings.append(f"language unsure{dialect}: {language} with probability {probability:.2f}")
    words = [w for s in transcript.segments if s.version == 1 for w in s.words]
    weights = [characters(w.text) for w in words]
    if sum(weights):
        mean = sum(w.probability * n for w, n in zip(words, weights, strict=True)) / sum(weights)
        if mean < rule.mean_probability:
            warnings.append(f"the recogniser was unsure of much of it: mean word probability {mean:.2f}")
    share = doubtful_share(transcript.segments)
    if share is not None and share >= rule.doubtful_share:
        warnings.append(f"much doubtful text: {share:.0%} of it")
    loops = transcript.guards.get("repetition", 0)
    if loops:
        warnings.append(f"the recogniser looped {loops} time(s): text may be missing there")
    return warnings


def mark_doubt(transcript: Transcript, rule: DoubtRule = DoubtRule(), warn: WarningRule = WarningRule()) -> Transcript:
    """The transcript with each word's doubt, each segment's confidence and the recording's warnings."""
    segments = [mark_segment(s, transcript.language, rule) for s in transcript.segments]
    marked = replace(transcript, segments=segments)
    return replace(marked, quality_warnings=recording_warnings(marked, warn))
