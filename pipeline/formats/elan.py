"""ELAN (.eaf) files: a recording's export for coding in ELAN, and the codings read back.

The export links the recording's audio, has a tier per speaker with the transcript, a tier "doubtful" with
the passages the recogniser may have wrong (stages/doubt.py), the codebook as the
controlled vocabulary "themes", and a tier per theme and coder: alignable tiers cannot hold overlapping
annotations and a segment can have several themes, so one tier per theme keeps every coding. A coder's
tier holds what their own decisions say is there (RecordingExport.coded), so two coders of a theme are
both written. The tagger's open suggestions are on tiers "<theme> (suggested by ohp)", annotator "ohp". Header
properties name the recording (sha256 and store id) so that its codings find it again, and say a
restricted recording's consent.

Reading back, every tier of linguistic type "theme" (or of a type using the themes vocabulary) gives
codings by its annotator, else by the tier itself (`_tier_coder`: "tier/themes-A", annotators splitting their work
by tier stay apart), never by its participant, mostly the speaker (the interviewee's name was kept, and exported,
as a coder's); the tagger's suggestions tiers are skipped (not a coder's; a coder named "ohp" has a tier of their
own). Values are theme ids or labels; others are warnings, not failures.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlparse
from urllib.request import url2pathname
from xml.parsers.expat import ErrorString

import pympi

from pipeline.formats.documents import access_note
from pipeline.formats.readers import (
    MAX_SECONDS,
    TranscriptFormatError,
    check_chars,
    check_xml_elements,
    read_limited,
)
from pipeline.records import (
    MAX_NAME_CHARS,
    TIER_CODER,
    AnnotationStatus,
    Coding,
    ImportedCodings,
    RecordingExport,
    Segment,
)
from pipeline.stages.audio import file_sha256
from pipeline.stages.codebook import Codebook
from pipeline.stages.doubt import doubtful_passages
from pipeline.utils import clean_name, inert, timestamp, xml_text

SHA256_PROPERTY = "ohp:recording-sha256"
ID_PROPERTY = "ohp:recording-id"
CONSENT_PROPERTY = "ohp:consent"  # the restriction in force, "restricted until 2040-01-01"; absent when open
THEME_TYPE = "theme"
THEMES_CV = "themes"
TRANSCRIPT_TYPE = "transcript"
TRANSCRIPT_TIER = "Transcript"  # segments nobody is known to say
DOUBT_TYPE = DOUBT_TIER = "doubtful"  # the words the doubt stage marked, passage by passage
SUGGESTER = "ohp"  # the annotator of the tagger's open suggestions (records.coder)
SUGGESTIONS = "suggested by ohp"  # their tiers' names end "(suggested by ohp)"; a coder's, "(name)"
# The codebook's label languages as ELAN names languages (ISO 639-3).
LANGUAGES = {"en": ("eng", "English (eng)"), "zh": ("zho", "Chinese (zho)")}
# As ELAN itself writes them: it plays a file as audio only when the type is audio/x-wav or audio/*.
MIME_TYPES = {
    ".wav": "audio/x-wav",
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
    ".mpg": "video/mpeg",
    ".mpeg": "video/mpeg",
    ".avi": "video/*",
    ".mkv": "video/*",
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
PARTICIPANT = "(participant)"  # a tier coder's name where its tier's name has its participant's
MIN_PARTICIPANT_CHARS = 2  # a participant of one character ("A") is a label, not a name, and would be in words


# ------------------------------------------------------------------------------------------ export


def _span(segment: Segment, value: str) -> tuple[int, int, str]:
    return max(0, round(segment.start * 1000)), max(0, round(segment.end * 1000)), xml_text(value)


def _laid_out(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """The spans as one ELAN tier can hold them: not overlapping, none empty. Each starts where the one
    before ends; one left with no time of its own joins the one before (its value added when it differs:
    a theme is not repeated); a zero-length one lasts a millisecond."""
    tier: list[list] = []
    for start, end, value in sorted(spans, key=lambda s: s[:2]):
        if tier and end <= tier[-1][1]:
            if value != tier[-1][2]:
                tier[-1][2] += " " + value
        else:
            start = max(start, tier[-1][1]) if tier else start
            tier.append([start, max(end, start + 1), value])
    return [(start, end, value) for start, end, value in tier]


def _vocabulary(export: RecordingExport) -> list[str]:
    """The themes the vocabulary lists: the codebook's, and any coded theme the codebook no longer has."""
    ids = export.codebook.ids if export.codebook else []
    coded = {a.theme for annotations in export.annotations.values() for a in annotations}
    return ids + sorted(coded - set(ids))


def _add_vocabulary(eaf: pympi.Elan.Eaf, export: RecordingExport, themes: list[str]) -> None:
    # Each entry's value is the theme id in every language, so a coding reads the same whichever
    # language a coder shows the vocabulary in; the descriptions are the labels.
    version = f" (version {export.codebook.version})" if export.codebook else ""
    eaf.add_controlled_vocabulary(THEMES_CV)
    for language_id, name in LANGUAGES.values():
        eaf.add_language(language_id, lang_label=name)
        eaf.add_cv_description(THEMES_CV, language_id, f"Themes of the ohp codebook{version}")
    for theme in themes:
        values = [
            (theme, language_id, xml_text(export.theme_label(theme, language)))
            for language, (language_id, _) in LANGUAGES.items()
        ]
        eaf.add_cv_entry(THEMES_CV, f"cveid_{theme}", values)  # an ID must not start like a time slot's or annotation's
    eaf.add_linguistic_type(
        THEME_TYPE,
        param_dict={
            "LINGUISTIC_TYPE_ID": THEME_TYPE,
            "TIME_ALIGNABLE": "true",
            "GRAPHIC_REFERENCES": "false",
            "CONTROLLED_VOCABULARY_REF": THEMES_CV,
        },
    )


def _add_tier(eaf: pympi.Elan.Eaf, tier: str, spans: list[tuple[int, int, str]], **attributes: str | None) -> None:
    # pympi replaces a tier of the same name, annotations and all: a speaker named "doubtful" or like a
    # theme tier would lose their transcript. Another gets a number (codings are read by type and annotator).
    names = (tier if n == 1 else f"{tier} {n}" for n in itertools.count(1))
    name = next(name for name in names if name not in eaf.tiers)
    eaf.add_tier(name, **attributes)
    for start, end, value in _laid_out(spans):
        eaf.add_annotation(name, start, end, value)


def to_eaf(export: RecordingExport) -> str:
    """The recording's ELAN document: transcript tiers by speaker, themes tiers by theme and coder."""
    recording = export.recording
    eaf = pympi.Elan.Eaf(author="ohp")
    eaf.remove_tier("default")
    eaf.remove_linguistic_type("default-lt")
    # pympi writes the zone offset's seconds as its minutes ("+05:1800" in India): no valid date
    eaf.adocument["DATE"] = datetime.now(UTC).isoformat(timespec="seconds")
    eaf.header.update({"MEDIA_FILE": "", "TIME_UNITS": "milliseconds"})
    if recording.has_audio:  # a transcript imported without audio has none: its file is no media to play
        media = Path(recording.path).absolute()
        # The relative URL finds the audio when the .eaf is copied next to it on a coder's machine.
        eaf.add_linked_file(media.as_uri(), "./" + quote(media.name), MIME_TYPES.get(media.suffix.lower(), "audio/*"))

    eaf.add_linguistic_type(TRANSCRIPT_TYPE)
    said: dict[str, list[tuple[int, int, str]]] = {}
    for segment in export.segments:
        said.setdefault(xml_text(export.speaker_name(segment) or TRANSCRIPT_TIER), []).append(
            _span(segment, segment.text)
        )
    for name, spans in said.items():
        _add_tier(eaf, name, spans, ling=TRANSCRIPT_TYPE, part=None if name == TRANSCRIPT_TIER else name)
    passages = doubtful_passages(export.segments)
    if passages:
        eaf.add_linguistic_type(DOUBT_TYPE)
        doubtful = [(round(p.start * 1000), round(p.end * 1000), xml_text(p.text)) for p in passages]
        _add_tier(eaf, DOUBT_TIER, doubtful, ling=DOUBT_TYPE)

    themes = _vocabulary(export)
    _add_vocabulary(eaf, export, themes)
    # (theme, coder, the tagger's suggestions?) -> spans: a coder named "ohp" is not the tagger.
    coded: dict[tuple[str, str, bool], list[tuple[int, int, str]]] = {}
    for segment in export.segments:
        for annotation, who in export.coded(segment):
            coded.setdefault((annotation.theme, xml_text(who), False), []).append(_span(segment, annotation.theme))
        for annotation in export.themes(segment):
            if annotation.status == AnnotationStatus.SUGGESTED:
                coded.setdefault((annotation.theme, SUGGESTER, True), []).append(_span(segment, annotation.theme))
    # The codebook's order, each theme's coders by name and the tagger's suggestions after them.
    for theme, who, suggested in sorted(coded, key=lambda key: (themes.index(key[0]), key[2], key[1])):
        tier = f"{theme} ({SUGGESTIONS if suggested else who})"
        _add_tier(eaf, tier, coded[theme, who, suggested], ling=THEME_TYPE, ann=who)

    # ELAN numbers new annotations after lastUsedAnnotationId (pympi would write another name, at 0).
    eaf.properties = [
        (SHA256_PROPERTY, recording.sha256),
        (ID_PROPERTY, recording.id),
        ("lastUsedAnnotationId", eaf.maxaid),
    ]
    # A restricted recording is marked so in every format with a place for it (pipeline.access): here a property.
    if restriction := access_note(export):
        eaf.properties.append((CONSENT_PROPERTY, restriction))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + pympi.Elan.to_string(eaf)


# ------------------------------------------------------------------------------------------ import


class _NoDoctype(ET.TreeBuilder):
    """Refuses a DOCTYPE as soon as it begins, before its entities are read: no EAF file has one, and
    entities can expand without end (billion laughs) or read other files."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise TranscriptFormatError(
            self.path,
            "it declares a DOCTYPE, which EAF files never have "
            "(refused: its entities could expand without end or read other files)",
        )


def _parse(path: Path) -> ET.Element:
    data = read_limited(path, "an ELAN file")
    if not data.strip():
        raise TranscriptFormatError(path, "the file is empty")
    check_xml_elements(path, data, "an ELAN file")
    parser = ET.XMLParser(target=_NoDoctype(path))
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as exc:
        line, column = exc.position
        raise TranscriptFormatError(
            path, f"not well-formed XML (column {column}): {ErrorString(exc.code)}", line
        ) from None
    except TranscriptFormatError:
        raise
    except (LookupError, ValueError) as exc:  # an encoding expat cannot read, such as a declared GBK
        raise TranscriptFormatError(path, f"cannot read its encoding ({exc}); save it as UTF-8") from None
    if root.tag != "ANNOTATION_DOCUMENT":
        raise TranscriptFormatError(
            path, f"not an ELAN file: its root element is <{root.tag}>, not <ANNOTATION_DOCUMENT>"
        )
    return root


def _recording_sha256(path: Path, root: ET.Element) -> str:
    """The recording the file is of: its sha256 property, else the hash of its media file if it is here."""
    properties = {p.get("NAME"): (p.text or "").strip().lower() for p in root.iterfind("HEADER/PROPERTY")}
    if _SHA256.fullmatch(properties.get(SHA256_PROPERTY, "")):
        return properties[SHA256_PROPERTY]
    for media in root.iterfind("HEADER/MEDIA_DESCRIPTOR"):
        url = urlparse(media.get("MEDIA_URL", ""))
        candidates = [Path(url2pathname(url.path))] if url.scheme == "file" else []
        if relative := media.get("RELATIVE_MEDIA_URL"):
            candidates.append(path.parent / url2pathname(relative))
        for local in filter(Path.is_file, candidates):
            try:
                return file_sha256(local)
            except OSError as exc:
                raise TranscriptFormatError(
                    path, f"cannot read its media file {local}: {exc.strerror or exc}"
                ) from None
    raise TranscriptFormatError(
        path,
        f"names no recording ohp knows: it has no {SHA256_PROPERTY} property and its media file is not on this machine",
    )


def _times(path: Path, root: ET.Element) -> dict[str, tuple[int | None, int | None]]:
    """Each annotation's start and end in ms, by id (None for an unaligned time slot); a reference
    annotation has the times of the aligned annotation it refers to, however deep."""
    try:
        slots = {
            s.attrib["TIME_SLOT_ID"]: int(s.attrib["TIME_VALUE"]) if "TIME_VALUE" in s.attrib else None
            for s in root.iterfind("TIME_ORDER/TIME_SLOT")
        }
        times = {
            a.attrib["ANNOTATION_ID"]: (slots[a.attrib["TIME_SLOT_REF1"]], slots[a.attrib["TIME_SLOT_REF2"]])
            for a in root.iterfind("TIER/ANNOTATION/ALIGNABLE_ANNOTATION")
        }
        refs = {
            a.attrib["ANNOTATION_ID"]: a.attrib["ANNOTATION_REF"]
            for a in root.iterfind("TIER/ANNOTATION/REF_ANNOTATION")
        }
    except KeyError as exc:
        raise TranscriptFormatError(path, f"a broken EAF file: {exc.args[0]!r} is missing or names nothing") from None
    except ValueError:
        raise TranscriptFormatError(
            path, "a broken EAF file: a TIME_VALUE is not a whole number of milliseconds"
        ) from None
    wrong = next((slot for slot, ms in slots.items() if ms is not None and not 0 <= ms <= MAX_SECONDS * 1000), None)
    if wrong:
        hours = MAX_SECONDS / 3600
        raise TranscriptFormatError(path, f"a broken EAF file: time slot {wrong[:40]} is not from 0 to {hours:g} hours")
    for ref, target in refs.items():
        # Each chain followed once, every link on it given its times: a file of a long chain read again from
        # each link took quadratic time (32,000 links, 135 s).
        chain, seen = [ref], {ref}
        while target not in times and target in refs and target not in seen:  # a cycle ends, and fails below
            chain.append(target)
            seen.add(target)
            target = refs[target]
        if target not in times:
            raise TranscriptFormatError(
                path, f"a broken EAF file: annotation {ref} refers to {target}, which has no times"
            )
        times.update(dict.fromkeys(chain, times[target]))
    return times


def _one_line(text: str) -> str:
    return " ".join(inert(clean_name(text)).split())


def _tier_coder(path: Path, tier: str, participant: str) -> str:
    """The coder of a themes tier that names no annotator: the tier, by its name (records.TIER_CODER), the same on
    every import of the file. The name is kept as an account's is (NFKC: the same letters written decomposed are the
    same tier) and made one line that shows what it holds (controls and bidi overrides as
    `inert` shows them, so that the coder reads as it is and cannot pass for another), and its participant's name
    in it (mostly the interviewee's: ELAN users name tiers by speaker) is PARTICIPANT."""
    name = _one_line(tier)
    if len(who := _one_line(participant)) >= MIN_PARTICIPANT_CHARS:
        name = re.sub(re.escape(who), PARTICIPANT, name, flags=re.IGNORECASE)
    if not name:
        raise TranscriptFormatError(
            path, "a broken EAF file: a themes tier has no name and no annotator: whose codes they are cannot be told"
        )
    return check_chars(path, TIER_CODER + name, f"the coder of tier {tier!r} (no annotator: the tier)", MAX_NAME_CHARS)


def read_eaf(path: Path, codebook: Codebook) -> ImportedCodings:
    """The codings of an ELAN file's themes tiers, by coder, under the sha256 of the recording it is of."""
    path = Path(path)
    root = _parse(path)
    sha256 = _recording_sha256(path, root)
    times = _times(path, root)
    theme_types = {THEME_TYPE} | {
        t.get("LINGUISTIC_TYPE_ID")
        for t in root.iterfind("LINGUISTIC_TYPE")
        if t.get("CONTROLLED_VOCABULARY_REF") == THEMES_CV
    }
    imported = ImportedCodings(path, "eaf")
    codings: list[Coding] = []
    for tier in root.iterfind("TIER"):
        # As an account's name is kept (NFKC): José decomposed, as a Mac may write it, is the José who codes in ohp.
        annotator = clean_name(tier.get("ANNOTATOR") or "")
        # What a tier says goes into warnings and, as the coder, into the database: of a sane length.
        name = check_chars(path, tier.get("TIER_ID", ""), "a tier's name")
        # Its name as written, or numbered by _add_tier where a speaker's tier took it.
        suggestions = annotator == SUGGESTER and re.sub(r" \d+$", "", name).endswith(f"({SUGGESTIONS})")
        if tier.get("LINGUISTIC_TYPE_REF") not in theme_types or suggestions:
            continue
        who = check_chars(path, annotator, f"the coder of tier {name!r}", MAX_NAME_CHARS) or _tier_coder(
            path, name, tier.get("PARTICIPANT") or ""
        )
        for annotation in tier.iterfind("ANNOTATION/*"):
            value = (annotation.findtext("ANNOTATION_VALUE") or "").strip()
            check_chars(path, value, f"a value on tier {name!r}")
            ident = annotation.get("ANNOTATION_ID")
            start, end = times.get(ident, (None, None)) if ident is not None else (None, None)
            theme = codebook.find(value)
            if start is not None and end is not None and end < start:
                where = f"annotation {annotation.get('ANNOTATION_ID', '')[:40]} on tier {name!r}"
                raise TranscriptFormatError(path, f"a broken EAF file: {where} ends before it starts")
            if start is None or end is None:
                imported.warnings.append(
                    f"tier {name!r}: {value!r} has no time of its own (align it in ELAN); left out"
                )
            elif theme is None:
                imported.warnings.append(
                    f"tier {name!r} at {timestamp(start / 1000)}: {value!r} is not a theme of the codebook; left out"
                )
            else:
                codings.append(Coding(theme, who, start / 1000, end / 1000))
    imported.codings[sha256] = sorted(codings, key=lambda c: (c.start, c.end, c.theme, c.coder))
    return imported
