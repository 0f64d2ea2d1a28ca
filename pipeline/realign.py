"""A corrected segment's words, realigned to its new text.

The recogniser's words carry times; a person's correction carries the truth. `realign` diffs the two (over
characters for Chinese, over words for other scripts, with difflib's opcodes): a word the correction left as
it was keeps its time and probability, with the punctuation the person wrote around it; what the person
wrote instead takes the time of what it replaces, and what they added the time between its neighbours.
Those words are `corrected` (a person's, never doubtful), and `new_terms` are the ones the recogniser had
not written at all: the candidates for the vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from difflib import SequenceMatcher

from pipeline.records import Word
from pipeline.utils import HAN, HAN_CHAR

# A unit of the diff: one Chinese character, or a run of anything else up to a space or a Chinese character;
# compared without the punctuation around it.
_UNIT = re.compile(f"[{HAN}]|[^\\s{HAN}]+")
PERSON_PROBABILITY = 1.0  # a word a person wrote
# The most units of a segment's old and new text, multiplied, that are diffed whole; beyond it only the middle the
# correction changed, and where that is still more, it is one replacement, its words' times spread over it.
MAX_DIFF = 1_000_000


@dataclass(frozen=True)
class _Unit:
    text: str
    start: float
    end: float
    origin: int | None  # the old word it is part of (equal or replacing), None for an insertion
    kept: bool  # the same as the recogniser's


def _key(unit: str) -> str:
    return re.sub(r"^\W+|\W+$", "", unit)


def units(text: str) -> list[str]:
    """The units of a text as written: punctuation goes with the unit before it (the first unit after it),
    as Whisper's words carry it, so the words hold every character of the text but its spaces."""
    found: list[str] = []
    leading = ""
    for unit in _UNIT.findall(text):
        if _key(unit):
            found.append(leading + unit)
            leading = ""
        elif found:
            found[-1] += unit
        else:
            leading += unit
    if leading and found:
        found[-1] += leading
    return found


def keys(text: str) -> list[str]:
    """The units of a text as compared: without the punctuation around them."""
    return [_key(unit) for unit in units(text)]


def _is_han(unit: str) -> bool:
    return bool(HAN_CHAR.match(unit))


def _spread(start: float, end: float, count: int) -> list[tuple[float, float]]:
    """`count` equal slices of [start, end]."""
    step = (end - start) / count if count else 0.0
    return [(start + i * step, start + (i + 1) * step) for i in range(count)]


def realign(words: list[Word], text: str, start: float, end: float) -> list[Word]:
    """The words of a segment ([start, end] in the recording) whose text is now `text`."""
    new_texts = units(text)
    if [u for w in words for u in units(w.text)] == new_texts:
        return words
    old: list[_Unit] = []
    for index, word in enumerate(words):
        pieces = units(word.text)
        for piece, (s, e) in zip(pieces, _spread(word.start, word.end, len(pieces)), strict=True):
            old.append(_Unit(piece, s, e, index, True))
    new: list[_Unit] = []
    for tag, i1, i2, j1, j2 in _opcodes([_key(u.text) for u in old], [_key(t) for t in new_texts]):
        if tag == "equal":  # the text's own punctuation
            new.extend(replace(u, text=t) for u, t in zip(old[i1:i2], new_texts[j1:j2], strict=True))
        elif tag in ("replace", "insert"):
            if tag == "replace":
                span_start, span_end = old[i1].start, old[i2 - 1].end
            else:  # between the neighbours' times
                span_start = old[i1 - 1].end if i1 > 0 else start
                span_end = max(span_start, old[i1].start if i1 < len(old) else end)
            count = j2 - j1
            for k, (s, e) in enumerate(_spread(span_start, span_end, count)):
                origin = old[i1 + k * (i2 - i1) // count].origin if tag == "replace" else None
                new.append(_Unit(new_texts[j1 + k], s, e, origin, False))
    return _group(new, words)


def _opcodes(old: list[str], new: list[str]) -> Sequence[tuple[str, int, int, int, int]]:
    """difflib's opcodes from `old` to `new`. difflib's matching is quadratic in repeated units: for a long segment
    (an imported paragraph: a character fixed in 20,000 took 3 s, under the write lock) only what lies between the
    common beginning and end is diffed, and that middle is one replacement where it is still too long."""
    if len(old) * len(new) <= MAX_DIFF:
        return SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    shorter = min(len(old), len(new))
    head = next((i for i in range(shorter) if old[i] != new[i]), shorter)
    tail = next((i for i in range(shorter - head) if old[-1 - i] != new[-1 - i]), shorter - head)
    a, b = old[head : len(old) - tail], new[head : len(new) - tail]
    middle: Sequence[tuple[str, int, int, int, int]]
    if len(a) * len(b) > MAX_DIFF:
        middle = [("replace" if a else "insert", 0, len(a), 0, len(b))] if b else [("delete", 0, len(a), 0, 0)]
    else:
        middle = SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    codes = [("equal", 0, head, 0, head)] if head else []
    codes += [(tag, i1 + head, i2 + head, j1 + head, j2 + head) for tag, i1, i2, j1, j2 in middle if i1 < i2 or j1 < j2]
    if tail:
        codes.append(("equal", len(old) - tail, len(old), len(new) - tail, len(new)))
    return codes


def _group(new: list[_Unit], words: list[Word]) -> list[Word]:
    """Units back into words: Chinese characters from one old word (or one insertion) make one word, each
    other unit a word of its own. A word exactly as the recogniser had it stays the recogniser's."""
    groups: list[list[_Unit]] = []
    for unit in new:
        last = groups[-1][-1] if groups else None
        joins = (
            last is not None
            and _is_han(unit.text)
            and _is_han(last.text)
            and unit.origin == last.origin
            and (unit.origin is not None or not last.kept)
        )
        if joins:
            groups[-1].append(unit)
        else:
            groups.append([unit])
    result = []
    for group in groups:
        text = "".join(u.text for u in group)
        origin = group[0].origin
        if origin is not None and all(u.kept for u in group) and keys(words[origin].text) == keys(text):
            # The recogniser's word, with the punctuation the person wrote around it: the words make the text.
            result.append(words[origin] if words[origin].text == text else replace(words[origin], text=text))
            continue
        for part in _phrases(group):
            text = "".join(u.text for u in part)
            result.append(Word(part[0].start, part[-1].end, text, PERSON_PROBABILITY, corrected=True))
    return result


def _phrases(group: list[_Unit]) -> list[list[_Unit]]:
    """A run of corrected Chinese characters cut after its punctuation (a comma inside is two words at least)."""
    parts: list[list[_Unit]] = [[]]
    for unit in group:
        parts[-1].append(unit)
        if _key(unit.text) != unit.text:
            parts.append([])
    return [part for part in parts if part]


def new_terms(before: list[Word], after: list[Word]) -> list[str]:
    """The corrected words of `after` whose text the recogniser had written nowhere in `before`."""
    heard = "".join(w.text for w in before)
    return [w.text for w in after if w.corrected and w.text not in heard]
