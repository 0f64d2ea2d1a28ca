"""Opening the database: its URL, the engine, SQLite's settings, the schema migrations, and sessions.

SQLite by default (`$OHP_DATABASE_URL` or `sqlite:///ohp.db`); any SQLAlchemy URL works (PostgreSQL
through psycopg). Opening a database upgrades its schema to the newest Alembic revision of
`pipeline/store/migrations`.

Several processes (a batch, a web app) may share one SQLite file: connections run in WAL mode
with a 30 s busy timeout, and every write transaction starts with BEGIN IMMEDIATE, so it takes
the write lock before it reads what it will change.

A new schema version: change the models (pipeline/store/models.py), then write the next migration, e.g.
    from alembic import command
    from pipeline.store.database import alembic_config
    command.revision(alembic_config("sqlite:///dev.db"), "what changed", autogenerate=True, rev_id="0002")
against a database at the previous head, and tidy what it wrote.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session

from pipeline.errors import OhpError

DEFAULT_URL = "sqlite:///ohp.db"
MIGRATIONS = Path(__file__).resolve().with_name("migrations")
_PG_MIGRATION_LOCK = 0x6F6870  # "ohp": key of the pg_advisory_xact_lock held while migrating


class StoreError(OhpError, RuntimeError):
    """A database problem. The message names the database, its password masked."""


def alembic_config(url: str | URL | None = None, connection: Connection | None = None) -> Config:
    """An Alembic config for pipeline/store/migrations: on `connection` if given, else on `url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def open_engine(url: str | None = None) -> tuple[Engine, str]:
    """An engine on `url` (else $OHP_DATABASE_URL, else DEFAULT_URL) whose schema is at the newest
    revision, and the URL to show (its password masked). StoreError if it cannot be used."""
    raw = url or os.environ.get("OHP_DATABASE_URL") or DEFAULT_URL
    try:
        parsed = make_url(raw)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL ({exc})") from None
    shown = parsed.render_as_string(hide_password=True)
    sqlite = parsed.get_backend_name() == "sqlite"
    database = parsed.database or ""
    if sqlite and database not in ("", ":memory:") and not database.startswith("file:"):
        folder = Path(database).absolute().parent
        if not folder.is_dir():
            raise StoreError(f"cannot open SQLite database {database}: folder {folder} does not exist")
    try:
        engine = create_engine(parsed)
    except (SQLAlchemyError, ImportError) as exc:  # ImportError: the URL's driver is not installed
        raise StoreError(f"cannot use database {shown}: {exc}") from exc
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        _upgrade(engine, shown)
    except BaseException as exc:
        engine.dispose()
        if isinstance(exc, SQLAlchemyError):
            raise StoreError(f"cannot open database {shown}: {reason(exc)}") from exc
        raise
    return engine, shown


@contextmanager
def session(engine: Engine, shown: str, write: bool = False) -> Iterator[Session]:
    """A session in one transaction: committed at the end, rolled back on any exception. A `write`
    one on SQLite holds the write lock from its start."""
    try:
        with Session(engine, expire_on_commit=False) as s, s.begin():
            if write and engine.dialect.name == "sqlite":
                s.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield s
    except SQLAlchemyError as exc:
        raise StoreError(f"database error on {shown}: {reason(exc)}") from exc


def reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # the driver's own error, without the SQL and its parameters
    return str(orig if orig is not None else exc).splitlines()[0]


@functools.cache
def _revisions() -> tuple[str, frozenset[str]]:
    """The head revision and all known revisions (read once per process)."""
    script = ScriptDirectory.from_config(alembic_config())
    return script.get_current_head(), frozenset(r.revision for r in script.walk_revisions())


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _upgrade(engine: Engine, shown: str) -> None:
    """Bring the schema to head; a no-op (one small query) when it is there already."""
    head, known = _revisions()
    with engine.connect() as conn:
        if _current_revision(conn) == head:
            return
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # Table rebuilds (alembic batch mode) must not cascade deletes: foreign keys are off
            # while migrating, checked before the commit, and on again for the pooled connection.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            _upgrade_locked(conn, shown, head, known)
        finally:
            if sqlite:
                conn.rollback()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def _upgrade_locked(conn: Connection, shown: str, head: str, known: frozenset[str]) -> None:
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # one migrating process at a time
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    current = _current_revision(conn)  # again, now that we hold the lock
    if current is not None and current not in known:
        raise StoreError(
            f"database {shown} has schema revision {current!r}, which this version of ohp "
            f"does not know (its newest is {head!r}): a newer ohp wrote it"
        )
    if current != head:
        command.upgrade(alembic_config(connection=conn), "head")
    if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
        raise StoreError(f"migrating {shown} left rows whose foreign keys point nowhere")
    conn.commit()
