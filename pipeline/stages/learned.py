"""The learned half of the tagger: a model per language that finds themes the codebook's patterns miss.

Features are what a segment says: in Chinese, characters and runs of two and three characters of the
simplified text (a word segmenter's words would split 留守 from 儿童 one day and not the next); in English,
spaCy's lemmas, pairs of neighbouring lemmas, and runs of three to five characters of each word (so that
"soldering" and "solderer", "grandkids" and "grandkid's" share something a lemma does not). Each feature
keeps where it stands in the text (a run of characters, the whole word it is part of), so a suggestion's
evidence is the features that pushed hardest towards it, as character spans of the segment.

A theme is a logistic regression over TF-IDF-weighted features (scikit-learn trains it), learned from
sentences whose themes are known: the labelled examples ohp ships, and the decisions people made in a
collection (an accepted or added theme is a positive, with its evidence as a positive of its own; a rejected
one a negative; a theme nobody decided on is not known either way, and that sentence does not count for it).

A model is stored as plain JSON (never pickle: a model file is input like any other): per language the
features, their idf, and per theme the coefficients and intercept; `version` is a hash of the content,
checked on load, and is part of the tag stage's settings, so a retrained model re-tags.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import InvalidInputError
from pipeline.stages.codebook import DEFAULT_MODEL
from pipeline.utils import ContentCache, UnreadableFileError, read_bounded, write_atomic

log = logging.getLogger(__name__)

FORMAT = "ohp-themes-model"
FORMAT_VERSION = 1
THRESHOLD = 0.6  # a theme's probability from which the model suggests it (chosen for precision by bench/themes.py)
# ... and from which it suggests a theme the codebook's patterns found some evidence of, not enough on their own:
# two kinds of evidence agreeing (chosen on the second frozen batch, before it joined the labelled set).
SUPPORTED_THRESHOLD = 0.4
CHARACTER_RUNS = (3, 5)  # lengths of the runs of characters of English words
EVIDENCE_FEATURES = 3  # at most this many features (with every place they stand) as a suggestion's evidence
MAX_FILE_BYTES = 50_000_000
MAX_FEATURE_CHARACTERS = 100
REGULARISATION = 4.0  # scikit-learn's C, chosen by grouped cross-validation (bench/themes.py)
MIN_COUNT = 1  # a feature seen fewer times in training is left out
CLASS_WEIGHT = "balanced"  # themes are rare: without it the model hardly ever dares

# A feature and where it stands: (feature, start, end), characters of the segment's text.
Feature = tuple[str, int, int]


def chinese_features(text: str, origin: Sequence[int] | None = None) -> list[Feature]:
    """Characters, pairs and triples of characters (not across punctuation or spaces), of simplified text;
    `origin` maps each character to the one of the original text it came from."""
    found = []
    for n in (1, 2, 3):
        for start in range(len(text) - n + 1):
            piece = text[start : start + n]
            if all(c.isalnum() for c in piece):
                end = start + n
                found.append((piece, origin[start], origin[end - 1] + 1) if origin else (piece, start, end))
    return found


def english_features(tokens: Iterable) -> list[Feature]:
    """Lemmas (lower case) of a spaCy doc's words, each pair of neighbouring ones, and the runs of
    CHARACTER_RUNS characters of each word (lower case, with a space before and after it; marked "#" so that
    none is ever taken for a lemma), a run standing where its whole word does."""
    spoken = [t for t in tokens if not (t.is_punct or t.is_space)]
    words = [((t.lemma_ or t.text).lower(), t.idx, t.idx + len(t.text)) for t in spoken]
    pairs = [(f"{a} {b}", s, e) for (a, s, _), (b, _, e) in itertools.pairwise(words)]
    shortest, longest = CHARACTER_RUNS
    runs = []
    for t in spoken:
        padded = f" {t.text.lower()} "
        for n in range(shortest, longest + 1):
            runs += [(f"#{padded[i : i + n]}", t.idx, t.idx + len(t.text)) for i in range(len(padded) - n + 1)]
    return words + pairs + runs


@dataclass(frozen=True)
class LanguageModel:
    features: dict[str, int]  # feature -> column
    idf: np.ndarray  # per column
    themes: tuple[str, ...]
    coef: np.ndarray  # themes x columns
    intercept: np.ndarray  # per theme

    def vector(self, features: Sequence[Feature]) -> tuple[np.ndarray, np.ndarray]:
        """The columns present and their TF-IDF weights (binary term frequency, L2-normalised)."""
        columns = np.array(sorted({self.features[f] for f, _, _ in features if f in self.features}), dtype=int)
        weights = self.idf[columns] if len(columns) else np.zeros(0)
        norm = float(np.linalg.norm(weights))
        return columns, weights / norm if norm else weights

    def probabilities(self, features: Sequence[Feature]) -> np.ndarray:
        columns, weights = self.vector(features)
        return 1 / (1 + np.exp(-(self.coef[:, columns] @ weights + self.intercept)))


@dataclass(frozen=True)
class ModelSuggestion:
    theme: str
    score: float
    evidence: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ThemeModel:
    languages: dict[str, LanguageModel]
    trained_on: dict = field(default_factory=dict)  # what it learned from: counts, for people to read
    version: str = ""

    def suggest(
        self, language: str, features: Sequence[Feature], supported: Iterable[str] = ()
    ) -> list[ModelSuggestion]:
        """Themes the model finds in one segment's features, best first, each with its evidence: the spans of
        the (at most EVIDENCE_FEATURES) features contributing most to it. A theme is found from probability
        THRESHOLD, or SUPPORTED_THRESHOLD when it is one of the `supported` (other evidence points to it)."""
        model = self.languages.get(language)
        if model is None or not features:
            return []
        columns, weights = model.vector(features)
        if not len(columns):
            return []
        contributions = model.coef[:, columns] * weights
        probabilities = 1 / (1 + np.exp(-(contributions.sum(axis=1) + model.intercept)))
        found = []
        backed = set(supported)
        thresholds = np.array([SUPPORTED_THRESHOLD if theme in backed else THRESHOLD for theme in model.themes])
        for t in np.flatnonzero(probabilities >= thresholds):
            order = np.argsort(-contributions[t], kind="stable")[:EVIDENCE_FEATURES]
            # Named from the segment's own features: a search of the model's every feature for the columns took
            # most of the English tagging's time.
            strongest = {int(columns[i]) for i in order if contributions[t, i] > 0}
            evidence = merged_spans([(s, e) for f, s, e in features if model.features.get(f) in strongest])
            if evidence:
                found.append(ModelSuggestion(model.themes[t], round(float(probabilities[t]), 3), evidence))
        return sorted(found, key=lambda s: -s.score)


def merged_spans(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(end, merged[-1][1])
        else:
            merged.append([start, end])
    return tuple((s, e) for s, e in merged)


@dataclass(frozen=True)
class Example:
    """A sentence whose themes are known, as features. `known` are the themes it counts for (None: every
    theme, as in a labelled sentence); `positive` those it carries."""

    language: str
    features: tuple[Feature, ...]
    positive: frozenset[str]
    known: frozenset[str] | None = None


def train(examples: Sequence[Example], themes: Sequence[str], trained_on: dict | None = None) -> ThemeModel:
    """A model per language from the examples; the same examples in the same order give the same model."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    languages = {}
    for language in sorted({e.language for e in examples}):
        rows = [e for e in examples if e.language == language]
        documents = [sorted({f for f, _, _ in e.features}) for e in rows]
        counts: dict[str, int] = {}
        for document in documents:
            for feature in document:
                counts[feature] = counts.get(feature, 0) + 1
        vocabulary = sorted(f for f, n in counts.items() if n >= MIN_COUNT)
        columns = {f: i for i, f in enumerate(vocabulary)}
        idf = np.array([math.log((1 + len(rows)) / (1 + counts[f])) + 1 for f in vocabulary])
        empty = LanguageModel(columns, idf, (), np.zeros((0, len(vocabulary))), np.zeros(0))
        vectors = [empty.vector(e.features) for e in rows]
        matrix = sparse.csr_matrix(
            (
                np.concatenate([weights for _, weights in vectors]),
                (
                    np.repeat(np.arange(len(rows)), [len(present) for present, _ in vectors]),
                    np.concatenate([present for present, _ in vectors]),
                ),
            ),
            shape=(len(rows), len(vocabulary)),
        )
        learned, coef, intercept = [], [], []
        for theme in themes:
            usable = [i for i, e in enumerate(rows) if e.known is None or theme in e.known]
            labels = np.array([theme in rows[i].positive for i in usable])
            if labels.sum() < 2 or (~labels).sum() < 2:
                continue  # too few of one kind to learn from
            classifier = LogisticRegression(
                C=REGULARISATION, solver="liblinear", max_iter=1000, class_weight=CLASS_WEIGHT
            )
            classifier.fit(matrix[usable], labels)
            learned.append(theme)
            coef.append(classifier.coef_[0])
            intercept.append(classifier.intercept_[0])
        languages[language] = LanguageModel(
            columns,
            idf,
            tuple(learned),
            np.array(coef).reshape(len(learned), len(vocabulary)),
            np.array(intercept),
        )
        log.info("learned %d themes for %s from %d sentences", len(learned), language, len(rows))
    content = _content(languages, trained_on or {})
    # As loading its file would give it: the numbers rounded as stored, so a model saved is the model used.
    return _parse({**content, "version": _hash(content)}, _refuse)


def _content(languages: dict[str, LanguageModel], trained_on: dict) -> dict:
    """The model as plain data, numbers rounded so that the file (and its hash) is the same everywhere."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "trained_on": trained_on,
        "languages": {
            language: {
                "features": sorted(model.features, key=model.features.__getitem__),
                "idf": [round(float(v), 6) for v in model.idf],
                "themes": list(model.themes),
                "coef": [[round(float(v), 6) for v in row] for row in model.coef],
                "intercept": [round(float(v), 6) for v in model.intercept],
            }
            for language, model in sorted(languages.items())
        },
    }


def _hash(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]


def save_model(model: ThemeModel, path: Path) -> None:
    """Write the model as JSON, whole or not at all (a temporary file renamed over the old one)."""
    content = {**_content(model.languages, model.trained_on), "version": model.version}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(content, ensure_ascii=False, sort_keys=True) + "\n")
    log.info("saved the themes model %s to %s", model.version, path)


_LOADED: ContentCache[ThemeModel] = ContentCache()  # models by their file's content, parsed once in a process


def load_model(path: Path = DEFAULT_MODEL) -> ThemeModel:
    """A model file, checked whole: InvalidInputError names the file and what is wrong with it."""

    def bad(why: str) -> InvalidInputError:
        return InvalidInputError(f"{path}: not a themes model ohp can use: {why}")

    try:  # not waiting for ever on a FIFO nobody writes to
        raw = read_bounded(path, MAX_FILE_BYTES, "a themes model")
    except UnreadableFileError as e:
        raise InvalidInputError(f"{path}: cannot read the themes model: {e.cause}") from None

    def parse() -> ThemeModel:
        try:
            document = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise bad(f"not JSON ({e})") from None
        return _parse(document, bad)

    return _LOADED.get(raw, parse)


def _refuse(why: str) -> ValueError:
    return ValueError(f"a model just trained is not valid: {why}")


def _parse(document, bad) -> ThemeModel:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise bad(f"no 'format': {FORMAT!r}")
    if document.get("format_version") != FORMAT_VERSION:
        raise bad(f"format_version {document.get('format_version')!r}, this ohp reads {FORMAT_VERSION}")
    trained_on = document.get("trained_on")
    entries = document.get("languages")
    if not isinstance(trained_on, dict) or not isinstance(entries, dict):
        raise bad("'trained_on' and 'languages' must be objects")
    languages = {language: _language(entry, f"language {language!r}", bad) for language, entry in entries.items()}
    # The content as the file holds it: save_model wrote it rounded, and JSON reads a number back as written.
    version = _hash({key: document[key] for key in ("format", "format_version", "trained_on", "languages")})
    if document.get("version") != version:
        raise bad(f"its version {document.get('version')!r} is not the hash of its content ({version}): edited?")
    return ThemeModel(languages, trained_on, version)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


def _language(entry, where: str, bad) -> LanguageModel:
    if not isinstance(entry, dict) or set(entry) != {"features", "idf", "themes", "coef", "intercept"}:
        raise bad(f"{where}: expected features, idf, themes, coef and intercept")
    features, themes = entry["features"], entry["themes"]
    if not isinstance(features, list) or not all(
        isinstance(f, str) and 0 < len(f) <= MAX_FEATURE_CHARACTERS for f in features
    ):
        raise bad(f"{where}: features must be strings of 1 to {MAX_FEATURE_CHARACTERS} characters")
    if len(set(features)) != len(features):
        raise bad(f"{where}: a feature is listed twice")
    if (
        not isinstance(themes, list)
        or not all(isinstance(t, str) and t for t in themes)
        or len(set(themes)) != len(themes)
    ):
        raise bad(f"{where}: themes must be distinct names")
    idf = _numbers(entry["idf"], (len(features),), f"{where}: idf", bad)
    coef = _numbers(entry["coef"], (len(themes), len(features)), f"{where}: coef", bad)
    intercept = _numbers(entry["intercept"], (len(themes),), f"{where}: intercept", bad)
    return LanguageModel({f: i for i, f in enumerate(features)}, idf, tuple(themes), coef, intercept)


def _numbers(value, shape: tuple[int, ...], where: str, bad) -> np.ndarray:
    """A list (of lists) of finite numbers of the given shape."""

    def plain(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if len(shape) == 1:
        ok = isinstance(value, list) and len(value) == shape[0] and all(map(plain, value))
    else:
        ok = (
            isinstance(value, list)
            and len(value) == shape[0]
            and all(isinstance(row, list) and len(row) == shape[1] and all(map(plain, row)) for row in value)
        )
    if not ok:
        raise bad(f"{where} must be numbers, {' x '.join(map(str, shape))}")
    array = np.array(value, dtype=float).reshape(shape)
    if not np.isfinite(array).all():
        raise bad(f"{where}: numbers must be finite")
    return array
