"""`ohp status`, `ohp describe` and `ohp export`: the recordings and the state of their stages, what is known of
them, and their transcripts and codes written for other tools."""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipeline import access, cli
from pipeline.changes import change_text, change_time
from pipeline.cli.output import check_folder
from pipeline.errors import InvalidInputError
from pipeline.formats.export import FORMATS, ExportFormat, export_recordings, write_redaction_report
from pipeline.formats.redact import DEFAULT_LIST, Redactor, load_list
from pipeline.records import Consent, StageRecord
from pipeline.utils import clock, terminal_json


def stage_state(stage: StageRecord) -> str:
    """A stage's status for `ohp status`, and why it failed: a done stage's failure came after its result, which
    stays."""
    if stage.status == "done" and stage.error:
        return f"{stage.stage}: done; its last run failed: {stage.error}"
    return f"{stage.stage}: {stage.status}" + (f" ({stage.error})" if stage.error else "")


@cli.app.command()
def status(
    by_doubt: Annotated[
        bool, typer.Option("--by-doubt", help="Most doubtful text first: the recordings that most need checking")
    ] = False,
    db: cli.DbOption = None,
) -> None:
    """List recordings and the state of their stages, how much of each is doubtful, and why one is likely poor.
    Every recording, closed ones too: it is the view of whoever runs `ohp run` over them, and shows no transcript
    text, speaker or metadata."""
    store = cli.open_store(db)
    recordings = store.list_recordings()
    if not recordings:
        cli.console.print(f"no recordings in {store.url}")
        return
    if by_doubt:
        recordings.sort(key=lambda r: -(r.doubtful or 0.0))
    table = Table()
    for column in ("id", "file", "duration", "language", "stages", "segments", "speakers", "doubtful", "warnings"):
        table.add_column(column, overflow="fold")
    table.add_column("sha256", overflow="fold")
    for r in recordings:
        stages = {s.stage: s for s in store.stages(r.id)}
        state = ", ".join(map(stage_state, stages.values()))
        # The speakers stage splits segments where the speaker changes: its count is the stored one.
        counted = [stages[name].report for name in ("speakers", "transcribe") if name in stages]
        segments = next((str(report["segments"]) for report in counted if "segments" in report), "")
        speakers = str(stages["speakers"].report.get("speakers", "")) if "speakers" in stages else "-"
        table.add_row(
            str(r.id),
            Path(r.path).name,
            clock(r.duration),
            r.language or "-",
            state or "-",
            segments,
            speakers,
            "-" if r.doubtful is None else f"{r.doubtful:.0%}",
            "; ".join(r.warnings),
            r.sha256[:12],
        )
    cli.console.print(table)


@cli.app.command()
def describe(
    recordings: Annotated[
        list[str] | None, typer.Argument(help="Recording ids, hash prefixes, paths or names; all if none")
    ] = None,
    interviewee: Annotated[str | None, typer.Option(help='Who is interviewed ("" clears)')] = None,
    place: Annotated[str | None, typer.Option(help="Where")] = None,
    date: Annotated[str | None, typer.Option(help="When, YYYY-MM-DD")] = None,
    consent: Annotated[
        Consent | None,
        typer.Option(
            help="What the interviewee agreed to: exports leave closed recordings out, "
            "the web app hides them from viewers"
        ),
    ] = None,
    release_on: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD: the day a restricted or closed recording opens")
    ] = None,
    include_restricted: cli.IncludeRestricted = False,
    user: cli.UserOption = None,
    db: cli.DbOption = None,
) -> None:
    """Show or set what is known of recordings: interviewee, place, date, consent. A closed recording's
    interviewee, place and date are shown only when a researcher asks, as for an export; its file and consent
    always, so that it can be found and opened."""
    store = cli.open_store(db)
    if include_restricted:
        cli.check_asks_for_closed(store, user, "describing closed recordings")
    chosen = cli.choose_recordings(store, recordings)
    changes = {
        "interviewee": interviewee,
        "place": place,
        "recorded_on": date,
        "release_on": release_on,
        "consent": consent and consent.value,
    }
    if any(value is not None for value in changes.values()):
        if not recordings:
            raise typer.BadParameter(
                "name the recordings to change (all of them at once is too easy a mistake)", param_hint="RECORDINGS"
            )
        # Who opened or closed a recording is kept in its history: the consent is changed under a name, and a
        # closed recording is opened only by a researcher's account, as it would be exported (all checked first).
        who, seen = "ohp", None
        if consent or release_on is not None:
            who = cli.need_user(user, "changing the consent")
            account = store.user(who)
            for r in chosen:
                proposed = replace(
                    r,
                    consent=changes["consent"] or r.consent,
                    release_on=r.release_on if release_on is None else release_on or None,
                )
                access.check_opening(account, who, r, proposed)
            seen = {r.id: r for r in chosen}  # the state checked: a change made meanwhile is a conflict
        chosen = store.set_metadata_of([r.id for r in chosen], changes, who, seen)
    table = Table()
    for column in ("id", "file", "interviewee", "place", "date", "consent"):
        table.add_column(column, overflow="fold")
    withheld = set() if include_restricted else access.closed_ids(chosen)
    for r in chosen:
        known = ("withheld",) * 3 if r.id in withheld else (r.interviewee or "-", r.place or "-", r.recorded_on or "-")
        table.add_row(str(r.id), Path(r.path).name, *known, access.consent_label(r))
    cli.console.print(table)
    if withheld:
        cli.errors.print(
            f"withheld the interviewee, place and date of {len(withheld)} closed recording(s); {cli.ASK_FOR_CLOSED}"
        )


@cli.app.command()
def history(
    recording: Annotated[str, typer.Argument(help="The recording: id, hash prefix, path, name or stem")],
    as_json: cli.JsonOption = False,
    include_restricted: cli.IncludeRestricted = False,
    user: cli.UserOption = None,
    codebook: cli.CodebookOption = None,
    db: cli.DbOption = None,
) -> None:
    """Every change to a recording, oldest first: corrections of its text, theme decisions, speakers' names and
    roles, and who opened or closed it. A closed recording's only when a researcher asks, as for an export."""
    store = cli.open_store(db)
    shown, left_out = cli.shown_recordings(
        store, [recording], include_restricted, user, "reading the history of closed recordings"
    )
    if left_out:
        raise typer.Exit(2)
    [chosen] = shown
    changes = store.history(recording_id=chosen.id)
    if as_json:
        print(terminal_json([asdict(change) for change in changes]))
        return
    if not changes:
        cli.console.print(f"no changes to {Path(chosen.path).name} yet")
        return
    book = cli.open_codebook(codebook, for_labels=True)
    table = Table(title=f"history of {Path(chosen.path).name}")
    for column in ("when", "who", "what", "before", "after"):
        table.add_column(column, overflow="fold")
    for change in changes:
        what = change.action + (f" (segment {change.segment_id})" if change.segment_id is not None else "")
        before, after = change_text(change.before, book), change_text(change.after, book)
        table.add_row(change_time(change.changed_at), change.changed_by, what, before, after)
    cli.console.print(table)


@cli.app.command()
def export(
    recordings: Annotated[list[str] | None, typer.Argument(help="Recording ids, hash prefixes, paths or names")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every recording (the default when none is named)")] = False,
    formats: Annotated[
        list[ExportFormat] | None,
        typer.Option(
            "--format",
            help=f"Formats to write (repeat for several): {', '.join(FORMATS)}",
            show_default=ExportFormat.JSON,
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the files")] = Path("transcripts"),
    include_restricted: Annotated[
        bool, typer.Option(help="Export closed recordings too (researchers only: give --user)")
    ] = False,
    redact: Annotated[
        str | None,
        typer.Option(
            help="Replace names and/or places with [NAME]/[PLACE]: names, places or names,places", metavar="KINDS"
        ),
    ] = None,
    redact_list: Annotated[
        Path, typer.Option(help='The project\'s own names to redact, one per line ("place: X" for places)')
    ] = DEFAULT_LIST,
    user: cli.UserOption = None,
    codebook: cli.CodebookOption = None,
    db: cli.DbOption = None,
) -> None:
    """Write transcripts and codes for other tools: subtitles, documents, ELAN, REFI-QDA (NVivo, ATLAS.ti,
    MAXQDA, QualCoder), OHMS, CSV. Closed recordings are left out unless a researcher asks for them."""
    if all_ and recordings:
        raise typer.BadParameter("name recordings or give --all, not both", param_hint="--all")
    check_folder(out, "--out")
    store = cli.open_store(db)
    if include_restricted:
        cli.check_asks_for_closed(store, user, "exporting closed recordings", "export closed recordings")
    # Its token patterns checked only when redacting: the tagger then finds names; else its labels are all.
    book = cli.open_codebook(codebook, for_labels=redact is None)
    redactor = None
    if redact is not None:  # --redact "" asks to redact nothing: an error, not an export with every name in it
        kinds = {kind.strip() for kind in redact.split(",") if kind.strip()}
        try:
            # No list is no names listed only when none was asked for: a list given and unreadable (missing, a
            # folder) is an error, not an export with the names it holds left in.
            given = redact_list != DEFAULT_LIST or redact_list.exists()
            listed = load_list(redact_list) if given else {}
        except InvalidInputError as e:
            raise typer.BadParameter(str(e), param_hint="--redact-list") from None
        from pipeline.stages.tag import find_entities  # spaCy: only when redacting

        try:
            redactor = Redactor(kinds, listed, partial(find_entities, codebook=book))
        except InvalidInputError as e:
            raise typer.BadParameter(str(e), param_hint="--redact") from None
    chosen = cli.choose_recordings(store, recordings)
    report = export_recordings(
        store,
        chosen,
        tuple(f.value for f in formats or [ExportFormat.JSON]),
        out,
        codebook=book,
        include_closed=include_restricted,
        redactor=redactor,
    )
    for path in report.files:
        cli.console.print(str(path))
    if report.left_out:
        names = ", ".join(f"{Path(r.path).name} ({why})" for r, why in report.left_out)
        cli.errors.print(
            f"left out {len(report.left_out)} closed recording(s): {names}; "
            "--include-restricted --user NAME (a researcher) exports them"
        )
    if redactor:
        # Made absolute without following links ("." has no name): beside the folder named, not beside the
        # target of a link named so (a synced folder: the report would leave with the files).
        folder = Path(os.path.abspath(out))
        path = folder.parent / f"{folder.name}-redactions.csv"  # beside the folder, not in what gets shared
        write_redaction_report(report.redactions, path)
        cli.console.print(
            f"{len(report.redactions)} replacement(s), listed in {path}: check them before sharing the files"
        )
    if recordings and report.left_out:  # asked for by name and not written: that is no success
        raise typer.Exit(2)
