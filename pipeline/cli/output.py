"""What `ohp run` shows as it goes and when it is done.

In a terminal: a progress bar, then a table of the files (a file name is never broken over lines: when
the table cannot fit the names whole, the files are listed as lines instead). Anywhere else (a log file,
`make run`, CI): one plain line per file as it finishes, whole however long, and a line of totals.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console, ConsoleOptions, RenderableType
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from pipeline.utils import clock, inert, resolved, write_atomic

if TYPE_CHECKING:
    from pipeline.batch import FileResult

STATUS_STYLES = {"done": "green", "skipped": "dim", "failed": "red"}


class Terminal(Console):
    """ohp's console, the one place outside text (transcripts, speaker names, codebook labels, file names,
    messages that quote them) is made safe to print: a string is never markup unless the call says
    markup=True (for ohp's own words only: styles are given as Text), and no control character of a string
    or a Text reaches the terminal (`inert`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(inert(text), **kwargs)

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        if isinstance(renderable, Text) and inert(renderable.plain) != renderable.plain:
            renderable = renderable.copy()
            renderable.plain = inert(renderable.plain)  # one character for one: its styles' spans hold
        return super().render(renderable, options)


def cause(result: FileResult) -> str:
    """Why the file failed, without its path (the line or the row names the file)."""
    return (result.error or "").removeprefix(f"{resolved(result.path)}: ").removeprefix(f"{result.path}: ")


def notes(result: FileResult) -> list[str]:
    """The file's warnings, what the guards removed, and the cause of a failure."""
    found = [w.split(": ", 1)[-1] for w in result.warnings]
    if result.guards:
        found.append("removed " + ", ".join(f"{n} {kind}" for kind, n in sorted(result.guards.items())))
    if result.error:
        found.append(cause(result))
    return found


def file_line(result: FileResult) -> str:
    """One line for a log: the full path, status, duration, segments, speakers, language, time taken,
    and the warnings; or the cause of the failure."""
    path = resolved(result.path)
    if result.status == "failed":
        by = f" by {result.worker}" if result.worker else ""
        return _one_line(f"{path}: failed after {result.seconds:.1f} s{by}: {cause(result)}")
    facts = [result.status, clock(result.duration), f"{result.segments} segments"]
    if result.speakers is not None:
        facts.append(f"{result.speakers} speakers")
    facts.append(result.language or "no language")
    if result.doubtful is not None:
        facts.append(f"{result.doubtful:.0%} doubtful")
    facts.append(f"{result.seconds:.1f} s")
    if result.worker:
        facts.append(f"by {result.worker}")
    return _one_line(f"{path}: {', '.join(facts)}" + "".join(f"; {note}" for note in notes(result)))


def _one_line(line: str) -> str:
    """A line break in a file's name (or a message) shown as ␊, as `inert` shows other controls: a log's reader
    takes a line for a file."""
    return line.replace("\n", "\u240a")


def total_line(results: list[FileResult]) -> str:
    counts = Counter(r.status for r in results)
    seconds = sum(r.seconds for r in results)
    said = ", ".join(f"{counts[status]} {status}" for status in STATUS_STYLES if counts[status])
    return f"ohp run: {len(results)} file(s) in {seconds:.1f} s: {said}"


def check_folder(folder: Path, option: str) -> None:
    """A folder ohp will write in, checked before the work (hours of transcribing, say): a file where it should
    be, or a folder ohp may not write in, is a usage error naming it, not a traceback once the work is done."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:  # the folder, or the nearest one it goes in
        existing = existing.parent
    if not existing.is_dir():
        raise typer.BadParameter(f"{existing} is a file, not a folder", param_hint=option)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write in {existing}: permission denied", param_hint=option)


def write_report(results: list[FileResult], path: Path, stopped: bool = False) -> None:
    """The per-file results as JSON, for scripts: the fields of each FileResult, its path made absolute; `stopped`:
    the batch was stopped (Ctrl-C) after these files."""
    files = [{**asdict(r), "path": str(resolved(r.path))} for r in results]
    counts = Counter(r.status for r in results)
    document = {"files": files, "counts": {status: counts[status] for status in STATUS_STYLES}, "stopped": stopped}
    text = json.dumps(document, ensure_ascii=False, indent=1) + "\n"
    # A name that is not UTF-8 holds lone surrogates: written as JSON's \udcXX escapes, which read back to them.
    write_atomic(path, text.encode("utf-8", "backslashreplace"))


class SpeedColumn(ProgressColumn):
    """Audio seconds transcribed per second of wall time."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:5.1f} audio s/s" if speed else "", style="cyan")


class BarProgress:
    """Draws the batch as it goes, in a terminal: the current file, its stage, and speed."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.files = progress.add_task("files", total=None, stage="")
        self.audio: TaskID | None = None  # the bar of the file being transcribed, added when a stage first starts
        self.finished: list[FileResult] = []  # what a stopped batch (Ctrl-C) did

    def file_started(self, path: Path, index: int, total: int) -> None:
        # Files finish in the order they started here, but not on a cluster: file_finished counts them.
        self.progress.update(self.files, total=total, description=f"[{index + 1}/{total}] {path.name}")

    def audio_task(self) -> TaskID:
        if self.audio is None:
            self.audio = self.progress.add_task("audio", total=None, stage="")
        return self.audio

    def stage_started(self, path: Path, stage: str, audio_seconds: float) -> None:
        if stage == "probe":
            self.progress.reset(self.audio_task(), total=None, description=f"  {path.name}", stage=stage)
        else:
            self.progress.update(self.audio_task(), total=audio_seconds or None, stage=stage)

    def audio_done(self, path: Path, audio_seconds: float) -> None:
        self.progress.update(self.audio_task(), completed=audio_seconds)

    def file_finished(self, result: FileResult) -> None:
        self.finished.append(result)
        self.progress.advance(self.files)
        if result.status == "failed":
            self.progress.console.print(Text.assemble(("failed:", "red"), " ", result.error or ""), highlight=False)

    def finish(self, results: list[FileResult]) -> None:
        """The table, or the files' lines where the terminal is too narrow for the names whole."""
        console = self.progress.console
        table = summary_table(results)
        # Rich squeezes even a no-wrap column when nothing else gives: look at the table as it would be drawn.
        drawn = "\n".join("".join(piece.text for piece in line) for line in console.render_lines(table))
        if all(inert(r.path.name) in drawn for r in results):
            console.print(table)
        else:
            for result in results:
                print_plain(console, file_line(result))
        print_plain(console, total_line(results))


class LineProgress:
    """A plain line per file as it finishes, for a log."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.finished: list[FileResult] = []  # shown as they finished

    def file_started(self, path: Path, index: int, total: int) -> None:
        pass

    def stage_started(self, path: Path, stage: str, audio_seconds: float) -> None:
        pass

    def audio_done(self, path: Path, audio_seconds: float) -> None:
        pass

    def file_finished(self, result: FileResult) -> None:
        print_plain(self.console, file_line(result))
        self.finished.append(result)

    def finish(self, results: list[FileResult]) -> None:
        """The lines of files the batch did not go through (a path that is not there), and the totals."""
        shown = {r.path for r in self.finished}
        for result in results:
            if result.path not in shown:
                print_plain(self.console, file_line(result))
        print_plain(self.console, total_line(results))


def print_plain(console: Console, line: str) -> None:
    """The line as it is: no markup, no colour, never wrapped."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def batch_progress(console: Console) -> Iterator[BarProgress | LineProgress]:
    """A progress bar in a terminal, else the plain line of each file as it finishes; after the block,
    its `finish` shows the results."""
    if not console.is_terminal:
        yield LineProgress(console)
        return
    columns = (
        TextColumn("{task.description}", markup=False),  # a file's name
        TextColumn("{task.fields[stage]}", style="magenta", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        SpeedColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        yield BarProgress(progress)


def summary_table(results: list[FileResult]) -> Table:
    table = Table(title="ohp run", title_justify="left")
    on_cluster = any(r.worker for r in results)
    columns = (
        "file",
        "status",
        "duration",
        "segments",
        "speakers",
        "language",
        "doubtful",
        "time",
        "worker",
        "warnings",
    )
    for column in [c for c in columns if c != "worker" or on_cluster]:
        right = column in ("duration", "segments", "speakers", "doubtful", "time")
        table.add_column(column, justify="right" if right else "left", overflow="fold", no_wrap=column == "file")
    for r in results:
        speakers = "-" if r.speakers is None else str(r.speakers)
        status = Text(r.status, style=STATUS_STYLES[r.status])
        table.add_row(
            r.path.name,
            status,
            clock(r.duration),
            str(r.segments),
            speakers,
            r.language or "-",
            "-" if r.doubtful is None else f"{r.doubtful:.0%}",
            f"{r.seconds:.1f} s",
            *([r.worker or "-"] if on_cluster else []),
            "; ".join(notes(r)),
        )
    return table
