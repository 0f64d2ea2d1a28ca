"""The commands that need no model start without importing the heavy libraries (bench/startup.py times them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

HEAVY = (
    "torch",
    "spacy",
    "whisper",
    "faster_whisper",
    "ctranslate2",
    "resemblyzer",
    "sklearn",
    "scipy",
    "docx",
    "fastapi",
)
# Runs a command as `ohp` would, then says which of HEAVY it imported.
PROBE = """
import json, sys
from pipeline.cli import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(name for name in {heavy!r} if name in sys.modules)), file=sys.stderr)
"""


COMMANDS = {
    "help": ["--help"],
    "run-help": ["run", "--help"],
    "status": ["status"],
    "search": ["search", "工资"],
    "themes": ["themes"],
    "export": ["export", "--all", "--format", "json", "--out", "exported"],
}


@pytest.mark.parametrize("args", COMMANDS.values(), ids=COMMANDS.keys())
def test_commands_without_models_do_not_import_heavy_libraries(args, tmp_path):
    database = [] if "--help" in args else ["--db", f"sqlite:///{tmp_path / 'ohp.db'}"]
    command = [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args, *database]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    imported = json.loads(result.stderr.strip().splitlines()[-1])
    assert imported == [], f"ohp {' '.join(args)} imported {', '.join(imported)}"


def test_a_run_without_speakers_or_tagging_does_not_import_their_libraries(tmp_path):
    # spaCy (with thinc and torch under it) costs 2.3 s to import: only a run that tags needs it. torch and
    # openai-whisper's package cost 2 s more: the VAD and the hint's token count read their files without them.
    import numpy as np
    import soundfile

    soundfile.write(tmp_path / "quiet.wav", np.zeros(16_000 * 2, np.float32), 16_000)
    args = ["run", "quiet.wav", "--speakers", "off", "--no-tag", "--db", f"sqlite:///{tmp_path / 'ohp.db'}"]
    heavy = ("spacy", "thinc", "resemblyzer", "sklearn", "scipy", "torch", "whisper")
    command = [sys.executable, "-c", PROBE.format(heavy=heavy), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OHP_HOME": str(tmp_path / "home")}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert "no speech found" in result.stdout + result.stderr  # it did run the pass
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []
