"""`ohp search`: the transcripts searched, each hit highlighted, with its recording and the moment in the
audio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.cells import cell_len
from rich.text import Text

from pipeline import cli
from pipeline.cli.failures import report_error
from pipeline.errors import InvalidInputError
from pipeline.records import NOT_REJECTED, AnnotationStatus, SearchFilters, speaker_title
from pipeline.search.textindex import QuerySyntaxError, highlight, parse_query
from pipeline.utils import as_date, clock, inert, terminal_json


def _iso_date(value: str | None) -> str | None:
    """An option's date, checked as the store checks it, so that a bad one is refused by the option's name."""
    if value is not None:
        try:
            as_date(value, "the date")
        except InvalidInputError as e:
            raise typer.BadParameter(str(e)) from None
    return value


# A query may start with an exclusion ('-wages held'): an unknown "option" is the query's text, not an error.
@cli.app.command(context_settings={"ignore_unknown_options": True})
def search(
    query: Annotated[str, typer.Argument(help='Words, "phrases", AND / OR / NOT or -word, prefix*')],
    theme: Annotated[str | None, typer.Option(help="Only segments with this theme (or one nested in it)")] = None,
    status: Annotated[
        list[AnnotationStatus] | None,
        typer.Option(help="Theme status that counts for --theme (repeatable)", show_default=", ".join(NOT_REJECTED)),
    ] = None,
    speaker: Annotated[
        str | None, typer.Option(help="Only this speaker: a label (S1), a name, or a role (interviewee)")
    ] = None,
    recording: Annotated[
        str | None, typer.Option(help="Only this recording (id, hash prefix, path, name or stem)")
    ] = None,
    language: Annotated[str | None, typer.Option(help="Only segments in this language")] = None,
    interviewee: Annotated[str | None, typer.Option(help="Recording metadata: interviewee contains")] = None,
    place: Annotated[str | None, typer.Option(help="Recording metadata: place contains")] = None,
    date_from: Annotated[
        str | None, typer.Option("--from", help="Recorded on or after (YYYY-MM-DD)", callback=_iso_date)
    ] = None,
    date_to: Annotated[
        str | None, typer.Option("--to", help="Recorded on or before (YYYY-MM-DD)", callback=_iso_date)
    ] = None,
    doubtful: Annotated[
        bool, typer.Option("--doubtful", help="Only segments with words the recogniser doubted")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Hits to show")] = 20,
    as_json: cli.JsonOption = False,
    include_restricted: cli.IncludeRestricted = False,
    user: cli.UserOption = None,
    codebook: cli.CodebookOption = None,
    db: cli.DbOption = None,
) -> None:
    """Search the transcripts; each hit with its recording and the moment in the audio. Closed recordings only
    when a researcher asks, as for an export: whoever runs ohp may read the database, but the command cannot tell
    who that is (pipeline/access.py)."""
    try:
        parsed = parse_query(query)
    except QuerySyntaxError as e:
        report_error(e.message)
        cli.errors.print(f"  {query}\n  {' ' * cell_len(inert(query[: e.position]))}^", markup=False, highlight=False)
        raise typer.Exit(2) from None
    book = cli.open_codebook(codebook, for_labels=True)
    theme = book.theme_id(theme) if theme else None  # a label does too; an unknown theme is an error
    store = cli.open_store(db)
    searched, left_out = cli.shown_recordings(
        store, [recording] if recording else None, include_restricted, user, "searching closed recordings"
    )
    if recording and left_out:  # the one recording asked for is closed: nothing was searched
        raise typer.Exit(2)
    if store.count_segments() == 0:
        cli.errors.print(f"nothing to search: no transcripts in {store.url} yet (ohp run or ohp import first)")
        if as_json:
            print(terminal_json({"total": 0, "hits": []}))
        return
    themes = (theme, *book.descendants(theme)) if theme else ()
    filters = SearchFilters(
        themes=themes,
        theme_status=tuple(s.value for s in status or NOT_REJECTED),
        speaker=speaker,
        recording=searched[0].id if recording else None,
        language=language,
        interviewee=interviewee,
        place=place,
        date_from=date_from,
        date_to=date_to,
        hide_closed=not include_restricted,
        doubtful=doubtful,
    )
    results = store.search(parsed, filters, limit=limit)
    if as_json:
        hits = []
        for hit in results.hits:
            snippet = highlight(hit.text, parsed)
            hits.append(
                {
                    "recording": Path(hit.recording_path).name,
                    "recording_path": hit.recording_path,
                    "segment_id": hit.segment_id,
                    "start": round(hit.start, 3),
                    "end": round(hit.end, 3),
                    "speaker": hit.speaker,
                    "speaker_name": hit.speaker_name,
                    "speaker_role": hit.speaker_role,
                    "text": hit.text,
                    "snippet": snippet.text,
                    "themes": list(hit.themes),
                }
            )
        print(terminal_json({"total": results.total, "hits": hits}))
        return
    if not results.hits:
        cli.console.print(f"no matches for {query!r}")
        return
    for hit in results.hits:
        snippet = highlight(hit.text, parsed)
        line = Text.assemble(
            (Path(hit.recording_path).name, "bold"),
            " ",
            (clock(hit.start), "cyan"),
            " ",
            (f"{speaker_title(hit.speaker, hit.speaker_name, hit.speaker_role)}: " if hit.speaker else "", "magenta"),
            cli.highlighted(snippet.text, tuple(snippet.spans), "bold red"),
            (f"  [{', '.join(map(book.label, hit.themes))}]" if hit.themes else "", "green"),
        )
        cli.console.print(line)
    shown = len(results.hits)
    cli.console.print(
        Text(f"{shown} of {results.total} hits" if results.total > shown else f"{shown} hits", style="dim")
    )
