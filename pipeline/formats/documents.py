"""Transcripts for people to read: plain text and Word (.docx).

Both open with a header (what the recording is, who speaks, whether it may be shown) and then give the
interview turn by turn: when the turn starts, who speaks, what they say, and the themes coded on it. In
the .docx the themes are comments in the margin, anchored on the words that are their evidence.

The text is not wrapped: Chinese has no spaces to break at and its characters are two columns wide, so
a fixed width breaks it badly, while every editor and viewer wraps a long line to its own window. One
line per paragraph also keeps a turn whole for searching and copying.
"""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from pipeline.records import AnnotationRecord, RecordingExport, Segment, coder, speaker_title
from pipeline.utils import clock, join_texts, spacer, xml_text

# In a font with CJK glyphs on Windows; LibreOffice substitutes its own CJK font for it elsewhere.
CJK_FONT = "SimSun"


@cache
def language_name(code: str) -> str:
    """ "Chinese" for "zh": Whisper's name for the language, else the code."""
    from pipeline.whisper_tables import whisper_tokenizer

    languages = whisper_tokenizer().LANGUAGES
    return languages[code].title() if code in languages else code


def languages(export: RecordingExport) -> list[str]:
    """The recording's language and then any other its segments are in, in order of appearance."""
    codes = [export.recording.language] + [s.language for s in export.segments]
    return list(dict.fromkeys(c for c in codes if c))


def title(export: RecordingExport) -> str:
    return Path(export.recording.path).stem


def access_note(export: RecordingExport) -> str | None:
    """The restriction the interviewee's consent puts on the recording; None when it is open."""
    recording = export.recording
    access = recording.access()
    if access == "open":
        return None
    return f"{access} until {recording.release_on}" if recording.release_on else access


def header(export: RecordingExport) -> list[tuple[str, str]]:
    """The recording's particulars as (field, value), the fields it has."""
    recording = export.recording
    speakers = [speaker_title(s.label, s.name, s.role) for s in export.speakers]
    fields = [
        ("Interviewee", recording.interviewee),
        ("Date", recording.recorded_on),
        ("Place", recording.place),
        ("Duration", clock(recording.duration)),
        ("Languages", ", ".join(map(language_name, languages(export)))),
        ("Speakers", "; ".join(speakers)),
        ("Access", access_note(export)),
    ]
    return [(field, value) for field, value in fields if value]


def turn_themes(export: RecordingExport, turn: list[Segment]) -> list[AnnotationRecord]:
    """The turn's themes, one annotation per theme (an accepted one when there is), in order of first mention."""
    chosen: dict[str, AnnotationRecord] = {}
    for segment in turn:
        for annotation in export.themes(segment):
            current = chosen.get(annotation.theme)
            if current is None or (current.status != "accepted" and annotation.status == "accepted"):
                chosen[annotation.theme] = annotation
    return list(chosen.values())


def theme_note(export: RecordingExport, annotation: AnnotationRecord) -> str:
    return export.theme_label(annotation.theme) + (" (suggested)" if annotation.status == "suggested" else "")


def _one_line(text: str) -> str:
    """Text on one line: a line break in a name or a correction would start a line ohp's own reader takes for
    another field, or for untimed text (every turn then at 0 s)."""
    return " ".join(text.split())


def to_txt(export: RecordingExport) -> str:
    lines = [_one_line(title(export)), ""] + [f"{field}: {_one_line(str(value))}" for field, value in header(export)]
    for turn in export.turns():
        name = _one_line(export.speaker_name(turn[0]) or "")
        said = _one_line(join_texts([s.text for s in turn]))
        lines += ["", f"[{clock(turn[0].start)}] " + (f"{name}: " if name else "") + said]
        themes = turn_themes(export, turn)
        if themes:
            lines.append("Themes: " + _one_line("; ".join(theme_note(export, a) for a in themes)))
    # Control characters are junk from the recogniser or an editor, and a lone surrogate cannot be written as UTF-8.
    return xml_text("\n".join(lines)) + "\n"


def _east_asian_font(rpr) -> None:
    """Chinese in the CJK font: a theme's east-Asian font (the template's) would take precedence, so it goes."""
    from docx.oxml.ns import qn

    fonts = rpr.get_or_add_rFonts()
    fonts.set(qn("w:eastAsia"), CJK_FONT)
    fonts.attrib.pop(qn("w:eastAsiaTheme"), None)


def _segment_runs(document, paragraph, export: RecordingExport, segment: Segment) -> None:
    """The segment's text as runs split where evidence starts and ends, and its themes as comments on them."""
    text = segment.text.strip()
    lead = len(segment.text) - len(segment.text.lstrip())
    annotations = export.themes(segment)
    spans = {a.id: [(max(0, s - lead), min(len(text), e - lead)) for s, e in a.evidence] for a in annotations}
    cuts = sorted({0, len(text)} | {i for span in spans.values() for s, e in span for i in (s, e)})
    pieces = [(s, e, paragraph.add_run(xml_text(text[s:e]))) for s, e in itertools.pairwise(cuts)]
    if not pieces:
        pieces = [(0, 0, paragraph.add_run(""))]
    for annotation in annotations:
        # One comment per coding, from its first piece of evidence to its last; no evidence is the whole segment.
        evidence = [(s, e) for s, e in spans[annotation.id] if s < e]
        start, end = (min(s for s, _ in evidence), max(e for _, e in evidence)) if evidence else (0, len(text))
        runs = [run for s, e, run in pieces if s < end and e > start] or [pieces[0][2]]
        author = xml_text(coder(annotation))
        initials = "".join(word[0] for word in author.split())[:3].upper()
        label = xml_text(export.theme_label(annotation.theme))
        document.add_comment(runs, f"{label} ({annotation.status})", author=author, initials=initials)


def _numbered_in_order(document) -> None:
    """The document's comments numbered 0, 1, 2, ... as they are added. python-docx numbers a new comment by
    reading every comment's id for their maximum, which made a long interview's document quadratic (9,600
    segments: 200 s, most of it there). ohp's document starts with no comment, so the order gives the same ids.
    The comments element is held by its part, so the number kept on it lasts as long as the document."""
    comments = document.comments._comments_elm
    numbers = itertools.count(len(comments.comment_lst))
    comments._next_available_comment_id = lambda: next(numbers)


def to_docx(export: RecordingExport) -> bytes:
    import docx  # here: python-docx takes a while to import, and only this format needs it
    from docx.oxml.ns import qn
    from docx.shared import Pt

    document = docx.Document()
    _numbered_in_order(document)
    defaults = document.styles.element.find(f"{qn('w:docDefaults')}/{qn('w:rPrDefault')}/{qn('w:rPr')}")
    _east_asian_font(defaults)
    _east_asian_font(document.styles["Title"].element.get_or_add_rPr())
    # The language tells Word to draw characters shared by Chinese and Japanese in their Chinese forms.
    defaults.find(qn("w:lang")).set(qn("w:eastAsia"), "zh-CN")

    recording = export.recording
    properties = document.core_properties
    properties.title = xml_text(title(export))
    properties.author = properties.last_modified_by = "ohp"
    properties.subject = "Oral history interview" + (
        xml_text(f" with {recording.interviewee}") if recording.interviewee else ""
    )
    themes = dict.fromkeys(export.theme_label(a.theme) for s in export.segments for a in export.themes(s))
    properties.keywords = xml_text("; ".join(themes))
    properties.language = recording.language or ""
    properties.identifier = recording.sha256
    restriction = access_note(export)
    properties.comments = xml_text(
        f"Transcript of {Path(recording.path).name}" + (f"; access {restriction}" if restriction else "")
    )
    properties.created = properties.modified = datetime.now(UTC)

    document.add_heading(xml_text(title(export)), level=0)
    table = document.add_table(rows=0, cols=2)
    table.style = "Table Grid"
    for field, value in header(export):
        cells = table.add_row().cells
        cells[0].paragraphs[0].add_run(field).bold = True
        cells[1].text = xml_text(value)

    for number, turn in enumerate(export.turns()):
        paragraph = document.add_paragraph()
        if number == 0:  # clear of the table, which has no space after it of its own
            paragraph.paragraph_format.space_before = Pt(12)
        paragraph.add_run(f"[{clock(turn[0].start)}] ")
        name = export.speaker_name(turn[0])
        if name:
            paragraph.add_run(xml_text(f"{name}:")).bold = True
            paragraph.add_run(" ")
        previous = ""
        for segment in turn:
            if gap := spacer(previous, segment.text.strip()):
                paragraph.add_run(gap)
            _segment_runs(document, paragraph, export, segment)
            previous = segment.text.strip() or previous
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
