"""Agreement between coders, and between the tagger and each coder, from the counts the store makes
(records.DecisionCounts): pure arithmetic, no database.

Per theme and over all themes pooled: percent agreement (for more than two coders, the share of agreeing
pairs), Cohen's kappa when there are two coders, Krippendorff's alpha (nominal; the `krippendorff`
package) for any number, and the counts behind them. The tagger is compared with each coder on the
segments that coder reviewed, as if it were one more coder: kappa, percent agreement, and its precision and
recall against the coder.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.records import DecisionCounts

ALL_THEMES = "(all themes)"

# How units are made and what an uncoded segment counts as: shown with every agreement report.
UNITS_RULE = (
    "A unit is one theme on one segment that two or more of the coders reviewed. A coder reviewed a segment "
    "when they decided a theme on it (accept, reject or add, in the web app or `ohp review`), or when it is "
    "in a recording whose codes they imported from ELAN or a QDA program (they coded the whole transcript "
    "there). On a segment a coder reviewed, a theme they did not accept or add counts as not there, "
    "rejected or left undecided alike. Segments fewer than two of the coders reviewed do not count. The "
    "figures over all themes pool the themes somebody put on a segment: a theme nobody used would only add "
    "agreement that it is absent."
)

Histogram = Mapping[tuple[int, int], int]  # (coders who reviewed m, of them saying "there" k) -> units


@dataclass(frozen=True)
class ThemeAgreement:
    theme: str
    units: int
    agreed_present: int  # every coder who reviewed it says the theme is there
    agreed_absent: int  # every one says it is not
    split: int  # the coders differ
    present_by: dict[str, int]  # coder -> units they say the theme is there
    percent: float | None  # share of agreeing pairs of coders, over the units
    kappa: float | None  # Cohen's, with two coders; None with more, or undefined (one category only)
    alpha: float | None  # Krippendorff's (nominal); None when undefined


@dataclass(frozen=True)
class TaggerAgreement:
    """The tagger against one coder, on the segments the coder reviewed (in recordings the tagger ran on)."""

    coder: str
    theme: str
    units: int
    tagger: int  # units the tagger suggested the theme on
    coder_present: int
    both: int
    percent: float | None
    kappa: float | None
    precision: float | None  # of the tagger, the coder taken as right
    recall: float | None


@dataclass(frozen=True)
class AgreementReport:
    coders: tuple[str, ...]
    themes: list[ThemeAgreement]  # one per theme, then ALL_THEMES pooled
    tagger: list[TaggerAgreement]  # per coder: one per theme, then ALL_THEMES
    rule: str = UNITS_RULE


def cohen_kappa(n11: int, n10: int, n01: int, n00: int) -> float | None:
    """Cohen's kappa of two coders on yes/no units: n11 both yes, n10 the first only, n01 the second only,
    n00 neither. None when it is undefined: no units, or both coders put every unit in one category
    (chance agreement is then 1)."""
    n = n11 + n10 + n01 + n00
    if n == 0:
        return None
    observed = (n11 + n00) / n
    first_yes, second_yes = (n11 + n10) / n, (n11 + n01) / n
    chance = first_yes * second_yes + (1 - first_yes) * (1 - second_yes)
    return None if chance >= 1 else (observed - chance) / (1 - chance)


def percent_agreement(histogram: Histogram) -> float | None:
    """The share of pairs of coders who agree, over all units (with two coders: units agreed on / units)."""
    pairs = agreeing = 0.0
    for (m, k), n in histogram.items():
        agreeing += n * (k * (k - 1) + (m - k) * (m - k - 1)) / (m * (m - 1))
        pairs += n
    return agreeing / pairs if pairs else None


def krippendorff_alpha(histogram: Histogram) -> float | None:
    """Krippendorff's alpha (nominal, values "not there" and "there") by the `krippendorff` package, from
    how many units had k of m coders saying "there". None when undefined: no unit, or one value only."""
    import krippendorff

    rows = [((m - k, k), n) for (m, k), n in histogram.items() if n > 0 and m >= 2]
    if not rows:
        return None
    value_counts = np.repeat(np.array([r for r, _ in rows], dtype=np.int64), [n for _, n in rows], axis=0)
    if (value_counts.sum(axis=0) == 0).any():  # every coder put every unit in one category
        return None
    return float(krippendorff.alpha(value_counts=value_counts, level_of_measurement="nominal"))


def _theme_agreement(
    theme: str, coders: Sequence[str], histogram: Histogram, present_by: dict[str, int]
) -> ThemeAgreement:
    units = sum(histogram.values())
    agreed_present = sum(n for (m, k), n in histogram.items() if k == m)
    agreed_absent = sum(n for (_, k), n in histogram.items() if k == 0)
    kappa = None
    if len(coders) == 2:
        both = agreed_present
        first, second = present_by.get(coders[0], 0) - both, present_by.get(coders[1], 0) - both
        kappa = cohen_kappa(both, first, second, units - both - first - second)
    return ThemeAgreement(
        theme,
        units,
        agreed_present,
        agreed_absent,
        units - agreed_present - agreed_absent,
        {coder: present_by.get(coder, 0) for coder in coders},
        percent_agreement(histogram),
        kappa,
        krippendorff_alpha(histogram),
    )


def _tagger_agreement(coder: str, theme: str, units: int, tagger: int, said: int, both: int) -> TaggerAgreement:
    only_tagger, only_coder = tagger - both, said - both
    neither = units - both - only_tagger - only_coder
    return TaggerAgreement(
        coder,
        theme,
        units,
        tagger,
        said,
        both,
        (both + neither) / units if units else None,
        cohen_kappa(both, only_tagger, only_coder, neither),
        both / tagger if tagger else None,
        both / said if said else None,
    )


def ordered_themes(known: Sequence[str], seen: Iterable[str]) -> list[str]:
    """The codebook's themes in its order, then any other theme found in the data, by name."""
    return [*known, *sorted(set(seen) - set(known))]


def agreement(counts: DecisionCounts, themes: Sequence[str]) -> AgreementReport:
    """Per theme (the codebook's, in its order; others found after them) and pooled."""
    histograms: dict[str, dict[tuple[int, int], int]] = defaultdict(dict)
    for (theme, m, k), n in counts.present.items():
        histograms[theme][m, k] = n
    ordered = ordered_themes(themes, histograms)
    pooled: dict[tuple[int, int], int] = defaultdict(int)
    pooled_present: dict[str, int] = defaultdict(int)
    rows = []
    for theme in ordered:
        histogram = dict(histograms.get(theme, {}))
        for m, segments in counts.shared.items():  # units where nobody says "there"
            histogram[m, 0] = segments - sum(n for (mm, k), n in histogram.items() if mm == m and k > 0)
        present_by = {coder: counts.marginals.get((theme, coder), 0) for coder in counts.coders}
        rows.append(_theme_agreement(theme, counts.coders, histogram, present_by))
        if theme not in histograms:  # nobody said it is there
            continue
        for key, n in histogram.items():
            pooled[key] += n
        for coder, n in present_by.items():
            pooled_present[coder] += n
    rows.append(_theme_agreement(ALL_THEMES, counts.coders, pooled, pooled_present))
    tagger_rows = []
    for coder in counts.coders:
        units = counts.tagger_reviewed.get(coder, 0)
        totals = [0, 0, 0]
        used = {t for c, t in counts.tagger if c == coder}  # by the tagger or the coder
        for theme in ordered_themes(ordered, used):
            found = counts.tagger.get((coder, theme), (0, 0, 0))
            tagger_rows.append(_tagger_agreement(coder, theme, units, *found))
            totals = [a + b for a, b in zip(totals, found, strict=True)]
        tagger_rows.append(_tagger_agreement(coder, ALL_THEMES, units * len(used), *totals))
    return AgreementReport(counts.coders, rows, tagger_rows)
