"""The collection at a glance, and agreement, as tables: each the CSV behind one chart (pipeline.analysis.charts).
Pure: from the store's counts (records.CollectionCounts) and an AgreementReport, no database.

Theme frequency counts segments on which a theme stands: accepted, and open suggestions unless
`accepted_only` (rejected never). Co-occurrence counts segments (or speaker turns) carrying both themes;
the diagonal, those carrying the theme. Themes are shown by their codebook label.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.analysis.agreement import ALL_THEMES, AgreementReport, ordered_themes
from pipeline.formats.export import csv_cell, csv_row
from pipeline.records import COVERAGE_KINDS, CollectionCounts, Disagreement
from pipeline.utils import clock, inert

TENTHS = [f"{10 * i}-{10 * (i + 1)} %" for i in range(10)]
DOUBTFUL = "doubtful % of text"  # the share of a recording's text in words the recogniser doubted (empty: not checked)
ROLE_NAMES = {"": "(no role)", "interviewer": "interviewer", "interviewee": "interviewee", "other": "other"}


@dataclass(frozen=True)
class Table:
    """A chart's data: `rows` of `columns`; `chart` says how it is drawn (heatmap, lines, bars)."""

    name: str  # file stem: themes-by-recording
    title: str
    columns: tuple[str, ...]
    rows: list[tuple]
    chart: str

    def csv(self) -> str:
        """UTF-8 with a byte-order mark (Excel reads Chinese then); text cells safe from formulas, the header's
        too: it holds coders' names ("NAME says there") and the codebook's labels."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(csv_row(self.columns))
        for row in self.rows:
            writer.writerow([csv_cell(v) if isinstance(v, str) else _number(v) for v in row])
        return "\ufeff" + buffer.getvalue()


def _number(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _percent(part: float, whole: float) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def collection_tables(
    counts: CollectionCounts,
    themes: Sequence[str],
    label: Callable[[str], str],
    *,
    accepted_only: bool = False,
    pseudonyms: Callable[[str, str], str] | None = None,
) -> list[Table]:
    """Frequency by recording, interviewee, place, speaker role and tenth of the interview; co-occurrence
    in segments and turns; coverage. `pseudonyms(dimension, value)` replaces names (redaction)."""
    names = {str(row.recording_id): Path(row.path).name for row in counts.coverage}
    statuses = ("accepted",) if accepted_only else ("accepted", "suggested")
    seen = {theme for by in counts.frequency.values() for _, theme, _ in by}
    ordered = ordered_themes(themes, seen)
    hide = pseudonyms or (lambda _dimension, value: value)

    def value_name(dimension: str, value: str) -> str:
        if dimension == "recording":
            return hide("recording", names.get(value, value))
        if dimension == "role":
            return ROLE_NAMES.get(value, value)
        if dimension == "position":
            return TENTHS[int(value)]
        return hide(dimension, value) if value else "(unknown)"

    tables = []
    titles = {
        "recording": "Themes by recording",
        "interviewee": "Themes by interviewee",
        "place": "Themes by place",
        "role": "Themes by speaker role",
        "position": "Themes by position in the interview (tenth of its length)",
    }
    for dimension, by in counts.frequency.items():
        grid: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ordered, 0))
        for (value, theme, status), n in by.items():
            if status in statuses:
                grid[value_name(dimension, value)][theme] += n
        keys = [t for t in TENTHS if t in grid] if dimension == "position" else sorted(grid)
        rows = [(key, *(grid[key][t] for t in ordered)) for key in keys]
        chart = "lines" if dimension == "position" else "heatmap"
        tables.append(
            Table(f"themes-by-{dimension}", titles[dimension], (dimension, *map(label, ordered)), rows, chart)
        )
    for name, title, pairs in (
        ("cooccurrence-segments", "Themes together in a segment", counts.in_segments),
        ("cooccurrence-turns", "Themes together in a speaker turn", counts.in_turns),
    ):
        rows = [(label(a), *(pairs.get((a, b), pairs.get((b, a), 0)) for b in ordered)) for a in ordered]
        tables.append(Table(name, title, ("theme", *map(label, ordered)), rows, "heatmap"))
    columns = ["recording", "duration (s)", "segments", "speech (s)"]
    for kind in COVERAGE_KINDS:
        columns += [f"{kind} segments", f"{kind} % of segments", f"{kind} % of speech"]
    columns.append(DOUBTFUL)
    coverage_rows = []
    for row in counts.coverage:
        cells: list = [
            hide("recording", Path(row.path).name),
            round(row.duration, 1),
            row.segments,
            round(row.seconds, 1),
        ]
        for kind in COVERAGE_KINDS:
            n, seconds = row.marked[kind]
            cells += [n, _percent(n, row.segments), _percent(seconds, row.seconds)]
        cells.append(None if row.doubtful is None else round(100 * row.doubtful, 1))
        coverage_rows.append(tuple(cells))
    tables.append(
        Table(
            "coverage",
            "How much of each interview is coded, reviewed and doubtful",
            tuple(columns),
            coverage_rows,
            "bars",
        )
    )
    return tables


def agreement_tables(
    report: AgreementReport, label: Callable[[str], str], pseudonyms: Callable[[str, str], str] | None = None
) -> list[Table]:
    """Agreement between the coders per theme, and the tagger against each coder. `pseudonyms(dimension,
    value)` replaces the coders' names (redaction), each by one stand-in in every table."""

    def name(theme: str) -> str:
        return theme if theme == ALL_THEMES else label(theme)

    hide = pseudonyms or (lambda _dimension, value: value)
    coders = tuple(hide("coder", c) for c in report.coders)
    columns = (
        "theme",
        "units",
        "all say there",
        "all say not there",
        "coders differ",
        *(f"{c} says there" for c in coders),
        "percent agreement",
        "Cohen's kappa",
        "Krippendorff's alpha",
    )
    rows = [
        (
            name(r.theme),
            r.units,
            r.agreed_present,
            r.agreed_absent,
            r.split,
            *(r.present_by[c] for c in report.coders),
            r.percent,
            r.kappa,
            r.alpha,
        )
        for r in report.themes
    ]
    # Shown, not acting: a name's bidi control (U+202E) would turn the rest of the heading around.
    coders_title = " and ".join(map(inert, coders)) if len(coders) <= 3 else f"{len(coders)} coders"
    tagger_columns = (
        "coder",
        "theme",
        "units",
        "tagger suggests",
        "coder says there",
        "both",
        "percent agreement",
        "Cohen's kappa",
        "tagger's precision",
        "tagger's recall",
    )
    tagger_rows = [
        (
            hide("coder", t.coder),
            name(t.theme),
            t.units,
            t.tagger,
            t.coder_present,
            t.both,
            t.percent,
            t.kappa,
            t.precision,
            t.recall,
        )
        for t in report.tagger
    ]
    return [
        Table("agreement", f"Agreement between {coders_title}", columns, rows, "agreement"),
        Table("agreement-tagger", "The tagger against each coder", tagger_columns, tagger_rows, "tagger"),
    ]


def disagreements_csv(found: Iterable[Disagreement], label: Callable[[str], str]) -> Iterator[str]:
    """The themes and segments on which the coders differ, a row each, for the coders to talk over: the CSV a
    line at a time (a byte-order mark and the header first), each made as its disagreement is read, so a
    collection where coders differ on millions of segments is never held whole. "not there" says whether the
    coder rejected the theme or left it undecided on a segment they reviewed."""
    line = io.StringIO()
    writer = csv.writer(line)

    def written(row: Sequence[object]) -> str:
        line.seek(0)
        line.truncate()
        writer.writerow(row)
        return line.getvalue()

    yield "\ufeff" + written(
        ("recording", "start", "end", "time", "speaker", "theme", "label", "there", "not there", "tagger", "text")
    )
    for d in found:
        there = [coder for coder, said in d.decisions.items() if said]
        not_there = [
            f"{coder} ({'rejected' if said is False else 'left undecided'})"
            for coder, said in d.decisions.items()
            if not said
        ]
        yield written(
            csv_row(
                (
                    Path(d.path).name,
                    f"{d.start:.3f}",
                    f"{d.end:.3f}",
                    clock(d.start),
                    d.speaker or "",
                    d.theme,
                    label(d.theme),
                    ", ".join(there),
                    ", ".join(not_there),
                    "suggested" if d.tagger else "",
                    d.text,
                )
            )
        )
