"""The one configuration: flags over environment over defaults, the project's codebook, and logging."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import DEFAULT_DATABASE_URL, Config, default_home, setup_logging
from pipeline.errors import InvalidInputError
from pipeline.stages.codebook import DEFAULT_CODEBOOK

from conftest import REPO

runner = CliRunner()


def invoke(*args: str, **env: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200", **env})


def test_flags_over_environment_over_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no annotations/codebook.yaml here
    assert Config.load({}) == Config(codebook=DEFAULT_CODEBOOK)
    assert (Config().database_url, Config().home, Config().device, Config().log_level) == (
        DEFAULT_DATABASE_URL,
        default_home(),
        "auto",
        "WARNING",
    )
    environ = {
        "OHP_DATABASE_URL": "sqlite:///env.db",
        "OHP_HOME": "~/ohp-home",
        "OHP_DEVICE": "CPU",
        "OHP_SECRET": "s",
        "OHP_LOG_LEVEL": "info",
        "OHP_LOG_FILE": str(tmp_path / "ohp.log"),
        "OHP_USER": "mei",
        "OHP_CODEBOOK": "book.yaml",
    }
    assert Config.load(environ) == Config(
        database_url="sqlite:///env.db",
        home=Path.home() / "ohp-home",
        codebook=Path("book.yaml"),
        device="cpu",
        secret="s",
        log_level="INFO",
        log_file=tmp_path / "ohp.log",
        user="mei",
    )
    flagged = Config.load(environ, database_url="sqlite:///flag.db", device=None, log_level="DEBUG")
    assert (flagged.database_url, flagged.device, flagged.log_level) == ("sqlite:///flag.db", "cpu", "DEBUG")
    assert Config.load({"OHP_DATABASE_URL": "", "OHP_USER": ""}).database_url == DEFAULT_DATABASE_URL  # empty: not set


def test_a_bad_value_names_its_variable():
    with pytest.raises(InvalidInputError, match=r"device 'tpu'.*auto, cpu, cuda.*OHP_DEVICE"):
        Config.load({"OHP_DEVICE": "tpu"})
    with pytest.raises(InvalidInputError, match=r"log level 'LOUD'.*OHP_LOG_LEVEL"):
        Config.load({"OHP_LOG_LEVEL": "loud"})
    result = invoke("status", OHP_DEVICE="tpu")
    assert result.exit_code == 2 and "OHP_DEVICE" in result.output and "Traceback" not in result.output


def test_the_projects_codebook_overrides_the_one_that_ships(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "annotations" / "codebook.yaml"
    own.parent.mkdir()
    own.write_text(DEFAULT_CODEBOOK.read_text(encoding="utf-8"), encoding="utf-8")
    assert Config.load({}).codebook == own
    assert Config.load({"OHP_CODEBOOK": "other.yaml"}).codebook == Path("other.yaml")
    result = invoke("codebook", "validate")
    assert result.exit_code == 0 and str(own) in result.output


def test_the_database_flag_over_the_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"OHP_DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}"}
    assert f"no recordings in sqlite:///{tmp_path / 'env.db'}" in invoke("status", **env).output
    flagged = invoke("status", "--db", f"sqlite:///{tmp_path / 'flag.db'}", **env)
    assert f"no recordings in sqlite:///{tmp_path / 'flag.db'}" in flagged.output
    assert invoke("status", OHP_DATABASE_URL="").output.startswith("no recordings in sqlite:///ohp.db")


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = root.level, logging.getLogger("pipeline").level
    yield
    for handler in [h for h in root.handlers if h.get_name() == "pipeline.config"]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(saved[0])
    logging.getLogger("pipeline").setLevel(saved[1])


def test_log_file_gets_info_and_standard_error_warnings(tmp_path, restore_logging):
    log_file = tmp_path / "logs" / "ohp.log"
    setup_logging(Config(log_file=log_file))
    logging.getLogger("pipeline.example").debug("not shown")
    logging.getLogger("pipeline.example").info("model loaded")
    logging.getLogger("pipeline.example").warning("a warning")
    lines = log_file.read_text(encoding="utf-8").splitlines()
    said = [line.split(" ", 2)[2] for line in lines]  # after the date and time
    assert said == ["INFO pipeline.example: model loaded", "WARNING pipeline.example: a warning"]
    setup_logging(Config(log_file=log_file))  # again: one handler of each, not two
    logging.getLogger("pipeline.example").info("once")
    assert log_file.read_text(encoding="utf-8").count("once") == 1


def test_verbose_and_log_file_on_the_command_line(tmp_path, restore_logging):
    log_file = tmp_path / "ohp.log"
    db = f"sqlite:///{tmp_path / 'ohp.db'}"
    quiet = invoke("--log-file", str(log_file), "status", "--db", db)
    assert quiet.exit_code == 0 and "making database" not in quiet.stderr
    logged = log_file.read_text(encoding="utf-8")
    assert f"INFO pipeline.store.database: making database {db} at schema revision" in logged
    unwritable = invoke("--log-file", str(tmp_path / "ohp.db" / "ohp.log"), "status", "--db", db)  # a file as folder
    assert unwritable.exit_code == 2 and "cannot write the log file" in unwritable.output
    other = f"sqlite:///{tmp_path / 'other.db'}"
    verbose = invoke("--verbose", "status", "--db", other)
    assert verbose.exit_code == 0 and f"INFO pipeline.store.database: making database {other}" in verbose.stderr


def test_a_failed_files_traceback_is_in_the_log(tmp_path, monkeypatch, restore_logging):
    from pipeline import batch

    def probe(path):
        raise RuntimeError("the probe broke")

    monkeypatch.setattr(batch, "probe", probe)
    audio = tmp_path / "interview.wav"
    audio.write_bytes(b"RIFF")
    log_file = tmp_path / "ohp.log"
    db = f"sqlite:///{tmp_path / 'ohp.db'}"
    result = invoke("--log-file", str(log_file), "run", str(audio), "--db", db, "--no-tag")
    assert result.exit_code == 1
    assert f"{audio.resolve()}: failed after" in result.stdout and "RuntimeError: the probe broke" in result.stdout
    logged = log_file.read_text(encoding="utf-8")
    assert f"ERROR pipeline.batch: {audio}: the probe stage failed\nTraceback (most recent call last):" in logged
    assert 'raise RuntimeError("the probe broke")' in logged


def test_the_web_servers_access_lines_leave_the_query_out(restore_logging):
    # A search's words (what was said, a person's name) and filters are in its query; logs go into bug reports.
    import uvicorn

    setup_logging(Config())
    uvicorn.Config(app=None, log_config=uvicorn.config.LOGGING_CONFIG)  # as `ohp serve` has it set its loggers up
    access = logging.getLogger("uvicorn.access")
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    access.addHandler(handler)
    try:
        # As uvicorn's protocols log a request.
        path = "/search?q=%E5%BC%A0%E9%95%BF%E5%8D%8E&speaker=Zhang+Changhua"
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 200)
        # A request in absolute form (as a client sends it to a forward proxy): uvicorn's h11 logs its target whole.
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "http://ohp.example" + path, "1.1", 404)
    finally:
        access.removeHandler(handler)
    assert lines == [
        '127.0.0.1:5000 - "GET /search HTTP/1.1" 200',
        '127.0.0.1:5000 - "GET http://ohp.example/search HTTP/1.1" 404',
    ]


def test_the_web_servers_own_lines_show_control_characters_rather_than_act_on_them(restore_logging, capsys):
    """uvicorn's handlers write its errors (with tracebacks quoting what a request sent) and access lines to the
    terminal themselves, past ohp's inert standard error: an ESC sequence or U+202E in them acted on it."""
    import uvicorn

    from pipeline.web.logs import server_logging

    setup_logging(Config())
    uvicorn.Config(app=None, log_config=server_logging())  # as `ohp serve` has it set its loggers up
    try:
        raise ValueError("header \x1b]8;;http://evil.example\x07click\x1b]8;;\x07 \u202ecod.exe")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application \x1b[2J")
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/\x1b[2J", "1.1", 400)
    captured = capsys.readouterr()
    written = captured.out + captured.err
    assert (
        "ValueError: header ␛]8;;http://evil.example␇click" in written
        and "Exception in ASGI application ␛[2J" in written
    )
    assert '"GET /␛[2J HTTP/1.1" 400' in written
    assert "\x1b" not in written and "\u202e" not in written and "\x07" not in written


def test_ohp_serve_gives_the_web_server_the_inert_logging(monkeypatch, tmp_path):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options))
    result = invoke("serve", "--db", f"sqlite:///{tmp_path / 'ohp.db'}")
    assert result.exit_code == 0, result.output
    formatters = served["log_config"]["formatters"]
    assert [f["()"] for f in formatters.values()] == ["pipeline.web.logs.InertDefault", "pipeline.web.logs.InertAccess"]


def test_jieba_says_nothing_on_the_terminal():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ohp = [sys.executable, "-c", "from pipeline.cli import app; app()"]
    command = [*ohp, "tag-text", "孩子在老家跟爷爷奶奶", "--language", "zh"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "Left-behind children / 留守儿童" in result.stdout and "prefix dict" not in result.stderr


def test_jieba_says_nothing_on_the_terminal_when_subtitles_break_chinese_lines(tmp_path):
    """Subtitles break Chinese lines between jieba's words: an export of SRT, or `ohp run` writing a skipped
    recording's files again, was the first to load its dictionary, and it said so on standard error."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ohp = [sys.executable, "-c", "from pipeline.cli import app; app()"]
    db = ("--db", f"sqlite:///{tmp_path / 'ohp.db'}")
    (tmp_path / "li.srt").write_text("1\n00:00:01,000 --> 00:00:04,000\n我在东莞的工厂上班\n", encoding="utf-8")
    imported = subprocess.run(
        [*ohp, "import", "li.srt", "--no-tag", *db], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    export = [*ohp, "export", "li", "--format", "srt", "--out", "out", *db]
    exported = subprocess.run(export, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "我在东莞的工厂上班" in (tmp_path / "out" / "li.srt").read_text(encoding="utf-8")
    assert "prefix dict" not in exported.stderr
