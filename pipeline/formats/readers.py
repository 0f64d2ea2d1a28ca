"""Transcripts that already exist, made by people or by ohp, read into segments.

Formats: ohp's own JSON (README, "The JSON transcript"), SRT, WebVTT and plain text, known by their
content first (a WEBVTT header, an SRT cue, a JSON object) and then by the file's extension. A file is
read whole and checked whole: any problem raises TranscriptFormatError naming the file, the line and
the cause, and nothing of the file is returned.

Plain text has no times: each non-empty line is a segment, at 0.0 s, in the file's order, and the
transcript says `timed=False`. Lines that all begin with a [hh:mm:ss] stamp (ohp's own .txt) are timed:
each lasts until the next. Speaker labels ("Interviewer: ...", "张：...") become the segment's speaker
when most lines or cues carry one and there are few of them, so a sentence that happens to contain a
colon does not make a speaker; WebVTT voices (<v Name>) always do.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pipeline.errors import InvalidInputError
from pipeline.records import (
    CONSENT_LEVELS,
    MAX_FIELD_CHARS,
    MAX_LANGUAGE_CHARS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    SPEAKER_ROLES,
    Segment,
    Word,
)
from pipeline.utils import (
    HAN_CHAR,
    HANGUL_CHAR,
    KANA_CHAR,
    NOT_TEXT,
    UnreadableFileError,
    decode_text,
    join_texts,
    read_bounded,
)

log = logging.getLogger(__name__)
MAX_BYTES = 50 * 1024 * 1024
FORMATS = ("json", "srt", "vtt", "txt")
# What a transcript may hold. Times run from 0 to the recording's length, or to MAX_SECONDS when it is not
# known: no interview is two days long, and 1e308 s or Infinity break every page that shows a time.
MAX_SECONDS = 48 * 3600.0
# A time this much past the recording's stated length is still in it: a file's times are rounded (to the
# ms in ohp's JSON), and the length a container states is an estimate (a VBR MP3's, from its bit rate)
# that the decoded audio can outrun. A word this much outside its segment is still in it.
END_SLACK = 1.0
DURATION_SLACK = 0.05  # of the stated length, when that is more than END_SLACK
# MAX_TEXT_CHARS (pipeline.records): a segment's text; MAX_FIELD_CHARS: any other string: a name, a place, a label,
# a word, a path, a header's value
MAX_JSON_DEPTH = 16  # ohp's JSON nests 6 deep (segments, a segment, its themes, one, its evidence, a span)


class TranscriptFormatError(InvalidInputError):
    """A transcript file that cannot be imported, and why; `line` is 1-based, None when it is the whole file."""

    def __init__(self, path: Path, cause: str, line: int | None = None) -> None:
        super().__init__(f"{path}{f', line {line}' if line else ''}: {cause}")
        self.path = path
        self.line = line
        self.cause = cause


@dataclass
class ImportedTranscript:
    segments: list[Segment]
    language: str | None  # as the file says, else guessed from its text; None when it has no letters
    source_format: str  # one of FORMATS
    timed: bool  # False: plain text, every segment at 0.0 s
    # What the file says besides segments: the recording (ohp JSON/TXT, a WebVTT header), and in ohp
    # JSON each segment's themes ("themes": {index in segments: [{"id", "status", "source", "evidence"}]}).
    metadata: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ reading


def _decode(path: Path, data: bytes) -> str:
    try:
        return decode_text(path, data)
    except UnreadableFileError as exc:
        raise TranscriptFormatError(path, exc.cause, exc.line) from None


def check_pieces(path: Path, count: int, what: str, most: int) -> None:
    """TranscriptFormatError for a file of more `what` than `most`, counted before they are parsed: each
    parsed costs hundreds of bytes, and a file of 50 MB of them would take more memory than the machine has."""
    if count > most:
        raise TranscriptFormatError(path, f"more than {most:,} {what} ({count:,}): not an interview's transcript")


# A transcript's segments at most: a 48-hour recording (MAX_SECONDS) cut every 2 s has 86,400.
MAX_SEGMENTS = 100_000
# An XML file's elements at most (ELAN, REFI-QDA's project.qde): a project of fifty long interviews, every
# segment timed and coded, has about half a million. A zip of 40 KB inflated to millions of empty elements:
# 1.7 GB once parsed.
MAX_XML_ELEMENTS = 1_000_000


def check_xml_elements(path: Path, data: bytes, what: str) -> None:
    """TranscriptFormatError for XML of more than MAX_XML_ELEMENTS elements, counted before it is parsed:
    each starts with "<", which XML's text holds only escaped (less the end tags)."""
    check_pieces(path, data.count(b"<") - data.count(b"</"), f"XML elements in {what}", MAX_XML_ELEMENTS)


def read_limited(path: Path, what: str) -> bytes:
    """The bytes of a file of at most MAX_BYTES (utils.read_bounded); TranscriptFormatError for one that
    cannot be read as one."""
    try:
        return read_bounded(path, MAX_BYTES, what)
    except UnreadableFileError as exc:
        raise TranscriptFormatError(path, exc.cause) from None


def read_transcript(path: Path, data: bytes | None = None) -> ImportedTranscript:
    """The transcript in `path`, whichever of FORMATS it is in, its times and strings checked; from `data`
    when the caller has read the file already (a pipe reads once)."""
    path = Path(path)
    text = _decode(path, read_limited(path, "a transcript file") if data is None else data)
    if not text.strip():
        raise TranscriptFormatError(path, "the file is empty")
    source_format = _detect(path, text)
    # Cues by their arrows, lines of text by their ends: a bound on the segments, before any is made (ohp JSON's
    # are counted once parsed).
    if source_format in ("srt", "vtt", "txt"):
        pieces = text.count("-->") if source_format != "txt" else text.count("\n") + 1
        check_pieces(path, pieces, "segments", MAX_SEGMENTS)
    imported = _checked(path, _READERS[source_format](path, text))
    log.info("read %s as %s: %d segment(s)", path, source_format, len(imported.segments))
    return imported


def check_time(path: Path, value: float, what: str, line: int | None = None, duration: float | None = None) -> float:
    """A time in seconds that a recording can have: finite, from 0 to its duration when it is known (and
    more than 0), else to MAX_SECONDS."""
    end = min(duration + max(END_SLACK, duration * DURATION_SLACK), MAX_SECONDS) if duration else MAX_SECONDS
    known = end < MAX_SECONDS
    if not math.isfinite(value) or not 0 <= value <= end:
        bound = f"the recording's end, {duration:g} s" if known else f"{MAX_SECONDS / 3600:g} hours"
        raise TranscriptFormatError(path, f"{what} is {value:g} s: a time must be from 0 to {bound}", line)
    return value


def check_chars(path: Path, value: str, what: str, limit: int = MAX_FIELD_CHARS) -> str:
    if len(value) > limit:
        raise TranscriptFormatError(path, f"{what} is {len(value):,} characters long (at most {limit:,})")
    if found := NOT_TEXT.search(value):
        code = f"\\u{ord(found.group()):04x}"
        why = "a NUL" if found.group() == "\x00" else "half of a character (a lone surrogate)"
        raise TranscriptFormatError(path, f"{what} holds {code}, {why}: not text")
    return value


def _checked(path: Path, imported: ImportedTranscript) -> ImportedTranscript:
    """The transcript, once every time is in the recording and every string of a sane length: what each
    reader parsed is checked alike here, whatever the format, before anything is stored."""
    duration = imported.metadata.get("duration")  # checked by the reader that found it
    for i, segment in enumerate(imported.segments, 1):
        where = f"segment {i}"
        check_time(path, segment.start, f"{where}: start", duration=duration)
        check_time(path, segment.end, f"{where}: end", duration=duration)
        if segment.end < segment.start:
            raise TranscriptFormatError(path, f"{where} ends ({segment.end}) before it starts ({segment.start})")
        check_chars(path, segment.text, f"{where}: text", MAX_TEXT_CHARS)
        check_chars(path, segment.original_text, f"{where}: original_text", MAX_TEXT_CHARS)
        check_chars(path, segment.language or "", f"{where}: language", MAX_LANGUAGE_CHARS)
        check_chars(path, segment.speaker or "", f"{where}: speaker", MAX_NAME_CHARS)
        for j, word in enumerate(segment.words, 1):
            at = f"{where}, word {j}"
            for name, value in (("start", word.start), ("end", word.end)):
                # A word's times may be rounded apart from its segment's: within END_SLACK of it is inside.
                check_time(path, value, f"{at}: {name}", duration=duration)
                if not segment.start - END_SLACK <= value <= segment.end + END_SLACK:
                    inside = f"{segment.start:g}-{segment.end:g} s"
                    raise TranscriptFormatError(path, f"{at}: {name} ({value:g} s) is outside its segment ({inside})")
            if word.end < word.start:
                raise TranscriptFormatError(path, f"{at} ends ({word.end}) before it starts ({word.start})")
            if not math.isfinite(word.probability):
                raise TranscriptFormatError(path, f"{at}: probability must be a finite number")
            check_chars(path, word.text, f"{at}: text")
    check_chars(path, imported.language or "", "the recording: language", MAX_LANGUAGE_CHARS)
    for speaker in imported.metadata.get("speakers", []):
        check_chars(path, speaker["label"], "the recording: a speaker's label", MAX_NAME_CHARS)
    _check_strings(path, imported.metadata, "the recording")
    return imported


def _check_strings(path: Path, value: object, what: str) -> None:
    """Every string in what a file says besides its segments (which may nest) of a sane length."""
    if isinstance(value, str):
        check_chars(path, value, what)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(path, str(key), f"{what}: a key")
            _check_strings(path, item, f"{what}: {key}")
    elif isinstance(value, list):
        for item in value:
            _check_strings(path, item, what)


def _detect(path: Path, text: str) -> str:
    head = text.lstrip()
    suffix = path.suffix.lower()
    if head.startswith("WEBVTT") or suffix == ".vtt":
        return "vtt"
    if suffix == ".json" or (head.startswith("{") and suffix not in (".srt", ".txt")):
        return "json"
    first = [line.strip() for line in head.split("\n", 2)[:2]]
    if suffix == ".srt" or "-->" in first[0] or (first[0].isdigit() and len(first) > 1 and "-->" in first[1]):
        return "srt"
    return "txt"


# -------------------------------------------------------------------------------------- languages

_LATIN_WORD = re.compile(r"[^\W\d_]+", re.ASCII)


def guess_language(text: str) -> str | None:
    """zh, ja or ko (by script) when there are more CJK characters than Latin words (a character says
    about as much as a word), else en; None without either."""
    han, kana, hangul, latin = (len(r.findall(text)) for r in (HAN_CHAR, KANA_CHAR, HANGUL_CHAR, _LATIN_WORD))
    if han + kana + hangul == 0:
        return "en" if latin else None
    if han + kana + hangul <= latin:
        return "en"
    if hangul > han + kana:
        return "ko"
    return "ja" if kana > han / 4 else "zh"


# ---------------------------------------------------------------------------------------- speakers

# "Interviewer: ...", "Mrs Chen: ...", "张：..." (a full-width colon needs no space after it).
_LABEL = re.compile(r"(?P<label>[^\s:：\d][^\s:：]{0,23}(?: [^\s:：]{1,24}){0,2})(?::\s+|：\s*)(?P<rest>\S.*)", re.S)
MAX_SPEAKER_LABELS = 8  # more different "Name:" prefixes than this are not speakers but text
# Labels that say a speaker's role rather than their name, as transcribers write them.
ROLE_LABELS = {
    **dict.fromkeys(
        ["interviewer", "q", "question", "host", "采访者", "采访人", "访谈者", "访问者", "记者", "主持人", "问"],
        "interviewer",
    ),
    **dict.fromkeys(
        ["interviewee", "narrator", "a", "answer", "受访者", "受访人", "被访者", "被采访者", "讲述者", "口述者", "答"],
        "interviewee",
    ),
}


def role_of_label(label: str) -> str | None:
    """The role a speaker label names ("Interviewer", "受访者", "Q"), or None for a name or a code like S1."""
    return ROLE_LABELS.get(" ".join(label.split()).casefold())


def _speakers(texts: list[str]) -> list[tuple[str | None, str]]:
    """(speaker, text) for each text: labels count only when most texts have one and they are few."""
    matches = [_LABEL.fullmatch(t) for t in texts]
    labelled = [m for m in matches if m]
    labels = {m["label"] for m in labelled}
    if len(labelled) < max(2, 0.6 * len(texts)) or len(labels) > min(MAX_SPEAKER_LABELS, max(2, len(labelled) // 2)):
        return [(None, t) for t in texts]
    return [(m["label"], m["rest"]) if m else (None, t) for m, t in zip(matches, texts, strict=True)]


# ------------------------------------------------------------------------------------------- times

_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?")


def _quoted(text: str) -> str:
    """Text from a file as an error message quotes it: short (a line may be 10 MB long)."""
    return repr(text if len(text) <= 40 else text[:39] + "…")


def _seconds(path: Path, stamp: str, line: int) -> float:
    stamp = stamp.strip()
    m = _TIME.fullmatch(stamp)
    if not m:
        raise TranscriptFormatError(path, f"{_quoted(stamp)} is not a time like 00:01:02,500", line)
    hours, minutes, seconds, fraction = m.groups()
    if int(minutes) > 59 or int(seconds) > 59:
        raise TranscriptFormatError(path, f"{_quoted(stamp)}: minutes and seconds go up to 59", line)
    # Hours as a float: int() refuses over 4,300 digits (a ValueError), a float of them is inf, refused below.
    value = float(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + float(f"0.{fraction or 0}")
    return check_time(path, value, _quoted(stamp), line)


def _timing(path: Path, text: str, line: int) -> tuple[float, float]:
    """Start and end of a cue's timing line."""
    left, _, right = text.partition("-->")
    end_stamp = (right.split() or [""])[0]  # WebVTT cue settings or SRT coordinates may follow it
    start, end = _seconds(path, left, line), _seconds(path, end_stamp, line)
    if end < start:
        raise TranscriptFormatError(path, f"the cue ends ({end_stamp}) before it starts ({left.strip()})", line)
    return start, end


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """Runs of non-blank lines, each with the number of its first line."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            if not current:
                blocks.append((number, current))
            current.append(line.rstrip())
        else:
            current = []
    return blocks


def _segment(start: float, end: float, text: str, language: str | None, speaker: str | None) -> Segment:
    return Segment(start=start, end=end, text=text, original_text=text, language=language or "", speaker=speaker)


def _transcript(
    path: Path,
    cues: list[tuple[float, float, str]],
    language: str | None,
    source_format: str,
    timed: bool,
    metadata: dict,
    voices: list[str | None] | None = None,
) -> ImportedTranscript:
    if not cues:
        raise TranscriptFormatError(path, "no cues with text in it")
    texts = [text for _, _, text in cues]
    labelled = _speakers(texts) if voices is None or not any(voices) else list(zip(voices, texts, strict=True))
    language = language or guess_language("\n".join(texts))
    # Each segment in the language its own text is in, else the file's: an interview through an interpreter
    # holds both, and the tagger's names (which redaction removes), the themes and search read a segment by
    # its language (an English answer taken as Chinese kept "Sheila Brown" through --redact names).
    segments = [
        _segment(start, end, text, guess_language(text) or language, speaker)
        for (start, end, _), (speaker, text) in zip(cues, labelled, strict=True)
    ]
    return ImportedTranscript(segments, language, source_format, timed, metadata)


# --------------------------------------------------------------------------------------------- SRT

_SRT_TAGS = re.compile(r"</?(?:i|b|u|font)(?:\s[^>]*)?>|\{\\[^}]*\}", re.I)  # <i>, <font color=..>, {\an8}


def _read_srt(path: Path, text: str) -> ImportedTranscript:
    cues = []
    for number, lines in _blocks(text):
        if lines[0].strip().isdigit() and len(lines) > 1:
            lines, number = lines[1:], number + 1
        if "-->" not in lines[0]:
            expected = "expected a cue's times (00:00:01,000 --> 00:00:02,500)"
            raise TranscriptFormatError(path, f"{expected}, found {_quoted(lines[0].strip())}", number)
        start, end = _timing(path, lines[0], number)
        body = join_texts(_SRT_TAGS.sub("", line) for line in lines[1:])
        if not body:
            raise TranscriptFormatError(path, "the cue has no text", number)
        cues.append((start, end, body))
    return _transcript(path, cues, None, "srt", True, {})


# ------------------------------------------------------------------------------------------ WebVTT

_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^>]+)>")
_VTT_TAG = re.compile(r"<[^>]*>")
_VTT_SKIPPED = re.compile(r"(?:NOTE|STYLE|REGION)(?:[ \t].*)?")  # comments, CSS, regions: blocks without text


def _vtt_parts(payload: str) -> list[tuple[str | None, str]]:
    """A cue's text as (voice, text) parts: one per <v> span, or one part without a voice."""
    marks = list(_VOICE.finditer(payload))
    if not marks:
        return [(None, payload)]
    before = payload[: marks[0].start()]
    parts: list[tuple[str | None, str]] = [(None, before)] if before.strip() else []
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        parts.append((html.unescape(m.group(1).strip()), payload[m.end() : nxt.start() if nxt else len(payload)]))
    return parts


def _vtt_text(fragment: str) -> str:
    return join_texts(html.unescape(_VTT_TAG.sub("", line)) for line in fragment.splitlines())


def _read_vtt(path: Path, text: str) -> ImportedTranscript:
    blocks = _blocks(text)
    number, header = blocks[0]
    if not re.fullmatch(r"WEBVTT(?:[ \t].*)?", header[0]):
        raise TranscriptFormatError(path, "a WebVTT file must begin with the line WEBVTT", number)
    # The header's fields the recording has (Language: zh, Consent: closed); the others (Kind: captions) are
    # the player's.
    metadata = {}
    for line in header[1:]:
        key, sep, value = line.partition(":")
        if sep and "-->" not in line and key.strip().lower() in ("language", *DESCRIPTION):
            metadata[key.strip().lower()] = value.strip()
    _described(path, metadata)
    cues, voices = [], []
    for number, lines in blocks[1:]:
        if _VTT_SKIPPED.fullmatch(lines[0]):
            continue
        if "-->" not in lines[0]:  # a cue identifier
            lines, number = lines[1:], number + 1
        if not lines or "-->" not in lines[0]:
            raise TranscriptFormatError(path, "expected a cue's times (00:01.000 --> 00:02.500)", number)
        start, end = _timing(path, lines[0], number)
        found = [(voice, _vtt_text(part)) for voice, part in _vtt_parts("\n".join(lines[1:]))]
        found = [(voice, part) for voice, part in found if part]
        if not found:
            raise TranscriptFormatError(path, "the cue has no text", number)
        for voice, part in found:
            cues.append((start, end, part))
            voices.append(voice)
    language = metadata.get("language") or None
    return _transcript(path, cues, language, "vtt", True, metadata, voices)


# -------------------------------------------------------------------------------------- plain text

_STAMP = re.compile(r"\[(\d+:\d{2}(?::\d{2})?(?:[.,]\d{1,3})?)\]\s*(.*)")
# The header of ohp's own .txt export, and the recording fields its lines name (None: read past). An
# older export began with "Recording: "; today's with a title line.
_TXT_HEADER = {
    "Recording": "recording",
    "Duration": "duration",
    "Language": "language",
    "Interviewee": "interviewee",
    "Place": "place",
    "Date": "recorded_on",
    "Languages": None,
    "Speakers": None,
    "Access": "access",
}
_ACCESS = re.compile(r"(restricted|closed)(?: until (\d{4}-\d{2}-\d{2}))?")


def _described(path: Path, metadata: dict) -> dict:
    """The metadata, once what it says of the recording is known to be good for the store."""
    if metadata.get("consent", "open") not in CONSENT_LEVELS:
        levels, given = ", ".join(CONSENT_LEVELS), _shown(metadata["consent"])
        raise TranscriptFormatError(path, f"the recording's consent must be one of {levels}, not {given}")
    for key in ("recorded_on", "release_on"):
        try:
            date.fromisoformat(metadata.get(key) or "2000-01-01")
        except (TypeError, ValueError):
            why = f"the recording's {key} must be a date, YYYY-MM-DD, not {_shown(metadata[key])}"
            raise TranscriptFormatError(path, why) from None
    return metadata


def _read_txt(path: Path, text: str) -> ImportedTranscript:
    lines = [(n, line.strip()) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    metadata: dict = {}
    ohp = lines[0][1].startswith("Recording: ") or (len(lines) > 1 and lines[1][1].partition(": ")[0] in _TXT_HEADER)
    if ohp:
        if not lines[0][1].startswith("Recording: "):
            lines.pop(0)  # the title
        while lines and (key := lines[0][1].partition(": ")[0]) in _TXT_HEADER:
            number, line = lines.pop(0)
            value = line.partition(": ")[2]
            if key == "Access" and (access := _ACCESS.fullmatch(value)):
                metadata.update(consent=access.group(1), **({"release_on": access.group(2)} if access.group(2) else {}))
            elif _TXT_HEADER[key] and key != "Access":
                metadata[_TXT_HEADER[key]] = _seconds(path, value, number) if key == "Duration" else value
        lines = [(n, line) for n, line in lines if not line.startswith("Themes: ")]  # the tagger's, not said
        _described(path, metadata)
    if not lines:
        raise TranscriptFormatError(path, "the file has a header but no text")
    language = metadata.pop("language", None)
    language = None if language in (None, "unknown") else language
    stamped = [m for _, line in lines if (m := _STAMP.fullmatch(line))]
    if len(stamped) == len(lines):
        starts = [_seconds(path, m.group(1), n) for m, (n, _) in zip(stamped, lines, strict=True)]
        for k in range(1, len(starts)):
            if starts[k] < starts[k - 1]:
                raise TranscriptFormatError(path, "this line's time is earlier than the line before it", lines[k][0])
        ends = [*starts[1:], max(starts[-1], metadata.get("duration", 0.0))]
        empty = next((n for m, (n, _) in zip(stamped, lines, strict=True) if not m.group(2).strip()), None)
        if empty:
            raise TranscriptFormatError(path, "the line has a time but no text", empty)
        cues = [(s, e, m.group(2).strip()) for s, e, m in zip(starts, ends, stamped, strict=True)]
        return _transcript(path, cues, language, "txt", True, metadata)
    return _transcript(path, [(0.0, 0.0, line) for _, line in lines], language, "txt", False, metadata)


# -------------------------------------------------------------------------------------- ohp's JSON


def _shown(value: object) -> str:
    """A value from a file as an error message shows it: as JSON, and short (it may be 10 MB long)."""
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= 40 else shown[:39] + "…"


def _number(path: Path, value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TranscriptFormatError(path, f"{what} must be a number, not {_shown(value)}")
    try:
        return float(value)
    except OverflowError:  # a whole number of 400 digits
        raise TranscriptFormatError(path, f"{what} is {_shown(value)}: too big a number") from None


def _flag(path: Path, value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise TranscriptFormatError(path, f"{what} must be true or false, not {_shown(value)}")
    return value


def _text(path: Path, value: object, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TranscriptFormatError(path, f"{what} must be text, not {_shown(value)}")
    return value


def _is_speaker(item: object) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("label"), str)
        and isinstance(item.get("name"), (str, type(None)))
        and item.get("role") in (None, *SPEAKER_ROLES)
    )


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _depth(value: object) -> int:
    """How deep lists and objects nest in a parsed JSON value (without recursing: the value may be deep)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            todo += [(child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)]
    return deepest


def _load_json(path: Path, text: str) -> object:
    """The parsed document; Infinity and NaN refused (Python's json takes them, the standard does not), and
    nesting deeper than an ohp transcript has."""
    too_deep = f"not an ohp transcript: lists and objects nest more than {MAX_JSON_DEPTH} deep"
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise TranscriptFormatError(path, f"not valid JSON: {exc.msg}", exc.lineno) from None
    except ValueError as exc:  # from _refuse_constant
        raise TranscriptFormatError(path, f"not valid JSON: {exc}") from None
    except RecursionError:  # the parser recurses once per level: far deeper than MAX_JSON_DEPTH
        raise TranscriptFormatError(path, too_deep) from None
    if _depth(document) > MAX_JSON_DEPTH:
        raise TranscriptFormatError(path, too_deep)
    return document


def _read_json(path: Path, text: str) -> ImportedTranscript:
    document = _load_json(path, text)
    if not isinstance(document, dict) or not isinstance(document.get("segments"), list):
        raise TranscriptFormatError(
            path, 'JSON, but not an ohp transcript: it has no "segments" list (see README, "The JSON transcript")'
        )
    recording = document.get("recording")
    if recording is None:
        recording = {}
    if not isinstance(recording, dict):
        raise TranscriptFormatError(path, '"recording" must be an object')
    language = _text(path, recording.get("language"), "recording: language") or None
    check_pieces(path, len(document["segments"]), "segments", MAX_SEGMENTS)
    segments, themes = [], {}
    for i, item in enumerate(document["segments"], 1):
        where = f"segment {i}"
        if not isinstance(item, dict):
            raise TranscriptFormatError(path, f"{where} is not an object")
        for key in ("start", "end", "text"):
            if key not in item:
                raise TranscriptFormatError(path, f'{where} has no "{key}"')
        start, end = _number(path, item["start"], f"{where}: start"), _number(path, item["end"], f"{where}: end")
        said = _text(path, item["text"], f"{where}: text")
        if said is None:  # empty text is text: a segment a person emptied, as ohp's own export writes it
            raise TranscriptFormatError(path, f"{where} has no text")
        if not isinstance(item.get("words") or [], list):
            raise TranscriptFormatError(path, f'{where}: "words" must be a list')
        words = []
        for j, w in enumerate(item.get("words") or [], 1):
            if not isinstance(w, dict) or not isinstance(w.get("text"), str):
                raise TranscriptFormatError(path, f'{where}, word {j}: needs "start", "end", "text" and "probability"')
            words.append(
                Word(
                    start=_number(path, w.get("start"), f"{where}, word {j}: start"),
                    end=_number(path, w.get("end"), f"{where}, word {j}: end"),
                    text=w["text"],
                    probability=_number(path, w.get("probability"), f"{where}, word {j}: probability"),
                    corrected=_flag(path, w.get("corrected", False), f"{where}, word {j}: corrected"),
                )
            )
        segments.append(
            Segment(
                start=start,
                end=end,
                text=said,
                original_text=_text(path, item.get("original_text"), f"{where}: original_text") or said,
                language=_text(path, item.get("language"), f"{where}: language") or language or "",
                words=words,
                speaker=_text(path, item.get("speaker"), f"{where}: speaker"),
            )
        )
        found = item.get("themes") or []
        if not isinstance(found, list) or not all(isinstance(t, dict) and isinstance(t.get("id"), str) for t in found):
            raise TranscriptFormatError(path, f'{where}: "themes" must be a list of objects with an "id"')
        if found:
            themes[i - 1] = found
    if not segments:
        raise TranscriptFormatError(path, "the transcript has no segments")
    language = language or guess_language("\n".join(s.text for s in segments))
    for s in segments:
        s.language = s.language or language or ""
    metadata = _described(
        path,
        {k: recording[k] for k in ("path", "sha256", "duration", "id", *DESCRIPTION) if recording.get(k) is not None},
    )
    if "duration" in metadata:
        duration = _number(path, metadata["duration"], "recording: duration")
        metadata["duration"] = check_time(path, duration, "recording: duration")
    for key in ("path", "sha256", "interviewee", "place"):
        _text(path, metadata.get(key), f"recording: {key}")
    if not isinstance(metadata.get("id", 0), int) or isinstance(metadata.get("id"), bool):
        raise TranscriptFormatError(path, f"recording: id must be a whole number, not {_shown(metadata['id'])}")
    speakers = recording.get("speakers") or []
    if not isinstance(speakers, list) or not all(map(_is_speaker, speakers)):
        roles = ", ".join(SPEAKER_ROLES)
        raise TranscriptFormatError(
            path,
            f'"recording": "speakers" must be a list of objects with a "label", a "name" and a "role" '
            f"({roles} or null)",
        )
    if speakers:
        metadata["speakers"] = [
            {k: p.get(k) for k in ("label", "name", "role")} for p in speakers
        ]  # names and roles by label
    if themes:
        metadata["themes"] = themes  # by position in segments, as the file has them: for the caller to keep or not
    return ImportedTranscript(segments, language, "json", True, metadata)


# What an ohp JSON file says of its recording that the store keeps: consent above all, so that a closed
# interview does not come back open.
DESCRIPTION = ("interviewee", "place", "recorded_on", "consent", "release_on")

_READERS = {"json": _read_json, "srt": _read_srt, "vtt": _read_vtt, "txt": _read_txt}
