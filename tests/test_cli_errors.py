"""How `ohp` reports errors: ohp's own (pipeline.errors) as a red message and exit code 2, anything else
as a bug with its traceback in the log. Through the CLI on a real database (SQLite, and PostgreSQL when
OHP_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from pipeline.store import Store

from conftest import REPO

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.mark.parametrize(
    "error",
    [
        NotFoundError("no recording with id 12"),
        InvalidInputError("release_on must be an ISO date (YYYY-MM-DD), not 'soon'"),
        ConflictError("segment 3 was changed since version 1", {"version": 2}),
        ForbiddenError("changing consent needs the researcher role (yours is viewer)"),
    ],
    ids=["not found", "invalid input", "conflict", "forbidden"],
)
def test_ohp_errors_are_a_message_and_exit_code_2(db_url, monkeypatch, error):
    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(Store, "list_recordings", failing)
    result = invoke("status", "--db", db_url)
    assert result.exit_code == 2, result.output
    assert f"error: {error}" in result.stderr and "Traceback" not in result.output


def test_a_bug_is_not_called_not_found_and_its_traceback_is_logged(db_url, monkeypatch, caplog):
    def broken(*args, **kwargs):
        return {}["recording_id"]  # a KeyError is a LookupError, but no "not found"

    monkeypatch.setattr(Store, "list_recordings", broken)
    with caplog.at_level(logging.ERROR, logger="pipeline.cli"):
        result = invoke("status", "--db", db_url)
    assert result.exit_code == 1, result.output
    assert "ohp failed unexpectedly (KeyError: 'recording_id'); see the log" in result.stderr
    [logged] = [r for r in caplog.records if r.exc_info]
    assert logged.name == "pipeline.cli.failures" and logged.exc_info[0] is KeyError
    assert "Traceback" in caplog.text and "in broken" in caplog.text


def test_a_message_is_printed_as_it_is(db_url, monkeypatch):
    def failing(*args, **kwargs):
        raise InvalidInputError("[NAME] is not a recording in [red]sample.wav[/red]")

    monkeypatch.setattr(Store, "list_recordings", failing)
    result = invoke("status", "--db", db_url)
    assert result.exit_code == 2 and "[NAME] is not a recording in [red]sample.wav[/red]" in result.stderr


def test_usage_errors_and_chosen_exit_codes_pass_through(db_url, tmp_path):
    usage = invoke("export", "1", "--all", "--db", db_url)
    assert usage.exit_code == 2 and "name recordings or give --all, not both" in usage.output
    nobody = invoke("export", "--include-restricted", "--db", db_url)
    assert nobody.exit_code == 2 and "who is exporting closed recordings?" in nobody.stderr
    codebook = tmp_path / "codebook.yaml"
    codebook.write_text("themes:\n  - id: wages\n", encoding="utf-8")
    problems = invoke("codebook", "validate", codebook)
    assert problems.exit_code == 1 and "theme wages has no 'label'" in problems.output  # its problems listed


def test_a_forbidden_export_is_refused_before_anything_is_written(db_url, tmp_path):
    with Store(db_url) as store:
        store.add_user("ann", "correct horse battery", "annotator")
    out = tmp_path / "out"
    refused = invoke("export", "--all", "--include-restricted", "--user", "ann", "--out", out, "--db", db_url)
    assert refused.exit_code == 2 and not out.exists()
    assert "error: only a researcher may export closed recordings: ann has the annotator role" in refused.stderr


def test_a_reader_that_goes_away_ends_ohp_quietly(tmp_path):
    """`ohp search x | head`: the closed pipe is no bug to report, and no traceback follows on exit."""
    script = tmp_path / "closed_pipe.py"
    script.write_text(
        "import typer\n"
        "from pipeline.cli.failures import ReportingGroup\n"
        "app = typer.Typer(cls=ReportingGroup)\n"
        "@app.command()\n"
        "def write():\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "@app.command()\n"
        "def other():\n"
        "    pass\n"
        "app()\n"
    )
    done = subprocess.run([sys.executable, str(script), "write"], capture_output=True, text=True, cwd=REPO)
    assert (done.returncode, done.stderr) == (1, "")
