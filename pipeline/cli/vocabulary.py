"""`ohp vocabulary`: the project's vocabulary, and the terms corrections suggest for it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipeline import access, cli
from pipeline.config import ENVIRONMENT, PROJECT_VOCABULARY
from pipeline.errors import ForbiddenError
from pipeline.stages.vocabulary import (
    Vocabulary,
    add_terms,
    check_term,
    known_terms,
    only_in_closed,
    read_vocabulary,
    suggest,
)
from pipeline.utils import terminal_json

CLOSED_ONLY = "closed only"
CLOSED_ONLY_WHY = (
    "written only in corrections of closed recordings, and the vocabulary file is shared with collaborators and "
    "handed to the recogniser for every recording: accepting such a term needs --include-restricted --user NAME "
    "(a researcher)"
)

vocabulary_app = typer.Typer(
    help="The project's vocabulary: names, places and terms the recogniser is told to expect.", no_args_is_help=True
)

VocabularyOption = Annotated[
    Path | None,
    typer.Option(
        "--vocabulary",
        help=f"Vocabulary file, one term a line (default: ${ENVIRONMENT['vocabulary']}, else "
        "annotations/vocabulary.txt when there is one)",
        show_default=False,
        dir_okay=False,
    ),
]


def vocabulary_path(path: Path | None) -> Path:
    """--vocabulary, else the configured vocabulary file."""
    return cli.config.given(vocabulary=path).vocabulary


def open_vocabulary(path: Path | None) -> Vocabulary | None:
    """The vocabulary to hint the recogniser with: the file given (which must be a vocabulary), else the
    configured one; None when that is the project's default file and there is none."""
    chosen = vocabulary_path(path)
    if chosen == PROJECT_VOCABULARY and not chosen.exists():
        return None
    return read_vocabulary(chosen)


@vocabulary_app.command("suggest")
def suggest_command(
    vocabulary: VocabularyOption = None,
    limit: Annotated[int, typer.Option(help="At most this many", min=1)] = 50,
    as_json: cli.JsonOption = False,
    include_restricted: cli.IncludeRestricted = False,
    user: cli.UserOption = None,
    db: cli.DbOption = None,
) -> None:
    """Names, places and terms people wrote in corrections where the recogniser wrote something else: candidates
    for the vocabulary (`ohp vocabulary accept`, or `ohp vocabulary ignore`). From the recordings an export
    writes: closed ones only when a researcher asks, their terms that no other recording has marked."""
    store = cli.open_store(db)
    words = store.corrected_words(cli.exported_scope(store, None, include_restricted, user))
    closed = access.closed_ids(store.list_recordings())
    found = suggest(words, known_terms(vocabulary_path(vocabulary)), store.ignored_terms(), closed)[:limit]
    if as_json:
        typer.echo(terminal_json([s.__dict__ for s in found], indent=1))
        return
    if not found:
        cli.console.print("no suggestions: corrected words that the recogniser missed show here")
        return
    marked = any(s.closed_only for s in found)
    table = Table()
    for column in ("term", "corrected", "recordings", *(["from"] if marked else [])):
        table.add_column(column)
    for s in found:
        table.add_row(
            s.term, str(s.count), str(s.recordings), *([CLOSED_ONLY if s.closed_only else ""] if marked else [])
        )
    cli.console.print(table)
    if marked:
        cli.console.print(f"{CLOSED_ONLY}: {CLOSED_ONLY_WHY}", highlight=False)


@vocabulary_app.command("accept")
def accept(
    terms: Annotated[list[str], typer.Argument(help="Terms to add to the vocabulary")],
    vocabulary: VocabularyOption = None,
    include_restricted: cli.IncludeRestricted = False,
    user: cli.UserOption = None,
    db: cli.DbOption = None,
) -> None:
    """Add terms to the vocabulary file: the next `ohp run` hints them (and transcribes again with them). A term
    written only in corrections of closed recordings only when a researcher asks; none is added if one is not."""
    path = vocabulary_path(vocabulary)
    store = cli.open_store(db)
    if include_restricted:
        cli.check_asks_for_closed(store, user)
    else:
        words, closed = store.corrected_words(), access.closed_ids(store.list_recordings())
        refused = only_in_closed([check_term(term) for term in terms], words, closed)
        if refused:
            named = ", ".join(f"{term} (its {word})" if word else term for term, word in refused)
            raise ForbiddenError(f"{named}: {CLOSED_ONLY_WHY}; nothing added")
    for term, added in zip(terms, add_terms(path, terms), strict=True):
        cli.console.print(f"{term}: {'added to' if added else 'already in'} {path}", highlight=False)


@vocabulary_app.command("ignore")
def ignore(
    terms: Annotated[list[str], typer.Argument(help="Terms not to suggest again")],
    user: cli.UserOption = None,
    db: cli.DbOption = None,
) -> None:
    """Suggest these terms no more."""
    who = cli.need_user(user, "ignoring the terms")
    store = cli.open_store(db)
    for term in terms:
        store.ignore_term(term, who)
        cli.console.print(f"{term}: ignored", highlight=False)


@vocabulary_app.command("check")
def check(vocabulary: VocabularyOption = None) -> None:
    """Read the vocabulary file as `ohp run` does: its terms, or what is wrong with it and on which line."""
    path = vocabulary_path(vocabulary)
    terms = read_vocabulary(path).terms
    cli.console.print(f"{path}: {len(terms)} terms", highlight=False)
