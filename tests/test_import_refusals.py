"""Hostile or broken transcripts and audio that an audit of the input handling (2026-12-02) found ohp did not
refuse by its own rule (README, "Search and import"): a clear error naming the file and the cause, nothing
stored, the batch going on, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, select
from typer.testing import CliRunner

from pipeline.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
GOOD_SRT = (
    "1\n00:00:01,000 --> 00:00:04,000\n我在东莞的工厂加班，工资是计件的。\n\n"
    "2\n00:00:05,000 --> 00:00:08,000\n孩子在老家上学。\n"
)
NEXT_SRT = "1\n00:00:01,000 --> 00:00:04,000\nthe next file of the batch is fine\n"


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200", **(env or {})})


def rows(url: str) -> dict[str, list[tuple]]:
    engine = create_engine(url)
    try:
        tables = MetaData()
        tables.reflect(engine)
        with engine.connect() as connection:
            return {
                name: sorted(map(tuple, connection.execute(select(table))), key=repr)
                for name, table in tables.tables.items()
            }
    finally:
        engine.dispose()


@pytest.fixture
def db(migrated_db_url, tmp_path) -> str:
    (tmp_path / "good.srt").write_text(GOOD_SRT, encoding="utf-8")
    assert invoke("import", tmp_path / "good.srt", "--no-tag", "--db", migrated_db_url).exit_code == 0
    return migrated_db_url


def refused_and_batch_goes_on(db: str, path: Path) -> None:
    """The file refused with its name and a cause (exit 1, no traceback), nothing stored, and a good file after it
    in the same command still imported."""
    before = rows(db)
    alone = invoke("import", path, "--no-tag", "--db", db)
    said = alone.stderr.replace("\n", "")
    assert "unexpectedly" not in said and "Traceback" not in said, said[:400]
    assert alone.exit_code == 1, alone.output[:400]
    assert said.startswith(f"failed: {path}"), said[:400]
    assert rows(db) == before
    following = path.parent / "next.srt"
    following.write_text(NEXT_SRT, encoding="utf-8")
    batch = invoke("import", path, following, "--no-tag", "--db", db)
    assert f"{following}: recording" in batch.stdout, batch.output[:400]


# ------------------------------------------------------------ lone surrogates in ohp JSON


def _one(recording=None, **segment) -> dict:
    return {"recording": recording or {}, "segments": [{"start": 0, "end": 1, "text": "hello", **segment}]}


SURROGATES = {
    "text": _one(text="bad \ud800 text"),
    "speaker": _one(speaker="S\udc00"),
    "interviewee": _one({"interviewee": "a\ud800b"}),
    "word": _one(words=[{"start": 0, "end": 1, "text": "w\ud800", "probability": 0.5}]),
}


@pytest.mark.parametrize("where", SURROGATES)
def test_a_lone_surrogate_escape_in_json_is_refused_naming_the_file(db, tmp_path, where):
    """JSON's "\\ud800" is a lone surrogate once parsed: no UTF-8 can hold it, and the store's insert raised
    UnicodeEncodeError: a traceback, no file named, and the rest of the batch never imported."""
    path = tmp_path / "surrogate.json"
    path.write_text(json.dumps(SURROGATES[where]), encoding="ascii")  # json.dumps writes "\ud800" as an escape
    refused_and_batch_goes_on(db, path)


# ------------------------------------- strings the reader accepts and the store's columns refuse


STORE_LIMITS = {
    "language.json": json.dumps(_one(language="x" * 33)),  # segments.language is 32 characters
    "recording-language.json": json.dumps(_one({"language": "y" * 40})),
    "speaker.json": json.dumps(_one(speaker="s" * 300)),  # segments.speaker is 255
    "voice.vtt": "WEBVTT\n\n00:00.000 --> 00:01.000\n<v " + "v" * 300 + ">hi there\n",
    "language.vtt": "WEBVTT\nLanguage: " + "z" * 40 + "\n\n00:00.000 --> 00:01.000\nhi there\n",
}


@pytest.mark.parametrize("name", STORE_LIMITS)
def test_a_string_too_long_for_the_store_is_refused_as_the_files_fault(db, tmp_path, name):
    """The reader allows 1,000 characters; the store's columns 32 (language) or 255 (speaker). The store's
    InvalidInputError was "error: 'xxx…'... is 33 characters", exit 2, no file named, the batch stopped."""
    path = tmp_path / name
    path.write_text(STORE_LIMITS[name], encoding="utf-8")
    refused_and_batch_goes_on(db, path)


# ------------------------------------------------------- WebVTT header fields taken unchecked


VTT_HEADERS = {
    "duration": "Duration: 10",  # a string where _checked wants seconds: TypeError
    "speakers": "Speakers: Zhang",  # iterated as a list of objects by import_file: TypeError
    "consent": "Consent: bogus",  # CONSENT_LEVELS.index in the store: ValueError
    "release": "Release_on: never",  # date.fromisoformat in the store: ValueError
}


@pytest.mark.parametrize("field", VTT_HEADERS)
def test_webvtt_header_fields_do_not_crash_the_import(db, tmp_path, field):
    """Every "key: value" line of a WebVTT header went into the transcript's metadata, read as the recording's
    duration, speakers, consent and dates without the checks JSON and TXT get (_described)."""
    path = tmp_path / f"{field}.vtt"
    path.write_text(f"WEBVTT\n{VTT_HEADERS[field]}\n\n00:00.000 --> 00:01.000\nhi there\n", encoding="utf-8")
    before = rows(db)
    result = invoke("import", path, "--no-tag", "--db", db)
    said = result.stderr.replace("\n", "")
    assert "unexpectedly" not in said and "Traceback" not in said, said[:400]
    if result.exit_code != 0:  # refused: then as any bad file
        refused_and_batch_goes_on(db, path)
    else:
        assert rows(db) != before


# ------------------------------------------------------------------------ a symlink loop


@pytest.fixture
def loop(tmp_path) -> Path:
    path = tmp_path / "loop.wav"
    path.symlink_to(path.name)
    return path


def test_ohp_run_on_a_symlink_loop_reports_it_and_writes_the_report(db, tmp_path, loop):
    """`ohp run loop.wav`: Path.resolve raised RuntimeError("Symlink loop") in the summary (output.file_line):
    "failed unexpectedly", and the --report file never written."""
    zero = tmp_path / "zero.wav"
    zero.write_bytes(b"")
    report = tmp_path / "report.json"
    result = invoke(
        "run", zero, loop, "--no-tag", "--speakers", "off", "--out", tmp_path / "out", "--report", report, "--db", db
    )
    assert "unexpectedly" not in result.output and "Traceback" not in result.output, result.output[-600:]
    assert result.exit_code == 1
    assert report.exists()
    assert str(loop.name) in result.output


def test_import_with_audio_that_is_a_symlink_loop_is_refused_naming_it(db, tmp_path, loop):
    """`ohp import t.srt --audio loop.wav`: RuntimeError from audio.resolve() in import_file, not an AudioError."""
    transcript = tmp_path / "t.srt"
    transcript.write_text(NEXT_SRT, encoding="utf-8")
    before = rows(db)
    result = invoke("import", transcript, "--audio", loop, "--no-tag", "--db", db)
    assert "unexpectedly" not in result.output and "Traceback" not in result.output, result.output[-600:]
    assert result.exit_code == 1 and "loop.wav" in result.stderr
    assert rows(db) == before
