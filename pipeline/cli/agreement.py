"""`ohp agreement` (agreement between coders, and of the tagger with them) and `ohp report` (the collection at
a glance, as charts and CSVs for a paper). Both count the recordings an export would write: closed ones
only when a researcher asks (--include-restricted --user NAME)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table as RichTable

from pipeline import access
from pipeline.cli import (
    CodebookOption,
    DbOption,
    IncludeRestricted,
    UserOption,
    app,
    console,
    exported_scope,
    open_codebook,
    open_store,
)
from pipeline.cli.output import check_folder
from pipeline.store import Store
from pipeline.utils import atomic_file

Recordings = Annotated[
    list[str] | None, typer.Argument(help="Recording ids, hash prefixes, paths or names (default: all)")
]


def _figure(value: float | None) -> str:
    return "undefined" if value is None else f"{round(value, 3) + 0.0:.3f}"  # + 0.0: no "-0.000"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _holds_closed(store: Store, scope: list[int] | None) -> bool:
    """Whether what is made of the recordings in `scope` (None: all) holds a closed one's (access.holds_closed)."""
    return access.holds_closed(r for r in store.list_recordings() if scope is None or r.id in scope)


@app.command()
def agreement(
    recordings: Recordings = None,
    coders: Annotated[
        str | None, typer.Option(help="Coders to compare, separated by commas (default: everyone who decided)")
    ] = None,
    disagreements: Annotated[
        Path | None,
        typer.Option(help="Write the themes and segments the coders differ on to this CSV file", dir_okay=False),
    ] = None,
    include_restricted: IncludeRestricted = False,
    user: UserOption = None,
    codebook: CodebookOption = None,
    db: DbOption = None,
) -> None:
    """Agreement between coders per theme and overall (Cohen's kappa for two, Krippendorff's alpha, percent
    agreement, the counts behind them), and between the tagger and each coder."""
    from pipeline.analysis.agreement import ALL_THEMES
    from pipeline.analysis.report import agreement_report, theme_label
    from pipeline.analysis.tables import disagreements_csv

    if disagreements is not None:  # found out now, not once the figures are made
        if not disagreements.parent.is_dir():
            message = f"{disagreements}: folder {disagreements.parent} does not exist"
            raise typer.BadParameter(message, param_hint="--disagreements")
        check_folder(disagreements.parent, "--disagreements")
    store = open_store(db)
    book = open_codebook(codebook, for_labels=True)
    scope = exported_scope(store, recordings, include_restricted, user)
    wanted = [name.strip() for name in coders.split(",") if name.strip()] if coders else None
    found = agreement_report(store, scope, book, wanted)
    label = theme_label(book)
    if not found.coders:
        console.print("nobody has decided a theme on these recordings yet (ohp review, the web app, ohp import)")
        return
    if len(found.coders) >= 2:
        table = RichTable(title=f"Agreement between {', '.join(found.coders)}")
        columns = ["theme", "units", "all there", "all not", "differ", *found.coders, "agree", "kappa", "alpha"]
        for i, column in enumerate(columns):
            table.add_column(column, justify="left" if i == 0 else "right")
        for row in found.themes:
            if row.theme != ALL_THEMES and not any(row.present_by.values()):  # a theme nobody used
                continue
            table.add_row(
                row.theme if row.theme == ALL_THEMES else label(row.theme),
                str(row.units),
                str(row.agreed_present),
                str(row.agreed_absent),
                str(row.split),
                *(str(row.present_by[c]) for c in found.coders),
                _share(row.percent),
                "-" if len(found.coders) > 2 else _figure(row.kappa),
                _figure(row.alpha),
            )
        console.print(table)
        if not found.themes[-1].units:
            console.print("no segment was reviewed by two of these coders: nothing to compare")
    else:
        console.print(f"only {found.coders[0]} decided themes here: no agreement between coders to report")
    tagger = RichTable(title="The tagger against each coder (on the segments the coder reviewed)")
    for i, column in enumerate(
        ["coder", "theme", "units", "tagger", "coder", "both", "agree", "kappa", "precision", "recall"]
    ):
        tagger.add_column(column, justify="left" if i < 2 else "right")
    for t in found.tagger:
        if t.theme == ALL_THEMES or t.tagger or t.coder_present:
            theme = t.theme if t.theme == ALL_THEMES else label(t.theme)
            tagger.add_row(
                t.coder,
                theme,
                str(t.units),
                str(t.tagger),
                str(t.coder_present),
                str(t.both),
                _share(t.percent),
                _figure(t.kappa),
                _share(t.precision),
                _share(t.recall),
            )
    console.print(tagger)
    console.print(found.rule, highlight=False)
    if disagreements is not None:
        lines = disagreements_csv(store.disagreements(scope, list(found.coders)), label)
        written = 0
        # The segments' text: a closed recording's, where a researcher asked for it, is for them alone.
        with atomic_file(disagreements, private=_holds_closed(store, scope)) as file:
            file.write(next(lines).encode("utf-8"))  # the header
            for line in lines:
                file.write(line.encode("utf-8"))
                written += 1
        console.print(f"{written} disagreement(s) written to {disagreements}")


@app.command()
def report(
    recordings: Recordings = None,
    out: Annotated[Path, typer.Option(help="Folder for the charts (SVG, PNG), their CSVs and index.html")] = Path(
        "report"
    ),
    accepted_only: Annotated[
        bool, typer.Option(help="Count only accepted themes (default: open suggestions too, never rejected ones)")
    ] = False,
    coders: Annotated[str | None, typer.Option(help="Coders for the agreement charts, separated by commas")] = None,
    redact: Annotated[
        str | None,
        typer.Option(
            help="Number interviewees, recordings and coders (names) and/or places instead of naming them",
            metavar="KINDS",
        ),
    ] = None,
    include_restricted: IncludeRestricted = False,
    user: UserOption = None,
    codebook: CodebookOption = None,
    db: DbOption = None,
) -> None:
    """The collection at a glance, for a paper or a grant report: theme frequency by recording, interviewee,
    place, speaker role and position in the interview; themes together in a segment and in a turn; how much
    is coded and reviewed; agreement. Each chart as SVG and PNG with the CSV behind it, and an index.html."""
    from pipeline.analysis.report import Pseudonyms, report_tables, write_report

    check_folder(out, "--out")
    store = open_store(db)
    book = open_codebook(codebook, for_labels=True)
    scope = exported_scope(store, recordings, include_restricted, user)
    pseudonyms = Pseudonyms({k.strip() for k in redact.split(",") if k.strip()}) if redact else None
    wanted = [name.strip() for name in coders.split(",") if name.strip()] if coders else None
    tables = report_tables(store, scope, book, coders=wanted, accepted_only=accepted_only, pseudonyms=pseudonyms)
    counted = "accepted themes" if accepted_only else "accepted themes and open suggestions"
    # Its tables name a closed recording's interviewee and place, where a researcher asked for it.
    files = write_report(
        tables, out, f"Counts of {counted} (rejected ones never).", private=_holds_closed(store, scope)
    )
    console.print(f"{len(files)} files written to {out}: open {out / 'index.html'}")
