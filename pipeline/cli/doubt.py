"""`ohp review --doubtful`: a recording's doubtful passages, the likeliest wrong first, each shown with the
moment to listen from (a little before it) and corrected in place."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from pipeline.cli.keys import read_key
from pipeline.errors import ConflictError, InvalidInputError
from pipeline.records import RecordingRecord
from pipeline.stages.doubt import Passage, by_risk, doubtful_passages
from pipeline.store import Store
from pipeline.utils import timestamp

LEAD_IN = 1.5  # s before a passage to listen from, to hear it in its context (as the web page plays it)


def shown(passage: Passage) -> Text:
    """The passage's segment with the passage underlined."""
    text = Text(passage.segment.text)
    if passage.chars:
        text.stylize("bold underline red", *passage.chars)
    return text


def listen_from(passage: Passage) -> str:
    """Where to play it from, and what it spans: recording time, to the tenth of a second."""
    start = timestamp(max(0.0, passage.start - LEAD_IN))[:-2]
    return f"listen from {start}: {timestamp(passage.start)[:-2]}-{timestamp(passage.end)[:-2]}"


def walk_doubtful(store: Store, recording: RecordingRecord, user: str, console: Console) -> None:
    """Walk the recording's doubtful passages by risk: c corrects the segment's text, s skips, q quits. A
    corrected segment's other passages are passed over: a person has read it."""
    passages = by_risk(doubtful_passages(store.segments(recording.id)))
    name = Path(recording.path).name
    if not passages:
        console.print(f"{name}: no doubtful words")
        return
    console.print(
        f"{name}: {len(passages)} doubtful passages, the likeliest wrong first. Keys: c correct, s skip, q quit"
    )
    corrected: set[int] = set()
    for n, passage in enumerate(passages, 1):
        segment = passage.segment
        if segment.stored_id in corrected:
            continue
        console.rule(f"{n}/{len(passages)}  {listen_from(passage)}  (segment confidence {segment.confidence or 0:.2f})")
        console.print(shown(passage))
        while True:
            key = read_key("c/s/q", default="s")
            if key == "q":
                console.print(f"{len(corrected)} corrected")
                return
            if key == "c":
                # Not shown as the default: click would write it raw, control characters and all (it is above).
                text = typer.prompt("text (empty keeps it)", default=segment.text, show_default=False).strip()
                if text and text != segment.text:
                    try:
                        store.correct_text(segment.stored_id, text, user, segment.version)
                        corrected.add(segment.stored_id)
                    except ConflictError as e:
                        # As the web app does: their version and who saved it, to correct again from (c) or keep.
                        theirs = e.current
                        segment = replace(segment, text=theirs["text"], version=theirs["version"])
                        console.print(Text(f"not saved: {theirs['changed_by'] or 'someone'} saved it first:", "yellow"))
                        console.print(Text(segment.text))
                        continue
                    except InvalidInputError as e:
                        console.print(Text.assemble(("not saved:", "yellow"), f" {e}"))
                        continue
            elif key != "s":
                continue
            break
    console.print(f"{len(corrected)} corrected")
