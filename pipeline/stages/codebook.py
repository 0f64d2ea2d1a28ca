"""The codebook: the themes researchers code interviews by, and the patterns the tagger finds them with.

It lives in a YAML file (the default, codebook.yaml beside this module, has a header that describes the
format; a project overrides it with its own annotations/codebook.yaml). Loading checks
it and reports every problem with its line number, so `ohp codebook validate` can point at the line to
fix; the tagger is built from the loaded codebook, never from code.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from pipeline.errors import InvalidInputError
from pipeline.script import to_simplified
from pipeline.utils import ContentCache, UnreadableFileError, decode_text, read_bounded

DEFAULT_CODEBOOK = Path(__file__).with_name("codebook.yaml")  # package data: an installed ohp has it too
# The tagger's learned model that ships with ohp, learned with the default codebook (pipeline.stages.learned).
DEFAULT_MODEL = Path(__file__).with_name("themes_model.json")
LANGUAGES = ("zh", "en")  # the pattern languages: the tagger has a pipeline for each
LABEL_ORDER = ("en", "zh")  # a theme's labels side by side: "Wages / 工资"
DEFAULT_WEIGHT = 0.6  # a plain term: enough on its own (the tagger suggests from 0.5)
THEME_KEYS = {"id", "label", "description", "parent", "patterns", "exclude"}
CODEBOOK_KEYS = {"themes", "no_theme"}
ID = re.compile(r"[a-z][a-z0-9_]*")
NESTED_TOO_DEEP = "lists and mappings nest too deep"
MAX_FILE_BYTES = 10 * 2**20  # the shipped codebook is 40 kB
# A token pattern's values, aliases expanded: a real one has a few dozen; YAML aliases of aliases make 9**9
# of 600 bytes (billion laughs), which the codebook's version would serialise for ever.
MAX_TOKEN_VALUES = 10_000
# Token attributes the tagger's pipelines leave unset, so a pattern using them could never match:
# the Chinese pipeline only segments words; the English one does not parse (for speed).
UNSET_ATTRIBUTES = {
    "zh": {
        "LEMMA",
        "POS",
        "TAG",
        "MORPH",
        "DEP",
        "ENT_TYPE",
        "ENT_IOB",
        "ENT_ID",
        "ENT_KB_ID",
        "SENT_START",
        "IS_SENT_START",
    },
    "en": {"DEP", "SENT_START", "IS_SENT_START"},
}


@dataclass(frozen=True)
class Pattern:
    """One kind of evidence for a theme: a term (word or phrase) or a spaCy Matcher token pattern."""

    language: str
    term: str | None
    tokens: tuple[dict, ...] | None
    weight: float  # how sure one match makes the tagger, 0..1
    line: int  # in the codebook file, 1-based


@dataclass(frozen=True)
class Theme:
    id: str
    label: dict[str, str]  # {"en": ..., "zh": ...}
    description: str
    parent: str | None
    patterns: tuple[Pattern, ...]
    exclude: tuple[Pattern, ...]  # matches overlapping these are not evidence ("pay attention")
    line: int


@dataclass(frozen=True)
class Codebook:
    themes: tuple[Theme, ...]
    version: str  # hash of the themes and patterns: stored with each suggestion made from them
    # Talk that carries no theme (small talk, the recording itself): where one matches, the learned model
    # suggests nothing (the patterns still do).
    no_theme: tuple[Pattern, ...] = ()

    def theme(self, theme_id: str) -> Theme:
        for theme in self.themes:
            if theme.id == theme_id:
                return theme
        raise KeyError(theme_id)

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.themes]

    def labels(self, theme_id: str) -> list[str]:
        """A theme's labels, one for each language it has (English first); a theme the codebook no longer
        has, by its id."""
        found = next((t for t in self.themes if t.id == theme_id), None)
        if found is None:
            return [theme_id]
        return list(dict.fromkeys(found.label[lang] for lang in (*LABEL_ORDER, *found.label) if found.label.get(lang)))

    def label(self, theme_id: str, language: str | None = None) -> str:
        """A theme as people read it: its label in `language` (else English, else any), or with None its
        labels in every language it has side by side ("Wages / 工资")."""
        labels = self.labels(theme_id)
        if language is None:
            return " / ".join(labels)
        found = next((t for t in self.themes if t.id == theme_id), None)
        return (found.label.get(language) if found else None) or labels[0]

    def find(self, name: str) -> str | None:
        """The theme a person means by `name` in another tool: its id or a label, in any case and
        spacing (an id wins over a label); None if none."""
        key = " ".join(name.split()).casefold()
        ids = {t.id.casefold(): t.id for t in self.themes}
        labels = {
            " ".join(label.split()).casefold(): t.id
            for t in self.themes
            for label in (*t.label.values(), self.label(t.id))  # "Wages / 工资" as ohp's exports name it
        }
        return ids.get(key) or labels.get(key)

    def theme_id(self, name: str) -> str:
        """The theme a person names (see find); InvalidInputError listing the known ones if none."""
        found = self.find(name)
        if found is None:
            known = ", ".join(f"{t.id} ({self.label(t.id)})" for t in self.themes)
            raise InvalidInputError(f"no theme {name!r} in the codebook: it has {known}")
        return found

    def descendants(self, theme_id: str) -> list[str]:
        """The themes nested under a theme, at any depth (a search for a theme may include them)."""
        children = [t.id for t in self.themes if t.parent == theme_id]
        return children + [d for c in children for d in self.descendants(c)]


@dataclass(frozen=True)
class CodebookProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class CodebookError(InvalidInputError):
    def __init__(self, path: Path, problems: list[CodebookProblem]):
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(map(str, problems)))


def load_codebook(path: Path | str = DEFAULT_CODEBOOK, *, check_tokens: bool = True) -> Codebook:
    """The codebook in a file; CodebookError lists every problem when it has any. Without `check_tokens`,
    spaCy's check of the token patterns is left to the tagger, for commands that only read the labels
    (spaCy takes seconds to import)."""
    codebook, problems = parse_codebook(_read(Path(path)), check_tokens=check_tokens)
    if problems or codebook is None:
        raise CodebookError(Path(path), problems)
    return codebook


def validate_codebook(path: Path | str = DEFAULT_CODEBOOK) -> list[CodebookProblem]:
    return parse_codebook(_read(Path(path)))[1]


def _read(path: Path) -> str:
    """The codebook's text; CodebookError for a file that is no text (at the line of a bad byte). A missing
    file raises FileNotFoundError: the caller says there is no codebook."""
    if not path.exists():
        raise FileNotFoundError(path)
    try:
        return decode_text(path, read_bounded(path, MAX_FILE_BYTES, "a codebook"))
    except UnreadableFileError as e:
        raise CodebookError(path, [CodebookProblem(e.line or 1, e.cause)]) from None


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Parser:
    """Walks the YAML node tree (which keeps line numbers), building themes and collecting problems."""

    def __init__(self, text: str, check_tokens: bool = True):
        # libyaml's parser where PyYAML was built with it (its wheels are): 9 times faster than the pure-Python one
        # on the shipped codebook, the same nodes and lines, and it refuses nesting deeper than 1,000 levels.
        self.loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
        self.check_tokens = check_tokens
        self.problems: list[CodebookProblem] = []
        self.without_patterns: set[str] = set()  # themes that declare none (not: whose patterns were all bad)

    def problem(self, node: yaml.Node, message: str) -> None:
        self.problems.append(CodebookProblem(_line(node), message))

    def value(self, node: yaml.Node):
        """The node as Python; None, and a problem, for a tag the safe loader has no type for (!!python/...)."""
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as error:
            self.problem(node, f"not allowed in a codebook: {error.problem}")
        except RecursionError:
            self.problem(node, NESTED_TOO_DEEP)
        return None

    def mapping(self, node: yaml.Node, what: str, allowed: set[str]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """A mapping's entries by key, with their nodes; unknown and repeated keys are problems."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{what} must be a mapping")
            return {}
        entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):  # a list or a mapping as a key
                self.problem(key, f"{what}: a key must be text")
                continue
            name = self.value(key)
            if name in entries:
                self.problem(key, f"{what}: {name!r} given twice")
            elif name not in allowed:
                self.problem(key, f"{what}: unknown key {name!r} (expected one of {', '.join(sorted(allowed))})")
            else:
                entries[name] = (key, value)
        return entries

    def text(self, node: yaml.Node, what: str) -> str | None:
        value = self.value(node)
        if not isinstance(value, str) or not value.strip():
            self.problem(node, f"{what} must be a non-empty string")
            return None
        return value.strip()

    def codebook(self) -> tuple[list[Theme], list[Pattern]]:
        """The themes, and the no_theme patterns."""
        try:
            root = self.loader.get_single_node()
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            # libyaml stops at 1,000 levels; the pure-Python parser at Python's recursion limit (below).
            problem = NESTED_TOO_DEEP if error.problem == "exceeded maximum nesting depth" else error.problem
            self.problems.append(CodebookProblem(mark.line + 1 if mark else 1, f"not valid YAML: {problem}"))
            return [], []
        except RecursionError:  # the composer recurses once per level
            self.problems.append(CodebookProblem(1, f"not valid YAML: {NESTED_TOO_DEEP}"))
            return [], []
        if root is None:
            self.problems.append(CodebookProblem(1, "the codebook is empty"))
            return [], []
        entries = self.mapping(root, "the codebook", CODEBOOK_KEYS)
        if "themes" not in entries:
            if isinstance(root, yaml.MappingNode):
                self.problem(root, "the codebook has no 'themes' list")
            return [], []
        key, themes = entries["themes"]
        if not isinstance(themes, yaml.SequenceNode) or not themes.value:
            self.problem(key, "'themes' must be a non-empty list")
            return [], []
        no_theme = self.patterns(entries.get("no_theme"), "no_theme", 1.0)
        return [t for t in map(self.theme, themes.value) if t], no_theme

    def theme(self, node: yaml.Node) -> Theme | None:
        entries = self.mapping(node, "a theme", THEME_KEYS)
        if not entries:
            return None
        theme_id = None
        if "id" not in entries:
            self.problem(node, "a theme without an 'id'")
        else:
            theme_id = self.text(entries["id"][1], "'id'")
            if theme_id and not ID.fullmatch(theme_id):
                self.problem(entries["id"][1], f"id {theme_id!r}: use lower case letters, digits and _")
                theme_id = None
        where = f"theme {theme_id or '?'}"
        label: dict[str, str] = {}
        if "label" not in entries:
            self.problem(node, f"{where} has no 'label'")
        else:
            labels = self.mapping(entries["label"][1], f"{where}: 'label'", set(LANGUAGES))
            for language in LANGUAGES:
                if language in labels:
                    label[language] = self.text(labels[language][1], f"{where}: label {language}") or ""
                elif isinstance(entries["label"][1], yaml.MappingNode):
                    self.problem(entries["label"][1], f"{where} has no {language} label")
        description = ""
        if "description" in entries:
            description = self.text(entries["description"][1], f"{where}: 'description'") or ""
            if "\n" in description:
                self.problem(entries["description"][1], f"{where}: the description must be one line")
        parent = self.text(entries["parent"][1], f"{where}: 'parent'") if "parent" in entries else None
        patterns = self.patterns(entries.get("patterns"), where, DEFAULT_WEIGHT)
        exclude = self.patterns(entries.get("exclude"), f"{where}: exclude", 1.0)
        if theme_id is None or not label:
            return None
        if "patterns" not in entries:
            self.without_patterns.add(theme_id)
        return Theme(theme_id, label, description, parent, tuple(patterns), tuple(exclude), _line(node))

    def patterns(self, entry: tuple[yaml.Node, yaml.Node] | None, where: str, default_weight: float) -> list[Pattern]:
        if entry is None:
            return []
        found: list[Pattern] = []
        for language, (key, items) in self.mapping(entry[1], f"{where}: patterns", set(LANGUAGES)).items():
            if not isinstance(items, yaml.SequenceNode) or not items.value:
                self.problem(key, f"{where}: {language} patterns must be a non-empty list")
                continue
            for item in items.value:
                found.extend(self.pattern(item, language, where, default_weight))
        return found

    def term(self, node: yaml.Node, language: str, where: str) -> str | None:
        term = self.text(node, f"{where}: a {language} term")
        if term and language == "zh" and to_simplified(term) != term:
            # the tagger matches simplified text, so a traditional term could never match
            self.problem(
                node, f"{where}: write Chinese terms in simplified characters: {term} -> {to_simplified(term)}"
            )
            return None
        return term

    def pattern(self, node: yaml.Node, language: str, where: str, weight: float) -> list[Pattern]:
        if isinstance(node, yaml.ScalarNode):
            term = self.term(node, language, where)
            return [Pattern(language, term, None, weight, _line(node))] if term else []
        entries = self.mapping(node, f"{where}: a {language} pattern", {"terms", "tokens", "weight"})
        if not entries:
            return []
        if "weight" in entries:
            weight = self.value(entries["weight"][1])
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1:
                self.problem(entries["weight"][1], f"{where}: weight must be a number in (0, 1]")
                return []
        if ("terms" in entries) == ("tokens" in entries):
            self.problem(node, f"{where}: a pattern needs exactly one of 'terms' or 'tokens'")
            return []
        if "tokens" in entries:
            tokens = self.tokens(entries["tokens"][1], language, where)
            return [Pattern(language, None, tokens, float(weight), _line(node))] if tokens else []
        terms = entries["terms"][1]
        if not isinstance(terms, yaml.SequenceNode) or not terms.value:
            self.problem(terms, f"{where}: 'terms' must be a non-empty list")
            return []
        return [
            Pattern(language, term, None, float(weight), _line(item))
            for item in terms.value
            if (term := self.term(item, language, where))
        ]

    def tokens(self, node: yaml.Node, language: str, where: str) -> tuple[dict, ...] | None:
        """A token pattern, checked the way spaCy's Matcher checks it, plus attributes the pipeline lacks."""
        if _expanded_size(node, MAX_TOKEN_VALUES) > MAX_TOKEN_VALUES:
            self.problem(node, f"{where}: a {language} token pattern of more than {MAX_TOKEN_VALUES:,} values")
            return None
        tokens = self.value(node)
        # Checked here too, as the labels-only load skips spaCy's check and reads each token's keys.
        if not isinstance(tokens, list) or not all(isinstance(token, dict) for token in tokens):
            self.problem(node, f"{where}: a token pattern must be a list of mappings, one a token")
            return None
        try:
            if self.check_tokens:
                from spacy.matcher import Matcher
                from spacy.vocab import Vocab

                Matcher(Vocab(), validate=True).add("check", [tokens])
        except Exception as error:  # spaCy raises MatchPatternError, ValueError or re.error by case
            # spaCy's text names its own check ("for matcher rule 'check' ... Pattern 0:"): keep the rest
            message = re.sub(
                r"^Invalid token patterns for matcher rule 'check' Pattern 0: ", "", " ".join(str(error).split())
            )
            if _text_booleans(tokens):
                message += " (YAML reads a bare on, off, yes or no as true or false: quote the word)"
            self.problem(node, f"{where}: bad {language} token pattern: {message}")
            return None
        unset = sorted({key for token in tokens for key in token} & UNSET_ATTRIBUTES[language])
        if unset:
            self.problem(
                node, f"{where}: the {language} pipeline does not set {', '.join(unset)}; this pattern cannot match"
            )
            return None
        return tuple(tokens)


def _expanded_size(node: yaml.Node, limit: int) -> int:
    """How many nodes a node holds with its aliases expanded, counted no further than just past `limit`."""
    count, todo = 0, [node]
    while todo and count <= limit:
        item = todo.pop()
        count += 1
        if isinstance(item, yaml.SequenceNode):
            todo += item.value
        elif isinstance(item, yaml.MappingNode):
            todo += [part for pair in item.value for part in pair]
    return count


def _text_booleans(tokens) -> bool:
    """Whether a token pattern has true/false where spaCy wants text (in IN lists or as ORTH, LOWER, ... values)."""
    if not isinstance(tokens, list):
        return False
    values = [v for token in tokens if isinstance(token, dict) for v in token.values()]
    values += [x for v in values if isinstance(v, dict) for x in v.get("IN", []) + v.get("NOT_IN", [])]
    return any(isinstance(v, bool) for v in values)


def _check_parents(themes: list[Theme], problems: list[CodebookProblem]) -> None:
    parents = {t.id: t.parent for t in themes}
    for theme in themes:
        if theme.parent is not None and theme.parent not in parents:
            problems.append(CodebookProblem(theme.line, f"theme {theme.id}: parent {theme.parent!r} is not a theme"))
            continue
        seen, current = [theme.id], theme.parent
        while current is not None and current in parents:
            if current == theme.id:
                problems.append(
                    CodebookProblem(
                        theme.line, f"theme {theme.id}: parents form a cycle: {' -> '.join([*seen, current])}"
                    )
                )
                break
            if current in seen:
                break  # a cycle further up, reported at its own themes
            seen.append(current)
            current = parents[current]


def _version(themes: list[Theme], no_theme: list[Pattern]) -> str:
    """Hash of what decides the tagger's output (not comments or layout, and not line numbers)."""
    content: list = [{k: v for k, v in asdict(t).items() if k != "line"} for t in themes]
    for theme in content:
        for pattern in theme["patterns"] + theme["exclude"]:
            del pattern["line"]
    if no_theme:  # a codebook without the section keeps the version it had before the section existed
        content.append({"no_theme": [{k: v for k, v in asdict(p).items() if k != "line"} for p in no_theme]})
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]


_PARSED: ContentCache[tuple[Codebook | None, tuple[CodebookProblem, ...]]] = ContentCache()


def parse_codebook(text: str, check_tokens: bool = True) -> tuple[Codebook | None, list[CodebookProblem]]:
    """The codebook in a YAML text and its problems; no codebook when there is any problem. Parsed once per
    text in a process (ContentCache)."""
    content = text.encode("utf-8", "surrogatepass")
    codebook, problems = _PARSED.get(content, lambda: _parse(text, check_tokens), check_tokens)
    return codebook, list(problems)


def _parse(text: str, check_tokens: bool) -> tuple[Codebook | None, tuple[CodebookProblem, ...]]:
    # The characters YAML does not allow, found before parsing, as PyYAML's own reader finds them (libyaml's
    # reports a position in bytes, not characters).
    control = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if control:
        line = text.count("\n", 0, control.start()) + 1
        return None, (CodebookProblem(line, f"not valid YAML: control character #x{ord(control.group()):02x} in it"),)
    parser = _Parser(text, check_tokens)
    try:
        themes, no_theme = parser.codebook()
    finally:
        parser.loader.dispose()
    problems = parser.problems
    seen: dict[str, Theme] = {}
    for theme in themes:
        if theme.id in seen:
            problems.append(
                CodebookProblem(theme.line, f"theme id {theme.id!r} is already used at line {seen[theme.id].line}")
            )
        seen.setdefault(theme.id, theme)
    _check_parents(themes, problems)
    for theme in themes:
        if theme.id in parser.without_patterns and not any(t.parent == theme.id for t in themes):
            problems.append(
                CodebookProblem(
                    theme.line, f"theme {theme.id} has no patterns and no child themes: it can never be suggested"
                )
            )
    problems.sort(key=lambda p: p.line)
    codebook = Codebook(tuple(themes), _version(themes, no_theme), tuple(no_theme))
    return (None if problems else codebook), tuple(problems)
