"""The command line's reading commands and a closed recording, written as attacks: whoever runs `ohp search`,
`ohp themes`, `ohp speakers list`, `ohp describe`, `ohp status` or `ohp review` must not read a closed
interview's text, speakers, voice or metadata unless a researcher asks (`--include-restricted --user NAME`), or,
for review, the account reviewing sees closed recordings (pipeline/access.py). On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from saving import save_speakers, save_tags, save_transcription
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.records import AudioInfo, Segment, SpeakerRecord, ThemeSuggestion, Transcript
from pipeline.store import Store

runner = CliRunner()
PASSWORD = "correct horse battery"
# Every word only the closed recording has: none of them may reach the output of one who did not ask.
SECRETS = ("Kowalczyk", "Okonkwo", "Zhuhai", "1987-06-04")
OPEN_TEXTS = ["Where did you keep the ledger?", "The ledger stayed in the office."]
CLOSED_TEXTS = ["Did anyone take the ledger?", "Kowalczyk smuggled the ledger out before the wages were cut."]
# The commands that read the collection and take --include-restricted, each reading the closed recording's part.
READERS = {
    "search": ["search", "ledger"],
    "search --json": ["search", "ledger", "--json"],
    "search --recording": ["search", "ledger", "--recording", "tape2"],
    "search --interviewee": ["search", "ledger", "--interviewee", "Okonkwo"],
    "search --speaker": ["search", "ledger", "--speaker", "Marisol Okonkwo"],
    "themes": ["themes"],
    "speakers list": ["speakers", "list"],
    "speakers list RECORDING": ["speakers", "list", "tape2"],
    "describe": ["describe"],
    "history": ["history", "tape2"],
}


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input, env={"COLUMNS": "200", "OHP_USER": ""})


def save(store: Store, name: str, texts: list[str], speakers: list[SpeakerRecord]) -> int:
    """A recording with its speakers and a suggestion of wages on its answer, waiting for review."""
    info = AudioInfo(Path(f"/audio/{name}.wav"), name.encode().hex().ljust(64, "0"), 1000, "wav", "pcm", 16000, 1, 9.0)
    segments = [Segment(i * 4.0, i * 4.0 + 3.0, t, t, "en", speaker=f"S{i + 1}") for i, t in enumerate(texts)]
    rid = save_transcription(store, info, Transcript("en", 0.9, segments, "faster-whisper", "base"), {}, "k", {})
    save_speakers(store, rid, speakers, {}, "s", {})
    answer = store.segments(rid)[1]
    wages = [ThemeSuggestion("wages", 0.9, ((0, 3),))]
    save_tags(store, rid, {answer.id: wages}, {}, "t", {}, "k")
    return rid


@pytest.fixture
def db(migrated_db_url) -> str:
    """tape1 open; tape2 closed, its interviewee named as a speaker, as an enrolled voice and in its metadata."""
    with Store(migrated_db_url) as store:
        save(store, "tape1", OPEN_TEXTS, [SpeakerRecord("S1", "Wang Mei", "interviewer"), SpeakerRecord("S2")])
        closed = save(
            store,
            "tape2",
            CLOSED_TEXTS,
            [SpeakerRecord("S1", "Wang Mei", "interviewer"), SpeakerRecord("S2", "Marisol Okonkwo", "interviewee")],
        )
        store.enroll("Okonkwo", [1.0] * 256, "mei", ["/clips/voice.wav"], origins=[store.recording(closed).sha256])
        store.set_metadata(closed, interviewee="Marisol Okonkwo", place="Zhuhai", recorded_on="1987-06-04")
        store.set_metadata(closed, consent="closed", release_on="2999-01-01")
        for name, role in (("rita", "researcher"), ("ann", "annotator"), ("vera", "viewer")):
            store.add_user(name, PASSWORD, role)
    return migrated_db_url


def leaked(result) -> list[str]:
    return [secret for secret in SECRETS if secret in result.stdout or secret in result.stderr]


@pytest.mark.parametrize("command", READERS)
def test_reading_commands_leave_the_closed_recording_out(db, command):
    result = invoke(*READERS[command], "--db", db)
    assert not leaked(result), result.output
    assert "closed recording(s)" in result.stderr and "--include-restricted --user NAME" in result.stderr


def test_search_finds_the_open_recording_and_counts_the_closed_one_left_out(db):
    result = invoke("search", "ledger", "--json", "--db", db)
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert hits["total"] == 2 and {hit["recording"] for hit in hits["hits"]} == {"tape1.wav"}
    assert "left out 1 closed recording(s): tape2.wav" in result.stderr


def test_asking_by_name_for_a_closed_recording_is_no_success(db, tmp_path):
    """As `ohp export` does: the one recording asked for is not read, and the exit code says so. `ohp agreement`
    and `ohp report` counted nothing and said so with 0 (the report's files written over no recording)."""
    for command in ("search --recording", "speakers list RECORDING", "history"):
        assert invoke(*READERS[command], "--db", db).exit_code == 2, command
    assert invoke("agreement", "tape2", "--db", db).exit_code == 2
    assert invoke("report", "tape2", "--out", str(tmp_path / "report"), "--db", db).exit_code == 2
    assert not (tmp_path / "report").exists()


def test_describe_keeps_the_closed_row_with_its_consent(db):
    """The file and consent stay: they are how a researcher finds the recording to open it."""
    rows = [line for line in invoke("describe", "--db", db).stdout.splitlines() if "tape2.wav" in line]
    assert len(rows) == 1 and "withheld" in rows[0] and "closed until 2999-01-01" in rows[0]


def test_status_lists_the_closed_recording_without_its_text(db):
    result = invoke("status", "--db", db)
    assert result.exit_code == 0 and "tape2.wav" in result.stdout
    assert not leaked(result)


def test_the_closed_voice_is_left_out_of_the_enrolled_voices(db):
    result = invoke("speakers", "list", "--db", db)
    assert "enrolled voices" not in result.stdout
    assert "left out 1 enrolled voice(s) from closed recordings" in result.stderr


@pytest.mark.parametrize("command", READERS)
def test_a_researcher_who_asks_reads_the_closed_recording(db, command):
    result = invoke(*READERS[command], "--include-restricted", "--user", "rita", "--db", db)
    assert result.exit_code == 0, result.output
    assert "closed recording(s)" not in result.stderr
    assert "tape2.wav" in result.stdout or "Kowalczyk" in result.stdout


def test_what_a_researcher_reads(db):
    found = invoke("search", "ledger", "--json", "--include-restricted", "--user", "rita", "--db", db)
    hits = json.loads(found.stdout)
    assert hits["total"] == 4 and CLOSED_TEXTS[1] in [hit["text"] for hit in hits["hits"]]
    speakers = invoke("speakers", "list", "--include-restricted", "--user", "rita", "--db", db)
    assert "Marisol Okonkwo" in speakers.stdout and "enrolled voices" in speakers.stdout
    described = invoke("describe", "tape2", "--include-restricted", "--user", "rita", "--db", db)
    assert "Zhuhai" in described.stdout and "withheld" not in described.stdout


@pytest.mark.parametrize("command", READERS)
@pytest.mark.parametrize("user", ["vera", "ann", "nobody"])
def test_only_a_researcher_may_ask_for_closed_recordings(db, command, user):
    result = invoke(*READERS[command], "--include-restricted", "--user", user, "--db", db)
    assert result.exit_code == 2 and not leaked(result), result.output
    why = {"vera": "has the viewer role", "ann": "has the annotator role", "nobody": "is not a user (ohp user add)"}
    assert f"error: only a researcher may ask for closed recordings: {user} {why[user]}" in result.stderr


def test_asking_for_closed_recordings_needs_a_user(db):
    result = invoke("search", "ledger", "--include-restricted", "--db", db)
    assert result.exit_code == 2 and "who is searching closed recordings?" in result.stderr


@pytest.mark.parametrize("doubtful", [[], ["--doubtful"]])
@pytest.mark.parametrize("user", ["vera", "mei"])
def test_review_of_a_closed_recording_needs_an_account_that_sees_it(db, user, doubtful):
    """Review follows the web app's seeing rule for the name it decides under: a viewer, or a name that is no
    account, is refused; the suggestions of an open recording need no account, as before."""
    result = invoke("review", "tape2", *doubtful, "--user", user, "--db", db, input="q\n")
    assert result.exit_code == 2 and not leaked(result), result.output
    assert "only an annotator or a researcher may see closed recordings (tape2.wav)" in result.stderr
    assert invoke("review", "tape1", "--user", "mei", "--db", db, input="q\n").exit_code == 0


def test_an_annotator_reviews_a_closed_recording(db):
    result = invoke("review", "tape2", "--user", "ann", "--db", db, input="q\n")
    assert result.exit_code == 0, result.output
    assert "Kowalczyk smuggled" in result.stdout
