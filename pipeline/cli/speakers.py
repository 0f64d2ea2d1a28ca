"""`ohp speakers`: who speaks, as enrolled voices (and where each comes from), speaker names and roles."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import JustifyMethod
from rich.table import Table

from pipeline import access, cli
from pipeline.cli.failures import report_error
from pipeline.errors import InvalidInputError, NotFoundError
from pipeline.records import AudioInfo, PersonRecord, RecordingRecord, SpeakerRole
from pipeline.stages.audio import SAMPLE_RATE, AudioError, decode, probe
from pipeline.utils import clock, resolved

if TYPE_CHECKING:
    from pipeline.store import Store


speakers_app = typer.Typer(help="Who speaks: enrolled voices, speaker names and roles.", no_args_is_help=True)
cli.app.add_typer(speakers_app, name="speakers")


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
    return [info.sha256 for info in files] + [r.sha256 for r in cli.choose_recordings(store, cut_from) if cut_from]


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
    user: cli.UserOption = None,
    device: cli.DeviceOption = None,
    db: cli.DbOption = None,
) -> None:
    """Store a voice profile: recordings where this voice speaks get the name when `ohp run` finds their speakers
    (not outside its own recordings while one it came from is closed)."""
    user = cli.need_user(user, "enrolling")
    from pipeline.stages.speakers import voice_profile  # the voice encoder loads only when needed

    store = cli.open_store(db)
    try:
        infos = [probe(resolved(path)) for path in files]
        origins = voice_origins(store, cut_from, outside, infos)
        samples = [decode(info).samples for info in infos]
        profile = voice_profile(samples, cli.config.given(device=device and device.value).device)
    except (AudioError, ValueError) as e:
        report_error(str(e))
        raise typer.Exit(2) from None
    person = store.enroll(name, profile.tolist(), user, [str(info.path) for info in infos], origins)
    seconds = sum(len(s) for s in samples) / SAMPLE_RATE
    cli.console.print(
        f"enrolled {person.name} from {len(files)} file(s), {clock(seconds)} of audio; {describe_voice(person)}; "
        "`ohp run` looks for the voice where it may name speakers",
        highlight=False,
    )


@speakers_app.command("source")
def speakers_source(
    name: Annotated[str, typer.Argument(help="The enrolled person's name")],
    cut_from: CutFromOption = None,
    outside: OutsideOption = False,
    user: cli.UserOption = None,
    db: cli.DbOption = None,
) -> None:
    """Say where an enrolled voice comes from (one enrolled before ohp kept it is withheld until then): the names
    it gave where that withholds it go, and `ohp run` looks for it where it may name speakers. Who said so is kept:
    it changes what consent lets the voice do."""
    if not (cut_from or outside):
        raise InvalidInputError(
            f"say where the voice of {name} comes from: --from RECORDING (again for more) or --outside"
        )
    user = cli.need_user(user, "saying where the voice comes from")
    store = cli.open_store(db)
    # A voice withheld (enrolled from a closed recording, or from where no one knows) that a new origin would
    # release names speakers everywhere after: only whoever may export closed recordings says so.
    seen = next((p for p in store.people() if p.name == " ".join(name.split())), None)
    if seen is not None and access.voice_withheld(seen):
        access.check_export_closed(store.user(user), user, f"say where a withheld voice comes from ({name})")
    # Given on the state checked: a voice withheld meanwhile is a conflict.
    person = store.set_voice_origins(name, voice_origins(store, cut_from, outside, []), user, seen)
    cli.console.print(f"{person.name}: {describe_voice(person)}", highlight=False)


@speakers_app.command("forget")
def speakers_forget(
    name: Annotated[str, typer.Argument(help="The enrolled person's name")],
    db: cli.DbOption = None,
) -> None:
    """Remove an enrolled voice (its profile) and the name it gave speakers; names people set stay."""
    unnamed = cli.open_store(db).forget_person(name)
    cli.console.print(f"forgot the voice of {name}; {unnamed} speaker(s) known by their label again", highlight=False)


RecordingArgument = Annotated[str, typer.Argument(help="The recording (id, hash prefix, path, name or stem)")]
LabelArgument = Annotated[str, typer.Argument(help="The speaker's label: S1, S2, ...")]


def open_speaker(db: str | None, recording: str, label: str, user: str) -> tuple[Store, RecordingRecord]:
    """The store and the recording named, once it is sure the recording has this speaker and the user may change
    it: a closed recording only under an account that sees closed recordings, as `ohp review` decides."""
    store = cli.open_store(db)
    [chosen] = cli.choose_recordings(store, [recording])
    access.check_named_sees(store.user(user), user, chosen)
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
    user: cli.UserOption = None,
    db: cli.DbOption = None,
) -> None:
    """Give a speaker a name, shown in transcripts and kept when speakers are found again."""
    user = cli.need_user(user, "renaming")
    store, chosen = open_speaker(db, recording, label, user)
    speaker = store.rename_speaker(chosen.id, label, name, user)
    cli.console.print(
        f"{Path(chosen.path).name}: {label} is {speaker.name or 'known by its label again'}", highlight=False
    )


@speakers_app.command("role")
def speakers_role(
    recording: RecordingArgument,
    label: LabelArgument,
    role: Annotated[SpeakerRole, typer.Argument(help="The speaker's role")],
    user: cli.UserOption = None,
    db: cli.DbOption = None,
) -> None:
    """Set a speaker's role, over what the heuristics chose."""
    user = cli.need_user(user, "setting the role")
    store, chosen = open_speaker(db, recording, label, user)
    store.set_role(chosen.id, label, role.value, user)
    cli.console.print(f"{Path(chosen.path).name}: {label} is the {role.value}", highlight=False)


@speakers_app.command("list")
def speakers_list(
    recordings: Annotated[
        list[str] | None, typer.Argument(help="Recordings to list; all, and the enrolled voices, if none")
    ] = None,
    include_restricted: cli.IncludeRestricted = False,
    user: cli.UserOption = None,
    db: cli.DbOption = None,
) -> None:
    """Each recording's speakers (label, name, role, speaking time) and the enrolled voices. Closed recordings, and
    the voices enrolled from them (whose names are theirs), only when a researcher asks, as for an export."""
    store = cli.open_store(db)
    listed, left_out = cli.shown_recordings(store, recordings, include_restricted, user, "listing closed recordings")
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
        cli.console.print(table)
    elif not left_out:
        cli.console.print("no speakers yet: `ohp run` finds them")
    voices = [p for p in people.values() if include_restricted or not access.closed_origins(p)]
    if not recordings and voices:
        cli.console.print("enrolled voices:")
        for p in voices:
            cli.console.print(f"  {p.name} ({voice_given_by(p)}): {describe_voice(p)}", highlight=False)
    if not recordings and len(voices) < len(people):
        cli.errors.print(
            f"left out {len(people) - len(voices)} enrolled voice(s) from closed recordings; {cli.ASK_FOR_CLOSED}"
        )
    if recordings and left_out:  # asked for by name and not shown: that is no success
        raise typer.Exit(2)
