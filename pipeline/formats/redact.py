"""Redaction: person and place names out of a recording's export, times kept, every replacement reported.

What is a name comes from three places: the entity stage (spaCy NER / jieba), the project's own list
(annotations/redact.txt: what the tagger misses, such as a village's name), and the recording itself
(speaker names, the interviewee, the place). A name found once is replaced everywhere it occurs in the
recording, since the entity stage finds some mentions and misses others of the same name. The result
is a new RecordingExport, so every format is redacted alike; `Redaction`s say what went where, for a
person to check before the files leave the project.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import accumulate
from pathlib import Path

from pipeline.records import Entity, RecordingExport, Segment, SpeakerRecord, Word

KINDS = {"names": ("PERSON", "[NAME]"), "places": ("PLACE", "[PLACE]")}
DEFAULT_LIST = Path("annotations/redact.txt")
# Shorter entities are mostly jieba's misreadings (a surname alone, 王, is in many words): the project
# list is where a one-character name goes.
MIN_ENTITY_CHARS = 2
# A surname alone is a name where the words around it say so: after 姓 ("surnamed"), or before a title
# (王老板, 张师傅, 黄姐), which the entity stage misses. Common surnames that are also prepositions or
# everyday words (向, 于, 万, 方, 白, 高, 石, 金, 江, 龙, 马, 和, 同) are left out: 向老师 is "to the teacher".
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙朱胡郭何林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕"
    "丁任沈姚卢姜崔钟谭陆汪范廖贾夏韦付邹孟熊秦邱尹薛闫段雷侯史陶黎贺顾毛郝龚邵钱严覃武戴莫孔汤"
)
TITLES = "老板|老板娘|师傅|老师|阿姨|叔叔|大叔|大爷|大妈|奶奶|爷爷|姐|哥|嫂|叔|总|经理|厂长|主任|组长|班长|主管|医生|书记"
SURNAME_IN_CONTEXT = f"(?<=姓)[{SURNAMES}]|[{SURNAMES}](?=(?:{TITLES}))"


@dataclass(frozen=True)
class Redaction:
    """One replacement, for the report."""

    recording: str  # file name
    segment_id: int | None  # None for the recording's own fields
    start: float
    end: float
    field: str  # "text", "interviewee", "place", "speaker", "file name"
    found: str
    replacement: str
    source: str  # why it counts as a name: "entity", "list", "speaker", "interviewee", "place"
    context: str  # the words around it, as they were


def load_list(path: Path) -> dict[str, str]:
    """The project's names: {name: kind}. One per line; "place: X" marks a place; # starts a comment."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, name = line.partition(":") if line.lower().startswith(("place:", "name:")) else ("name", "", line)
        found[name.strip()] = "places" if kind.strip().lower() == "place" else "names"
    return found


class Redactor:
    """Replaces the names of the chosen kinds ("names", "places") in exports."""

    def __init__(self, kinds: set[str], listed: dict[str, str] | None = None) -> None:
        unknown = kinds - KINDS.keys()
        if unknown or not kinds:
            raise ValueError(f"cannot redact {', '.join(sorted(unknown)) or 'nothing'}: choose from {', '.join(KINDS)}")
        self.kinds = kinds
        self.listed = {name: kind for name, kind in (listed or {}).items() if kind in kinds and name}

    def terms(self, export: RecordingExport) -> dict[str, tuple[str, str]]:
        """Every name to replace in this recording: {text: (kind, source)}."""
        terms: dict[str, tuple[str, str]] = {}
        if "names" in self.kinds:
            for speaker in export.speakers:
                if speaker.name:
                    terms[speaker.name] = ("names", "speaker")
            if export.recording.interviewee:
                terms[export.recording.interviewee] = ("names", "interviewee")
        if "places" in self.kinds and export.recording.place:
            terms[export.recording.place] = ("places", "place")
        by_label = {label: kind for kind, (label, _) in KINDS.items() if kind in self.kinds}
        for entities in export.entities.values():
            for entity in entities:
                text = entity.text.strip()
                if entity.label in by_label and len(text) >= MIN_ENTITY_CHARS:
                    terms.setdefault(text, (by_label[entity.label], "entity"))
        terms.update({name: (kind, "list") for name, kind in self.listed.items()})
        return terms

    def __call__(self, export: RecordingExport) -> tuple[RecordingExport, list[Redaction]]:
        terms = self.terms(export)
        pattern = _pattern(terms, "names" in self.kinds)
        name = Path(export.recording.path).name
        done: list[Redaction] = []

        def kind(found: str) -> tuple[str, str]:
            """What a match is, and why: a term, else a surname the words around it mark."""
            key = _key(terms, found)
            return terms[key] if key else ("names", "surname")

        def label(found: str) -> str:
            return KINDS[kind(found)[0]][1]

        def sub(text: str, segment: Segment | None, field: str) -> tuple[str, list[tuple[int, int, str]]]:
            """The text redacted, and the replacements as (start, end, replacement) in the old text."""
            if pattern is None or not text:
                return text, []
            spans = []
            for match in pattern.finditer(text):
                source = kind(match.group())[1]
                spans.append((match.start(), match.end(), label(match.group())))
                done.append(Redaction(
                    name, segment.id if segment else None, segment.start if segment else 0.0, segment.end if segment else 0.0,
                    field, match.group(), spans[-1][2], source, _context(text, match.start(), match.end()),
                ))
            return _apply(text, spans), spans

        segments, annotations, entities = [], {}, {}
        for segment in export.segments:
            text, spans = sub(segment.text, segment, "text")
            # The original script goes: names in it would need finding again in the other script.
            segments.append(replace(segment, text=text, original_text=text, words=_words(segment, pattern, label)))
            annotations[segment.id] = [
                replace(a, evidence=tuple((_moved(s, spans), _moved(e, spans, end=True)) for s, e in a.evidence))
                for a in export.annotations.get(segment.id, [])
            ]
            entities[segment.id] = [_entity(e, spans) for e in export.entities.get(segment.id, [])]

        recording = export.recording
        fields = {}
        for field in ("interviewee", "place"):
            if getattr(recording, field):
                fields[field] = sub(getattr(recording, field), None, field)[0]
        path = Path(recording.path)
        fields["path"] = str(path.with_name(sub(path.name, None, "file name")[0]))
        speakers = _speakers(export.speakers, "names" in self.kinds)
        for before, after in zip(export.speakers, speakers, strict=True):
            if before.name and before.name != after.name:
                done.append(Redaction(name, None, 0.0, 0.0, "speaker", before.name, after.name or after.label, "speaker", before.label))
        redacted = RecordingExport(replace(recording, **fields), segments, annotations, speakers, entities, export.codebook)
        return redacted, done


def _key(terms: dict[str, tuple[str, str]], matched: str) -> str | None:
    return matched if matched in terms else next((t for t in terms if t.casefold() == matched.casefold()), None)


def _pattern(terms: dict[str, tuple[str, str]], surnames: bool) -> re.Pattern | None:
    """One alternation, longest first (张伟明 before 张伟); Latin names only as whole words; surnames in
    context last, so that a known name (王老板) is replaced whole."""
    if not terms and not surnames:
        return None
    parts = []
    for term in sorted(terms, key=len, reverse=True):
        escaped = re.escape(term)
        latin = term[0].isascii() and term[0].isalnum(), term[-1].isascii() and term[-1].isalnum()
        parts.append(("(?<!\\w)" if latin[0] else "") + escaped + ("(?!\\w)" if latin[1] else ""))
    return re.compile("|".join(parts + ([SURNAME_IN_CONTEXT] if surnames else [])), re.IGNORECASE)


def _apply(text: str, spans: list[tuple[int, int, str]]) -> str:
    out, at = [], 0
    for start, end, replacement in spans:
        out += [text[at:start], replacement]
        at = end
    return "".join(out) + text[at:]


def _moved(offset: int, spans: list[tuple[int, int, str]], end: bool = False) -> int:
    """Where an offset into the old text lands in the new one (inside a replaced name: at its edge)."""
    shift = 0
    for start, stop, replacement in spans:
        if offset <= start:
            break
        if offset < stop:
            return start + shift + (len(replacement) if end else 0)
        shift += len(replacement) - (stop - start)
    return offset + shift


def _entity(entity: Entity, spans: list[tuple[int, int, str]]) -> Entity:
    start, end = _moved(entity.start, spans), _moved(entity.end, spans, end=True)
    replaced = next((r for s, e, r in spans if s < entity.end and entity.start < e), None)
    return Entity(entity.label, replaced or entity.text, start, end)


def _words(segment: Segment, pattern: re.Pattern | None, label: Callable[[str], str]) -> list[Word]:
    """The word timings with names replaced: a name over several words (张 + 伟) goes into its first
    word and empties the others, so no part of it survives and the times stay."""
    if pattern is None or not segment.words:
        return segment.words
    texts = [w.text for w in segment.words]
    edges = list(accumulate(map(len, texts), initial=0))
    for match in pattern.finditer("".join(texts)):
        covered = [i for i in range(len(texts)) if edges[i] < match.end() and match.start() < edges[i + 1]]
        first = covered[0]
        head = texts[first][: max(0, match.start() - edges[first])]
        tail = segment.words[covered[-1]].text[match.end() - edges[covered[-1]] :]
        for i in covered:
            texts[i] = ""
        texts[first] = head + label(match.group()) + (tail if len(covered) == 1 else "")
        if len(covered) > 1:
            texts[covered[-1]] = tail
    return [replace(w, text=t) for w, t in zip(segment.words, texts, strict=True)]


def _speakers(speakers: list[SpeakerRecord], names: bool) -> list[SpeakerRecord]:
    """Speakers without their names: by role where the role tells them apart, else by label."""
    if not names:
        return speakers
    roles = [s.role for s in speakers]
    return [replace(s, name=s.role.capitalize() if s.role and roles.count(s.role) == 1 else None, person_id=None) for s in speakers]


def _context(text: str, start: int, end: int, around: int = 20) -> str:
    return ("…" if start > around else "") + text[max(0, start - around) : end + around] + ("…" if end + around < len(text) else "")
