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
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pipeline.records import CONSENT_LEVELS, SPEAKER_ROLES, Segment, Word
from pipeline.utils import join_texts

MAX_BYTES = 50 * 1024 * 1024
FORMATS = ("json", "srt", "vtt", "txt")


class TranscriptFormatError(ValueError):
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
    # What the file says besides segments: the recording (ohp JSON/TXT), WebVTT header fields, and in ohp
    # JSON each segment's themes ("themes": {index in segments: [{"id", "status", "source", "evidence"}]}).
    metadata: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ reading


def _decode(path: Path, data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise TranscriptFormatError(path, "the file is UTF-16; save it as UTF-8 and import it again")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TranscriptFormatError(
            path,
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} cannot start a character); if it is GBK, Big5 or "
            "Latin-1, convert it first, e.g. iconv -f GBK -t UTF-8",
            line,
        ) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise TranscriptFormatError(path, "not a text file (it has NUL bytes)", line)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_transcript(path: Path) -> ImportedTranscript:
    """The transcript in `path`, whichever of FORMATS it is in."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise TranscriptFormatError(path, "is a folder, not a transcript file")
        if size > MAX_BYTES:
            limit = MAX_BYTES // 2**20
            raise TranscriptFormatError(path, f"{size / 2**20:.0f} MB is too big for a transcript (at most {limit} MB)")
        text = _decode(path, path.read_bytes())
    except OSError as exc:
        raise TranscriptFormatError(path, f"cannot read it: {exc.strerror or exc}") from None
    if not text.strip():
        raise TranscriptFormatError(path, "the file is empty")
    source_format = _detect(path, text)
    return _READERS[source_format](path, text)


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

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_LATIN_WORD = re.compile(r"[^\W\d_]+", re.ASCII)


def guess_language(text: str) -> str | None:
    """zh, ja or ko (by script) when there are more CJK characters than Latin words (a character says
    about as much as a word), else en; None without either."""
    han, kana, hangul, latin = (len(r.findall(text)) for r in (_HAN, _KANA, _HANGUL, _LATIN_WORD))
    if han + kana + hangul == 0:
        return "en" if latin else None
    if han + kana + hangul <= latin:
        return "en"
    if hangul > han + kana:
        return "ko"
    return "ja" if kana > han / 4 else "zh"


# ---------------------------------------------------------------------------------------- speakers

# "Interviewer: ...", "Mrs Chen: ...", "张：..." (a full-width colon needs no space after it).
_LABEL = re.compile(
    r"(?P<label>[^\s:：\d][^\s:：]{0,23}(?: [^\s:：]{1,24}){0,2})(?::\s+|：\s*)(?P<rest>\S.*)", re.S
)
MAX_SPEAKER_LABELS = 8  # more different "Name:" prefixes than this are not speakers but text


def _speakers(texts: list[str]) -> list[tuple[str | None, str]]:
    """(speaker, text) for each text: labels count only when most texts have one and they are few."""
    matches = [_LABEL.fullmatch(t) for t in texts]
    labelled = [m for m in matches if m]
    labels = {m["label"] for m in labelled}
    if len(labelled) < max(2, 0.6 * len(texts)) or len(labels) > min(MAX_SPEAKER_LABELS, max(2, len(labelled) // 2)):
        return [(None, t) for t in texts]
    return [(m["label"], m["rest"]) if m else (None, t) for m, t in zip(matches, texts)]


# ------------------------------------------------------------------------------------------- times

_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?")


def _seconds(path: Path, stamp: str, line: int) -> float:
    m = _TIME.fullmatch(stamp.strip())
    if not m:
        raise TranscriptFormatError(path, f"{stamp.strip()!r} is not a time like 00:01:02,500", line)
    hours, minutes, seconds, fraction = m.groups()
    if int(minutes) > 59 or int(seconds) > 59:
        raise TranscriptFormatError(path, f"{stamp.strip()!r}: minutes and seconds go up to 59", line)
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + float(f"0.{fraction or 0}")


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
    path: Path, cues: list[tuple[float, float, str]], language: str | None, source_format: str, timed: bool,
    metadata: dict, voices: list[str | None] | None = None,
) -> ImportedTranscript:
    if not cues:
        raise TranscriptFormatError(path, "no cues with text in it")
    texts = [text for _, _, text in cues]
    labelled = _speakers(texts) if voices is None or not any(voices) else list(zip(voices, texts))
    language = language or guess_language("\n".join(texts))
    segments = [
        _segment(start, end, text, language, speaker) for (start, end, _), (speaker, text) in zip(cues, labelled)
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
            raise TranscriptFormatError(path, f"{expected}, found {lines[0].strip()!r}", number)
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
    parts = [(None, payload[: marks[0].start()])] if payload[: marks[0].start()].strip() else []
    for m, nxt in zip(marks, marks[1:] + [None]):
        parts.append((html.unescape(m.group(1).strip()), payload[m.end() : nxt.start() if nxt else len(payload)]))
    return parts


def _vtt_text(fragment: str) -> str:
    return join_texts(html.unescape(_VTT_TAG.sub("", line)) for line in fragment.splitlines())


def _read_vtt(path: Path, text: str) -> ImportedTranscript:
    blocks = _blocks(text)
    number, header = blocks[0]
    if not re.fullmatch(r"WEBVTT(?:[ \t].*)?", header[0]):
        raise TranscriptFormatError(path, "a WebVTT file must begin with the line WEBVTT", number)
    metadata = {}
    for line in header[1:]:
        key, sep, value = line.partition(":")
        if sep and "-->" not in line:
            metadata[key.strip().lower()] = value.strip()
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
_TXT_HEADER = {"Recording": "recording", "Duration": "duration", "Language": "language", "Interviewee": "interviewee",
               "Place": "place", "Date": "recorded_on", "Languages": None, "Speakers": None, "Access": "access"}  # fmt: skip
_ACCESS = re.compile(r"(restricted|closed)(?: until (\d{4}-\d{2}-\d{2}))?")


def _described(path: Path, metadata: dict) -> dict:
    """The metadata, once what it says of the recording is known to be good for the store."""
    if metadata.get("consent", "open") not in CONSENT_LEVELS:
        raise TranscriptFormatError(path, f'the recording\'s consent must be one of {", ".join(CONSENT_LEVELS)}, not {metadata["consent"]!r}')
    for key in ("recorded_on", "release_on"):
        try:
            date.fromisoformat(metadata.get(key) or "2000-01-01")
        except (TypeError, ValueError):
            raise TranscriptFormatError(path, f'the recording\'s {key} must be a date, YYYY-MM-DD, not {metadata[key]!r}') from None
    return metadata


def _read_txt(path: Path, text: str) -> ImportedTranscript:
    lines = [(n, line.strip()) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    metadata: dict = {}
    ohp = lines[0][1].startswith("Recording: ") or len(lines) > 1 and lines[1][1].partition(": ")[0] in _TXT_HEADER
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
    stamped = [_STAMP.fullmatch(line) for _, line in lines]
    if all(stamped):
        starts = [_seconds(path, m.group(1), n) for m, (n, _) in zip(stamped, lines)]
        for k in range(1, len(starts)):
            if starts[k] < starts[k - 1]:
                raise TranscriptFormatError(path, "this line's time is earlier than the line before it", lines[k][0])
        ends = starts[1:] + [max(starts[-1], metadata.get("duration", 0.0))]
        empty = next((n for m, (n, _) in zip(stamped, lines) if not m.group(2).strip()), None)
        if empty:
            raise TranscriptFormatError(path, "the line has a time but no text", empty)
        cues = [(s, e, m.group(2).strip()) for s, e, m in zip(starts, ends, stamped)]
        return _transcript(path, cues, language, "txt", True, metadata)
    return _transcript(path, [(0.0, 0.0, line) for _, line in lines], language, "txt", False, metadata)


# -------------------------------------------------------------------------------------- ohp's JSON


def _number(path: Path, value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TranscriptFormatError(path, f"{what} must be a number, not {json.dumps(value, ensure_ascii=False)[:40]}")
    return float(value)


def _text(path: Path, value: object, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TranscriptFormatError(path, f"{what} must be text, not {json.dumps(value, ensure_ascii=False)[:40]}")
    return value


def _is_speaker(item: object) -> bool:
    return (
        isinstance(item, dict) and isinstance(item.get("label"), str)
        and isinstance(item.get("name"), (str, type(None))) and item.get("role") in (None, *SPEAKER_ROLES)
    )  # fmt: skip


def _read_json(path: Path, text: str) -> ImportedTranscript:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TranscriptFormatError(path, f"not valid JSON: {exc.msg}", exc.lineno) from None
    if not isinstance(document, dict) or not isinstance(document.get("segments"), list):
        raise TranscriptFormatError(
            path, 'JSON, but not an ohp transcript: it has no "segments" list (see README, "The JSON transcript")'
        )
    recording = document.get("recording") or {}
    if not isinstance(recording, dict):
        raise TranscriptFormatError(path, '"recording" must be an object')
    language = _text(path, recording.get("language"), "recording: language") or None
    segments, themes = [], {}
    for i, item in enumerate(document["segments"], 1):
        where = f"segment {i}"
        if not isinstance(item, dict):
            raise TranscriptFormatError(path, f"{where} is not an object")
        for key in ("start", "end", "text"):
            if key not in item:
                raise TranscriptFormatError(path, f'{where} has no "{key}"')
        start, end = _number(path, item["start"], f"{where}: start"), _number(path, item["end"], f"{where}: end")
        if end < start:
            raise TranscriptFormatError(path, f"{where} ends ({end}) before it starts ({start})")
        if not isinstance(item["text"], str) or not item["text"].strip():
            raise TranscriptFormatError(path, f"{where} has no text")
        words = []
        for j, w in enumerate(item.get("words") or [], 1):
            if not isinstance(w, dict) or not isinstance(w.get("text"), str):
                raise TranscriptFormatError(path, f'{where}, word {j}: needs "start", "end", "text" and "probability"')
            words.append(Word(
                start=_number(path, w.get("start"), f"{where}, word {j}: start"),
                end=_number(path, w.get("end"), f"{where}, word {j}: end"),
                text=w["text"],
                probability=_number(path, w.get("probability"), f"{where}, word {j}: probability"),
            ))  # fmt: skip
        segments.append(Segment(
            start=start, end=end, text=item["text"],
            original_text=_text(path, item.get("original_text"), f"{where}: original_text") or item["text"],
            language=_text(path, item.get("language"), f"{where}: language") or language or "",
            words=words, speaker=_text(path, item.get("speaker"), f"{where}: speaker"),
        ))  # fmt: skip
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
    metadata = _described(path, {k: recording[k] for k in ("path", "sha256", "duration", "id", *DESCRIPTION) if recording.get(k) is not None})
    speakers = recording.get("speakers") or []
    if not isinstance(speakers, list) or not all(map(_is_speaker, speakers)):
        roles = ", ".join(SPEAKER_ROLES)
        raise TranscriptFormatError(path, f'"recording": "speakers" must be a list of objects with a "label", a "name" and a "role" ({roles} or null)')
    if speakers:
        metadata["speakers"] = [{k: p.get(k) for k in ("label", "name", "role")} for p in speakers]  # names and roles by label
    if themes:
        metadata["themes"] = themes  # by position in segments, as the file has them: for the caller to keep or not
    return ImportedTranscript(segments, language, "json", True, metadata)


# What an ohp JSON file says of its recording that the store keeps: consent above all, so that a closed
# interview does not come back open.
DESCRIPTION = ("interviewee", "place", "recorded_on", "consent", "release_on")

_READERS = {"json": _read_json, "srt": _read_srt, "vtt": _read_vtt, "txt": _read_txt}
