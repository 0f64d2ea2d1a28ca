"""`ohp review`: a recording's theme suggestions walked through, accepted, rejected or added to (its doubtful
passages, with --doubtful: pipeline/cli/doubt.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from pipeline import access, cli
from pipeline.cli.keys import read_key
from pipeline.errors import ConflictError, TextChangedError
from pipeline.records import speaker_title
from pipeline.utils import clock

if TYPE_CHECKING:
    from pipeline.stages.codebook import Codebook
    from pipeline.store import Store


@cli.app.command()
def review(
    recording: Annotated[str, typer.Argument(help="The recording (id, hash prefix, path, name or stem)")],
    doubtful: Annotated[
        bool, typer.Option("--doubtful", help="Walk the doubtful passages instead, the likeliest wrong first")
    ] = False,
    user: cli.UserOption = None,
    codebook: cli.CodebookOption = None,
    db: cli.DbOption = None,
) -> None:
    """Walk through a recording's theme suggestions: accept, reject, add a theme, or skip. With --doubtful, its
    doubtful passages: each with the moment to listen from, to correct or skip. Reviewing is an annotator's work,
    decided under the name --user gives: a closed recording is shown only when that name is an account that sees
    closed recordings, as in the web app (an annotator or a researcher)."""
    user = cli.need_user(user, "reviewing")
    store = cli.open_store(db)
    [chosen] = cli.choose_recordings(store, [recording])
    access.check_named_sees(store.user(user), user, chosen)
    if doubtful:
        from pipeline.cli.doubt import walk_doubtful

        return walk_doubtful(store, chosen, user, cli.console)
    book = cli.open_codebook(codebook, for_labels=True)
    # Read as one state: a pass saving the recording meanwhile gave suggestions on segments not read.
    export = store.recording_export(chosen.id)
    ordered = export.segments
    at = {s.id: i for i, s in enumerate(ordered)}
    speakers = {s.label: s for s in export.speakers}
    waiting = [a for s in ordered for a in export.annotations.get(s.stored_id, []) if a.status == "suggested"]
    if not waiting:
        cli.console.print(f"{Path(chosen.path).name}: no suggestions waiting")
        return
    cli.console.print(
        f"{Path(chosen.path).name}: {len(waiting)} suggestions. Keys: a accept, r reject, t add a theme, s skip, q quit"
    )

    def said(segment, text: Text | str, style: str = "") -> Text:
        """A segment as a line: its time, who says it, what."""
        speaker = speakers.get(segment.speaker or "")
        who = speaker_title(segment.speaker, speaker.name, speaker.role) if speaker else segment.speaker
        return Text.assemble(
            (f"{clock(segment.start)} ", "cyan"), (f"{who}: " if who else "", "magenta"), text, style=style
        )

    decided = added = 0

    def tally() -> str:
        return f"{decided} decided" + (f", {added} theme(s) added" if added else "")

    for n, annotation in enumerate(waiting, 1):
        index = at[annotation.segment_id]
        segment = ordered[index]
        cli.console.rule(
            f"{n}/{len(waiting)}  {clock(segment.start)}-{clock(segment.end)}  "
            f"{book.label(annotation.theme)}  ({annotation.score or 0:.2f}, {annotation.origin or 'a person'})"
        )
        # The question before and the answer going on after: what the suggestion's words mean depends on them.
        if index > 0:
            cli.console.print(said(ordered[index - 1], ordered[index - 1].text, "dim"))
        cli.console.print(said(segment, cli.highlighted(segment.text, annotation.evidence)))
        if index + 1 < len(ordered):
            cli.console.print(said(ordered[index + 1], ordered[index + 1].text, "dim"))
        while True:
            key = read_key("a/r/t/s/q", default="s")
            if key in ("a", "r"):
                try:
                    store.decide(
                        annotation.id, "accepted" if key == "a" else "rejected", user, version=annotation.version
                    )
                    decided += 1
                except ConflictError as e:
                    cli.console.print(Text.assemble(("not saved:", "yellow"), f" {e} (now {e.current.status})"))
            elif key == "t":
                added += _add_theme(store, book, segment, user)
                continue
            elif key == "q":
                cli.console.print(tally())
                return
            elif key != "s":
                continue
            break
    cli.console.print(tally())


def _add_theme(store: Store, book: Codebook, segment, user: str) -> bool:
    """Ask for a theme (id or label) and the words that are its evidence, again until they are right;
    an empty theme gives up. Whether a theme was added."""
    cli.console.print("themes: " + "; ".join(f"{t} ({book.label(t)})" for t in book.ids), highlight=False)
    while True:
        name = typer.prompt("theme (empty to go back)", default="", show_default=False).strip()
        if not name:
            return False
        theme = book.find(name)
        if theme:
            break
        cli.console.print(Text(f"no theme {name!r} in the codebook", style="yellow"))
    while True:
        words = typer.prompt("evidence: words from the text (empty for none)", default="", show_default=False).strip()
        at = segment.text.find(words) if words else -1
        if not words or at >= 0:
            break
        cli.console.print(Text(f"{words!r} is not in the text: copy words from it", style="yellow"))
    evidence = ((at, at + len(words)),) if words else ()
    try:
        store.add_annotation(segment.id, theme, user, evidence, version=segment.version)
    except TextChangedError as e:  # the words were found in the text shown: in the text now they may be elsewhere
        cli.console.print(Text(f"not added: {e.current['changed_by'] or 'someone'} changed the text to:", "yellow"))
        cli.console.print(Text(e.current["text"]))
        return False
    except ConflictError as e:  # someone rejected it: overturning that is a decision on what they decided
        cli.console.print(Text(str(e), style="yellow"))
        if not typer.confirm("accept it anyway?", default=False):
            return False
        store.decide(e.current.id, "accepted", user, version=e.current.version)
        store.add_annotation(segment.id, theme, user, evidence)
    cli.console.print(f"added {book.label(theme)}")
    return True
