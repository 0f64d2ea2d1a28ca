"""A researcher's messy folder: odd names, copies, files still being copied, odd channels and containers. Each
good file is done, each bad one named with its cause before any model loads, and the batch goes on."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pipeline.batch import FileResult, run_batch
from pipeline.cli.output import write_report
from pipeline.process import RunOptions
from pipeline.stages.audio import ffmpeg_exe
from pipeline.store import Store

BEEP = "sine=f=440:r=16000:d=0.5"


def lavfi(graph: str, out: Path, *options: str) -> Path:
    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-f", "lavfi", "-i", graph, *options, str(out)], check=True)
    return out


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'ohp.db'}") as s:
        yield s


def test_a_name_that_is_not_utf8_fails_before_the_pass_and_the_report_still_writes(tmp_path, store):
    """A name in another encoding (a zip made on an old Windows, a GBK folder): saving it failed with a traceback
    after the whole pass, on every run, and --report then failed on it, losing every file's result."""
    bad = lavfi(BEEP, tmp_path / os.fsdecode(b"\xd5\xc5\xb3\xa4\xbb\xaa.wav"))  # 张长华 in GBK
    [result] = run_batch([bad], store, RunOptions(out_dir=None, speakers=None)).files
    assert (result.status, result.stage) == ("failed", "probe")
    assert "not UTF-8" in (result.error or "") and "Traceback" not in (result.error or "")
    report = tmp_path / "run.json"
    write_report([result, FileResult(tmp_path / "good.wav", "done")], report)
    files = json.loads(report.read_text(encoding="utf-8"))["files"]
    assert os.fsencode(files[0]["path"]) == os.fsencode(bad)  # the name's bytes, as a script can find the file
    assert files[1]["status"] == "done"
