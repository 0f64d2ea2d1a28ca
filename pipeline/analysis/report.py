"""The collection report: the analysis tables gathered from the store for the recordings in scope, and
written as files (each chart as SVG and PNG, the CSV behind it, an index.html) for a paper or a grant
report. `ohp report --out DIR` writes them; the web app shows the same tables and charts."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

from pipeline.analysis.agreement import AgreementReport, agreement
from pipeline.analysis.charts import render
from pipeline.analysis.tables import Table, agreement_tables, collection_tables
from pipeline.errors import InvalidInputError
from pipeline.stages.codebook import Codebook
from pipeline.store import Store
from pipeline.utils import write_atomic

log = logging.getLogger(__name__)


def theme_label(codebook: Codebook) -> Callable[[str], str]:
    """A theme as people read it: its labels in the codebook's languages ("Wages / 工资"; its id when the
    codebook has no such theme), as everywhere else in ohp."""
    known = {theme.id: codebook.label(theme.id) for theme in codebook.themes}
    return lambda theme: known.get(theme, theme)


def choose_coders(store: Store, scope: Sequence[int] | None, wanted: Sequence[str] | None) -> list[str]:
    """The coders asked for (at least two when named), or everyone who decided themes in scope."""
    present = store.coders(scope)
    if not wanted:
        return present
    unknown = [name for name in wanted if name not in present]
    if unknown:
        known = ", ".join(present) or "nobody"
        raise InvalidInputError(f"no decisions by {', '.join(unknown)} on these recordings (coders: {known})")
    if len(set(wanted)) < 2:
        raise InvalidInputError("--coders needs two coders or more, separated by commas")
    return list(dict.fromkeys(wanted))


def agreement_report(
    store: Store, scope: Sequence[int] | None, codebook: Codebook, coders: Sequence[str] | None = None
) -> AgreementReport:
    names = choose_coders(store, scope, coders)
    return agreement(store.decision_counts(scope, names), codebook.ids)


def report_tables(
    store: Store,
    scope: Sequence[int] | None,
    codebook: Codebook,
    *,
    coders: Sequence[str] | None = None,
    accepted_only: bool = False,
    pseudonyms: Callable[[str, str], str] | None = None,
    with_agreement: bool = True,
) -> list[Table]:
    """Every table of the report: the collection's, then agreement (when anybody decided themes and
    `with_agreement`: the web app's collection page leaves it to the agreement page)."""
    label = theme_label(codebook)
    tables = collection_tables(
        store.collection_counts(scope), codebook.ids, label, accepted_only=accepted_only, pseudonyms=pseudonyms
    )
    if not with_agreement:
        return tables
    found = agreement_report(store, scope, codebook, coders)
    return tables + (agreement_tables(found, label, pseudonyms) if found.coders else [])


class Pseudonyms:
    """Names in a report replaced by numbered stand-ins (redaction): "interviewee 3", "place 2", "recording 7",
    "coder 2"."""

    def __init__(self, kinds: set[str]):
        unknown = kinds - {"names", "places"}
        if unknown:
            raise InvalidInputError(f"cannot redact {', '.join(sorted(unknown))}: names, places or names,places")
        hidden = {"names": ("interviewee", "recording", "coder"), "places": ("place",)}
        self.dimensions = {d for kind in kinds for d in hidden[kind]}
        self.given: dict[tuple[str, str], str] = {}

    def __call__(self, dimension: str, value: str) -> str:
        if dimension not in self.dimensions:
            return value
        numbers = self.given
        if (dimension, value) not in numbers:
            numbers[dimension, value] = f"{dimension} {sum(1 for d, _ in numbers if d == dimension) + 1}"
        return numbers[dimension, value]


def report_page(tables: Sequence[Table], note: str) -> str:
    """index.html for the files: each chart with links to its SVG, PNG and CSV; nothing from elsewhere."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>ohp collection report</title></head><body>',
        f"<h1>Collection report</h1><p>{html.escape(note)}</p>",
    ]
    for t in tables:
        name = html.escape(t.name)
        parts.append(
            f'<section><h2>{html.escape(t.title)}</h2><img src="{name}.svg" alt="{html.escape(t.title)}">'
            f'<p><a href="{name}.png">PNG</a> · <a href="{name}.svg">SVG</a> · <a href="{name}.csv">CSV</a></p>'
            "</section>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(tables: Sequence[Table], out: Path, note: str, *, private: bool = False) -> list[Path]:
    """Each table as NAME.csv, NAME.svg and NAME.png in `out`, and index.html; the files written, readable by their
    owner only if `private`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table in tables:
        for path, content in (
            (out / f"{table.name}.csv", table.csv()),
            (out / f"{table.name}.svg", render(table, "svg")),
            (out / f"{table.name}.png", render(table, "png")),
        ):
            write_atomic(path, content, private=private)
            written.append(path)
    index = out / "index.html"
    write_atomic(index, report_page(tables, f"{note} Made by ohp on {date.today().isoformat()}."), private=private)
    return [*written, index]
