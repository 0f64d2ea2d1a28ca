"""Shared test helpers: where the real-speech corpus is, and how its absence is treated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def corpus_path(relative: str) -> Path:
    """A file of ../shared/corpus: skip the test when the corpus is absent, fail when OHP_REQUIRE_CORPUS=1."""
    path = CORPUS / relative
    if path.exists():
        return path
    message = f"corpus file not found: {path}"
    if os.environ.get("OHP_REQUIRE_CORPUS") == "1":
        pytest.fail(message + " (OHP_REQUIRE_CORPUS=1)")
    pytest.skip(message)
