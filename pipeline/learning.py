"""What the tagger's model learns from: the labelled sentences ohp ships, and a collection's decisions.

    ohp tag-learn                  -> learn(codebook, store.theme_decisions(scope))
                                   -> save_model(annotations/themes-model.json)

(scope: the recordings an export writes, closed ones only for a researcher who asks; pipeline.access.)
    ohp tag-learn --from-examples  -> learn(codebook) -> save_model(the model ohp ships)

The labelled sentences (stages/themes_labelled.jsonl, package data) are JSON lines: `text`, `language`,
`themes` (codebook ids; empty for a sentence that carries none) and `group` (paraphrases of one sentence
share it, so a cross-validation keeps them in one fold). A decision counts for its theme only: an accepted
or added theme is a positive, with the words people marked as its evidence a positive of their own; a
rejected one is a negative; the themes nobody decided on in that segment are unknown, not negatives.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from pipeline.records import ThemeDecision
from pipeline.stages.codebook import Codebook
from pipeline.stages.learned import Example, ThemeModel, train
from pipeline.stages.tag import features, pipeline_language

log = logging.getLogger(__name__)

LABELLED = Path(__file__).parent / "stages" / "themes_labelled.jsonl"  # package data


def load_labelled(path: Path = LABELLED) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def labelled_examples(rows: Sequence[dict], codebook: Codebook) -> list[Example]:
    """Labelled sentences as examples; themes the codebook lacks are left out."""
    found = features([r["text"] for r in rows], [r["language"] for r in rows], codebook)
    return [
        Example(pipeline_language(r["language"]) or r["language"], tuple(f), frozenset(r["themes"]) & set(codebook.ids))
        for r, f in zip(rows, found, strict=True)
        if pipeline_language(r["language"])
    ]


def decision_examples(decisions: Sequence[ThemeDecision], codebook: Codebook) -> list[Example]:
    """People's decisions as examples: one per segment (its decided themes known), and one per accepted theme
    with evidence, the marked words alone."""
    by_segment: dict[int, list[ThemeDecision]] = {}
    for d in decisions:
        if d.theme in codebook.ids and pipeline_language(d.language):
            by_segment.setdefault(d.segment_id, []).append(d)
    texts, languages, labels = [], [], []
    for decided in by_segment.values():
        texts.append(decided[0].text)
        languages.append(decided[0].language)
        labels.append(({d.theme for d in decided if d.accepted}, {d.theme for d in decided}))
        for d in decided:
            marked = " ".join(d.text[a:b] for a, b in d.evidence if 0 <= a < b <= len(d.text))
            if d.accepted and marked.strip():
                texts.append(marked)
                languages.append(d.language)
                labels.append(({d.theme}, {d.theme}))
    found = features(texts, languages, codebook)
    return [
        Example(pipeline_language(language) or language, tuple(f), frozenset(positive), frozenset(known))
        for language, f, (positive, known) in zip(languages, found, labels, strict=True)
    ]


def learn(
    codebook: Codebook, decisions: Sequence[ThemeDecision] = (), labelled: Sequence[dict] | None = None
) -> ThemeModel:
    """A model from the labelled sentences (ohp's own unless given) and a collection's decisions."""
    rows = load_labelled(LABELLED) if labelled is None else labelled
    examples = labelled_examples(rows, codebook) + decision_examples(decisions, codebook)
    trained_on = {"labelled": len(rows), "decisions": len(decisions), "codebook": codebook.version}
    log.info("learning themes from %d labelled sentences and %d decisions", len(rows), len(decisions))
    return train(examples, codebook.ids, trained_on)
