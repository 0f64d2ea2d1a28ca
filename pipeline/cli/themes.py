"""`ohp tag`, `ohp tag-text`, `ohp themes` and `ohp codebook validate`: the codebook's themes, found in
transcripts and counted."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text

from pipeline import access, cli
from pipeline.errors import ConflictError, NotFoundError
from pipeline.records import ANNOTATION_STATUSES
from pipeline.stages.codebook import load_codebook, validate_codebook
from pipeline.utils import terminal_json


@cli.app.command()
def tag(
    recordings: Annotated[list[str] | None, typer.Argument(help="Recordings to tag; all if none")] = None,
    force: Annotated[bool, typer.Option(help="Tag again even if this codebook already tagged them")] = False,
    model: Annotated[
        bool, typer.Option(help="Let the learned model add to the codebook's patterns (--no-model: patterns alone)")
    ] = True,
    codebook: cli.CodebookOption = None,
    db: cli.DbOption = None,
) -> None:
    """Tag stored transcripts with the codebook's themes and the learned model (human decisions are kept).
    `ohp tag-learn` teaches the model from people's decisions."""
    from pipeline.batch import tag_recording

    book, learned = cli.open_codebook(codebook), cli.open_model() if model else None
    store = cli.open_store(db)
    failed = closed_tagged = 0
    chosen = cli.choose_recordings(store, recordings)
    closed = access.closed_ids(chosen)
    for recording in chosen:
        name = Path(recording.path).name
        try:
            counts = tag_recording(store, recording.id, book, force, learned)
        except (ConflictError, NotFoundError) as e:  # transcribed again or deleted meanwhile: the others go on
            cli.errors.print(Text.assemble(("failed:", "red"), f" {name}: {e}"), highlight=False)
            failed += 1
            continue
        if recording.id in closed:  # tagged as the others, but how many of which themes is its content
            closed_tagged += 1
        elif counts is None:
            with_model = f" and model {learned.version}" if learned else ""
            cli.console.print(f"{name}: already tagged with codebook {book.version}{with_model}")
        else:
            cli.console.print(f"{name}: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    if closed_tagged:
        cli.console.print(
            f"{closed_tagged} closed recording(s) tagged too: what they hold is left out, as ohp themes does"
        )
    if failed:
        raise typer.Exit(1)


@cli.app.command("tag-text")
def tag_text_command(
    text: Annotated[str, typer.Argument(help="The text to tag")],
    language: Annotated[str, typer.Option(help="zh or en")] = "zh",
    as_json: cli.JsonOption = False,
    codebook: cli.CodebookOption = None,
) -> None:
    """Tag a piece of text with the codebook's themes, without a database."""
    from pipeline.stages.tag import pipeline_language, tag_text

    if pipeline_language(language) is None:
        raise typer.BadParameter(f"no tagger for {language!r}: use zh or en", param_hint="--language")
    book = cli.open_codebook(codebook)
    result = tag_text(text, language, book, cli.open_model())
    if as_json:
        document = {
            "themes": [
                {"id": t.theme, "score": t.score, "origin": t.origin, "evidence": [list(span) for span in t.evidence]}
                for t in result.themes
            ],
            "entities": [{"label": e.label, "text": e.text, "start": e.start, "end": e.end} for e in result.entities],
        }
        print(terminal_json(document))
        return
    for theme in result.themes:
        cli.console.print(
            Text.assemble(
                f"{book.label(theme.theme)} ({theme.score:.2f}, {theme.origin}): ",
                cli.highlighted(text, theme.evidence),
            )
        )
    for entity in result.entities:
        cli.console.print(f"{entity.label}: {entity.text}")
    if not result.themes and not result.entities:
        cli.console.print("no themes, no entities")


codebook_app = typer.Typer(help="The codebook of themes.", no_args_is_help=True)
cli.app.add_typer(codebook_app, name="codebook")


@codebook_app.command("validate")
def codebook_validate(path: Annotated[Path | None, typer.Argument(help="Codebook YAML")] = None) -> None:
    """Check a codebook; every problem with its line number."""
    path = cli.codebook_path(path)
    try:
        problems = validate_codebook(path)
    except FileNotFoundError:
        raise NotFoundError(f"no codebook at {path}") from None
    for problem in problems:
        cli.console.print(f"{path}:{problem.line}: {problem.message}", markup=False, highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    book = load_codebook(path)
    cli.console.print(f"{path}: {len(book.themes)} themes, version {book.version}, no problems")


@cli.app.command()
def themes(
    include_restricted: cli.IncludeRestricted = False,
    user: cli.UserOption = None,
    codebook: cli.CodebookOption = None,
    db: cli.DbOption = None,
) -> None:
    """Theme counts per recording: suggested, accepted, rejected. Closed recordings only when a researcher asks,
    as `ohp report` counts: which themes a closed interview holds is its content."""
    book = cli.open_codebook(codebook, for_labels=True)
    store = cli.open_store(db)
    counted, _ = cli.shown_recordings(store, None, include_restricted, user, "counting closed recordings' themes")
    kept = {r.id for r in counted}
    rows = [row for row in store.theme_counts() if row[0] in kept]
    if not rows:
        cli.console.print("no themes yet: run `ohp tag` or `ohp run`")
        return
    table = Table()
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("recording", "left"),
        ("theme", "left"),
        ("id", "left"),  # what --theme and the JSON take
        ("suggested", "right"),
        ("accepted", "right"),
        ("rejected", "right"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for _, path, theme, counts in rows:
        table.add_row(Path(path).name, book.label(theme), theme, *(str(counts[k]) for k in ANNOTATION_STATUSES))
    cli.console.print(table)
