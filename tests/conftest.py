"""Shared test helpers: where the real-speech corpus is, and how its absence is treated."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from pipeline.config import Config
from pipeline.store import Store

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
STANDARDS = REPO.parent / "shared" / "standards"
POSTGRES_URL = os.environ.get("OHP_TEST_POSTGRES_URL")
# The configured model cache ($OHP_HOME or the user's): the real weights are assembled there once.
MODEL_CACHE = Config.load().home


def corpus_path(relative: str, folder: Path = CORPUS) -> Path:
    """A file of ../shared/corpus (or another shared folder): skip the test when it is absent, fail when
    OHP_REQUIRE_CORPUS=1."""
    path = folder / relative
    if path.exists():
        return path
    message = f"{folder.name} file not found: {path}"
    if os.environ.get("OHP_REQUIRE_CORPUS") == "1":
        pytest.fail(message + " (OHP_REQUIRE_CORPUS=1)")
    pytest.skip(message)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(not POSTGRES_URL, reason="OHP_TEST_POSTGRES_URL is not set"),
        ),
    ]
)
def db_url(request, tmp_path):
    """A URL of an empty database: a temp SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ohp.db'}"
        return
    schema = f"ohp_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def store(db_url):
    with Store(db_url) as s:
        yield s
