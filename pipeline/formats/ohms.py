"""OHMS XML: an interview as the Oral History Metadata Synchronizer (University of Kentucky) records it.

Archives import it into OHMS, whose viewer plays the recording beside its index and transcript. It is
written as OHMS exports it (version 5.4; element names and order from the schema at
https://www.weareavp.com/nunncenter/ohms/ohms.xsd): the record's particulars; an index with a point
wherever the topic (the set of themes) changes; the transcript, a paragraph per turn wrapped at 80
columns as OHMS wraps it; and its sync, which says where in the transcript each minute falls.

The sync is "1:|13(3)|19(14)|...": minutes between marks, then for each mark in turn (1, 2, 3 minutes)
the line (counted from 1, blank lines included, as in OHMS's own exports) and the word on it (from 1;
words are what spaces separate, so a Chinese line is mostly one) heard at that moment.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from datetime import date
from itertools import pairwise
from pathlib import Path

from lxml import etree

from pipeline.formats.documents import access_note, language_name, title, turn_themes
from pipeline.records import RecordingExport, Segment
from pipeline.utils import CJK, clock, display_width, join_texts, spacer, xml_text

NS = "https://www.weareavp.com/nunncenter/ohms"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
WIDTH = 80  # columns of a transcript line
SYNC_MINUTES = 1  # between sync marks: OHMS's default (it offers 1 to 5)
NO_LINE_START = set("，。、；：？！）」』》〉】")  # punctuation a Chinese line may not start with
SENTENCE_END = re.compile(r"(?<=[。！？])|(?<=[.!?])(?=\s)")
SYNOPSIS_CHARS = 200
TITLE_CHARS = 40


def _clean(text: str) -> str:
    # One line however the text was edited: a line break inside it would throw the sync's line count out.
    return " ".join(xml_text(text).split())


def _wrap(text: str, width: int = WIDTH) -> list[int]:
    """Where each line starts when the text is wrapped at width columns: after a space or between Chinese
    characters, or inside a word too long for a line."""
    starts = [0]
    columns = 0
    fit = 0  # the last place the line may break
    for i, char in enumerate(text):
        if i > starts[-1] and (text[i - 1] == " " != char or (CJK.match(char) and char not in NO_LINE_START)):
            fit = i
        columns += display_width(char)
        if columns > width and char != " ":
            starts.append(fit if fit > starts[-1] else i)
            columns = display_width(text[starts[-1] : i + 1])
    return starts


def _layout(export: RecordingExport, turns: list[list[Segment]]) -> tuple[list[str], list[tuple[int, list[int], int]]]:
    """The transcript's lines (a paragraph per turn, "NAME: text", blank lines between), and where each
    segment's text lies: (index of its paragraph's first line, the paragraph's line starts, its offset)."""
    lines: list[str] = []
    places: list[tuple[int, list[int], int]] = []
    for turn in turns:
        name = export.speaker_name(turn[0])
        # Capitals, as OHMS transcripts have them: its viewer sets off "NAME:" at a line's start as the speaker.
        text = f"{_clean(name).upper()}: " if name else ""
        if lines:
            lines.append("")
        offsets, previous = [], ""
        for segment in turn:
            words = _clean(segment.text)
            text += spacer(previous, words)
            offsets.append(len(text))
            text += words
            previous = words or previous
        starts = _wrap(text)
        places += [(len(lines), starts, offset) for offset in offsets]
        lines += [text[a:b].rstrip() for a, b in pairwise([*starts, len(text)])]
    return lines, places


def _heard_at(segment: Segment, seconds: float) -> int:
    """Where in the segment's text the word spoken at that moment starts (roughly, without word times)."""
    text = _clean(segment.text)
    if seconds <= segment.start or not text:
        return 0
    offset = 0
    if segment.words:
        before = [w for w in segment.words if w.start <= seconds][:-1]  # those before the one being said
        total = sum(len(w.text) for w in segment.words)
        offset = round(len(text) * sum(len(w.text) for w in before) / total) if total else 0
    elif segment.end > segment.start:
        offset = int(len(text) * (seconds - segment.start) / (segment.end - segment.start))
    # An offset on the space before a word means that word (words carry their space before them).
    while offset < len(text) - 1 and text[offset].isspace():
        offset += 1
    return min(offset, len(text) - 1)


def _sync(export: RecordingExport, lines: list[str], places: list[tuple[int, list[int], int]]) -> str:
    marks = []
    minute = SYNC_MINUTES
    segments = export.segments
    index = 0
    while True:
        seconds = minute * 60
        # The segment being spoken then, or the next one when nobody speaks. A segment that ended before the
        # last mark ended before this one too, so the search goes on from there: once over the segments.
        while index < len(segments) and segments[index].end <= seconds:
            index += 1
        if index == len(segments):
            break
        first, starts, offset = places[index]
        position = offset + _heard_at(segments[index], seconds)
        k = bisect_right(starts, position) - 1
        line = lines[first + k]
        before = line[: position - starts[k]]
        word = len(before.split()) + (0 if before and not before[-1].isspace() else 1)
        marks.append(f"|{first + k + 1}({max(1, min(word, len(line.split())))})")
        minute += SYNC_MINUTES
    return f"{SYNC_MINUTES}:" + "".join(marks) if marks else ""


def _shorten(text: str, limit: int) -> str:
    """The first sentences of the text that fit in limit characters; the first words when even one does not."""
    kept = ""
    for sentence in SENTENCE_END.split(text):
        if len(kept + sentence) > limit:
            break
        kept += sentence
    if kept.strip():
        return kept.strip()
    cut = text[:limit]
    if text[limit : limit + 1].isalnum() and not CJK.match(text[limit]) and " " in cut:  # cut inside a word: drop it
        cut = cut.rsplit(" ", 1)[0]
    return cut.strip() + "…" if cut.strip() else ""


def _points(export: RecordingExport, turns: list[list[Segment]]) -> list[tuple[int, list[str]]]:
    """Where the index's points start (a turn index) and their themes: a point wherever a turn brings a new
    set of themes. Turns without themes (questions, asides) go on with the topic before them; but an
    interviewer's uncoded turn just before a new topic opens it, as the question that leads to it."""
    roles = {s.label: s.role for s in export.speakers}
    points: list[tuple[int, list[str]]] = []
    for i, turn in enumerate(turns):
        themes = [a.theme for a in turn_themes(export, turn)]
        if not points:
            points.append((i, themes))
        elif themes and set(themes) != set(points[-1][1]):
            asker = turns[i - 1][0].speaker
            question = asker is not None and roles.get(asker) == "interviewer" and not turn_themes(export, turns[i - 1])
            begin = i - 1 if question else i
            if begin == points[-1][0]:  # the opening was just this topic's question
                points[-1] = (begin, themes)
            else:
                points.append((begin, themes))
    return points


def _add(parent: etree._Element, tag: str, text: str | None = None, **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{NS}}}{tag}", attributes)
    if text:
        element.text = xml_text(text)
    return element


def _index(export: RecordingExport, turns: list[list[Segment]], index: etree._Element) -> None:
    points = _points(export, turns)
    for (start, themes), (end, _) in pairwise([*points, (len(turns), [])]):
        segments = [s for turn in turns[start:end] for s in turn]
        said = [join_texts([_clean(s.text) for s in turn]) for turn in turns[start:end]]
        # Turns kept apart by a space: a question's "?" would otherwise run into the Chinese answer.
        text = " ".join(said)
        labels = [export.theme_label(t) for t in themes]
        terms = [term for t in themes for term in export.theme_labels(t)]  # a catalogue's terms: one a language
        entities = [e.text.strip() for s in segments for e in export.entities_of(s)]
        name = export.speaker_name(turns[start][0])
        point = _add(index, "point")
        _add(point, "time", str(int(turns[start][0].start)))
        _add(point, "title", "; ".join(labels) if labels else _shorten(text, TITLE_CHARS))
        _add(point, "partial_transcript", (f"{_clean(name).upper()}: " if name else "") + said[0])
        _add(point, "synopsis", _shorten(text, SYNOPSIS_CHARS))
        _add(point, "keywords", ";".join(dict.fromkeys(terms + [e for e in entities if e])))
        _add(point, "subjects", ";".join(terms))


def _people(export: RecordingExport, role: str) -> list[str]:
    return [s.name for s in export.speakers if s.role == role and s.name]


def to_ohms(export: RecordingExport) -> str:
    recording = export.recording
    turns = export.turns()
    lines, places = _layout(export, turns)
    root = etree.Element(f"{{{NS}}}ROOT", nsmap={None: NS, "xsi": XSI})
    root.set(f"{{{XSI}}}schemaLocation", f"{NS}/ohms.xsd")
    record = _add(root, "record", id=str(recording.id), dt=date.today().isoformat())
    _add(record, "version", "5.4")
    _add(record, "date", value=recording.recorded_on or "", format="yyyy-mm-dd")
    _add(record, "title", title(export))
    _add(record, "accession", str(recording.metadata.get("accession") or ""))
    _add(record, "duration", clock(recording.duration))
    themes = dict.fromkeys(a.theme for s in export.segments for a in export.themes(s))
    for term in dict.fromkeys(term for theme in themes for term in export.theme_labels(theme)):
        _add(record, "subject", term)
    for person in [recording.interviewee] if recording.interviewee else _people(export, "interviewee"):
        _add(record, "interviewee", person)
    for person in _people(export, "interviewer"):
        _add(record, "interviewer", person)
    # A transcript imported without audio has no media file: its own file is no recording for a viewer to play.
    _add(record, "file_name", Path(recording.path).name if recording.has_audio else None)
    _add(record, "sync", _sync(export, lines, places))
    _add(record, "media_url", str(recording.metadata.get("media_url") or ""))
    _add(record, "language", language_name(recording.language) if recording.language else None)
    _index(export, turns, _add(record, "index"))
    _add(record, "type", "Oral history")
    _add(record, "transcript", "\n".join(lines))
    restriction = access_note(export)
    _add(record, "rights", f"The interviewee's consent: {restriction}" if restriction else None)
    _add(record, "userestrict", "1" if restriction else "0")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True).decode("utf-8")
