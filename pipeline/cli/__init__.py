"""The `ohp` command: a thin layer over the library (batch, store, export)."""

from __future__ import annotations

import gc
import warnings
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.cells import cell_len
from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text

# Only what the commands' definitions need is imported here; the stages, the store and the batch are
# imported in the commands that use them, so that `ohp --help`, `ohp status` or `ohp search` start fast.
from pipeline import access
from pipeline.cli.failures import ReportingGroup, report_error
from pipeline.cli.keys import read_key
from pipeline.cli.output import Terminal, batch_progress, check_folder, write_report
from pipeline.config import ENVIRONMENT, Config, Device, setup_logging
from pipeline.errors import ConflictError, InvalidInputError, NotFoundError
from pipeline.formats.export import (
    DEFAULT_FORMATS,
    FORMATS,
    PROJECT_WRITERS,
    ExportFormat,
    export_recordings,
    write_redaction_report,
)
from pipeline.formats.readers import TranscriptFormatError
from pipeline.formats.redact import DEFAULT_LIST, Redactor, load_list
from pipeline.records import (
    ANNOTATION_STATUSES,
    NOT_REJECTED,
    AnnotationStatus,
    AudioInfo,
    Consent,
    PersonRecord,
    RecordingRecord,
    SearchFilters,
    SpeakerRole,
    StageRecord,
    speaker_title,
)
from pipeline.script import Script
from pipeline.search.textindex import QuerySyntaxError, highlight, parse_query
from pipeline.stages.audio import SAMPLE_RATE, AudioError, decode, probe
from pipeline.stages.codebook import Codebook, CodebookError, load_codebook, validate_codebook
from pipeline.stages.engines import DEFAULT_BATCH_SIZES, DEFAULT_ENGINE, ComputeType, EngineName
from pipeline.utils import as_date, clean_name, clock, inert, terminal_json

if TYPE_CHECKING:
    from pipeline.process import SpeakerOptions
    from pipeline.stages.learned import ThemeModel
    from pipeline.store import Store

# resemblyzer warns about pkg_resources at import.
warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)

app = typer.Typer(
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
    counted or learnt from them (see shown_recordings)."""
    kept, left_out = shown_recordings(store, refs, include_restricted, user)
    return None if not refs and not left_out else [r.id for r in kept]


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
    if not value.isdigit() or not 1 <= int(value) <= 20:
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
            "--format", help="Transcript files to write (repeat for several)", show_default=", ".join(RUN_FORMATS)
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
            help="Spread the batch over the Ray cluster at this address (host:6379, auto), "
            "or over a Ray started on this machine only (local); needs ohp[cluster]",
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
        # --force redoes every recording again, those this run redid too: the same command would start over.
        rest = (
            "the same command redoes them all again; without --force those not reached keep their earlier result"
            if force
            else "the same command does the rest"
        )
        errors.print(f"ohp run: stopped (Ctrl-C); the recordings finished are saved: {rest}")
        raise typer.Exit(130) from None
    if not report.files:
        errors.print("no audio files found in " + ", ".join(map(str, paths)))
        raise typer.Exit(1)
    progress.finish(report.files)
    if report_path:
        write_report(report.files, report_path)
    if report.failed:
        errors.print(Text(f"{len(report.failed)} of {len(report.files)} file(s) failed", style="red"))
        raise typer.Exit(1)


def stage_state(stage: StageRecord) -> str:
    """A stage's status for `ohp status`, and why it failed: a done stage's failure came after its result, which
    stays."""
    if stage.status == "done" and stage.error:
        return f"{stage.stage}: done; its last run failed: {stage.error}"
    return f"{stage.stage}: {stage.status}" + (f" ({stage.error})" if stage.error else "")


@app.command()
def status(
    by_doubt: Annotated[
        bool, typer.Option("--by-doubt", help="Most doubtful text first: the recordings that most need checking")
    ] = False,
    db: DbOption = None,
) -> None:
    """List recordings and the state of their stages, how much of each is doubtful, and why one is likely poor.
    Every recording, closed ones too: it is the view of whoever runs `ohp run` over them, and shows no transcript
    text, speaker or metadata."""
    store = open_store(db)
    recordings = store.list_recordings()
    if not recordings:
        console.print(f"no recordings in {store.url}")
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
    console.print(table)


@app.command()
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
    include_restricted: IncludeRestricted = False,
    user: UserOption = None,
    db: DbOption = None,
) -> None:
    """Show or set what is known of recordings: interviewee, place, date, consent. A closed recording's
    interviewee, place and date are shown only when a researcher asks, as for an export; its file and consent
    always, so that it can be found and opened."""
    store = open_store(db)
    if include_restricted:
        check_asks_for_closed(store, user, "describing closed recordings")
    chosen = choose_recordings(store, recordings)
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
        chosen = [store.set_metadata(r.id, **changes) for r in chosen]
    table = Table()
    for column in ("id", "file", "interviewee", "place", "date", "consent"):
        table.add_column(column, overflow="fold")
    withheld = set() if include_restricted else access.closed_ids(chosen)
    for r in chosen:
        known = ("withheld",) * 3 if r.id in withheld else (r.interviewee or "-", r.place or "-", r.recorded_on or "-")
        table.add_row(str(r.id), Path(r.path).name, *known, access.consent_label(r))
    console.print(table)
    if withheld:
        errors.print(
            f"withheld the interviewee, place and date of {len(withheld)} closed recording(s); {ASK_FOR_CLOSED}"
        )


@app.command()
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
    user: UserOption = None,
    codebook: CodebookOption = None,
    db: DbOption = None,
) -> None:
    """Write transcripts and codes for other tools: subtitles, documents, ELAN, REFI-QDA (NVivo, ATLAS.ti,
    MAXQDA, QualCoder), OHMS, CSV. Closed recordings are left out unless a researcher asks for them."""
    if all_ and recordings:
        raise typer.BadParameter("name recordings or give --all, not both", param_hint="--all")
    check_folder(out, "--out")
    store = open_store(db)
    if include_restricted:
        check_asks_for_closed(store, user, "exporting closed recordings", "export closed recordings")
    # Its token patterns checked only when redacting: the tagger then finds names; else its labels are all.
    book = open_codebook(codebook, for_labels=not redact)
    redactor = None
    if redact:
        try:
            # No list is no names listed only when none was asked for: a list given and unreadable (missing, a
            # folder) is an error, not an export with the names it holds left in.
            given = redact_list != DEFAULT_LIST or redact_list.exists()
            listed = load_list(redact_list) if given else {}
            from pipeline.stages.tag import find_entities  # spaCy: only when redacting

            kinds = {kind.strip() for kind in redact.split(",") if kind.strip()}
            redactor = Redactor(kinds, listed, partial(find_entities, codebook=book))
        except InvalidInputError as e:
            raise typer.BadParameter(str(e), param_hint="--redact") from None
    chosen = choose_recordings(store, recordings)
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
        console.print(str(path))
    if report.left_out:
        names = ", ".join(f"{Path(r.path).name} ({why})" for r, why in report.left_out)
        errors.print(
            f"left out {len(report.left_out)} closed recording(s): {names}; "
            "--include-restricted --user NAME (a researcher) exports them"
        )
    if redactor:
        folder = out.resolve()  # "." has no name
        path = folder.parent / f"{folder.name}-redactions.csv"  # beside the folder, not in what gets shared
        write_redaction_report(report.redactions, path)
        console.print(f"{len(report.redactions)} replacement(s), listed in {path}: check them before sharing the files")
    if recordings and report.left_out:  # asked for by name and not written: that is no success
        raise typer.Exit(2)


@app.command()
def tag(
    recordings: Annotated[list[str] | None, typer.Argument(help="Recordings to tag; all if none")] = None,
    force: Annotated[bool, typer.Option(help="Tag again even if this codebook already tagged them")] = False,
    model: Annotated[
        bool, typer.Option(help="Let the learned model add to the codebook's patterns (--no-model: patterns alone)")
    ] = True,
    codebook: CodebookOption = None,
    db: DbOption = None,
) -> None:
    """Tag stored transcripts with the codebook's themes and the learned model (human decisions are kept).
    `ohp tag-learn` teaches the model from people's decisions."""
    from pipeline.batch import tag_recording

    book, learned = open_codebook(codebook), open_model() if model else None
    store = open_store(db)
    failed = 0
    for recording in choose_recordings(store, recordings):
        name = Path(recording.path).name
        try:
            counts = tag_recording(store, recording.id, book, force, learned)
        except (ConflictError, NotFoundError) as e:  # transcribed again or deleted meanwhile: the others go on
            errors.print(Text.assemble(("failed:", "red"), f" {name}: {e}"), highlight=False)
            failed += 1
            continue
        if counts is None:
            with_model = f" and model {learned.version}" if learned else ""
            console.print(f"{name}: already tagged with codebook {book.version}{with_model}")
        else:
            console.print(f"{name}: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    if failed:
        raise typer.Exit(1)


@app.command("tag-text")
def tag_text_command(
    text: Annotated[str, typer.Argument(help="The text to tag")],
    language: Annotated[str, typer.Option(help="zh or en")] = "zh",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    codebook: CodebookOption = None,
) -> None:
    """Tag a piece of text with the codebook's themes, without a database."""
    from pipeline.stages.tag import pipeline_language, tag_text

    if pipeline_language(language) is None:
        raise typer.BadParameter(f"no tagger for {language!r}: use zh or en", param_hint="--language")
    book = open_codebook(codebook)
    result = tag_text(text, language, book, open_model())
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
        console.print(
            Text.assemble(
                f"{book.label(theme.theme)} ({theme.score:.2f}, {theme.origin}): ", highlighted(text, theme.evidence)
            )
        )
    for entity in result.entities:
        console.print(f"{entity.label}: {entity.text}")
    if not result.themes and not result.entities:
        console.print("no themes, no entities")


codebook_app = typer.Typer(help="The codebook of themes.", no_args_is_help=True)
app.add_typer(codebook_app, name="codebook")


@codebook_app.command("validate")
def codebook_validate(path: Annotated[Path | None, typer.Argument(help="Codebook YAML")] = None) -> None:
    """Check a codebook; every problem with its line number."""
    path = codebook_path(path)
    try:
        problems = validate_codebook(path)
    except FileNotFoundError:
        raise NotFoundError(f"no codebook at {path}") from None
    for problem in problems:
        console.print(f"{path}:{problem.line}: {problem.message}", markup=False, highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    book = load_codebook(path)
    console.print(f"{path}: {len(book.themes)} themes, version {book.version}, no problems")


@app.command()
def themes(
    include_restricted: IncludeRestricted = False,
    user: UserOption = None,
    codebook: CodebookOption = None,
    db: DbOption = None,
) -> None:
    """Theme counts per recording: suggested, accepted, rejected. Closed recordings only when a researcher asks,
    as `ohp report` counts: which themes a closed interview holds is its content."""
    book = open_codebook(codebook, for_labels=True)
    store = open_store(db)
    counted, _ = shown_recordings(store, None, include_restricted, user, "counting closed recordings' themes")
    kept = {r.id for r in counted}
    rows = [row for row in store.theme_counts() if row[0] in kept]
    if not rows:
        console.print("no themes yet: run `ohp tag` or `ohp run`")
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
    console.print(table)


def highlighted(text: str, spans: tuple[tuple[int, int], ...], style: str = "bold black on yellow") -> Text:
    shown = Text(text)
    for start, end in spans:
        shown.stylize(style, start, end)
    return shown


@app.command()
def review(
    recording: Annotated[str, typer.Argument(help="The recording (id, hash prefix, path, name or stem)")],
    doubtful: Annotated[
        bool, typer.Option("--doubtful", help="Walk the doubtful passages instead, the likeliest wrong first")
    ] = False,
    user: UserOption = None,
    codebook: CodebookOption = None,
    db: DbOption = None,
) -> None:
    """Walk through a recording's theme suggestions: accept, reject, add a theme, or skip. With --doubtful, its
    doubtful passages: each with the moment to listen from, to correct or skip. Reviewing is an annotator's work,
    decided under the name --user gives: a closed recording is shown only when that name is an account that sees
    closed recordings, as in the web app (an annotator or a researcher)."""
    user = need_user(user, "reviewing")
    store = open_store(db)
    [chosen] = choose_recordings(store, [recording])
    access.check_named_sees(store.user(user), user, chosen)
    if doubtful:
        from pipeline.cli.doubt import walk_doubtful

        return walk_doubtful(store, chosen, user, console)
    book = open_codebook(codebook, for_labels=True)
    ordered = store.segments(chosen.id)
    at = {s.id: i for i, s in enumerate(ordered)}
    speakers = {s.label: s for s in store.speakers(chosen.id)}
    waiting = store.annotations(chosen.id, status="suggested")
    if not waiting:
        console.print(f"{Path(chosen.path).name}: no suggestions waiting")
        return
    console.print(
        f"{Path(chosen.path).name}: {len(waiting)} suggestions. Keys: a accept, r reject, t add a theme, s skip, q quit"
    )

    def said(segment, text: Text | str, style: str = "") -> Text:
        """A segment as a line: its time, who says it, what."""
        speaker = speakers.get(segment.speaker or "")
        who = speaker_title(segment.speaker, speaker.name, speaker.role) if speaker else segment.speaker
        return Text.assemble(
            (f"{clock(segment.start)} ", "cyan"), (f"{who}: " if who else "", "magenta"), text, style=style
        )

    decided = 0
    for n, annotation in enumerate(waiting, 1):
        index = at[annotation.segment_id]
        segment = ordered[index]
        console.rule(
            f"{n}/{len(waiting)}  {clock(segment.start)}-{clock(segment.end)}  "
            f"{book.label(annotation.theme)}  ({annotation.score or 0:.2f}, {annotation.origin or 'a person'})"
        )
        # The question before and the answer going on after: what the suggestion's words mean depends on them.
        if index > 0:
            console.print(said(ordered[index - 1], ordered[index - 1].text, "dim"))
        console.print(said(segment, highlighted(segment.text, annotation.evidence)))
        if index + 1 < len(ordered):
            console.print(said(ordered[index + 1], ordered[index + 1].text, "dim"))
        while True:
            key = read_key("a/r/t/s/q", default="s")
            if key in ("a", "r"):
                try:
                    store.decide(
                        annotation.id, "accepted" if key == "a" else "rejected", user, version=annotation.version
                    )
                    decided += 1
                except ConflictError as e:
                    console.print(Text.assemble(("not saved:", "yellow"), f" {e} (now {e.current.status})"))
            elif key == "t":
                _add_theme(store, book, segment, user)
                continue
            elif key == "q":
                console.print(f"{decided} decided")
                return
            elif key != "s":
                continue
            break
    console.print(f"{decided} decided")


def _add_theme(store: Store, book: Codebook, segment, user: str) -> None:
    """Ask for a theme (id or label) and the words that are its evidence, again until they are right;
    an empty theme gives up."""
    console.print("themes: " + "; ".join(f"{t} ({book.label(t)})" for t in book.ids), highlight=False)
    while True:
        name = typer.prompt("theme (empty to go back)", default="", show_default=False).strip()
        if not name:
            return
        theme = book.find(name)
        if theme:
            break
        console.print(Text(f"no theme {name!r} in the codebook", style="yellow"))
    while True:
        words = typer.prompt("evidence: words from the text (empty for none)", default="", show_default=False).strip()
        at = segment.text.find(words) if words else -1
        if not words or at >= 0:
            break
        console.print(Text(f"{words!r} is not in the text: copy words from it", style="yellow"))
    evidence = ((at, at + len(words)),) if words else ()
    try:
        store.add_annotation(segment.id, theme, user, evidence)
    except ConflictError as e:  # someone rejected it: overturning that is a decision on what they decided
        console.print(Text(str(e), style="yellow"))
        if not typer.confirm("accept it anyway?", default=False):
            return
        store.decide(e.current.id, "accepted", user, version=e.current.version)
        store.add_annotation(segment.id, theme, user, evidence)
    console.print(f"added {book.label(theme)}")


def _iso_date(value: str | None) -> str | None:
    """An option's date, checked as the store checks it, so that a bad one is refused by the option's name."""
    if value is not None:
        try:
            as_date(value, "the date")
        except InvalidInputError as e:
            raise typer.BadParameter(str(e)) from None
    return value


# A query may start with an exclusion ('-wages held'): an unknown "option" is the query's text, not an error.
@app.command(context_settings={"ignore_unknown_options": True})
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    include_restricted: IncludeRestricted = False,
    user: UserOption = None,
    codebook: CodebookOption = None,
    db: DbOption = None,
) -> None:
    """Search the transcripts; each hit with its recording and the moment in the audio. Closed recordings only
    when a researcher asks, as for an export: whoever runs ohp may read the database, but the command cannot tell
    who that is (pipeline/access.py)."""
    try:
        parsed = parse_query(query)
    except QuerySyntaxError as e:
        report_error(e.message)
        errors.print(f"  {query}\n  {' ' * cell_len(inert(query[: e.position]))}^", markup=False, highlight=False)
        raise typer.Exit(2) from None
    book = open_codebook(codebook, for_labels=True)
    theme = book.theme_id(theme) if theme else None  # a label does too; an unknown theme is an error
    store = open_store(db)
    searched, left_out = shown_recordings(
        store, [recording] if recording else None, include_restricted, user, "searching closed recordings"
    )
    if recording and left_out:  # the one recording asked for is closed: nothing was searched
        raise typer.Exit(2)
    if store.count_segments() == 0:
        errors.print(f"nothing to search: no transcripts in {store.url} yet (ohp run or ohp import first)")
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
        console.print(f"no matches for {query!r}")
        return
    for hit in results.hits:
        snippet = highlight(hit.text, parsed)
        line = Text.assemble(
            (Path(hit.recording_path).name, "bold"),
            " ",
            (clock(hit.start), "cyan"),
            " ",
            (f"{speaker_title(hit.speaker, hit.speaker_name, hit.speaker_role)}: " if hit.speaker else "", "magenta"),
            highlighted(snippet.text, tuple(snippet.spans), "bold red"),
            (f"  [{', '.join(map(book.label, hit.themes))}]" if hit.themes else "", "green"),
        )
        console.print(line)
    shown = len(results.hits)
    console.print(Text(f"{shown} of {results.total} hits" if results.total > shown else f"{shown} hits", style="dim"))


@app.command("import")
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
    codebook: CodebookOption = None,
    db: DbOption = None,
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
    book = open_codebook(codebook) if tag or coded else None
    model = open_model() if tag else None
    store = open_store(db)
    failed = 0
    for path in files:
        try:
            if path in coded:
                assert book is not None  # opened above for the files of codings
                report = import_codings(CODINGS_READERS[path.suffix.lower()](path, book), store)
            else:
                recording_id = import_file(path, store, audio, book if tag else None, model)
        except (TranscriptFormatError, AudioError) as e:
            errors.print(Text.assemble(("failed:", "red"), f" {e}"), highlight=False)
            failed += 1
            continue
        if path in coded:
            console.print(
                f"{path}: {report.codings} coding(s) for recording(s) "
                f"{', '.join(map(str, report.recordings)) or '-'}: "
                f"{report.added} annotation(s) added or accepted, {report.unchanged} already there, "
                f"{len(report.kept)} kept as decided in ohp"
            )
            assert book is not None  # as above
            for kept in report.kept:  # a person's rejection the file's code did not overturn: theirs to look at
                console.print(
                    f"  kept: {kept.coder}'s {book.label(kept.theme)} at {clock(kept.start)}-{clock(kept.end)} "
                    f"of recording {kept.recording_id}: rejected by {kept.decided_by} on {kept.decided_at[:10]}, "
                    "stays rejected",
                    highlight=False,
                )
            for warning in report.warnings:
                errors.print(Text.assemble("  ", ("warning:", "yellow"), f" {warning}"), highlight=False)
        else:
            console.print(f"{path}: recording {recording_id}, {len(store.segments(recording_id))} segments")
    if failed:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------- web


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    trusted_proxies: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated addresses or networks of the proxies in front (TLS), whose X-Forwarded-For and "
            f"-Proto are believed (default: ${ENVIRONMENT['trusted_proxies']}, else none)",
            show_default=False,
        ),
    ] = None,
    secure_cookies: Annotated[
        bool | None,
        typer.Option(
            "--secure-cookies/--no-secure-cookies",
            help="Send the session cookie over HTTPS only (default: "
            f"${ENVIRONMENT['secure_cookies']}, else only on requests that came by HTTPS)",
            show_default=False,
        ),
    ] = None,
    codebook: CodebookOption = None,
    db: DbOption = None,
) -> None:
    """The annotators' web app: recordings, transcripts with audio, review, corrections, search."""
    # Imported here: the web packages load only when serving.
    import uvicorn

    from pipeline.web import create_app
    from pipeline.web.logs import server_logging

    open_codebook(codebook)  # its problems reported here, before the server starts
    served = config.given(codebook=codebook, trusted_proxies=trusted_proxies, secure_cookies=secure_cookies)
    # The app reads forwarded headers itself, from the trusted proxies only; uvicorn's own would believe
    # any client on loopback.
    web = create_app(open_store(db), served)
    uvicorn.run(web, host=host, port=port, proxy_headers=False, log_config=server_logging())


# -------------------------------------------------------------------------------------- speakers

speakers_app = typer.Typer(help="Who speaks: enrolled voices, speaker names and roles.", no_args_is_help=True)
app.add_typer(speakers_app, name="speakers")


CutFromOption = Annotated[
    list[str] | None,
    typer.Option(
        "--from",
        help="A recording the voice's files were cut from (id, hash prefix, path, name or stem); again for more. "
        "While one of them is closed, the voice names nobody in other recordings",
    ),
]
OutsideOption = Annotated[
    bool, typer.Option("--outside", help="The voice's files were recorded apart from every recording of the collection")
]


def voice_origins(store: Store, cut_from: list[str] | None, outside: bool, files: list[AudioInfo]) -> list[str]:
    """Where a voice made from `files` comes from: their sha256 and those of the recordings named --from. Each
    file that is no recording of the collection needs --from or --outside: a clip cut from a closed interview
    must not name that person everywhere."""
    if cut_from and outside:
        raise InvalidInputError("a voice comes either --from recordings or from --outside the collection, not both")
    if not (cut_from or outside):
        for info in files:
            if store.recording_by_sha256(info.sha256) is None:
                raise InvalidInputError(
                    f"{info.path.name} is no recording ohp has: pass --from with the recording(s) it was cut from, "
                    "or --outside if it was recorded apart from them"
                )
    return [info.sha256 for info in files] + [r.sha256 for r in choose_recordings(store, cut_from) if cut_from]


def describe_voice(person: PersonRecord) -> str:
    """Where an enrolled voice comes from, and whether it names speakers outside its own recordings (and why not)."""
    if person.from_recordings:
        origin = "from " + ", ".join(Path(r.path).name for r in person.from_recordings)
    else:
        origin = "recorded apart from the collection" if person.origin_known else "origin unknown"
    if person.sources:
        origin += f" (files: {', '.join(Path(source).name for source in person.sources)})"
    withheld = access.voice_withheld(person)
    return origin + (
        f"; withheld in other recordings: {withheld}" if withheld else "; names speakers in every recording"
    )


def voice_given_by(person: PersonRecord) -> str:
    """Who enrolled a voice, and who gave its origin where someone did later, each with the day."""
    enrolled = f"by {person.enrolled_by}, {person.enrolled_at[:10]}"
    if not person.origin_known or (person.origin_by, person.origin_at) == (person.enrolled_by, person.enrolled_at):
        return enrolled
    if person.origin_by is None or person.origin_at is None:
        return f"{enrolled}; origin given before ohp kept by whom"
    return f"{enrolled}; origin given by {person.origin_by}, {person.origin_at[:10]}"


@speakers_app.command("enroll")
def speakers_enroll(
    name: Annotated[str, typer.Argument(help="The person's name, as recordings will show it")],
    files: Annotated[
        list[Path],
        typer.Argument(help="Recordings of this person alone (a minute or more in all is best)", readable=False),
    ],
    cut_from: CutFromOption = None,
    outside: OutsideOption = False,
    user: UserOption = None,
    device: DeviceOption = None,
    db: DbOption = None,
) -> None:
    """Store a voice profile: recordings where this voice speaks get the name when `ohp run` finds their speakers
    (not outside its own recordings while one it came from is closed)."""
    user = need_user(user, "enrolling")
    from pipeline.stages.speakers import voice_profile  # the voice encoder loads only when needed

    store = open_store(db)
    try:
        infos = [probe(path.resolve()) for path in files]
        origins = voice_origins(store, cut_from, outside, infos)
        samples = [decode(info).samples for info in infos]
        profile = voice_profile(samples, config.given(device=device and device.value).device)
    except (AudioError, ValueError) as e:
        report_error(str(e))
        raise typer.Exit(2) from None
    person = store.enroll(name, profile.tolist(), user, [str(info.path) for info in infos], origins)
    seconds = sum(len(s) for s in samples) / SAMPLE_RATE
    console.print(
        f"enrolled {person.name} from {len(files)} file(s), {clock(seconds)} of audio; {describe_voice(person)}; "
        "`ohp run` looks for the voice where it may name speakers",
        highlight=False,
    )


@speakers_app.command("source")
def speakers_source(
    name: Annotated[str, typer.Argument(help="The enrolled person's name")],
    cut_from: CutFromOption = None,
    outside: OutsideOption = False,
    user: UserOption = None,
    db: DbOption = None,
) -> None:
    """Say where an enrolled voice comes from (one enrolled before ohp kept it is withheld until then): the names
    it gave where that withholds it go, and `ohp run` looks for it where it may name speakers. Who said so is kept:
    it changes what consent lets the voice do."""
    if not (cut_from or outside):
        raise InvalidInputError(
            f"say where the voice of {name} comes from: --from RECORDING (again for more) or --outside"
        )
    user = need_user(user, "saying where the voice comes from")
    store = open_store(db)
    person = store.set_voice_origins(name, voice_origins(store, cut_from, outside, []), user)
    console.print(f"{person.name}: {describe_voice(person)}", highlight=False)


@speakers_app.command("forget")
def speakers_forget(
    name: Annotated[str, typer.Argument(help="The enrolled person's name")],
    db: DbOption = None,
) -> None:
    """Remove an enrolled voice (its profile) and the name it gave speakers; names people set stay."""
    unnamed = open_store(db).forget_person(name)
    console.print(f"forgot the voice of {name}; {unnamed} speaker(s) known by their label again", highlight=False)


RecordingArgument = Annotated[str, typer.Argument(help="The recording (id, hash prefix, path, name or stem)")]
LabelArgument = Annotated[str, typer.Argument(help="The speaker's label: S1, S2, ...")]


def open_speaker(db: str | None, recording: str, label: str) -> tuple[Store, RecordingRecord]:
    """The store and the recording named, once it is sure the recording has this speaker."""
    store = open_store(db)
    [chosen] = choose_recordings(store, [recording])
    labels = [s.label for s in store.speakers(chosen.id)]
    if label not in labels:
        known = ", ".join(labels) or "none yet (ohp run finds them)"
        raise NotFoundError(f"{Path(chosen.path).name} has no speaker {label!r}; its speakers: {known}")
    return store, chosen


@speakers_app.command("rename")
def speakers_rename(
    recording: RecordingArgument,
    label: LabelArgument,
    name: Annotated[str, typer.Argument(help='The name to show ("" for the label again)')],
    user: UserOption = None,
    db: DbOption = None,
) -> None:
    """Give a speaker a name, shown in transcripts and kept when speakers are found again."""
    user = need_user(user, "renaming")
    store, chosen = open_speaker(db, recording, label)
    speaker = store.rename_speaker(chosen.id, label, name, user)
    console.print(f"{Path(chosen.path).name}: {label} is {speaker.name or 'known by its label again'}", highlight=False)


@speakers_app.command("role")
def speakers_role(
    recording: RecordingArgument,
    label: LabelArgument,
    role: Annotated[SpeakerRole, typer.Argument(help="The speaker's role")],
    user: UserOption = None,
    db: DbOption = None,
) -> None:
    """Set a speaker's role, over what the heuristics chose."""
    user = need_user(user, "setting the role")
    store, chosen = open_speaker(db, recording, label)
    store.set_role(chosen.id, label, role.value, user)
    console.print(f"{Path(chosen.path).name}: {label} is the {role.value}", highlight=False)


@speakers_app.command("list")
def speakers_list(
    recordings: Annotated[
        list[str] | None, typer.Argument(help="Recordings to list; all, and the enrolled voices, if none")
    ] = None,
    include_restricted: IncludeRestricted = False,
    user: UserOption = None,
    db: DbOption = None,
) -> None:
    """Each recording's speakers (label, name, role, speaking time) and the enrolled voices. Closed recordings, and
    the voices enrolled from them (whose names are theirs), only when a researcher asks, as for an export."""
    store = open_store(db)
    listed, left_out = shown_recordings(store, recordings, include_restricted, user, "listing closed recordings")
    people = {p.id: p for p in store.people()}
    table = Table()
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("recording", "left"),
        ("speaker", "left"),
        ("name", "left"),
        ("role", "left"),
        ("segments", "right"),
        ("time", "right"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify, overflow="fold")
    for chosen in listed:
        segments = store.segments(chosen.id)
        for speaker in store.speakers(chosen.id):
            own = [s for s in segments if s.speaker == speaker.label]
            name = speaker.name or "-"
            if speaker.named_by or speaker.person_id in people:
                name += f" (set by {speaker.named_by})" if speaker.named_by else " (enrolled voice)"
            role = (speaker.role or "-") + (f" (set by {speaker.role_by})" if speaker.role_by else "")
            table.add_row(
                Path(chosen.path).name,
                speaker.label,
                name,
                role,
                str(len(own)),
                clock(sum(s.end - s.start for s in own)),
            )
    if table.row_count:
        console.print(table)
    elif not left_out:
        console.print("no speakers yet: `ohp run` finds them")
    voices = [p for p in people.values() if include_restricted or not access.closed_origins(p)]
    if not recordings and voices:
        console.print("enrolled voices:")
        for p in voices:
            console.print(f"  {p.name} ({voice_given_by(p)}): {describe_voice(p)}", highlight=False)
    if not recordings and len(voices) < len(people):
        errors.print(f"left out {len(people) - len(voices)} enrolled voice(s) from closed recordings; {ASK_FOR_CLOSED}")
    if recordings and left_out:  # asked for by name and not shown: that is no success
        raise typer.Exit(2)


# -------------------------------------------------------------------------------- other modules

from pipeline.cli import users  # noqa: E402  (its commands use the helpers above)

app.add_typer(users.app, name="user")

from pipeline.cli.vocabulary import VocabularyOption, open_vocabulary, vocabulary_app  # noqa: E402

app.add_typer(vocabulary_app, name="vocabulary")

from pipeline.cli import agreement as _agreement  # noqa: E402,F401  (ohp agreement, ohp report)
from pipeline.cli import learn  # noqa: E402, F401  (registers `ohp tag-learn`)
