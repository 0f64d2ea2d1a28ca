"""`ohp import`: transcripts people made, and codes added in ELAN or a QDA program, loaded into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from pipeline import access, cli
from pipeline.errors import ConflictError, InvalidInputError
from pipeline.utils import clock


@cli.app.command("import")
def import_command(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Transcripts (ohp JSON, SRT, WebVTT, plain text), "
            "or codes for recordings ohp has (ELAN .eaf, REFI-QDA .qdpx)",
            readable=False,
        ),
    ],
    audio: Annotated[Path | None, typer.Option(help="The recording the transcript belongs to (one FILE only)")] = None,
    tag: Annotated[bool, typer.Option(help="Tag themes from the codebook after importing")] = True,
    codebook: cli.CodebookOption = None,
    db: cli.DbOption = None,
) -> None:
    """Load transcripts people made, as recordings with segments; or codes added in ELAN or a QDA program, as
    annotations by their coders."""
    from pipeline.imports import CODINGS_READERS, import_codings, import_file

    if audio and len(files) != 1:
        raise typer.BadParameter(
            "--audio links one transcript to its recording: give exactly one FILE", param_hint="--audio"
        )
    coded = [path for path in files if path.suffix.lower() in CODINGS_READERS]
    if audio and coded:
        raise typer.BadParameter(
            f"{coded[0].name} names its recordings itself: --audio is for transcripts", param_hint="--audio"
        )
    book = cli.open_codebook(codebook) if tag or coded else None
    model = cli.open_model() if tag else None
    store = cli.open_store(db)
    failed = 0
    for path in files:
        try:
            if path in coded:
                assert book is not None  # opened above for the files of codings
                report = import_codings(CODINGS_READERS[path.suffix.lower()](path, book), store)
            else:
                recording_id = import_file(path, store, audio, book if tag else None, model)
        except (InvalidInputError, ConflictError) as e:
            # The file's fault (what it holds, the audio it names), or its codes' segments changed meanwhile (imported
            # again, they match the text as it is then): the next goes on.
            said = str(e) if str(path) in str(e) else f"{path}: {e}"
            cli.errors.print(Text.assemble(("failed:", "red"), f" {said}"), highlight=False)
            failed += 1
            continue
        if path in coded:
            cli.console.print(
                f"{path}: {report.codings} coding(s) for recording(s) "
                f"{', '.join(map(str, report.recordings)) or '-'}: "
                f"{report.added} annotation(s) added or accepted, {report.unchanged} already there, "
                f"{len(report.kept)} kept as decided in ohp"
            )
            assert book is not None  # as above
            # A person's rejection the file's code did not overturn: theirs to look at. Who decided what, where and
            # when on a closed recording is its content, which the file does not hold: counted, not shown.
            closed = access.closed_ids(store.recording(i) for i in {kept.recording_id for kept in report.kept})
            shown = [kept for kept in report.kept if kept.recording_id not in closed]
            for kept in shown:
                cli.console.print(
                    f"  kept: {kept.coder}'s {book.label(kept.theme)} at {clock(kept.start)}-{clock(kept.end)} "
                    f"of recording {kept.recording_id}: rejected by {kept.decided_by} on {kept.decided_at[:10]}, "
                    "stays rejected",
                    highlight=False,
                )
            if hidden := len(report.kept) - len(shown):
                # ohp history --include-restricted shows them to a researcher
                cli.console.print(f"  kept: {hidden} on closed recording(s), not shown")
            for warning in report.warnings:
                cli.errors.print(Text.assemble("  ", ("warning:", "yellow"), f" {warning}"), highlight=False)
        else:
            cli.console.print(f"{path}: recording {recording_id}, {len(store.segments(recording_id))} segments")
    if failed:
        raise typer.Exit(1)
