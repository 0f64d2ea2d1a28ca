"""ohp installed from its wheel, away from the repository, tags with the codebook it ships and opens a
database with the migrations and the head script it ships (package data, not files beside a checkout)."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # builds a wheel and starts spaCy in a fresh environment: about half a minute


def test_the_wheel_installed_elsewhere_tags_with_its_own_codebook(tmp_path):
    # The wheel is built from a copy, so the build leaves nothing in the repository.
    source = tmp_path / "source"
    shutil.copytree(REPO / "pipeline", source / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(wheels), str(source)]
    subprocess.run(build, check=True)
    [wheel] = wheels.glob("ohp-*.whl")

    # A fresh virtual environment with only the wheel; the dependencies come from this one's site-packages.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    own = Path(subprocess.run(purelib, capture_output=True, text=True, check=True).stdout.strip())
    (own / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], check=True)

    elsewhere = tmp_path / "elsewhere"  # no annotations/ here, and not the repository
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OHP_") and k != "PYTHONPATH"}
    env["OHP_HOME"] = str(tmp_path / "home")

    def ohp(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([venv / "bin" / "ohp", *args], capture_output=True, text=True, cwd=elsewhere, env=env)

    which = [python, "-c", "import pipeline; print(pipeline.__file__)"]
    where = subprocess.run(which, capture_output=True, text=True, cwd=elsewhere, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
    tagged = ohp("tag-text", "孩子在老家跟爷爷奶奶", "--language", "zh", "--json")
    assert tagged.returncode == 0, tagged.stderr
    themes = {theme["id"] for theme in json.loads(tagged.stdout)["themes"]}
    assert "left_behind_children" in themes
    assert "prefix dict" not in tagged.stderr  # jieba is quiet
    status = ohp("-v", "status", "--db", f"sqlite:///{elsewhere / 'ohp.db'}")
    assert status.returncode == 0 and "no recordings" in status.stdout, status.stderr
    assert "at schema revision" in status.stderr and "migrating" not in status.stderr  # the wheel's head script
