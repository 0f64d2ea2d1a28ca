"""What `ohp run` prints: a plain line per file when its output is not a terminal, the table in a terminal
(file names never broken), and the --report JSON. Fast: silence and broken files, no recogniser."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from pipeline import cli
from pipeline.batch import FileResult
from pipeline.cli.output import file_line, total_line

runner = CliRunner()
LONG_NAME = "interview with zhang changhua in dongguan, second session, 2019-02-03, recorder two.wav"


@pytest.fixture
def folder(tmp_path) -> Path:
    """A silent recording with a long name (done: nothing to transcribe) and a file that is not audio."""
    audio = tmp_path / "audio"
    audio.mkdir()
    with wave.open(str(audio / LONG_NAME), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(b"\0" * 64000)
    (audio / "broken.wav").write_text("not audio")
    return audio


def run(folder: Path, *args: str):
    db = f"sqlite:///{folder.parent / 'ohp.db'}"
    missing = folder / "missing.wav"
    args = ["run", str(folder), str(missing), "--db", db, "--out", str(folder.parent / "out"), *args]
    return runner.invoke(cli.app, args, env={"COLUMNS": "200"})


def test_a_plain_line_per_file_when_not_a_terminal(folder):
    result = run(folder, "--no-tag", "--speakers", "off")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{folder / 'broken.wav'}: failed after ")
    assert lines[0].endswith(" s: not an audio file ffmpeg can read (invalid data found when processing input)")
    assert lines[1].startswith(f"{folder / LONG_NAME}: done, 00:00:02, 0 segments, no language, ")
    assert lines[1].endswith(" s; no speech found")
    assert lines[2].startswith(f"{folder / 'missing.wav'}: failed after 0.0 s: no such file or folder")
    assert lines[3].startswith("ohp run: 3 file(s) in ") and lines[3].endswith(" s: 1 done, 2 failed")
    assert len(lines) == 4 and "━" not in result.stdout and "│" not in result.stdout  # no bar, no table


def test_report_writes_each_files_result_as_json(folder, tmp_path):
    report = tmp_path / "report.json"
    result = run(folder, "--no-tag", "--report", str(report))
    assert result.exit_code == 1
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["counts"] == {"done": 1, "skipped": 0, "failed": 2}
    files = {Path(f["path"]).name: f for f in document["files"]}
    assert set(files) == {LONG_NAME, "broken.wav", "missing.wav"}
    done = files[LONG_NAME]
    assert done["path"] == str(folder / LONG_NAME) and done["status"] == "done" and done["speakers"] == 0
    assert (done["duration"], done["segments"], done["language"], done["error"]) == (2.0, 0, None, None)
    assert files["broken.wav"]["status"] == "failed" and "not an audio file" in files["broken.wav"]["error"]
    assert set(done) == set(FileResult.__dataclass_fields__)
    missing_folder = tmp_path / "nowhere" / "report.json"
    refused = run(folder, "--report", str(missing_folder))
    said = " ".join(refused.output.replace("│", " ").split())  # the message as one line, out of its box
    assert refused.exit_code == 2 and "--report" in said and "does not exist" in said


@pytest.mark.parametrize("width", [60, 220])
def test_in_a_terminal_a_file_name_is_never_broken(folder, monkeypatch, width):
    screen = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=screen, force_terminal=True, width=width, color_system=None))
    result = run(folder, "--no-tag", "--speakers", "off")
    assert result.exit_code == 1
    shown = screen.getvalue()
    if width == 220:  # room for the table, the name in one piece
        assert "┃ file" in shown and f"│ {LONG_NAME} │" in shown
    else:  # no room: the lines, whole (the terminal wraps them, nothing cuts them)
        assert "┃ file" not in shown and f"{folder / LONG_NAME}: done, 00:00:02" in shown
    assert "ohp run: 3 file(s) in " in shown


def test_lines_say_what_happened():
    done = FileResult(Path("/a/b.wav"), "done", 1, 61.0, 12, "zh", 2, 3.22, ["/a/b.wav: clipped"], {"loops": 2})
    assert file_line(done) == "/a/b.wav: done, 00:01:01, 12 segments, 2 speakers, zh, 3.2 s; clipped; removed 2 loops"
    failed = FileResult(Path("/a/c.wav"), "failed", seconds=0.04, error="/a/c.wav: tag: RuntimeError: boom")
    assert file_line(failed) == "/a/c.wav: failed after 0.0 s: tag: RuntimeError: boom"
    assert total_line([done, failed]) == "ohp run: 2 file(s) in 3.3 s: 1 done, 1 failed"
