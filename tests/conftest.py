"""Shared test helpers: where the real-speech corpus is, and how its absence is treated."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import argon2
import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from pipeline.config import Config
from pipeline.store import Store
from pipeline.store.database import head_revision

from raycluster import OPTIONS, RAY, SHORT, free_port

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
STANDARDS = REPO.parent / "shared" / "standards"
POSTGRES_URL = os.environ.get("OHP_TEST_POSTGRES_URL")
# A PostgreSQL database made with the C locale (createdb -T template0 --locale=C -E UTF8), whose own lower() folds
# ASCII only: the tests of case folding run on it too (EVERY_COLLATION).
POSTGRES_C_URL = os.environ.get("OHP_TEST_POSTGRES_C_URL")
# One made with ICU's English collation (createdb -T template0 --locale-provider=icu --icu-locale=en --locale=C.UTF-8
# -E UTF8), whose text sorts a < Ä < B where SQLite and the C locales sort B < a < Ä: the tests of order run on it too.
POSTGRES_EN_URL = os.environ.get("OHP_TEST_POSTGRES_EN_URL")
# The pytest-xdist worker running this process (gw0, gw1, ...), "main" without xdist: in the names of the
# PostgreSQL schemas it makes, so that a schema left behind says which worker made it.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
# The configured model cache ($OHP_HOME or the user's): the real weights are assembled there once.
MODEL_CACHE = Config.load().home
# The tests give each command its width as COLUMNS in CliRunner's env, which rich reads on every print unless
# COLUMNS was set when the console was made (pipeline.cli's, at import): then that width is fixed. A
# pytest-xdist worker starts with COLUMNS=80 and LINES=24 (GNU readline, which pytest imports at start-up, puts
# them in the environment its child processes inherit): dropped before a test module imports the CLI.
for name in ("COLUMNS", "LINES"):
    os.environ.pop(name, None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the files with recogniser runs (tests marked slow) first, each file's tests in their
    order: `make test` hands whole files to the workers in this order (--dist loadfile --no-loadscope-reorder),
    and a long file handed out last would keep one worker busy after the other has finished."""
    if WORKER == "main":
        return
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the order within each group stays


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


@pytest.fixture(autouse=True, scope="session")
def own_ohp_home(tmp_path_factory):
    """An OHP_HOME of the session's own (for it and the `ohp` commands it starts): the checkpoints of
    interrupted runs and the web app's secret stay in it, so a test run in another checkout transcribing
    the same file at the same time cannot hand these tests its checkpoint. The model weights are linked
    from the usual home: they are assembled once per machine, not once per session."""
    models = MODEL_CACHE / "models"
    models.mkdir(parents=True, exist_ok=True)
    home = tmp_path_factory.mktemp("ohp-home")
    (home / "models").symlink_to(models)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OHP_HOME", str(home))
        yield home


@pytest.fixture(autouse=True, scope="session")
def empty_project_folder(tmp_path_factory):
    """Tests run in a folder with no project files of its own: ohp reads a project's vocabulary, codebook and
    tagger model from the folder it runs in, and this repository's annotations/vocabulary.txt (the demo
    project's) would hint every transcription the tests make. A test of those files makes its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("project"))
        yield


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashes():
    """Passwords hashed with argon2's cheapest parameters (argon2.profiles.CHEAPEST, made for tests): the
    web tests add and check passwords by the dozen, and the default parameters cost most of a second each.
    A hash carries its parameters, so checking works the same."""
    with pytest.MonkeyPatch.context() as patch:
        cheapest = functools.partial(argon2.PasswordHasher.from_parameters, argon2.profiles.CHEAPEST)
        patch.setattr(argon2, "PasswordHasher", cheapest)
        yield


# A test of db_url whose database plays no part in what it checks (Ray workers killed, say: they never touch
# it), where a PostgreSQL variant would only repeat the SQLite one at great cost.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
POSTGRESQL = pytest.param(
    "postgresql", marks=pytest.mark.skipif(not POSTGRES_URL, reason="OHP_TEST_POSTGRES_URL is not set")
)
# A test of what a cluster of several machines does to its database, which is PostgreSQL there (a SQLite file is
# refused), where the SQLite variant would repeat at great cost what a test of one machine's batch checks.
POSTGRESQL_ONLY = pytest.mark.parametrize("db_url", [POSTGRESQL], indirect=True)
POSTGRESQL_C = pytest.param(
    "postgresql-c", marks=pytest.mark.skipif(not POSTGRES_C_URL, reason="OHP_TEST_POSTGRES_C_URL is not set")
)
POSTGRESQL_EN = pytest.param(
    "postgresql-en", marks=pytest.mark.skipif(not POSTGRES_EN_URL, reason="OHP_TEST_POSTGRES_EN_URL is not set")
)
# A test of what depends on the database's locale (case folding, the order of text): on PostgreSQL databases of the
# C locale and of ICU's English collation too.
EVERY_COLLATION = pytest.mark.parametrize("db_url", ["sqlite", POSTGRESQL, POSTGRESQL_C, POSTGRESQL_EN], indirect=True)


class PostgresSchemas:
    """A schema of its own for each PostgreSQL test. A test whose store will migrate it anyway gets one a test
    before it migrated, then emptied (TRUNCATE ... RESTART IDENTITY: its rows and counters as new), if that one
    was left at the newest revision with its tables; else, and for every other test, a new empty schema. The
    migrations cost PostgreSQL tests most of their set-up; test_store runs them on new schemas. Each pytest-xdist
    worker has its own (a session fixture of its process), so no worker takes, empties or drops another's."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.admin = create_engine(database_url)
        self.migrated: list[str] = []  # free: migrated and empty
        self.tables: set[str] | None = None  # a migrated schema's tables

    def url(self, schema: str) -> str:
        url = make_url(self.database_url).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    def take(self, migrated: bool) -> str:
        if migrated and self.migrated:
            return self.migrated.pop()
        schema = f"ohp_test_{WORKER}_{uuid.uuid4().hex[:12]}"
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        return schema

    def give_back(self, schema: str, migrated: bool) -> None:
        if migrated and self._emptied(schema):
            self.migrated.append(schema)
        else:
            self.drop(schema)

    def _emptied(self, schema: str) -> bool:
        with self.admin.begin() as conn:
            tables = set(inspect(conn).get_table_names(schema=schema))
            if "alembic_version" not in tables or tables != (self.tables or tables):
                return False
            revision = conn.exec_driver_sql(f'SELECT version_num FROM "{schema}".alembic_version').scalar()
            if revision != head_revision():
                return False
            self.tables = tables
            rows = ", ".join(f'"{schema}"."{table}"' for table in sorted(tables - {"alembic_version"}))
            conn.exec_driver_sql(f"TRUNCATE {rows} RESTART IDENTITY CASCADE")
        return True

    def drop(self, schema: str) -> None:
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


def _schemas_of(database_url: str | None):
    assert database_url is not None  # the tests asking for it are skipped without it
    schemas = PostgresSchemas(database_url)
    yield schemas
    for schema in schemas.migrated:
        schemas.drop(schema)
    schemas.admin.dispose()


@pytest.fixture(scope="session")
def postgres_schemas():
    yield from _schemas_of(POSTGRES_URL)


@pytest.fixture(scope="session")
def postgres_c_schemas():
    yield from _schemas_of(POSTGRES_C_URL)


@pytest.fixture(scope="session")
def postgres_en_schemas():
    yield from _schemas_of(POSTGRES_EN_URL)


# The session fixture of each PostgreSQL database a test's db_url may be in.
SCHEMAS_OF = {
    "postgresql": "postgres_schemas",
    "postgresql-c": "postgres_c_schemas",
    "postgresql-en": "postgres_en_schemas",
}


@pytest.fixture(params=["sqlite", POSTGRESQL])
def db_url(request, tmp_path):
    """A URL of a new database: a temp SQLite file, or a PostgreSQL schema of its own, dropped afterwards (see
    PostgresSchemas); "postgresql-c" and "postgresql-en" (EVERY_COLLATION) one in the C-locale or the ICU English
    database. Empty, unless the test's store would migrate it anyway."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ohp.db'}"
        return
    schemas = request.getfixturevalue(SCHEMAS_OF[request.param])
    migrated = "store" in request.fixturenames
    schema = schemas.take(migrated)
    try:
        yield schemas.url(schema)
    finally:
        schemas.give_back(schema, migrated)


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A SQLite database migrated to the newest schema, once a session: the `store` of a test starts from a
    copy of it, not by running every migration again (a quarter of a second a database). The migrations
    themselves are tested on empty databases (db_url) in test_store."""
    path = tmp_path_factory.mktemp("migrated") / "ohp.db"
    Store(f"sqlite:///{path}").close()  # the last connection closed: everything is in the file, no -wal beside it
    return path


@pytest.fixture
def store(db_url, request):
    """A store on db_url's database, at the newest schema."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), url.database)
    with Store(db_url) as s:
        yield s


@pytest.fixture
def migrated_db_url(store, db_url) -> str:
    """db_url at the newest schema, for a test whose commands would migrate it anyway: a PostgreSQL schema a test
    before migrated, emptied (see PostgresSchemas), not the migrations run again."""
    return db_url


@pytest.fixture(scope="module")
def cluster():
    """The address of a Ray cluster of this machine, one for each test file that asks: a head node with two CPUs.
    It is started with `ray start --block` and stopped by ending that process, which takes down the processes it
    started and no other Ray on the machine (`ray stop` would stop them all). Its processes import this checkout's
    pipeline (PYTHONPATH) and use the session's model cache (OHP_HOME, set before the cluster starts). Without
    token authentication (which a Ray of 2.52 and later turns on where ~/.ray has a token): the test processes
    have no token."""
    # Ray's unix sockets live under its temp dir, and a socket's path may be 107 bytes at most: keep it short.
    temp = Path(tempfile.mkdtemp(prefix="ohpray", dir="/tmp"))
    port = free_port()
    start = [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2"]
    # Each head's dashboard agent on a free port: two clusters on one machine would both take 52365.
    quiet = ["--include-dashboard=false", f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        head = subprocess.Popen(
            [*start, *quiet, f"--temp-dir={temp}"],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while not (temp / "ray_current_cluster").exists():  # written once the head is up
                assert head.poll() is None, "ray start failed"
                assert time.monotonic() < deadline, "the Ray cluster did not come up in 2 minutes"
                time.sleep(0.2)
            yield f"127.0.0.1:{port}"
        finally:
            head.terminate()  # ray start --block stops the processes it started
            head.wait(timeout=60)
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster_options(own_ohp_home):
    """--speakers off --no-tag, half-done transcripts in the session's own model cache (as the Ray workers')."""
    return replace(OPTIONS, home=own_ohp_home)


@pytest.fixture(scope="module")
def short_files():
    """Three short recordings of the corpus (2, 4.2 and 7.2 s) for the Ray tests."""
    return [corpus_path(name) for name in SHORT]
