"""The `ohp` command: a thin layer over the library (batch, store, export)."""

from __future__ import annotations

import gc
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

# Only what the commands' definitions need is imported here and in the commands' modules; the stages, the store
# and the batch are imported in the commands that use them, so that `ohp --help`, `ohp status` or `ohp search`
# start fast.
from pipeline import access
from pipeline.cli.failures import ReportingGroup, report_error
from pipeline.cli.output import Terminal, batch_progress, check_folder, write_report
from pipeline.config import ENVIRONMENT, Config, Device, setup_logging
from pipeline.errors import InvalidInputError, NotFoundError
from pipeline.formats.export import DEFAULT_FORMATS, PROJECT_WRITERS, ExportFormat
from pipeline.records import RecordingRecord
from pipeline.script import Script
from pipeline.stages.codebook import Codebook, CodebookError, load_codebook
from pipeline.stages.engines import DEFAULT_BATCH_SIZES, DEFAULT_ENGINE, ComputeType, EngineName
from pipeline.utils import clean_name

if TYPE_CHECKING:
    from pipeline.process import SpeakerOptions
    from pipeline.stages.learned import ThemeModel
    from pipeline.store import Store

# resemblyzer warns about pkg_resources at import.
warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)

# Annotated: the commands' modules, imported at the end of this one, use it, and mypy cannot infer a type across
# that cycle.
app: typer.Typer = typer.Typer(
    help="ohp: oral-history interviews in, searchable timed transcripts out.",
    no_args_is_help=True,
    add_completion=False,
    cls=ReportingGroup,  # ohp's errors as messages and exit code 2, any other with its traceback in the log
)
# Outside text (transcripts, names, labels, file names) is printed as it is written: see Terminal.
console = Terminal()
errors = Terminal(stderr=True)
config = Config()  # replaced by the configuration read when a command starts (see main)
opened = ExitStack()  # the stores a command opened, closed when it ends (see main)
RUN_FORMATS = tuple(map(ExportFormat, DEFAULT_FORMATS))  # the transcript files ohp run writes by default


CodebookOption = Annotated[
    Path | None,
    typer.Option(
        "--codebook",
        show_default=False,
        help=f"Codebook YAML (default: ${ENVIRONMENT['codebook']}, else annotations/codebook.yaml here, else ohp's)",
    ),
]
UserOption = Annotated[
    str | None,
    typer.Option(
        "--user",
        help=f"Your account: who decides, or asks for closed recordings (default: ${ENVIRONMENT['user']})",
        show_default=False,
    ),
]
IncludeRestricted = Annotated[bool, typer.Option(help="Closed recordings too (researchers only: give --user)")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help=f"SQLAlchemy URL (default: ${ENVIRONMENT['database_url']}, else sqlite:///ohp.db)",
        show_default=False,
    ),
]
DeviceOption = Annotated[
    Device | None,
    typer.Option(
        help=f"Where models run: auto is CUDA when there is a GPU (default: ${ENVIRONMENT['device']}, else auto)",
        show_default=False,
    ),
]


def ohp() -> None:
    """The `ohp` command. When the command has ended (its stores closed, its files written whole), the objects
    left are frozen out of the garbage collector: the interpreter's collections at exit would walk all of them
    (models, dictionaries, SQLAlchemy's tables) for nothing, 0.2-0.3 s after `ohp run` (bench/RESULTS.md). Exit
    handlers still run (threads joined, logs flushed)."""
    try:
        app()
    finally:
        gc.freeze()


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what ohp does on standard error, from DEBUG")
    ] = False,
    log_file: Annotated[
        Path | None,
        typer.Option(
            help=f"Also log to this file, from INFO: models loaded, files written, failures with their tracebacks "
            f"(default: ${ENVIRONMENT['log_file']})",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """The configuration is read once, here: these flags over OHP_* environment variables over defaults."""
    global config
    ctx.call_on_close(opened.close)
    try:
        config = Config.load(log_level="DEBUG" if verbose else None, log_file=log_file)
    except InvalidInputError as e:
        report_error(str(e))
        raise typer.Exit(2) from None
    except OSError as e:  # the working folder, where a project's own files are looked for
        report_error(f"cannot read {e.filename or 'the working folder'}: {e.strerror or e}")
        raise typer.Exit(2) from None
    try:
        setup_logging(config)
    except OSError as e:
        report_error(f"cannot write the log file {config.log_file}: {e.strerror or e}")
        raise typer.Exit(2) from None


def need_user(user: str | None, doing: str) -> str:
    """The name of who is doing it, kept as an account's name is (clean_name); one of blanks, or with a line break
    or an invisible character in it, names no one and is refused as a missing one."""
    given = config.given(user=user).user or ""
    name = clean_name(given)
    if not name or not name.isprintable():
        named = f" ({given!r} names no one)" if given else ""
        report_error(f"who is {doing}? pass --user NAME or set {ENVIRONMENT['user']}{named}")
        raise typer.Exit(2)
    return name


def open_store(url: str | None) -> Store:
    """The database of --db, else the configured one, open until the command ends."""
    from pipeline.store import Store, StoreError

    try:
        return opened.enter_context(Store(config.given(database_url=url).database_url))
    except StoreError as e:
        report_error(str(e))
        raise typer.Exit(2) from None


def codebook_path(path: Path | None) -> Path:
    """--codebook, else the configured codebook."""
    return config.given(codebook=path).codebook


def open_codebook(path: Path | None, *, for_labels: bool = False) -> Codebook:
    """The codebook in use; `for_labels`: only its labels are read, so spaCy's check of its token patterns
    waits for the tagger (see load_codebook)."""
    path = codebook_path(path)
    try:
        return load_codebook(path, check_tokens=not for_labels)
    except FileNotFoundError:
        raise NotFoundError(f"no codebook at {path}") from None
    except CodebookError as e:
        report_error(f"{path} has problems (see `ohp codebook validate`):")
        for problem in e.problems:
            errors.print(f"  {path}:{problem.line}: {problem.message}")
        raise typer.Exit(2) from None


def open_model() -> ThemeModel:
    """The tagger's learned model: the project's (ohp tag-learn), else the one ohp ships."""
    from pipeline.stages.learned import load_model

    return load_model(config.themes_model)


def choose_recordings(store: Store, refs: list[str] | None) -> list:
    """The recordings named (by id, hash prefix, path, name or stem), or all of them."""
    return store.find_recordings(refs) if refs else store.list_recordings()


def check_asks_for_closed(
    store: Store, user: str | None, doing: str = "using closed recordings", may: str = "ask for closed recordings"
) -> None:
    """--include-restricted: ForbiddenError unless --user (or OHP_USER) names a researcher (`doing`, `may`: what
    for, in the messages)."""
    name = need_user(user, doing)
    access.check_export_closed(store.user(name), name, may)


ASK_FOR_CLOSED = "--include-restricted --user NAME (a researcher) includes them"


def shown_recordings(
    store: Store,
    refs: list[str] | None,
    include_restricted: bool,
    user: str | None,
    doing: str = "using closed recordings",
) -> tuple[list[RecordingRecord], int]:
    """The recordings named (or all) that an export would write, and how many closed ones were left out: closed
    ones only for a researcher who asks (`doing`: what for). Says on stderr which closed ones are left out."""
    if include_restricted:
        check_asks_for_closed(store, user, doing)
    chosen = choose_recordings(store, refs)
    kept = [r for r in chosen if access.exported(r, include_restricted)]
    if len(kept) < len(chosen):
        names = ", ".join(Path(r.path).name for r in chosen if r not in kept)
        errors.print(
            f"left out {len(chosen) - len(kept)} closed recording(s): {names}; {ASK_FOR_CLOSED}", highlight=False
        )
    return kept, len(chosen) - len(kept)


def exported_scope(
    store: Store, refs: list[str] | None, include_restricted: bool, user: str | None
) -> list[int] | None:
    """The recordings named (or all) that an export would write, as ids (None: every recording), for what is
    counted or learnt from them (see shown_recordings). A closed one named and left out is exit code 2, as for an
    export: what was asked for is not counted."""
    kept, left_out = shown_recordings(store, refs, include_restricted, user)
    if refs and left_out:
        raise typer.Exit(2)
    return None if not refs and not left_out else [r.id for r in kept]


def highlighted(text: str, spans: tuple[tuple[int, int], ...], style: str = "bold black on yellow") -> Text:
    shown = Text(text)
    for start, end in spans:
        shown.stylize(style, start, end)
    return shown


def _check_language(language: str | None) -> str | None:
    if language is None:
        return None
    from pipeline.whisper_tables import whisper_tokenizer

    tables = whisper_tokenizer()
    code = language.lower()
    code = tables.TO_LANGUAGE_CODE.get(code, code)
    if code not in tables.LANGUAGES:
        raise typer.BadParameter(f"{language!r} is not a Whisper language (e.g. zh, en, yue)")
    return code


def _speakers_option(value: str) -> SpeakerOptions | None:
    """--speakers: auto, off, or how many (1 to 20)."""
    from pipeline.process import SpeakerOptions

    if value == "off":
        return None
    if value == "auto":
        return SpeakerOptions()
    if not (value.isdecimal() and len(value) <= 2 and 1 <= int(value) <= 20):  # int() reads no ² nor 4,300 digits
        message = f"{value!r}: give auto, off or a number of speakers from 1 to 20"
        raise typer.BadParameter(message, param_hint="--speakers")
    return SpeakerOptions(int(value))


@app.command()
def run(
    # readable=False: an unreadable file is the batch's to report, so the other files still run.
    paths: Annotated[list[Path], typer.Argument(help="Audio files and folders (searched recursively)", readable=False)],
    db: DbOption = None,
    out: Annotated[Path, typer.Option(help="Folder for transcript files")] = Path("transcripts"),
    engine: Annotated[EngineName, typer.Option(help="Recogniser")] = DEFAULT_ENGINE,
    model: Annotated[str, typer.Option(help="Whisper model: base (offline), another name, or a local path")] = "base",
    language: Annotated[
        str | None, typer.Option(help="Force a language (zh, en, ...); detected per recording if not given")
    ] = None,
    script: Annotated[
        Script, typer.Option(help="Chinese script of the text (the original is kept beside it)")
    ] = Script.SIMPLIFIED,
    formats: Annotated[
        list[ExportFormat] | None,
        typer.Option(
            "--format",
            help="Transcript files to write (repeat for several; csv and qdpx, of many recordings: `ohp export`)",
            show_default=", ".join(RUN_FORMATS),
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Redo recordings already done with the same settings")] = False,
    speakers: Annotated[
        str, typer.Option(help="Speakers per recording: auto (estimated), a number, or off", metavar="auto|N|off")
    ] = "auto",
    tag: Annotated[bool, typer.Option(help="Tag themes from the codebook after transcribing")] = True,
    codebook: CodebookOption = None,
    device: DeviceOption = None,
    compute_type: Annotated[
        ComputeType | None,
        typer.Option(
            help="The recogniser's arithmetic (default: int8 on the CPU, float16 on CUDA)", show_default=False
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"Chunks of speech decoded at once (default: {DEFAULT_BATCH_SIZES['cpu']} on the CPU, "
            f"{DEFAULT_BATCH_SIZES['cuda']} on CUDA)",
            show_default=False,
        ),
    ] = None,
    report_path: Annotated[
        Path | None,
        typer.Option("--report", help="Also write each file's result as JSON to this file", dir_okay=False),
    ] = None,
    vocabulary: VocabularyOption = None,
    second_decode: Annotated[
        bool,
        typer.Option(
            help="Decode each recording a second time (greedy) and doubt the words it writes differently: "
            "more of the wrong words marked, for that second decode's time"
        ),
    ] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            # \\[: help is rich markup, where [cluster] is a style, dropped
            help="Spread the batch over the Ray cluster at this address (host:6379, auto), "
            "or over a Ray started on this machine only (local); needs ohp\\[cluster]",
            metavar="ADDRESS|local",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="With --ray: recognisers at once (default one per GPU, or one per CPU core)"),
    ] = None,
) -> None:
    """Transcribe recordings (find who speaks, and tag their themes) into the database and transcript files.
    In a terminal it shows a progress bar and a table; elsewhere (a log) one plain line per file."""
    from pipeline.batch import run_batch
    from pipeline.process import RunOptions
    from pipeline.stages.transcribe import TranscribeOptions

    formats = formats or list(RUN_FORMATS)
    project = [f.value for f in formats if f.value in PROJECT_WRITERS]
    if project:
        raise typer.BadParameter(
            f"{', '.join(project)} cover many recordings: write them with `ohp export`", param_hint="--format"
        )
    if workers is not None and ray is None:
        raise typer.BadParameter("workers run on a Ray cluster: give --ray too", param_hint="--workers")
    if report_path and not report_path.parent.is_dir():  # found out now, not after hours of transcribing
        raise typer.BadParameter(f"{report_path}: folder {report_path.parent} does not exist", param_hint="--report")
    if report_path:
        check_folder(report_path.parent, "--report")
    if out:
        check_folder(out, "--out")
    settings = config.given(device=device and device.value)
    options = RunOptions(
        transcribe=TranscribeOptions(
            engine=engine.value,
            model=model,
            language=_check_language(language),
            script=script.value,
            compute_type=compute_type and compute_type.value,
            batch_size=batch_size,
        ),
        speakers=_speakers_option(speakers),
        force=force,
        out_dir=out,
        formats=tuple(f.value for f in formats),
        codebook=open_codebook(codebook) if tag else None,
        model=open_model() if tag else None,
        home=settings.home,
        device=settings.device,
        vocabulary=open_vocabulary(vocabulary),
        second_decode=second_decode,
    )
    store = open_store(db)
    try:
        with batch_progress(console) as progress:
            if ray is None:
                report = run_batch(paths, store, options, progress)
            else:
                from pipeline.cluster import require_ray

                require_ray()
                from pipeline.cluster.driver import run_on_ray

                report = run_on_ray(paths, store, options, progress, address=ray, workers=workers)
    except KeyboardInterrupt:
        # What the files finished before the stop did, in the table or lines and the report: else the report of an
        # earlier run stayed under the name, as if it were this one's.
        if progress.finished:
            progress.finish(progress.finished)
        if report_path:
            write_report(progress.finished, report_path, stopped=True)
        # --force redoes every recording again, those this run redid too: the same command would start over.
        rest = (
            "the same command redoes them all again; without --force those not reached keep their earlier result"
            if force
            else "the same command does the rest"
        )
        errors.print(f"ohp run: stopped (Ctrl-C); the recordings finished are saved: {rest}")
        raise typer.Exit(130) from None
    if report_path:  # an empty one too: else an earlier run's stays under the name, as if it were this one's
        write_report(report.files, report_path)
    if not report.files:
        errors.print("no audio files found in " + ", ".join(map(str, paths)))
        raise typer.Exit(1)
    progress.finish(report.files)
    if report.failed:
        errors.print(Text(f"{len(report.failed)} of {len(report.files)} file(s) failed", style="red"))
        raise typer.Exit(1)


# -------------------------------------------------------------------------------- other modules
# Their commands use the helpers above. typer lists commands in the order they were registered: these modules are
# imported in the order of `ohp --help`, which isort would change.
# isort: off
from pipeline.cli import recordings as _recordings  # noqa: E402, F401  (ohp status, describe, export)
from pipeline.cli import themes as _themes  # noqa: E402, F401  (ohp tag, tag-text, themes, codebook validate)
from pipeline.cli import review as _review  # noqa: E402, F401
from pipeline.cli import search as _search  # noqa: E402, F401
from pipeline.cli import imports as _imports  # noqa: E402, F401  (ohp import)
from pipeline.cli import serve as _serve  # noqa: E402, F401
from pipeline.cli import agreement as _agreement  # noqa: E402, F401  (ohp agreement, ohp report)
from pipeline.cli import learn as _learn  # noqa: E402, F401  (ohp tag-learn)
from pipeline.cli import speakers as _speakers  # noqa: E402, F401  (the ohp speakers group)
from pipeline.cli import users  # noqa: E402
# isort: on

app.add_typer(users.app, name="user")

from pipeline.cli.vocabulary import VocabularyOption, open_vocabulary, vocabulary_app  # noqa: E402

app.add_typer(vocabulary_app, name="vocabulary")
