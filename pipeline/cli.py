"""The `ohp` command: a thin layer over the library (batch, store, export)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .batch import FileResult, RunOptions, run_batch
from .engines import DEFAULT_ENGINE
from .export import clock, export_stem, gather, write_exports
from .store import Store, StoreError
from .transcribe import TranscribeOptions

app = typer.Typer(help="ohp: oral-history interviews in, searchable timed transcripts out.", no_args_is_help=True, add_completion=False)
console = Console()
errors = Console(stderr=True)


class EngineName(str, Enum):
    faster_whisper = "faster-whisper"
    openai_whisper = "openai-whisper"


class ScriptPolicy(str, Enum):
    simplified = "simplified"
    traditional = "traditional"
    original = "original"


class Format(str, Enum):
    json = "json"
    srt = "srt"
    vtt = "vtt"
    txt = "txt"


DbOption = Annotated[
    Optional[str],
    typer.Option("--db", envvar="OHP_DATABASE_URL", help="SQLAlchemy URL [default: sqlite:///ohp.db]", show_default=False),
]


def open_store(url: str | None) -> Store:
    try:
        return Store(url)
    except StoreError as e:
        errors.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None


def _check_language(language: str | None) -> str | None:
    if language is None:
        return None
    from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    code = language.lower()
    code = TO_LANGUAGE_CODE.get(code, code)
    if code not in LANGUAGES:
        raise typer.BadParameter(f"{language!r} is not a Whisper language (e.g. zh, en, yue)")
    return code


class SpeedColumn(ProgressColumn):
    """Audio seconds transcribed per second of wall time."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:5.1f} audio s/s" if speed else "", style="cyan")


class BatchProgress:
    """Draws the batch as it goes: the current file, its stage, and speed."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.files = progress.add_task("files", total=None, stage="")
        self.audio = None

    def file_started(self, path: Path, index: int, total: int) -> None:
        self.progress.update(self.files, total=total, completed=index, description=f"[{index + 1}/{total}] {path.name}")

    def stage_started(self, path: Path, stage: str, audio_seconds: float) -> None:
        if self.audio is None:
            self.audio = self.progress.add_task("audio", total=None, stage="")
        if stage == "probe":
            self.progress.reset(self.audio, total=None, description=f"  {path.name}", stage=stage)
        else:
            self.progress.update(self.audio, total=audio_seconds or None, stage=stage)

    def audio_done(self, path: Path, audio_seconds: float) -> None:
        self.progress.update(self.audio, completed=audio_seconds)

    def file_finished(self, result: FileResult) -> None:
        self.progress.advance(self.files)
        if result.status == "failed":
            self.progress.console.print(f"[red]failed:[/red] {result.error}")


def _summary(results: list[FileResult]) -> Table:
    table = Table(title="ohp run", title_justify="left")
    for column, justify in (("file", "left"), ("status", "left"), ("duration", "right"), ("segments", "right"), ("language", "left"), ("time", "right"), ("warnings", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    styles = {"done": "green", "skipped": "dim", "failed": "red"}
    for r in results:
        notes = [w.split(": ", 1)[-1] for w in r.warnings]
        if r.guards:
            notes.append("removed " + ", ".join(f"{n} {kind}" for kind, n in sorted(r.guards.items())))
        if r.error:  # the row already names the file
            notes.append(r.error.removeprefix(f"{r.path.resolve()}: ").removeprefix(f"{r.path}: "))
        table.add_row(
            r.path.name, f"[{styles[r.status]}]{r.status}[/]", clock(r.duration), str(r.segments), r.language or "-", f"{r.seconds:.1f} s", "; ".join(notes)
        )
    return table


@app.command()
def run(
    # readable=False: an unreadable file is the batch's to report, so the other files still run.
    paths: Annotated[list[Path], typer.Argument(help="Audio files and folders (searched recursively)", readable=False)],
    db: DbOption = None,
    out: Annotated[Path, typer.Option(help="Folder for transcript files")] = Path("transcripts"),
    engine: Annotated[EngineName, typer.Option(help="Recogniser")] = EngineName(DEFAULT_ENGINE),
    model: Annotated[str, typer.Option(help="Whisper model: base (offline), another name, or a local path")] = "base",
    language: Annotated[Optional[str], typer.Option(help="Force a language (zh, en, ...); detected per recording if not given")] = None,
    script: Annotated[ScriptPolicy, typer.Option(help="Chinese script of the text (the original is kept beside it)")] = ScriptPolicy.simplified,
    formats: Annotated[list[Format], typer.Option("--format", help="Transcript files to write (repeat for several)")] = list(Format),
    force: Annotated[bool, typer.Option(help="Redo recordings already done with the same settings")] = False,
) -> None:
    """Transcribe recordings into the database and transcript files."""
    options = RunOptions(
        transcribe=TranscribeOptions(engine=engine.value, model=model, language=_check_language(language), script=script.value),
        force=force,
        out_dir=out,
        formats=tuple(f.value for f in formats),
    )
    store = open_store(db)
    columns = (TextColumn("{task.description}"), TextColumn("[magenta]{task.fields[stage]}"), BarColumn(), TaskProgressColumn(), SpeedColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        report = run_batch(paths, store, options, BatchProgress(progress))
    if not report.files:
        errors.print("no audio files found in " + ", ".join(map(str, paths)))
        raise typer.Exit(1)
    console.print(_summary(report.files))
    if report.failed:
        errors.print(f"[red]{len(report.failed)} of {len(report.files)} file(s) failed[/red]")
        raise typer.Exit(1)


@app.command()
def status(db: DbOption = None) -> None:
    """List recordings and the state of their stages."""
    store = open_store(db)
    recordings = store.list_recordings()
    if not recordings:
        console.print(f"no recordings in {store.url}")
        return
    table = Table()
    for column in ("id", "file", "duration", "language", "stages", "segments", "sha256"):
        table.add_column(column, overflow="fold")
    for r in recordings:
        stages = store.stages(r.id)
        state = ", ".join(f"{s.stage}: {s.status}" + (f" ({s.error})" if s.error else "") for s in stages) or "-"
        segments = next((str(s.report.get("segments", "")) for s in stages if s.stage == "transcribe"), "")
        table.add_row(str(r.id), Path(r.path).name, clock(r.duration), r.language or "-", state, segments, r.sha256[:12])
    console.print(table)


@app.command()
def export(
    recordings: Annotated[Optional[list[str]], typer.Argument(help="Recording ids, hash prefixes, paths or names; all if none")] = None,
    formats: Annotated[list[Format], typer.Option("--format", help="Formats to write (repeat for several)")] = [Format.json],
    out: Annotated[Path, typer.Option(help="Folder for the files")] = Path("transcripts"),
    db: DbOption = None,
) -> None:
    """Write transcript files from the database."""
    store = open_store(db)
    try:
        chosen = store.find_recordings(recordings) if recordings else store.list_recordings()
    except LookupError as e:
        errors.print(f"[red]error:[/red] {e.args[0] if e.args else e}")
        raise typer.Exit(2) from None
    stems = [Path(r.path).stem for r in store.list_recordings()]
    taken = {s for s in stems if stems.count(s) > 1}
    for recording in chosen:
        for path in write_exports(gather(store, recording), out, tuple(f.value for f in formats), export_stem(recording, taken)):
            console.print(str(path))

