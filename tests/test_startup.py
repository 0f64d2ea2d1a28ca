"""The commands that need no model start without importing the heavy libraries (bench/startup.py times them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, corpus_path

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
    "alembic",  # a new SQLite database is made by the head script (pipeline.store.headscript)
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


SPEECH = "zh/FireRedTeam_FireRedASR__examples_wav_BAC009S0764W0121.wav"  # 4 s of Mandarin


@pytest.mark.parametrize("recording", ["quiet", pytest.param("speech", marks=pytest.mark.corpus)])
def test_a_run_without_speakers_or_tagging_does_not_import_their_libraries(recording, tmp_path):
    # spaCy (with thinc and torch under it) costs 2.3 s to import: only a run that tags needs it. torch and
    # openai-whisper's package cost 2 s more: the VAD, the hint's token count and the exports' language names
    # read their files without them (speech: the model loaded, a language told, every default export written).
    import numpy as np
    import soundfile

    if recording == "quiet":
        path = tmp_path / "quiet.wav"
        soundfile.write(path, np.zeros(16_000 * 2, np.float32), 16_000)
    else:
        path = corpus_path(SPEECH)
    args = ["run", str(path), "--speakers", "off", "--no-tag", "--db", f"sqlite:///{tmp_path / 'ohp.db'}"]
    heavy = ("spacy", "thinc", "resemblyzer", "sklearn", "scipy", "torch", "whisper")
    command = [sys.executable, "-c", PROBE.format(heavy=heavy), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert ("no speech found" if recording == "quiet" else "1 done") in result.stdout + result.stderr  # it ran
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []


ENTRY = "from pipeline.cli import ohp; ohp()"  # the `ohp` console script's entry point


@pytest.mark.parametrize(
    "args", [["status"], ["run", "quiet.wav", "--speakers", "off", "--no-tag"]], ids=["status", "run"]
)
def test_a_command_closes_its_database_before_the_exit(args, tmp_path):
    # The entry point freezes what is left out of the garbage collector at exit: a database left for the
    # collector to close would keep its write-ahead log beside it (SQLite folds the log in on closing).
    import numpy as np
    import soundfile

    soundfile.write(tmp_path / "quiet.wav", np.zeros(16_000, np.float32), 16_000)
    command = [sys.executable, "-c", ENTRY, *args, "--db", f"sqlite:///{tmp_path / 'ohp.db'}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ohp.db").exists()
    assert not list(tmp_path.glob("ohp.db-*")), "the database was not closed"


def test_a_cluster_worker_does_not_import_the_database_libraries():
    """A Ray worker imports pipeline.cluster.actors (and through it pipeline.batch and pipeline.process) in every
    process Ray starts for it, and never touches the database: SQLAlchemy took 0.6 s of each start-up, for
    settings_key (now in pipeline.records) and a type."""
    database = ("sqlalchemy", "alembic", "psycopg", "pipeline.store")
    probe = (
        "import json, sys, pipeline.cluster.actors\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({database!r}))))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
