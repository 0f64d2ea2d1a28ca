"""The project's vocabulary: the words the recogniser is told to expect, and the guard against a hint that
it writes instead of what was said.

A project lists its people, places, factories and terms in `annotations/vocabulary.txt` (one a line, `#`
comments). With the recording's own metadata (interviewee, place) and the codebook's theme labels they make
the hint handed to Whisper on every chunk (faster-whisper's hotwords, openai-whisper's initial prompt).
Told to expect a word, Whisper hears it far better; but it may also write the hint where it was not said.
So a chunk whose hinted text holds a hint term, or a piece of one (量子 of 量子纠缠), is checked against its
decode without the hint: a term or piece nothing in that decode sounds like, or hinted text much shorter
than the plain one, and the chunk keeps the plain decode (counted as the guard "hint"). The hinted pass
decodes at temperature 0 only: a stretch where Whisper would fall back to sampling (its text too repetitive
or too improbable) is left out, and checked against the plain decode (which keeps its own fallbacks): a plain
decode costs one decode where sampling the hinted one cost up to five more.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from difflib import SequenceMatcher
from functools import cache
from pathlib import Path

from pipeline.errors import InvalidInputError
from pipeline.records import CorrectedWord, DecodeMark, Segment
from pipeline.script import to_simplified
from pipeline.stages.codebook import Codebook
from pipeline.stages.engines import DecodeOptions, failures
from pipeline.stages.guards import has_loop
from pipeline.utils import HAN, UnreadableFileError, folder_lock, read_bounded, resolved, write_atomic
from pipeline.whisper_tables import whisper_tokenizer

log = logging.getLogger(__name__)
HAN_WORD = re.compile(f"[{HAN}]+")

MAX_FILE_BYTES = 2**20
MAX_LINE_BYTES = 1_000  # a line longer than this is no term list (a minified file, a binary)
MAX_TERM_CHARS = 40
MAX_TERMS = 5_000
# Whisper's prompt holds at most 223 tokens (a Chinese character takes one to three): the hint keeps the first
# terms (the recording's own, then the project's, then the codebook's) that fit in this many.
MAX_HINT_TOKENS = 200
HINT_SEPARATOR = " "  # measured: a Chinese comma between terms gets copied into the text
GUARD = "hint"  # the guard's kind in a transcript's counts: "removed 1 hint"
# A hint term the plain decode has nothing like: below this similarity of sound (pinyin for Chinese,
# letters for other scripts) to any stretch of the plain text, the hint wrote it, not the audio.
MIN_SUPPORT = 0.6
# Hinted text with fewer than this share of the plain decode's letters: the hint swallowed speech.
MIN_LENGTH_RATIO = 0.6
# Hinted text with fewer letters than this a second of speech may have stopped early (measured: a hint cut a
# 25 s chunk off after 8 s, with no hint term in what it wrote): it is checked against the plain decode too.
MIN_LETTERS_PER_SECOND = 2.0


@dataclass(frozen=True)
class Vocabulary:
    """The terms of a vocabulary file, in the file's order, each once."""

    terms: tuple[str, ...] = ()
    path: Path | None = None

    @property
    def version(self) -> str:
        return version(self.terms)


def version(terms: Iterable[str]) -> str:
    """A short content hash of terms: part of the transcribe stage's settings, so a change re-transcribes."""
    return hashlib.sha256("\n".join(terms).encode("utf-8")).hexdigest()[:16]


def _line_error(path: Path, line: int, cause: str) -> InvalidInputError:
    return InvalidInputError(f"{path}:{line}: {cause}")


def _term_problem(term: str) -> str | None:
    """What makes a term (spaces collapsed, no comment) no term; None for a good one."""
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in term):
        return "control characters in a term"
    if len(term) > MAX_TERM_CHARS:
        return f"term of {len(term)} characters (at most {MAX_TERM_CHARS})"
    return None


def parse_vocabulary(data: bytes, path: Path) -> Vocabulary:
    """A vocabulary file's terms: one a line, `#` starting a comment, blank lines ignored. InvalidInputError
    naming the file and line for anything that is no list of terms: binary data, text not UTF-8, lines or
    terms of absurd length, control characters, more than MAX_TERMS terms."""
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInputError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MB: not a vocabulary")
    terms: dict[str, str] = {}  # by normalised form: 工資 and 工资 are one term
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if len(raw) > MAX_LINE_BYTES:
            raise _line_error(path, number, f"line of {len(raw):,} bytes: a vocabulary has one term a line")
        if b"\0" in raw:
            raise _line_error(path, number, "binary data (a NUL byte): not a text file")
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise _line_error(path, number, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
        term = " ".join(line.split("#", 1)[0].split())
        if not term:
            continue
        problem = _term_problem(term)
        if problem:
            raise _line_error(path, number, problem)
        terms.setdefault(normalise(term), term)
        if len(terms) > MAX_TERMS:
            raise _line_error(path, number, f"more than {MAX_TERMS:,} terms")
    return Vocabulary(tuple(terms.values()), path)


def read_vocabulary(path: Path) -> Vocabulary:
    """The vocabulary file at `path` (see parse_vocabulary); InvalidInputError naming it if it cannot be read."""
    try:
        data = read_bounded(path, MAX_FILE_BYTES, "a vocabulary")
    except UnreadableFileError as e:
        raise InvalidInputError(f"{path}: cannot read the vocabulary: {e.cause}") from None
    return parse_vocabulary(data, path)


def known_terms(path: Path) -> tuple[str, ...]:
    """The terms of the vocabulary file at `path`; none when there is no file yet."""
    return read_vocabulary(path).terms if path.exists() else ()


def check_term(term: str) -> str:
    """A term as a vocabulary line holds it (spaces collapsed); InvalidInputError for one no file line could be."""
    cleaned = " ".join(term.split())
    problem = "empty, or holding #" if not cleaned or "#" in cleaned else _term_problem(cleaned)
    if problem:
        raise InvalidInputError(f"{term[:60]!r} is not a term: {problem}")
    return cleaned


def add_terms(path: Path, terms: Iterable[str]) -> list[bool]:
    """Add terms at the end of the vocabulary file (made if missing), each line once; for each term, whether it was
    added (False: the file, or a term before it, has it). Every term is checked and the file read (and so checked) once,
    first: none is added if one is not a term, nor to a file that is no vocabulary."""
    cleaned = [check_term(term) for term in terms]
    target = resolved(path)  # a link (to a shared file) is written through, not replaced by a file of its own
    target.parent.mkdir(parents=True, exist_ok=True)
    # The file is replaced whole (an append cut short, by a full disk or a crash, left half a line that made every
    # `ohp run` refuse it), so two accepts at once, the web app's and the command's, take turns.
    with folder_lock(target.parent):
        have = {normalise(t) for t in known_terms(target)}
        fresh: list[bool] = []
        for term in cleaned:
            key = normalise(term)
            fresh.append(key not in have)
            have.add(key)
        added = [term for term, new in zip(cleaned, fresh, strict=True) if new]
        if added:
            existing = target.read_bytes() if target.exists() else b""
            mode = stat.S_IMODE(target.stat().st_mode) if existing else None
            lines = "".join(f"{term}\n" for term in added).encode("utf-8")
            write_atomic(target, existing + (b"" if not existing or existing.endswith(b"\n") else b"\n") + lines)
            if mode is not None:
                os.chmod(target, mode)  # a file shared with a group stays writable by it, as appending left it
            log.info("%s: added %d term(s)", path, len(added))  # not which: often names, from what people corrected
    return fresh


def normalise(text: str) -> str:
    """Text as terms are compared: NFKC (full-width letters and digits as plain ones, one form of each accented
    letter), simplified script, case folded."""
    return to_simplified(unicodedata.normalize("NFKC", text)).casefold()


@dataclass(frozen=True)
class Hint:
    """The words to expect in one recording, most important first."""

    terms: tuple[str, ...]

    @property
    def version(self) -> str:
        return version(self.terms)

    @property
    def text(self) -> str:
        return HINT_SEPARATOR.join(self.terms)

    def found(self, text: str) -> list[str]:
        """The hint terms written in `text`."""
        haystack = normalise(text)
        return [term for term in self.terms if normalise(term) in haystack]

    def pieces_found(self, text: str) -> list[str]:
        """The pieces of hint terms (`pieces`) written in `text`."""
        haystack = normalise(text)
        return [piece for piece in pieces(self.terms) if piece in haystack]


@cache
def pieces(terms: tuple[str, ...]) -> tuple[str, ...]:
    """The pieces of Chinese terms a hint may write without the rest (量子 of 量子纠缠, measured: for 亮着): the
    words of two or more characters jieba's dictionary makes of a term (without its guesses at unknown words),
    other than the term itself and other terms; normalised, each once."""
    whole = dict.fromkeys(normalise(t) for t in terms)  # in the hint's order
    chinese = [term for term in whole if HAN_WORD.fullmatch(term) and len(term) >= 3]
    if not chinese:
        return ()
    import jieba  # its dictionary takes a second to load: only for Chinese terms

    from pipeline.stages.doubt import jieba_dictionary

    jieba_dictionary()  # loaded once, quietly
    found: dict[str, None] = {}
    for term in chinese:
        found.update((w, None) for w in jieba.lcut(term, HMM=False) if len(w) >= 2 and w not in whole)
    return tuple(found)


def codebook_terms(codebook: Codebook | None) -> list[str]:
    """The codebook's key terms: its themes' labels, in each language."""
    return [label for theme in codebook.themes for label in theme.label.values()] if codebook else []


def build_hint(*sources: Iterable[str | None]) -> Hint | None:
    """The hint from its sources in order of importance (the recording's interviewee and place, the project's
    vocabulary, the codebook's theme labels): each term once, as many as fit in MAX_HINT_TOKENS of Whisper's
    tokens. None: no terms."""
    terms: dict[str, str] = {}
    size = dropped = 0
    for source in sources:
        for term in source:
            term = " ".join((term or "").split())
            if not term or normalise(term) in terms:
                continue
            tokens = len(_tokenizer().encode(HINT_SEPARATOR + term))
            if size + tokens > MAX_HINT_TOKENS:
                dropped += 1
                continue
            terms[normalise(term)] = term
            size += tokens
    if dropped:
        log.warning("the hint holds the first %d terms; %d more do not fit Whisper's prompt", len(terms), dropped)
    return Hint(tuple(terms.values())) if terms else None


@cache
def _tokenizer():
    """Whisper's multilingual tokenizer (the same for every multilingual model), to count a hint's tokens."""
    return whisper_tokenizer().get_encoding("multilingual")


def _sounds(text: str) -> list[str]:
    """Text as sounds: a Chinese character its pinyin without tone, other words their lower-case letters."""
    from pypinyin import lazy_pinyin  # its dictionaries load in a second: only where a hint is checked

    sounds = []
    for piece in lazy_pinyin(normalise(text)):
        sounds.extend(re.findall(r"\w+", piece))
    return sounds


def support(term: str, plain_text: str) -> float:
    """How much the plain decode sounds like it holds `term` (0..1): the best match of the term's sounds with a
    stretch of as many sounds of the plain text, each sound scored by the square of its letters' similarity
    (qin for qing 0.73, hao for bao 0.44), averaged. A homophone Whisper wrote without the hint (清典 for 钦点)
    scores high; a term the hint made up scores low, however many letters random syllables share."""
    if normalise(term) in normalise(plain_text):
        return 1.0
    wanted, heard = _sounds(term), _sounds(plain_text)
    if not wanted or len(heard) < len(wanted):
        return 0.0

    def similarity(a: str, b: str) -> float:
        return SequenceMatcher(None, a, b, autojunk=False).ratio() ** 2

    return max(
        sum(similarity(a, b) for a, b in zip(wanted, heard[start:], strict=False)) / len(wanted)
        for start in range(len(heard) - len(wanted) + 1)
    )


def _letters(text: str) -> int:
    return len(re.findall(r"\w", text))


def unsupported(hint: Hint, hinted: list[Segment], plain: list[Segment]) -> list[str]:
    """Why the hinted decode cannot be trusted, compared with the plain one: the hint terms, or pieces of them, it
    wrote that nothing in the plain decode sounds like, or that it holds far less text. Empty: keep the hinted
    decode."""
    hinted_text, plain_text = _text(hinted), _text(plain)
    problems = []
    for term in hint.found(hinted_text) + hint.pieces_found(hinted_text):
        heard = support(term, plain_text)
        if heard < MIN_SUPPORT:
            problems.append(f"a hint term of {len(term)} characters (support {heard:.2f})")
    if _letters(hinted_text) < MIN_LENGTH_RATIO * _letters(plain_text):
        problems.append(f"{_letters(hinted_text)} letters against {_letters(plain_text)} without the hint")
    return problems


def hinted_options(hint: Hint, options: DecodeOptions) -> DecodeOptions:
    """The hinted pass's options: the hint, and only the first temperature (no sampling fallbacks)."""
    return replace(options, hint=hint.text, temperatures=options.temperatures[:1])


def failed(segment: Segment, options: DecodeOptions) -> list[str]:
    """Why a segment decoded at one temperature fails Whisper's own checks, those that would have made it fall
    back to sampling that stretch of audio (engines.failures), or loops; empty: it passes."""
    problems = failures(segment.compression_ratio, segment.avg_logprob, segment.no_speech_prob, options)
    if has_loop(segment) or DecodeMark.LOOP in segment.marks:  # the mark: the decode ran out of tokens
        problems.append("a loop")
    return problems


def _heard_during(segments: list[Segment], start: float, end: float) -> bool:
    """Whether the segments have a word whose middle lies between start and end."""
    return any(start <= (w.start + w.end) / 2 <= end for s in segments for w in s.words)


def decode_with_hint(
    hint: Hint,
    options: DecodeOptions,
    decode: Callable[[DecodeOptions, Counter], list[Segment]],
    counts: Counter,
    speech_seconds: float = 0.0,
) -> list[Segment]:
    """Decode a chunk with the hint (`options` are the engine's DecodeOptions; `decode(options, counts)` decodes
    the chunk, counting what its own guards did), at the first temperature only, and leave out the stretches
    whose text fails Whisper's checks (`failed`: measured, the hint writes 法院 法院 法院 or 剧剧剧 into what is left
    of a chunk after its speech). Where a stretch was left out, or the text holds a hint term or a piece of one,
    or is sparse for the chunk's `speech_seconds`, decode the chunk again without the hint and keep that plain
    decode if the hinted one cannot be trusted: the plain decode heard words in a stretch left out, or
    `unsupported`. A plain decode kept counts as GUARD."""
    hinted_counts: Counter[str] = Counter()
    decoded = decode(hinted_options(hint, options), hinted_counts)
    verdicts = [(s, failed(s, options)) for s in decoded]
    left_out = [(s, why) for s, why in verdicts if why]
    hinted = [s for s, why in verdicts if not why]
    sparse = _letters(_text(hinted)) < MIN_LETTERS_PER_SECOND * speech_seconds
    if not left_out and not hint.found(_text(hinted)) and not hint.pieces_found(_text(hinted)) and not sparse:
        counts.update(hinted_counts)
        return hinted
    plain_counts: Counter[str] = Counter()
    plain = decode(options, plain_counts)
    # The problems go into the log: they say when and why, never what was said nor which hint term (names).
    problems = [
        f"{s.start:.1f}-{s.end:.1f} s ({'; '.join(why)}) where the plain decode heard words"
        for s, why in left_out
        if _heard_during(plain, s.start, s.end)
    ]
    problems += unsupported(hint, hinted, plain)
    if not problems:
        counts.update(hinted_counts)
        return hinted
    log.debug("hinted decode dropped for the plain one: %s", "; ".join(problems))
    counts.update(plain_counts)
    counts[GUARD] += 1
    return plain


@dataclass(frozen=True)
class Suggestion:
    """A term people wrote where the recogniser wrote something else: a candidate for the vocabulary."""

    term: str
    count: int  # times people wrote it in corrections
    recordings: int  # in how many recordings
    # Written in corrections of closed recordings alone: the vocabulary file is shared and hinted for every
    # recording, so such a term (often the interviewee's name) goes into it only when a researcher means it to.
    closed_only: bool = False


MAX_SUGGESTED_HAN = 8  # longer Chinese insertions are phrases, not names or terms


def content_term(text: str) -> str | None:
    """The word as a vocabulary term, if it is a content word: two to MAX_SUGGESTED_HAN Chinese characters, or a
    word of three letters or more, and not a stop word (spaCy's lists). None for anything else."""
    term = re.sub(r"^\W+|\W+$", "", text)
    if HAN_WORD.fullmatch(term):
        from spacy.lang.zh.stop_words import STOP_WORDS as CHINESE  # a plain set, no pipeline loads

        return term if 2 <= len(term) <= MAX_SUGGESTED_HAN and term not in CHINESE else None
    if re.fullmatch(r"[^\W\d_]+(?:[-'][^\W\d_]+)*", term) and len(term) >= 3:
        from spacy.lang.en.stop_words import STOP_WORDS as ENGLISH

        return term if term.casefold() not in ENGLISH else None
    return None


def suggest(
    words: Iterable[CorrectedWord], known: Iterable[str], ignored: Iterable[str], closed: Collection[int] = ()
) -> list[Suggestion]:
    """The vocabulary candidates among the words people wrote in corrections: content words the recogniser had
    not written in that segment, neither in the vocabulary (`known`) nor ignored, most often corrected first;
    those written only in the recordings of `closed` (their ids) are `closed_only`."""
    left_out = {normalise(t) for t in [*known, *ignored]}
    closed_ids = set(closed)
    counts: Counter[str] = Counter()
    recordings: dict[str, set[int]] = {}
    heard, heard_normalised = None, ""  # a segment's words come together: its text is normalised once for them
    for word in words:
        term = content_term(word.text)
        if term is None:
            continue
        if word.heard != heard:
            heard, heard_normalised = word.heard, normalise(word.heard)
        if (normalised := normalise(term)) in heard_normalised or normalised in left_out:
            continue
        counts[term] += 1
        recordings.setdefault(term, set()).add(word.recording_id)
    found = [
        Suggestion(term, count, len(recordings[term]), recordings[term] <= closed_ids) for term, count in counts.items()
    ]
    return sorted(found, key=lambda s: (-s.count, -s.recordings, s.term))


def only_in_closed(
    terms: Iterable[str], words: Iterable[CorrectedWord], closed: Collection[int]
) -> list[tuple[str, str | None]]:
    """Those of `terms` that hold a word people wrote in corrections, as `suggest` counts them, of the recordings
    of `closed` alone: the term itself in any script, case or width (with None), or a word of it, as people wrote
    it (秀英 in 秀英的家, Xiuying in "Zhang Xiuying"): a longer term carries the name as surely. A term holding no
    such word is not among them, nor one people wrote whole in an open recording. The corrections are counted once
    for all the terms."""
    flags: defaultdict[str, set[bool]] = defaultdict(set)  # a spelling's suggestions, each closed only or not
    written: dict[str, str] = {}  # a spelling as people wrote it
    for s in suggest(words, (), (), closed):
        flags[normalise(s.term)].add(s.closed_only)
        written.setdefault(normalise(s.term), s.term)
    asked = [(term, normalise(term)) for term in terms]
    # Only spellings inside some term can match: the pattern of an archive's every closed-only word took a second
    # to compile for 20,000 of them.
    every = "\n".join(whole for _, whole in asked)
    spellings = sorted((w for w, seen in flags.items() if seen == {True} and w in every), key=len, reverse=True)
    if not spellings:
        return []
    # Chinese is written without spaces, so a Han word counts anywhere in a term; a Latin one as a whole word.
    pattern = re.compile(
        "|".join(re.escape(w) if HAN_WORD.fullmatch(w) else rf"(?<!\w){re.escape(w)}(?!\w)" for w in spellings)
    )
    held: list[tuple[str, str | None]] = []
    for term, whole in asked:
        if False in flags.get(whole, ()):  # written as a whole in an open recording: it leaves nothing closed
            continue
        if match := pattern.search(whole):
            held.append((term, None if match.group() == whole else written[match.group()]))
    return held


def _text(segments: list[Segment]) -> str:
    return "".join(s.text for s in segments)
