"""REFI-QDA projects (.qdpx): recordings, transcripts and each coder's themes out to NVivo, ATLAS.ti, MAXQDA
and QualCoder, and the codings people add there back in. A coding is one coder's (RecordingExport.coded:
their own decision, accepted, added or imported), its creatingUser that coder, the coders the project's users.

A .qdpx is a zip of project.qde (XML of the QDA-XML 1.0 project schema) and a sources/ folder. Each
recording is an AudioSource linked to its audio file where it lies (absolute://: interviews are hundreds of
MB, too big to copy into every project) with a Transcript: a plain-text file in sources/, one line per
speaker turn, "[00:01:02] Name: text" (QualCoder reads such stamps as times, people as a guide), and
SyncPoints tying each segment's first and last character to its start and end (ms). The recording's
sha256 is a source variable and a line of the source's description (for tools that drop variables), so
the codings find their recording again.

Codings are TranscriptSelections on the Transcript, not PlainTextSelections on a TextSource copy of it: a
selection between SyncPoints is the schema's way to code a transcript of audio, so each coding stays tied
to the recording and its times (the tools play the coded stretch), and no text is there twice to be coded
apart; QualCoder writes and reads transcripts so. A selection runs from one SyncPoint to another, so each
evidence edge gets one, its time interpolated along its segment by characters.

GUIDs are uuid5s of what they name (a code of its theme id, a source of its sha256), so a re-export is the
same project and a code keeps its identity across exports and tools.
"""

from __future__ import annotations

import io
import lzma
import re
import stat
import uuid
import zipfile
import zlib
from bisect import bisect_left, bisect_right
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from lxml import etree

from pipeline.formats.readers import MAX_SECONDS, TranscriptFormatError, check_chars, check_xml_elements
from pipeline.records import (
    MAX_NAME_CHARS,
    UNNAMED_CODER,
    AnnotationRecord,
    Coding,
    ImportedCodings,
    RecordingExport,
    RecordingRecord,
    Segment,
)
from pipeline.stages.codebook import Codebook
from pipeline.utils import clean_name, clock, spacer, xml_text

NS = "urn:QDA-XML:project:1.0"
_GUIDS = uuid.UUID("5b0f6c1e-8a43-5d2e-9f17-3c6a0e4d2b71")  # ohp's uuid5 namespace: changing it renames everything
PROJECT_USER = "ohp"
SHA256 = "sha256"  # the source variable that names the recording
MAX_MEMBER_BYTES = 200 * 2**20  # project.qde or a transcript; a bigger one is a zip bomb, not a project
# All a project's files inflated, counted each time one is read: many Transcripts may name one file.
MAX_INFLATED_BYTES = 1024 * 2**20
MAX_MS = MAX_SECONDS * 1000  # a time in a project, in ms
_SHA256_LINE = re.compile(r"^sha256: ([0-9a-f]{64})$", re.MULTILINE)


def _guid(kind: str, *key: object) -> str:
    return str(uuid.uuid5(_GUIDS, "\x1f".join(map(str, (kind, *key)))))


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attributes: str | None) -> etree._Element:
    # Names and text come from people and recognisers: what XML cannot hold goes.
    element = etree.SubElement(parent, _q(tag), {k: xml_text(v) for k, v in attributes.items() if v is not None})
    element.text = None if text is None else xml_text(text)
    return element


def _when(moment: datetime | str) -> str | None:
    """An xsd:dateTime in UTC as the tools write it, 2023-08-16T15:49:36Z; None for no or an unreadable time."""
    try:
        moment = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the store keeps UTC
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------- export


def _transcript_text(export: RecordingExport) -> tuple[str, list[int]]:
    """The transcript as the project holds it, one line per speaker turn, "[00:01:02] Name: text", and
    where each segment's text starts in it (in the order of export.segments)."""
    lines: list[str] = []
    offsets: list[int] = []
    position = 0
    for turn in export.turns():
        name = export.speaker_name(turn[0])
        line = f"[{clock(turn[0].start)}] " + (f"{name}: " if name else "")
        for previous, segment in zip([None, *turn], turn, strict=False):
            line += spacer(previous.text, segment.text) if previous else ""
            offsets.append(position + len(line))
            line += segment.text
        lines.append(line)
        position += len(line) + 1
    return "".join(line + "\n" for line in lines), offsets


def _spans(annotation: AnnotationRecord, length: int) -> list[tuple[int, int]]:
    # Clamped: an annotator may have shortened the text since the tagger found the evidence.
    spans = [(max(0, min(a, length)), max(0, min(b, length))) for a, b in annotation.evidence]
    return [(a, b) for a, b in spans if a < b] or [(0, length)]


def _moment(segment: Segment, offset: int, char: int) -> tuple[int, int]:
    """A character of a segment: its position in the transcript and its time (ms), by characters along the segment."""
    fraction = char / len(segment.text) if segment.text else 0
    return offset + char, round(1000 * (segment.start + (segment.end - segment.start) * fraction))


def _facts(recording: RecordingRecord) -> dict[str, str]:
    """What a researcher filters recordings by in a QDA tool, as source variables (and description lines)."""
    facts = {
        "interviewee": recording.interviewee,
        "place": recording.place,
        "recorded on": recording.recorded_on,
        "language": recording.language,
        "duration": clock(recording.duration),
        "consent": recording.consent
        + (f" until {recording.release_on}" if recording.consent != "open" and recording.release_on else ""),
        SHA256: recording.sha256,
    }
    return {name: value for name, value in facts.items() if value}


def _recording(sources: etree._Element, export: RecordingExport) -> tuple[str, str]:
    """The recording as an AudioSource with its coded transcript; returns the transcript's file name and text."""
    recording = export.recording
    audio_path = Path(recording.path)
    text, offsets = _transcript_text(export)
    facts = _facts(recording)
    ohp = _guid("user", PROJECT_USER)
    audio = _sub(
        sources,
        "AudioSource",
        guid=_guid("source", recording.sha256),
        name=audio_path.name,
        # A transcript imported without audio has none: no path (the schema's is optional), not its own file as audio.
        path="absolute://" + audio_path.as_posix() if recording.has_audio else None,
        creatingUser=ohp,
    )
    _sub(audio, "Description", "\n".join(f"{name}: {value}" for name, value in facts.items()))
    file_name = f"{_guid('transcript', recording.sha256)}.txt"
    transcript = _sub(
        audio,
        "Transcript",
        guid=_guid("transcript", recording.sha256),
        name=f"{audio_path.stem}.txt",
        plainTextPath=f"internal://{file_name}",
        creatingUser=ohp,
    )

    keys: list[tuple[int, int]] = []  # (position, ms) of each SyncPoint
    codings: list[tuple[AnnotationRecord, str, tuple[int, int], tuple[int, int]]] = []
    for segment, offset in zip(export.segments, offsets, strict=True):
        keys += [_moment(segment, offset, 0), _moment(segment, offset, len(segment.text))]
        for annotation, who in export.coded(segment):
            for span in _spans(annotation, len(segment.text)):
                start, end = (_moment(segment, offset, char) for char in span)
                codings.append((annotation, who, start, end))
                keys += [start, end]
    # One point per (position, time): evidence at a segment's ends shares the segment's points.
    points = {key: _guid("sync", recording.sha256, *key) for key in sorted(set(keys))}
    for (position, ms), guid in points.items():
        _sub(transcript, "SyncPoint", guid=guid, position=str(position), timeStamp=str(ms))
    for annotation, who, start, end in codings:
        # A selection per coder: each coding's creatingUser is the one who coded it.
        user, when, key = _guid("user", who), _when(annotation.updated_at), (annotation.id, who, start, end)
        selection = _sub(
            transcript,
            "TranscriptSelection",
            guid=_guid("selection", *key),
            name=text[start[0] : end[0]][:80],
            fromSyncPoint=points[start],
            toSyncPoint=points[end],
            creatingUser=user,
            creationDateTime=when,
        )
        coding = _sub(selection, "Coding", guid=_guid("coding", *key), creatingUser=user, creationDateTime=when)
        _sub(coding, "CodeRef", targetGUID=_guid("code", annotation.theme))
    for name, value in facts.items():
        variable = _sub(audio, "VariableValue")
        _sub(variable, "VariableRef", targetGUID=_guid("variable", name))
        _sub(variable, "TextValue", value)
    return file_name, text


def _codes(parent: etree._Element, codebook: Codebook, theme_parent: str | None) -> None:
    for theme in codebook.themes:
        if theme.parent == theme_parent:
            code = _sub(parent, "Code", guid=_guid("code", theme.id), name=codebook.label(theme.id), isCodable="true")
            about = [theme.description, f"ohp theme: {theme.id}"]
            _sub(code, "Description", "\n".join(line for line in about if line))
            _codes(code, codebook, theme.id)


def to_qdpx(exports: list[RecordingExport], codebook: Codebook | None = None) -> bytes:
    """One REFI-QDA project of the recordings: the codebook as codes, each recording's audio (linked, not
    copied) with its transcript, and each coder's themes as codings of the evidence by that coder. Without
    a codebook, the recordings' own is used; without any, codes are the theme ids coded."""
    codebook = codebook or next((e.codebook for e in exports if e.codebook), None)
    known = codebook.ids if codebook else []
    coded = [pair for e in exports for s in e.segments for pair in e.coded(s)]
    ohp = _guid("user", PROJECT_USER)
    project = etree.Element(
        _q("Project"),
        nsmap={None: NS},
        name="ohp interviews",
        origin=PROJECT_USER,
        creatingUserGUID=ohp,
        creationDateTime=_when(datetime.now(UTC)),
    )
    users = _sub(project, "Users")
    for name in sorted({who for _, who in coded} | {PROJECT_USER}):
        _sub(users, "User", guid=_guid("user", name), name=name)
    # Themes coded but gone from the codebook still need a code for their codings to point at.
    missing = sorted({a.theme for a, _ in coded} - set(known))
    if known or missing:
        codes = _sub(_sub(project, "CodeBook"), "Codes")
        if codebook:
            _codes(codes, codebook, None)
        for theme in missing:
            _sub(codes, "Code", guid=_guid("code", theme), name=theme, isCodable="true")
    names = list(dict.fromkeys(name for e in exports for name in _facts(e.recording)))
    if names:
        variables = _sub(project, "Variables")
        for name in names:
            _sub(variables, "Variable", guid=_guid("variable", name), name=name, typeOfVariable="Text")
    files = {}
    if exports:
        sources = _sub(project, "Sources")
        files = dict(_recording(sources, export) for export in exports)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "project.qde", etree.tostring(project, xml_declaration=True, encoding="utf-8", pretty_print=True)
        )
        for file_name, text in files.items():
            archive.writestr(f"sources/{file_name}", text.encode("utf-8"))
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- import


def _norm(guid: str | None) -> str:
    # GUIDs compare case-insensitively, with or without braces: ATLAS.ti writes them upper case.
    return (guid or "").strip().strip("{}").lower()


def _number(path: Path, element: etree._Element, attribute: str, most: float = MAX_MEMBER_BYTES) -> int | None:
    """A whole number from 0 to `most` (a position in a text, by default; a time in ms: MAX_MS), None without one."""
    return None if element.get(attribute) is None else _whole(path, element, attribute, most)


def _whole(path: Path, element: etree._Element, attribute: str, most: float = MAX_MEMBER_BYTES) -> int:
    """A whole number from 0 to `most` that the element must have."""
    value = element.get(attribute)
    where = f"project.qde: {etree.QName(element).localname} {attribute}"
    if value is None:
        raise TranscriptFormatError(path, f"{where} is missing", element.sourceline)
    try:
        number = int(value)
    except ValueError:
        why = f"{where} is {value[:40]!r}, not a whole number"
        raise TranscriptFormatError(path, why, element.sourceline) from None
    if not 0 <= number <= most:
        raise TranscriptFormatError(path, f"{where} is {value[:40]}: not from 0 to {most:.0f}", element.sourceline)
    return number


def _member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    # The declared size is checked before inflating anything, and zipfile stops at it (a lie fails the CRC).
    if info.file_size > MAX_MEMBER_BYTES:
        size, limit = info.file_size / 2**20, MAX_MEMBER_BYTES // 2**20
        why = f"{info.filename} would inflate to {size:.0f} MB (at most {limit} MB): not a project, maybe a zip bomb"
        raise TranscriptFormatError(path, why)
    if info.flag_bits & 0x1:  # zipfile would raise a RuntimeError asking for the password
        raise TranscriptFormatError(path, f"{info.filename} is encrypted: export the project without a password")
    with archive.open(info) as f:
        return f.read()


def _members(path: Path, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The zip's files by lower-case name (NVivo writes Sources/, MAXQDA sources/); refuses names that
    climb out of the project, which a careless unzip would write anywhere."""
    members = {}
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in PurePosixPath(name).parts:
            raise TranscriptFormatError(
                path, f"unsafe file name in the zip: {info.filename!r} points outside the project"
            )
        members[name.lower()] = info
    return members


def _project(path: Path, data: bytes) -> etree._Element:
    # No DTD is loaded and no entity expanded (XXE, billion laughs); a project never needs either.
    check_xml_elements(path, data, "project.qde")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise TranscriptFormatError(path, f"project.qde is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise TranscriptFormatError(path, "project.qde has a DOCTYPE (DTDs and entities are not accepted in a project)")
    if root.tag != _q("Project"):
        raise TranscriptFormatError(
            path, f"project.qde is not a REFI-QDA 1.0 project: its root is {root.tag}, not {_q('Project')}"
        )
    return root


def _themes(path: Path, root: etree._Element, codebook: Codebook) -> dict[str, tuple[str, str | None]]:
    """Each code's GUID -> its name and the theme it is: by ohp's GUID, else by name = theme id or label."""
    by_guid = {_guid("code", t.id): t.id for t in codebook.themes}
    themes = {}
    for code in root.iter(_q("Code")):
        guid, name = _norm(code.get("guid")), check_chars(path, (code.get("name") or "").strip(), "a code's name")
        themes[guid] = (name, by_guid.get(guid) or codebook.find(name))
    return themes


def _sha256(source: etree._Element, variables: dict[str, str]) -> str | None:
    """The recording a source is: its sha256 variable, else the sha256 line of its description."""
    for value in source.findall(_q("VariableValue")):
        ref = value.find(_q("VariableRef"))
        if ref is not None and variables.get(_norm(ref.get("targetGUID"))) == SHA256:
            sha256 = (value.findtext(_q("TextValue")) or "").strip().lower()
            if re.fullmatch(r"[0-9a-f]{64}", sha256):
                return sha256
    description = source.find(_q("Description"))
    found = _SHA256_LINE.search(description.text or "") if description is not None else None
    return found.group(1) if found else None


def _seconds(timed: list[tuple[int, int]], position: int, end: bool) -> float:
    """The time of a transcript position, between the timed SyncPoints around it (sorted by position, ms).
    Where two segments meet at one position, a coding starts when the later starts, ends when the earlier ends."""
    # Indices, not slices: a slice copies, and a project of many selections took quadratic time.
    before = bisect_right(timed, (position, float("inf")))  # the points at or before the position: timed[:before]
    after = bisect_left(timed, (position, float("-inf")))  # and at or after it: timed[after:]
    if not before:
        return timed[after][1] / 1000
    if after == len(timed):
        return timed[before - 1][1] / 1000
    (p0, t0), (p1, t1) = timed[before - 1], timed[after]
    if p0 == p1:
        return (t1 if end else t0) / 1000
    return round(t0 + (t1 - t0) * (position - p0) / (p1 - p0)) / 1000  # to the ms, as sync points are


class _Reader:
    """One project's codings on ohp's recordings, and what could not be taken."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, codebook: Codebook):
        self.path, self.archive = path, archive
        self.members = _members(path, archive)
        if "project.qde" not in self.members:
            raise TranscriptFormatError(path, "no project.qde in the zip: not a REFI-QDA project")
        self.inflated = 0  # bytes, of MAX_INFLATED_BYTES
        self.root = _project(path, self.inflate(self.members["project.qde"]))
        # Names go into warnings and, as coders, into the database: of a sane length, and kept as an account's
        # name is (NFKC: José decomposed is the José who codes in ohp).
        self.users = {
            _norm(u.get("guid")): check_chars(
                path, clean_name(u.get("name") or "") or u.get("guid") or "", "a user's name", MAX_NAME_CHARS
            )
            for u in self.root.iter(_q("User"))
        }
        self.variables = {
            _norm(v.get("guid")): (v.get("name") or "").strip().casefold() for v in self.root.iter(_q("Variable"))
        }
        self.themes = _themes(path, self.root, codebook)
        self.unmatched: Counter[str] = Counter()  # code name -> codings skipped
        self.warnings: list[str] = []

    def inflate(self, info: zipfile.ZipInfo) -> bytes:
        """A file of the zip; refused once the project has inflated more than MAX_INFLATED_BYTES in all (a
        thousand Transcripts naming one 200 MB file that deflates to 200 kB)."""
        self.inflated += info.file_size
        if self.inflated > MAX_INFLATED_BYTES:
            limit = MAX_INFLATED_BYTES // 2**20
            raise TranscriptFormatError(self.path, f"the project inflates to more than {limit} MB: maybe a zip bomb")
        return _member(self.path, self.archive, info)

    def codings(self, selection: etree._Element, start: float, end: float, text: str | None) -> list[Coding]:
        found = []
        for coding in selection.findall(_q("Coding")):
            ref = coding.find(_q("CodeRef"))
            guid = _norm(ref.get("targetGUID") if ref is not None else None)
            name, theme = self.themes.get(guid, (guid, None))
            if theme is None:
                self.unmatched[name] += 1
                continue
            who = _norm(coding.get("creatingUser") or selection.get("creatingUser"))
            found.append(Coding(theme, self.users.get(who) or UNNAMED_CODER, start, end, text))
        return found

    def text_of(self, transcript: etree._Element) -> str | None:
        content = transcript.find(_q("PlainTextContent"))
        if content is not None:
            return content.text or ""
        location = transcript.get("plainTextPath") or ""
        if not location.startswith("internal://"):
            return None
        info = self.members.get(f"sources/{location.removeprefix('internal://').lstrip('/')}".lower())
        if info is None:
            raise TranscriptFormatError(self.path, f"the transcript {location} is not in the zip")
        try:
            return self.inflate(info).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise TranscriptFormatError(self.path, f"the transcript {location} is not UTF-8 text") from None

    def transcript(self, transcript: etree._Element, source_name: str) -> list[Coding]:
        text = self.text_of(transcript)
        points = {
            _norm(p.get("guid")): (_number(self.path, p, "position"), _number(self.path, p, "timeStamp", MAX_MS))
            for p in transcript.findall(_q("SyncPoint"))
        }
        timed = sorted((pos, ms) for pos, ms in points.values() if pos is not None and ms is not None)
        selections = transcript.findall(_q("TranscriptSelection"))
        if not selections:
            return []
        if text is None or not timed:
            why = "its text is outside the project" if text is None else "it has no timed sync points"
            self.warnings.append(f"transcript of {source_name!r}: {len(selections)} coded selections skipped, {why}")
            return []
        found = []
        for selection in selections:
            (start, start_ms), (end, end_ms) = (
                points.get(_norm(selection.get(side)), (None, None)) for side in ("fromSyncPoint", "toSyncPoint")
            )
            if start is None or end is None or not 0 <= start <= end <= len(text):
                why = f"project.qde: a transcript selection of {source_name!r} is not between sync points of its text"
                raise TranscriptFormatError(self.path, why, selection.sourceline)
            found += self.codings(
                selection,
                start_ms / 1000 if start_ms is not None else _seconds(timed, start, end=False),
                end_ms / 1000 if end_ms is not None else _seconds(timed, end, end=True),
                text[start:end],
            )
        return found

    def read(self) -> ImportedCodings:
        result = ImportedCodings(self.path, "qdpx")
        sources = self.root.find(_q("Sources"))
        # Elements only: a comment among the sources is no source (etree.QName fails on it).
        for source in [] if sources is None else sources.iterchildren(etree.Element):
            kind, name = etree.QName(source).localname, source.get("name") or source.get("guid") or ""
            check_chars(self.path, name, "a source's name")
            sha256 = _sha256(source, self.variables) if kind in ("AudioSource", "VideoSource") else None
            if sha256 is None:
                self.warnings.append(
                    f"{kind} {name!r} is not a recording ohp exported (no sha256): its codings are not imported"
                )
                continue
            found = result.codings.setdefault(sha256, [])
            for transcript in source.findall(_q("Transcript")):
                found += self.transcript(transcript, name)
            # Codes put on the audio's timeline rather than on the transcript's words.
            for selection in source.findall(_q(kind.replace("Source", "Selection"))):
                begin, end = (_whole(self.path, selection, side, MAX_MS) for side in ("begin", "end"))
                if end < begin:
                    why = f"project.qde: {kind} {name!r}: a selection ends before it begins"
                    raise TranscriptFormatError(self.path, why, selection.sourceline)
                found += self.codings(selection, begin / 1000, end / 1000, None)
        self.warnings += [
            f"code {name!r} is no theme of the codebook (by ohp's GUID, id or label): its {n} codings are not imported"
            for name, n in self.unmatched.items()
        ]
        for codings in result.codings.values():
            codings.sort(key=lambda c: (c.start, c.end, c.theme, c.coder))
        result.warnings = self.warnings
        return result


def read_qdpx(path: Path, codebook: Codebook) -> ImportedCodings:
    """The codings of a REFI-QDA project on the recordings ohp exported into it, by their sha256, with
    their coders, times (from the sync points) and words. Codes that are no theme and sources that are no
    recording of ohp's are warnings; a file that is not a sound project raises TranscriptFormatError."""
    path = Path(path)
    try:
        # A zip is read where its index says, so only a regular file will do (a FIFO would block the open).
        if not stat.S_ISREG(path.stat().st_mode):
            raise TranscriptFormatError(path, "not a .qdpx project: a folder, a FIFO or a device, not a file")
        with zipfile.ZipFile(path) as archive:
            return _Reader(path, archive, codebook).read()
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError) as exc:
        raise TranscriptFormatError(path, f"not a .qdpx project (a zip file): {exc}") from None
    except NotImplementedError as exc:  # a compression method zipfile lacks (deflate64)
        raise TranscriptFormatError(path, f"cannot unpack it: {exc}") from None
    except OSError as exc:
        raise TranscriptFormatError(path, f"cannot read it: {exc.strerror or exc}") from None
