"""What `ohp` does with the folders it is told to write to (a usage error before any work, never a traceback
after it), and `ohp tag` going on past a recording it cannot tag. Through the CLI on a real database
(SQLite, and PostgreSQL when OHP_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from pipeline import batch
from pipeline.cli import app

runner = CliRunner()
# What rich takes for a style tag in a help text: ohp[cluster], not [NAME].
MARKUP_TAG = r"\\?\[[a-z#/@][^\]]*\]"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture
def imported(migrated_db_url, tmp_path):
    """A database with one recording in it, from a transcript (no audio, no recogniser)."""
    srt = tmp_path / "talk.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:02,000\nHello there.\n", encoding="utf-8")
    result = invoke("import", srt, "--no-tag", "--db", migrated_db_url)
    assert result.exit_code == 0, result.output
    return migrated_db_url


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_export_to_a_file_given_as_out_is_a_usage_error(imported, tmp_path, where):
    taken = tmp_path / "taken"
    taken.write_text("someone's file", encoding="utf-8")
    out = taken if where == "file" else taken / "sub"
    for args in ([], ["--format", "qdpx"], ["--redact", "names"]):
        result = invoke("export", "--out", out, *args, "--db", imported)
        assert result.exit_code == 2, result.output
        assert f"{taken} is a file, not a folder" in result.stderr and "Traceback" not in result.output
    assert taken.read_text(encoding="utf-8") == "someone's file"


def test_run_to_a_file_given_as_out_is_refused_before_transcribing(db_url, tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(batch, "run_batch", lambda *args, **kwargs: ran.append(args))
    taken = tmp_path / "taken"
    taken.write_text("", encoding="utf-8")
    result = invoke("run", tmp_path, "--out", taken, "--speakers", "off", "--no-tag", "--db", db_url)
    assert result.exit_code == 2 and f"{taken} is a file, not a folder" in result.stderr
    assert not ran


@pytest.mark.parametrize(
    ("force", "said"),
    [([], "the same command does the rest"), (["--force"], "without --force those not reached keep their earlier")],
)
def test_a_run_stopped_by_ctrl_c_says_what_running_it_again_does(db_url, tmp_path, monkeypatch, force, said):
    """Stopped, a --force run said "the same command does the rest": that command redoes them all again."""

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "run_batch", stopped)
    result = invoke("run", tmp_path, *force, "--speakers", "off", "--no-tag", "--db", db_url)
    assert result.exit_code == 130 and said in result.stderr, result.stderr


def test_report_to_a_file_given_as_out_is_a_usage_error(imported, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("", encoding="utf-8")
    result = invoke("report", "--out", taken, "--db", imported)
    assert result.exit_code == 2 and f"{taken} is a file, not a folder" in result.stderr


def test_tag_goes_on_past_a_recording_transcribed_again_meanwhile(db_url, tmp_path, monkeypatch):
    """`ohp tag` over the collection while an `ohp run --force` replaces one recording's segments: that one
    fails (its new segments are the run's to tag), and the others are still tagged."""
    from pipeline.errors import ConflictError

    for name in ("first", "second"):
        srt = tmp_path / f"{name}.srt"
        srt.write_text(f"1\n00:00:00,000 --> 00:00:02,000\nThe {name} one.\n", encoding="utf-8")
        assert invoke("import", srt, "--no-tag", "--db", db_url).exit_code == 0
    tagged = []

    def tag_recording(store, recording_id, *args):
        if recording_id == 1:
            raise ConflictError("recording 1 was transcribed again while it was worked on (segment 1 is gone)")
        tagged.append(recording_id)
        return {"added": 0}

    monkeypatch.setattr(batch, "tag_recording", tag_recording)
    result = invoke("tag", "--no-model", "--db", db_url)
    assert result.exit_code == 1, result.output
    assert "first.srt: recording 1 was transcribed again" in result.stderr and tagged == [2]
    assert "second.srt: 0 added" in result.stdout


def test_every_option_help_shows_its_bracketed_words():
    """Typer renders help as rich markup, which took `[cluster]` in `needs ohp[cluster]` for a style and dropped it."""
    group = typer.main.get_command(app)

    def commands(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, [*path, name])

    for path, command in commands(group, []):
        words = [w for p in command.params for w in re.findall(MARKUP_TAG, getattr(p, "help", None) or "")]
        if words:  # only these helps are rendered: all of them take seconds
            shown = invoke(*path, "--help").output
            assert all(word.replace("\\", "") in shown for word in words), (path, words)
