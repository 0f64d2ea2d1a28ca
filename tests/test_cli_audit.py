"""What `ohp` does with the files and folders it is told to write to, and with runs stopped part-way: a
usage error before any work, never a traceback after it. Through the CLI on a real database (SQLite, and
PostgreSQL when OHP_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline import batch
from pipeline.cli import app

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture
def imported(db_url, tmp_path):
    """A database with one recording in it, from a transcript (no audio, no recogniser)."""
    srt = tmp_path / "talk.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:02,000\nHello there.\n", encoding="utf-8")
    result = invoke("import", srt, "--no-tag", "--db", db_url)
    assert result.exit_code == 0, result.output
    return db_url


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


def test_report_to_a_file_given_as_out_is_a_usage_error(imported, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("", encoding="utf-8")
    result = invoke("report", "--out", taken, "--db", imported)
    assert result.exit_code == 2 and f"{taken} is a file, not a folder" in result.stderr
