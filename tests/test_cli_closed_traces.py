"""A closed recording on the command line, where an audit (2026-12-02) found it open to anyone: its consent and a
voice withheld because it was enrolled from it took any name to open (a viewer, or a name that is no account, and
everything of the recording, or the voice's names, was everyone's after); `ohp import` of codes and `ohp tag`
printed what it holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from saving import save_speakers, save_tags, save_transcription, saved_meanwhile
from typer.testing import CliRunner

from pipeline import access
from pipeline.cli import app
from pipeline.cli import speakers as speakers_cli
from pipeline.records import AudioInfo, Segment, SpeakerRecord, ThemeSuggestion, Transcript
from pipeline.store import Store
from pipeline.store import annotations as store_annotations

from conftest import SQLITE_ONLY

runner = CliRunner()
PASSWORD = "correct horse battery"
SECRETS = ("Kowalczyk", "Okonkwo", "Zhuhai", "1987-06-04")
OPEN_TEXTS = ["Where did you keep the ledger?", "The ledger stayed in the office."]
CLOSED_TEXTS = ["Did anyone take the ledger?", "Kowalczyk smuggled the ledger out before the wages were cut."]


def invoke(*args: str, **env: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200", "OHP_USER": "", **env})


def leaked(result) -> list[str]:
    return [s for s in SECRETS if s in result.stdout or s in result.stderr]


def save(store: Store, name: str, texts: list[str], speakers: list[SpeakerRecord], theme: str) -> int:
    info = AudioInfo(Path(f"/audio/{name}.wav"), name.encode().hex().ljust(64, "0"), 1000, "wav", "pcm", 16000, 1, 9.0)
    segments = [Segment(i * 4.0, i * 4.0 + 3.0, t, t, "en", speaker=f"S{i + 1}") for i, t in enumerate(texts)]
    rid = save_transcription(store, info, Transcript("en", 0.9, segments, "faster-whisper", "base"), {}, "k", {})
    save_speakers(store, rid, speakers, {}, "s", {})
    answer = store.segments(rid)[1]
    save_tags(store, rid, {answer.id: [ThemeSuggestion(theme, 0.9, ((0, 3),))]}, {}, "t", {}, "k")
    return rid


@pytest.fixture
def db(migrated_db_url) -> str:
    """tape1 open; tape2 still open, with its interviewee's metadata, a voice enrolled from it, and a hukou
    suggestion on its answer (the tests close it when they need to)."""
    with Store(migrated_db_url) as store:
        save(store, "tape1", OPEN_TEXTS, [SpeakerRecord("S1", "Wang Mei", "interviewer"), SpeakerRecord("S2")], "wages")
        closed = save(
            store,
            "tape2",
            CLOSED_TEXTS,
            [SpeakerRecord("S1", "Wang Mei", "interviewer"), SpeakerRecord("S2", "Marisol Okonkwo", "interviewee")],
            "hukou",
        )
        store.enroll("Okonkwo", [1.0] * 256, "mei", ["/clips/voice.wav"], origins=[store.recording(closed).sha256])
        store.set_metadata(closed, interviewee="Marisol Okonkwo", place="Zhuhai", recorded_on="1987-06-04")
        for name, role in (("rita", "researcher"), ("ann", "annotator"), ("vera", "viewer")):
            store.add_user(name, PASSWORD, role)
    return migrated_db_url


def close(db: str) -> None:
    with Store(db) as store:
        store.set_metadata(2, consent="closed", release_on="2999-01-01", changed_by="rita")


@pytest.mark.parametrize("change", [["--consent", "open"], ["--consent", "restricted"], ["--release-on", "2000-01-01"]])
def test_only_a_researcher_opens_a_closed_recording(db, change):
    """`ohp describe --consent/--release-on` asked only for a name: a viewer, or a name that is no account, opened
    the closed recording and read its metadata at once (then search, export ... everything)."""
    close(db)
    for user in ("vera", "nobody"):
        result = invoke("describe", "tape2", *change, "--user", user, "--db", db)
        assert result.exit_code == 2 and not leaked(result), result.output
        assert "only a researcher may open a closed recording (tape2.wav)" in result.stderr, result.stderr
    with Store(db) as store:
        assert (store.recording(2).consent, store.recording(2).release_on) == ("closed", "2999-01-01")
    opened = invoke("describe", "tape2", *change, "--user", "rita", "--include-restricted", "--db", db)
    assert opened.exit_code == 0 and "Zhuhai" in opened.stdout, opened.output


def test_anyone_named_closes_a_recording_or_restricts_it_longer(db):
    """Closing is no opening: it takes a name (kept in the history), not an account. Giving a closed recording a
    release date, or an earlier one, opens it on that day: that is opening."""
    assert invoke("describe", "tape2", "--consent", "closed", "--user", "vera", "--db", db).exit_code == 0
    assert invoke("describe", "tape2", "--release-on", "2999-01-01", "--user", "vera", "--db", db).exit_code == 2
    close(db)
    assert invoke("describe", "tape2", "--release-on", "3000-01-01", "--user", "vera", "--db", db).exit_code == 0
    with Store(db) as store:
        assert (store.recording(2).consent, store.recording(2).release_on) == ("closed", "3000-01-01")


def test_only_a_researcher_releases_a_voice_enrolled_from_a_closed_recording(db):
    """`ohp speakers source` asked only for a name: a viewer re-sourced the voice enrolled from the closed
    recording, which then named speakers everywhere and was listed to everyone."""
    close(db)
    refused = invoke("speakers", "source", "Okonkwo", "--from", "tape1", "--user", "vera", "--db", db)
    assert refused.exit_code == 2 and "only a researcher may say where a withheld voice comes from" in refused.stderr
    listed = invoke("speakers", "list", "--db", db)
    assert "Okonkwo" not in listed.stdout, listed.stdout
    given = invoke("speakers", "source", "Okonkwo", "--from", "tape1", "--user", "rita", "--db", db)
    assert given.exit_code == 0 and "names speakers in every recording" in given.stdout, given.output


def test_import_of_codes_reports_decisions_on_a_closed_recording(db, tmp_path):
    """`ohp import FILE.eaf` printed, for a closed recording, the store's decisions on it (who rejected which theme
    where and when), which the file does not hold. Now counted, not shown."""
    with Store(db) as store:
        [suggested] = store.annotations(2)
        store.decide(suggested.id, "accepted", "mei")
    exported = invoke("export", "tape2", "--format", "eaf", "--out", str(tmp_path / "x"), "--db", db)
    assert exported.exit_code == 0, exported.output  # made while tape2 was open: mei's code in it
    with Store(db) as store:
        [annotation] = store.annotations(2)
        store.decide(annotation.id, "rejected", "rita")
    close(db)
    result = invoke("import", str(tmp_path / "x" / "tape2.eaf"), "--db", db)
    assert "rejected by rita" not in result.stdout and "1 on closed recording(s), not shown" in result.stdout


def test_tag_prints_a_closed_recordings_theme_counts(db):
    """`ohp tag` listed each closed recording with how many theme suggestions it added and kept (ohp themes
    leaves those counts out: which themes a closed interview holds is its content)."""
    close(db)
    result = invoke("tag", "--no-model", "--force", "--db", db)
    assert result.exit_code == 0, result.output
    assert not [line for line in result.stdout.splitlines() if line.startswith("tape2.wav:")], result.stdout
    assert "tape1.wav: " in result.stdout and "1 closed recording(s) tagged too" in result.stdout


def test_a_closed_recordings_speakers_are_changed_only_under_an_account_that_sees_it(db):
    """`ohp speakers rename` and `role` took any name for a closed recording; now, as `ohp review`, an annotator's
    or a researcher's account (an open recording's speakers take any name, as before)."""
    close(db)
    for name in ("vera", "nobody"):
        renamed = invoke("speakers", "rename", "tape2", "S2", "Someone", "--user", name, "--db", db)
        role = invoke("speakers", "role", "tape2", "S2", "interviewer", "--user", name, "--db", db)
        assert renamed.exit_code == role.exit_code == 2 and "see closed recordings (tape2.wav)" in renamed.stderr
    with Store(db) as store:
        assert [(s.name, s.role) for s in store.speakers(2)][1] == ("Marisol Okonkwo", "interviewee")
    assert invoke("speakers", "rename", "tape2", "S2", "Someone", "--user", "ann", "--db", db).exit_code == 0
    assert invoke("speakers", "rename", "tape1", "S2", "Li", "--user", "nobody", "--db", db).exit_code == 0


def test_a_recording_closed_while_someone_opens_it_stays_closed(db, monkeypatch):
    """An audit's race: `ohp describe --consent open` checked who may open the recording as it was read, then
    wrote the consent blindly, so a researcher closing it in between was overwritten and an annotator opened a
    closed recording. The change is now made only on the state it was checked against, else it is a conflict."""
    with Store(db) as store:
        store.set_metadata(2, consent="restricted", changed_by="rita")
    checked = access.check_opening

    def check_then_a_researcher_closes(user, name, current, proposed):
        checked(user, name, current, proposed)
        with Store(db) as other:  # the researcher's `ohp describe --consent closed`, committed meanwhile
            other.set_metadata(2, consent="closed", changed_by="rita")

    monkeypatch.setattr(access, "check_opening", check_then_a_researcher_closes)
    result = invoke("describe", "tape2", "--consent", "open", "--user", "ann", "--db", db)
    assert result.exit_code != 0 and "changed meanwhile" in result.stderr, result.output
    with Store(db) as store:
        assert store.recording(2).consent == "closed"


@SQLITE_ONLY
def test_recordings_described_at_once_change_all_or_none(db, monkeypatch):
    """`ohp describe tape1 tape2 --consent closed` changed each recording in a transaction of its own: a conflict on
    tape2 (its consent changed meanwhile), as a Ctrl-C would, left tape1 closed and tape2 not, under a command that
    failed. The recordings named change in one transaction."""
    checked = access.check_opening

    def check_then_tape2_changes(user, name, current, proposed):
        checked(user, name, current, proposed)
        if current.id == 2:
            with Store(db) as other:  # someone's `ohp describe tape2 --consent restricted`, committed meanwhile
                other.set_metadata(2, consent="restricted", changed_by="rita")

    monkeypatch.setattr(access, "check_opening", check_then_tape2_changes)
    result = invoke("describe", "tape1", "tape2", "--consent", "closed", "--user", "rita", "--db", db)
    assert result.exit_code == 2 and "changed meanwhile" in result.stderr, result.output
    with Store(db) as store:
        assert [store.recording(i).consent for i in (1, 2)] == ["open", "restricted"]
        assert [h.after for h in store.history(recording_id=1) if h.action == "consent"] == []


@SQLITE_ONLY
def test_a_voice_whose_recording_is_closed_while_its_origin_is_given_stays_withheld(db, monkeypatch):
    """`ohp speakers source` asked for a researcher only where the voice was withheld as it read it, then wrote the
    new origin blindly: tape2 closed in between, an annotator's --outside released the voice of its closed interview
    to name speakers everywhere. The origin is now given only on the state checked, else it is a conflict."""
    given = speakers_cli.voice_origins

    def a_researcher_closes_tape2_meanwhile(*args):
        close(db)
        return given(*args)

    monkeypatch.setattr(speakers_cli, "voice_origins", a_researcher_closes_tape2_meanwhile)
    result = invoke("speakers", "source", "Okonkwo", "--outside", "--user", "ann", "--db", db)
    assert result.exit_code == 2 and "changed meanwhile" in result.stderr, result.output
    with Store(db) as store:
        [voice] = store.people()
        assert [r.id for r in voice.from_recordings] == [2] and access.voice_withheld(voice)


@SQLITE_ONLY
def test_a_review_started_while_a_pass_saves_the_recording_reads_it_as_one_state(db, monkeypatch):
    """`ohp review` read the segments, then the suggestions, each in a transaction of its own: a pass saving the
    recording in between (ohp run beside it) gave suggestions on segments it had not read, and the review failed
    unexpectedly (KeyError). They are read as one state."""
    info = AudioInfo(Path("/audio/tape1.wav"), b"tape1".hex().ljust(64, "0"), 1000, "wav", "pcm", 16000, 1, 9.0)
    retold = [Segment(i * 4.0, i * 4.0 + 3.0, t + " Yes.", t + " Yes.", "en") for i, t in enumerate(OPEN_TEXTS)]

    def transcribed_and_tagged_again(other: Store) -> None:  # ohp run
        rid = save_transcription(other, info, Transcript("en", 0.9, retold, "faster-whisper", "base"), {}, "k2", {})
        answer = other.segments(rid)[1]
        save_tags(other, rid, {answer.id: [ThemeSuggestion("wages", 0.9, ((4, 10),))]}, {}, "t", {}, "k2")

    saved_meanwhile(monkeypatch, store_annotations, "list_annotations", db, transcribed_and_tagged_again)
    result = runner.invoke(app, ["review", "tape1", "--user", "ann", "--db", db], input="s\n" * 5)
    assert result.exit_code == 0 and "1 suggestions" in result.stdout, result.output
