"""Redaction: person and place names out of an export, times kept, every replacement reported.

What is a name comes from three places: the entity stage (spaCy NER / jieba), the project's own list
(annotations/redact.txt: what the tagger misses, such as a village's name), and the recordings themselves
(speaker names, and speaker labels that are names, as an imported transcript's "李秀英:" lines make; the
interviewee, the place; the coders). A name found once is replaced everywhere it occurs in every recording
exported together, in either Chinese script, since the entity stage finds some mentions and misses others of
the same name. The result is new RecordingExports, every string a writer can reach redacted (text, words,
speakers, the recording's fields, path and metadata, entities, coders), so every format is redacted alike;
`Redaction`s say what went where, for a person to check before the files leave the project. Coders (who
added, decided or imported a theme) are people too, and a coder's name may be anybody's (an ELAN tier's
participant, mostly the interviewee, was taken as one; a tier without an annotator is named by its name): each
becomes "Coder N", the same in every recording and file of one export so that who agrees with whom still reads.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard
from urllib.parse import unquote

from pipeline.errors import InvalidInputError
from pipeline.records import (
    TAGGER,
    TIER_CODER,
    UNNAMED_CODER,
    AnnotationRecord,
    CoderDecision,
    Entity,
    RecordingExport,
    Segment,
    SpeakerRecord,
    Word,
)
from pipeline.script import simplified_form, to_simplified
from pipeline.utils import CJK, decode_text, is_wide, read_bounded

if TYPE_CHECKING:
    from pipeline.stages.codebook import Codebook

KINDS = {"names": ("PERSON", "[NAME]"), "places": ("PLACE", "[PLACE]")}
DEFAULT_LIST = Path("annotations/redact.txt")
MAX_LIST_BYTES = 10 * 2**20  # a project's names and places: thousands of lines, not megabytes
# Shorter entities are mostly jieba's misreadings (a surname alone, 王, is in many words): the project
# list is where a one-character name goes. Speakers called by one character are relabelled all the same.
MIN_ENTITY_CHARS = 2
# A surname alone is a name where the words around it say so: after 姓 ("surnamed"), or before a title
# (王老板, 张师傅, 黄姐), which the entity stage misses. Common surnames that are also prepositions or
# everyday words (向, 于, 万, 方, 白, 高, 石, 金, 江, 龙, 马, 和, 同) are left out: 向老师 is "to the teacher".
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙朱胡郭何林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕"
    "丁任沈姚卢姜崔钟谭陆汪范廖贾夏韦付邹孟熊秦邱尹薛闫段雷侯史陶黎贺顾毛郝龚邵钱严覃武戴莫孔汤"
)
TITLES = (
    "老板|老板娘|师傅|老师|阿姨|叔叔|大叔|大爷|大妈|奶奶|爷爷|姐|哥|嫂|叔|总|经理|厂长|主任|组长|班长|主管|医生|书记"
)
# A Latin name is a whole word: no letter of another word beside it (Mariana is not Maria). Chinese, digits
# and underscores are no such letters: "我叫Sheila" and "Sheila_Brown_2003.wav" name her. Matched in folded text
# (`fold`: lower case, accents gone), where a Latin letter is a-z or one of the Latin letters without a
# decomposition (ø, ł, æ, đ): a small class, since it is compiled again for each name (a class of every letter
# but CJK took 4 ms a name: a list of 10,000 names compiled for a minute).
_LATIN_LETTER = "[a-z\u00df-\u024f]"
_LATIN_START, _LATIN_END = f"(?<!{_LATIN_LETTER})", f"(?!{_LATIN_LETTER})"
# What separates the people or places a field lists (not spaces: they are inside a Latin name), and the
# brackets around another form of one ("李秀英 (Li Xiuying)", "Sheila Brown (née Smith)").
LIST_SEPARATOR = re.compile(r"[,，、;；/|()（）\[\]【】]")
# Speaker labels that name nobody: ohp's own (S1, S2, ...) and what transcribers write instead of a name.
ANONYMOUS_SPEAKER = re.compile(
    r"S\d+|speaker ?\d*|interviewer|interviewee|other|unknown|Q|A|问|答|采访者|受访者|访谈者|被访者|主持人|记者",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Redaction:
    """One replacement, for the report."""

    recording: str  # file name
    segment_id: int | None  # None for the recording's own fields
    start: float
    end: float
    # "text", "words", "entity", "interviewee", "place", "file name", "metadata: KEY", "speaker", "speaker label",
    # "coder"
    field: str
    found: str
    replacement: str
    # why it counts as a name: "entity", "list", "speaker", "interviewee", "place", "surname", "coder"
    source: str
    context: str  # the words around it, as they were


def load_list(path: Path) -> dict[str, str]:
    """The project's names: {name: kind}. One per line; "place: X" marks a place; # starts a comment.
    InvalidInputError naming the file for one that is not such a list's text."""
    text = decode_text(path, read_bounded(path, MAX_LIST_BYTES, "a list of names"))
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, name = line.partition(":") if line.lower().startswith(("place:", "name:")) else ("name", "", line)
        found[name.strip()] = "places" if kind.strip().lower() == "place" else "names"
    return found


Span = tuple[int, int, str]  # (start, end, replacement) in the text before
# Texts and their languages to the entities found in each (the entity stage's, run at export).
EntityFinder = Callable[[list[str], list[str]], list[list[Entity]]]


class Redactor:
    """Replaces the names of the chosen kinds ("names", "places") in exports."""

    def __init__(self, kinds: set[str], listed: dict[str, str] | None = None, find: EntityFinder | None = None) -> None:
        """`find`: the entity stage, run over the text as it is now (pipeline.stages.tag.find_entities): the
        entities stored with a segment are those of the text the tagger read, and none of a person's
        correction typed since, nor of a recording never tagged. Without it, only the stored ones count."""
        unknown = kinds - KINDS.keys()
        if unknown or not kinds:
            asked = ", ".join(sorted(unknown)) or "nothing"
            raise InvalidInputError(f"cannot redact {asked}: choose from {', '.join(KINDS)}")
        self.kinds = kinds
        self.listed = {name: kind for name, kind in (listed or {}).items() if kind in kinds and name}
        self.find = find

    def terms(self, exports: Iterable[RecordingExport]) -> dict[str, tuple[str, str]]:
        """Every name to replace in these recordings, as found: {text: (kind, source)}. Each is looked for in
        every form it may be written in (`fold`)."""
        terms: dict[str, tuple[str, str]] = {}
        by_label = {label: kind for kind, (label, _) in KINDS.items() if kind in self.kinds}
        for export in exports:
            if "names" in self.kinds:
                for said in _speaker_names(export):
                    terms.update(dict.fromkeys(_each(said), ("names", "speaker")))
                if export.recording.interviewee:
                    terms.update(dict.fromkeys(_each(export.recording.interviewee), ("names", "interviewee")))
                for name in _coders(export):
                    # A tier's coder is named by the tier, whose name may be a person's; "tier" is no name.
                    for term in _each(name.removeprefix(TIER_CODER)):
                        terms.setdefault(term, ("names", "coder"))
            if "places" in self.kinds and export.recording.place:
                terms.update(dict.fromkeys(_each(export.recording.place), ("places", "place")))
            found = list(export.entities.values())
            if self.find:
                found += self.find([s.text for s in export.segments], [s.language for s in export.segments])
            for entity in (entity for entities in found for entity in entities):
                text = entity.text.strip()
                if entity.label in by_label and len(text) >= MIN_ENTITY_CHARS:
                    terms.setdefault(text, (by_label[entity.label], "entity"))
        terms.update({name: (kind, "list") for name, kind in self.listed.items()})
        terms.pop("", None)
        # People are called by part of their name too: Sheila, Brown (in sheila-brown.wav), 秀英.
        for term, why in list(terms.items()):
            if why[0] == "names":
                for part in _name_parts(term, given=why[1] != "entity"):
                    terms.setdefault(part, why)
        return terms

    def redact(self, exports: list[RecordingExport]) -> tuple[list[RecordingExport], list[Redaction]]:
        """The recordings with the names any of them gives replaced in all of them, and the replacements."""
        matcher = Matcher(self.terms(exports), surnames="names" in self.kinds)
        coders = dict.fromkeys(name for export in exports for name in _coders(export))
        pseudonyms = {name: f"Coder {n}" for n, name in enumerate(coders, 1)} if "names" in self.kinds else {}
        done: list[Redaction] = []
        # The codebook the recordings were exported with: a theme may be about a place (石门村搬迁).
        codebooks = {id(e.codebook): _codebook(e.codebook, matcher, done) for e in exports if e.codebook}
        redacted = [self._recording(export, matcher, pseudonyms, done) for export in exports]
        return [replace(e, codebook=e.codebook and codebooks[id(e.codebook)]) for e in redacted], done

    def __call__(self, export: RecordingExport) -> tuple[RecordingExport, list[Redaction]]:
        """One recording on its own."""
        (redacted,), done = self.redact([export])
        return redacted, done

    def _recording(
        self,
        export: RecordingExport,
        matcher: Matcher,
        pseudonyms: dict[str, str],
        done: list[Redaction],
    ) -> RecordingExport:
        name = Path(export.recording.path).name

        def sub(text: str, segment: Segment | None, field: str) -> tuple[str, list[Span]]:
            """The text redacted, and the replacements as (start, end, replacement) in the old text."""
            where = (segment.id, segment.start, segment.end) if segment else (None, 0.0, 0.0)
            return _substituted(text, matcher, done, name, where, field)

        def own(value: str, field: str) -> str:
            """One of the recording's own strings redacted. A link, or a file saved from one, holds names
            percent-encoded (李秀英 as %E6%9D%8E...): one that does is redacted decoded."""
            decoded = unquote(value)
            encoded = decoded != value and matcher.finds(decoded)
            return sub(decoded if encoded else value, None, field)[0]

        def described(value: str | None, field: str) -> str | None:
            """A description of the recording (which it may not have) redacted."""
            return None if value is None else own(value, field)

        def scrub(value: object, field: str) -> object:
            """Every string in a metadata value (which may nest) redacted."""
            if isinstance(value, str):
                return own(value, field)
            if isinstance(value, dict):
                return {key: scrub(item, f"{field}: {key}") for key, item in value.items()}
            if isinstance(value, list):
                return [scrub(item, field) for item in value]
            return value

        speakers, relabelled = _speakers(export, "names" in self.kinds, matcher.redacted)
        for before, after in zip(export.speakers, speakers, strict=True):
            if before.label != after.label:
                relabel = (before.label, after.label, "speaker", before.label)
                done.append(Redaction(name, None, 0.0, 0.0, "speaker label", *relabel))
            if before.name and before.name != after.name:
                rename = (before.name, after.name or after.label, "speaker", before.label)
                done.append(Redaction(name, None, 0.0, 0.0, "speaker", *rename))
        # Coders are pseudonyms when names go; else the places in their names do (an ELAN tier named 石门村小组).
        coders = {coder: pseudonyms.get(coder) or own(coder, "coder") for coder in _coders(export)}
        for coder in _coders(export):
            if coder in pseudonyms:
                done.append(Redaction(name, None, 0.0, 0.0, "coder", coder, pseudonyms[coder], "coder", ""))
        segments: list[Segment] = []
        annotations: dict[int, list[AnnotationRecord]] = {}
        decisions: dict[int, list[CoderDecision]] = {}
        entities: dict[int, list[Entity]] = {}
        for segment in export.segments:
            text, spans = sub(segment.text, segment, "text")
            words, in_words = _words(segment.words, matcher)
            said = {fold(segment.text[start:end]) for start, end, _ in spans}
            for found, context, key in in_words:
                if key not in said:  # the words under a corrected text: reported once, here
                    where = (segment.id, segment.start, segment.end)
                    why = matcher.why(key)[1]
                    done.append(Redaction(name, *where, "words", found, matcher.label(key), why, context))
            # The original script goes: names in it would need finding again in the other script.
            speaker = relabelled.get(segment.speaker, segment.speaker) if segment.speaker is not None else None
            segments.append(replace(segment, text=text, original_text=text, words=words, speaker=speaker))
            # An export's segments are stored ones: its themes and names are by their ids.
            annotations[segment.stored_id] = [
                replace(
                    a,
                    evidence=tuple((_moved(s, spans), _moved(e, spans, end=True)) for s, e in a.evidence),
                    source=coders.get(a.source, a.source),
                    updated_by=a.updated_by and coders.get(a.updated_by, a.updated_by),
                )
                for a in export.annotations_of(segment)
            ]
            if segment.stored_id in export.decisions:
                coded = export.decisions[segment.stored_id]
                decisions[segment.stored_id] = [replace(d, coder=coders.get(d.coder, d.coder)) for d in coded]
            entities[segment.stored_id] = []
            for entity in export.entities_of(segment):
                moved = _entity(entity, spans)
                # On no name replaced (found before a correction moved the text under it): its own text.
                if moved.text == entity.text:
                    moved = replace(moved, text=sub(entity.text, segment, "entity")[0])
                entities[segment.stored_id].append(moved)

        recording = export.recording
        return replace(
            export,
            recording=replace(
                recording,
                interviewee=described(recording.interviewee, "interviewee"),
                place=described(recording.place, "place"),
                # The whole path: its folders may be named after the interviewee too, and ELAN, REFI-QDA and
                # OHMS write it.
                path=own(recording.path, "file name"),
                metadata={key: scrub(value, f"metadata: {key}") for key, value in recording.metadata.items()},
                warnings=tuple(own(warning, "warnings") for warning in recording.warnings),
            ),
            segments=segments,
            annotations=annotations,
            decisions=decisions,
            speakers=speakers,
            entities=entities,
        )


def _each(field: str) -> list[str]:
    """A field as written, and each name it lists: "李秀英、王建国" (a couple interviewed together), "东莞; 深圳",
    or gives in brackets ("李秀英 (Li Xiuying)"). A listed name of one character is left to the project list, as
    an entity of one is."""
    listed = [part.strip() for part in LIST_SEPARATOR.split(field)]
    return list(dict.fromkeys([field.strip()] + [part for part in listed if len(part) >= MIN_ENTITY_CHARS]))


def _coders(export: RecordingExport) -> list[str]:
    """The people the recording's themes name, in transcript order: who added, decided or imported one (not
    the tagger, nor the coder a file did not name)."""
    named: list[str | None] = []
    for segment in export.segments:
        named += [who for a in export.annotations_of(segment) for who in (a.source, a.updated_by)]
        named += [d.coder for d in export.decisions.get(segment.id, [])] if segment.id is not None else []
    return list(dict.fromkeys(who for who in named if who and who not in (TAGGER, UNNAMED_CODER)))


def _names_someone(said: str | None) -> TypeGuard[str]:
    return bool(said and said.strip() and not ANONYMOUS_SPEAKER.fullmatch(said.strip()))


def _speaker_names(export: RecordingExport) -> list[str]:
    """The speakers' names, and labels that are names, long enough to look for in the text."""
    said = [s.name for s in export.speakers] + [s.label for s in export.speakers] + [s.speaker for s in export.segments]
    return list(dict.fromkeys(s.strip() for s in said if _names_someone(s) and len(s.strip()) >= MIN_ENTITY_CHARS))


def _name_parts(name: str, given: bool) -> list[str]:
    """Parts of a person's name that name them on their own: each capitalised word of a Latin name (not
    "van" or "de"); with `given`, the given name of a Chinese name of three characters with a common
    surname (not from the entity stage, whose 王老板 is a surname and a title, 王国家 a misreading)."""
    if CJK.search(name):
        surnamed = given and len(name) == 3 and to_simplified(name[0]) in SURNAMES
        return [name[1:]] if surnamed and to_simplified(name[1:]) not in TITLES.split("|") else []
    parts = [p for p in re.split(r"[^\w'’]+", name) if p]  # "Sheila Brown (née Smith)": Sheila, Brown, Smith
    return [p for p in parts if len(parts) > 1 and len(p) >= MIN_ENTITY_CHARS and p[0].isupper()]


def _speakers(
    export: RecordingExport, names: bool, redacted: Callable[[str], str]
) -> tuple[list[SpeakerRecord], dict[str, str]]:
    """With `names`, speakers without their names: by role where the role tells them apart, else by label; a
    label that is a name becomes the next free S-number. Without, their names and labels `redacted` (of
    places: 石门村村长), a label that would then be another's becoming the next free S-number. Returns the
    speakers and the new label of each relabelled one."""
    labels = list(dict.fromkeys([s.label for s in export.speakers] + [s.speaker for s in export.segments if s.speaker]))
    free = (f"S{n}" for n in range(1, len(labels) * 2 + 2) if f"S{n}" not in labels)
    relabelled: dict[str, str] = {}
    if names:
        relabelled = {label: next(free) for label in labels if _names_someone(label)}
    else:
        taken = set(labels)
        for label in labels:
            if (new := redacted(label)) != label:
                relabelled[label] = new if new not in taken else next(free)
                taken.add(relabelled[label])
    roles = [s.role for s in export.speakers]
    speakers = []
    for speaker in export.speakers:
        if names:
            name = speaker.role.capitalize() if speaker.role and roles.count(speaker.role) == 1 else None
        else:
            name = speaker.name and redacted(speaker.name)
        label = relabelled.get(speaker.label, speaker.label)
        speakers.append(replace(speaker, label=label, name=name, person_id=None if names else speaker.person_id))
    return speakers, relabelled


def _surname_in_context() -> str:
    """A surname after 姓 or before a title (张老板; in folded text, so 張老闆 too)."""
    return f"(?<=姓)[{SURNAMES}]|[{SURNAMES}](?=(?:{TITLES}))"


def _pattern(terms: Iterable[str], surnames: bool) -> re.Pattern | None:
    """One alternation of folded terms, longest first (张伟明 before 张伟); Latin names only as whole words;
    surnames in context last, so that a known name (王老板) is replaced whole."""
    parts = []
    for term in sorted(terms, key=len, reverse=True):
        escaped = re.escape(term)
        latin = term[0].isascii() and term[0].isalnum(), term[-1].isascii() and term[-1].isalnum()
        parts.append((_LATIN_START if latin[0] else "") + escaped + (_LATIN_END if latin[1] else ""))
    parts += [_surname_in_context()] if surnames else []
    return re.compile("|".join(parts)) if parts else None


@cache
def _folded_char(char: str) -> str:
    """A character as names are compared (`fold`)."""
    decomposed = unicodedata.normalize("NFKD", char)
    if CJK.match(decomposed):  # kana keep their marks (が is not か); Chinese in its simplified form
        return "".join(simplified_form(c) for c in unicodedata.normalize("NFKC", char))
    return "".join(c for c in decomposed if unicodedata.category(c) not in ("Mn", "Cf")).casefold()


def fold(text: str) -> str:
    """A text as names are compared: a name is the same name in any case, with or without accents (Pérez,
    Perez; composed or not, as a Mac writes file names), in full-width letters (Ｓｈｅｉｌａ, as a Chinese input
    method types them), with an invisible character inside (a soft hyphen, a zero-width space, as pasted text
    carries), and in any Chinese script: simplified, OpenCC's traditional, Taiwan's (啟) or Hong Kong's (衞)."""
    return "".join(map(_folded_char, text))


class _Folded:
    """A text folded (`fold`), and where each of its characters came from in the text."""

    def __init__(self, text: str) -> None:
        self._origin: list[int] | None = None
        if text.isascii():  # most of an English transcript: folded by its case alone, character for character
            self.text = text.lower()
            return
        pieces = [_folded_char(c) for c in text]
        self.text = "".join(pieces)
        if any(len(p) != 1 for p in pieces):  # a character dropped or folded into several: positions move
            self._origin = [i for i, piece in enumerate(pieces) for _ in piece]

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The span of the text that the folded text's [start, end) came from."""
        if self._origin is None:
            return start, end
        return self._origin[start], self._origin[end - 1] + 1


class Matcher:
    """Finds the names of an export in its texts, in every form they may be written in (`fold`)."""

    def __init__(self, terms: dict[str, tuple[str, str]], surnames: bool) -> None:
        """`terms`: {name: (kind, why)} (Redactor.terms); `surnames`: also a common Chinese surname where the
        words around it make it a name."""
        self._why: dict[str, tuple[str, str]] = {}
        for term, why in terms.items():
            if key := fold(term):
                self._why.setdefault(key, why)
        self._pattern = _pattern(self._why, surnames)

    def finditer(self, text: str) -> Iterator[tuple[int, int, str]]:
        """Each name in the text: its (start, end) in the text, and what it is as folded (the key of `why`)."""
        if self._pattern is None or not text:
            return
        folded = _Folded(text)
        for match in self._pattern.finditer(folded.text):
            yield *folded.original(match.start(), match.end()), match.group()

    def finds(self, text: str) -> bool:
        return next(self.finditer(text), None) is not None

    def why(self, key: str) -> tuple[str, str]:
        """What a name found is (its kind), and why: a term, else a surname the words around it mark."""
        return self._why.get(key, ("names", "surname"))

    def label(self, key: str) -> str:
        return KINDS[self.why(key)[0]][1]

    def redacted(self, text: str) -> str:
        """The text with its names replaced (not reported: for what the caller reports itself)."""
        return _apply(text, [(start, end, self.label(key)) for start, end, key in self.finditer(text)])


def _substituted(
    text: str,
    matcher: Matcher,
    done: list[Redaction],
    recording: str,
    where: tuple[int | None, float, float],
    field: str,
) -> tuple[str, list[Span]]:
    """The text with its names replaced, and the replacements as (start, end, replacement) in the old text, each
    reported in `done` as one in this `field` of the `recording` (its file name), `where` (segment, start, end)."""
    spans = []
    for start, end, key in matcher.finditer(text):
        spans.append((start, end, matcher.label(key)))
        found, context = text[start:end], _context(text, start, end)
        done.append(Redaction(recording, *where, field, found, spans[-1][2], matcher.why(key)[1], context))
    return _apply(text, spans), spans


def _codebook(codebook: Codebook, matcher: Matcher, done: list[Redaction]) -> Codebook:
    """The codebook with the names in its themes' labels and descriptions replaced, each replacement reported."""

    def redacted(text: str, field: str) -> str:
        return _substituted(text, matcher, done, "(codebook)", (None, 0.0, 0.0), field)[0]

    themes = tuple(
        replace(
            theme,
            label={language: redacted(label, f"theme label: {theme.id}") for language, label in theme.label.items()},
            description=redacted(theme.description, f"theme description: {theme.id}"),
        )
        for theme in codebook.themes
    )
    return replace(codebook, themes=themes)


def _apply(text: str, spans: list[Span]) -> str:
    out, at = [], 0
    for start, end, replacement in spans:
        out += [text[at:start], replacement]
        at = end
    return "".join(out) + text[at:]


def _moved(offset: int, spans: list[Span], end: bool = False) -> int:
    """Where an offset into the old text lands in the new one (inside a replaced name: at its edge)."""
    shift = 0
    for start, stop, replacement in spans:
        if offset <= start:
            break
        if offset < stop:
            return start + shift + (len(replacement) if end else 0)
        shift += len(replacement) - (stop - start)
    return offset + shift


def _entity(entity: Entity, spans: list[Span]) -> Entity:
    start, end = _moved(entity.start, spans), _moved(entity.end, spans, end=True)
    replaced = next((r for s, e, r in spans if s < entity.end and entity.start < e), None)
    return Entity(entity.label, replaced or entity.text, start, end)


def _runs_on(before: str, after: str) -> bool:
    """Whether two words written together would make one Latin word ("Sheila" "went": "Sheilawent")."""
    return before.isalnum() and after.isalnum() and not is_wide(before) and not is_wide(after)


def _joined(words: list[Word], spaced: bool) -> tuple[str, list[int]]:
    """The words as one text, and where each starts in it; with `spaced`, a space between two that would
    run on as one Latin word."""
    joined, starts = "", []
    for word in words:
        if spaced and joined and word.text and _runs_on(joined[-1], word.text[0]):
            joined += " "
        starts.append(len(joined))
        joined += word.text
    return joined, starts


def _merged(spans: list[Span]) -> list[Span]:
    """Spans in a word, those that overlap made one (with the replacement of either that has one)."""
    merged: list[Span] = []
    for start, end, replacement in sorted(spans):
        if merged and start < merged[-1][1]:
            last = merged.pop()
            start, end, replacement = last[0], max(end, last[1]), last[2] or replacement
        merged.append((start, end, replacement))
    return merged


def _words(words: list[Word], matcher: Matcher) -> tuple[list[Word], list[tuple[str, str, str]]]:
    """The word timings with names replaced, and the names found with the words around them and their keys.
    The words are searched as one text (a name spans words: 张 + 伟, Li + Hua), twice: with a space between
    words stored without one where they would run on ("Sheila" "went"), and without (Whisper's words in a
    Chinese recording are its tokens: "She" "ila"). A name goes into its first word and empties the others,
    so no part of it survives and the times stay."""
    spans: list[list[Span]] = [[] for _ in words]
    found: dict[tuple[int, int], tuple[str, str, str]] = {}  # by the words a name covers: each reported once
    joins = [_joined(words, spaced=True)]
    if len(joins[0][0]) != sum(len(w.text) for w in words):  # spaces put in: also searched without them
        joins.append(_joined(words, spaced=False))
    for joined, starts in joins:
        for start, end, key in matcher.finditer(joined):
            covered = [i for i, at in enumerate(starts) if at < end and start < at + len(words[i].text)]
            found.setdefault((covered[0], covered[-1]), (joined[start:end], _context(joined, start, end), key))
            for i in covered:
                local = max(0, start - starts[i]), min(len(words[i].text), end - starts[i])
                spans[i].append((*local, matcher.label(key) if i == covered[0] else ""))
    redacted = [replace(w, text=_apply(w.text, _merged(s))) if s else w for w, s in zip(words, spans, strict=True)]
    return redacted, list(found.values())


def _context(text: str, start: int, end: int, around: int = 20) -> str:
    return (
        ("…" if start > around else "")
        + text[max(0, start - around) : end + around]
        + ("…" if end + around < len(text) else "")
    )
