"""Opening the database: its URL, the engine, SQLite's settings, the schema migrations, and sessions; text folded
(folded) and sorted (by_code_point) alike on every database.

SQLite or any SQLAlchemy URL (PostgreSQL through psycopg); the configuration (pipeline.config) says
which. Opening a database upgrades its schema to the newest Alembic revision of
`pipeline/store/migrations`; a new SQLite database is made at that revision in one step
(pipeline.store.headscript), and an SQLite file holding tables but no schema revision (another program's) is
refused, nothing written into it. Every session checks that the schema is still at that revision: a newer ohp
migrating it under a process left running (a web app) stops that process, which would read and write the old shape.

Several processes (a batch, a web app) may share one SQLite file: connections run in WAL mode
with a 30 s busy timeout, and every write transaction starts with BEGIN IMMEDIATE, so it takes
the write lock before it reads what it will change (a transaction that reads and then asks for the
lock gets SQLITE_BUSY at once, without the timeout, when another holds it). On PostgreSQL every write
transaction likewise starts by taking one advisory lock. Switching a new file to
WAL is such a read-then-write inside SQLite: a connection refused there waits for the lock the same
way and tries again.

A new schema version: change the models (pipeline/store/models.py), then write the next migration, e.g.
    from alembic import command
    from pipeline.store.database import alembic_config
    command.revision(alembic_config("sqlite:///dev.db"), "what changed", autogenerate=True, rev_id="0002")
against a database at the previous head, and tidy what it wrote; then `python -m pipeline.store.headscript`.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    SQLColumnExpression,
    Text,
    case,
    cast,
    create_engine,
    event,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DataError, DBAPIError, SQLAlchemyError, StatementError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from pipeline.errors import InvalidInputError, OhpError
from pipeline.utils import fold_case

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().with_name("migrations")
_PG_MIGRATION_LOCK = 0x6F6870  # "ohp": key of the pg_advisory_xact_lock held while migrating
_PG_WRITE_LOCK = 0x6F687077  # "ohpw": key of the pg_advisory_xact_lock every write transaction holds
LOCK_WAIT_MS = 30_000  # how long a write waits for the one before it, on either database
# The collation PostgreSQL's lower() folds case in: ICU's root locale folds every character as Python's str.lower
# does (tests/test_search.py compares them all). The database's own locale may fold ASCII only (C, POSIX), or İ as
# i and a final Σ as σ (glibc's), where Python makes them i and a combining dot, and ς.
FOLD_COLLATION = "und-x-icu"
_FOLD_OPTION = "ohp_fold_collation"  # the engine's execution option naming it, where the server has it
_FOLD_PROBE = "ÉÄЖＡİΣ"  # letters the C locale or glibc's fold otherwise than Python


class StoreError(OhpError, RuntimeError):
    """A database problem. The message names the database, its password masked."""


def alembic_config(url: str | URL | None = None, connection: Connection | None = None) -> Config:
    """An Alembic config for pipeline/store/migrations: on `connection` if given, else on `url`."""
    from alembic.config import Config  # alembic costs a third of a second: imported only to migrate

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def open_engine(url: str) -> tuple[Engine, str]:
    """An engine on `url` whose schema is at the newest revision, and the URL to show (its password
    masked). StoreError if it cannot be used."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL ({exc})") from None
    except ValueError:  # SQLAlchemy's int() of the port, whose message quotes it: a password when the host is left out
        raise StoreError("not a database URL: its port is not a number") from None
    shown = shown_url(parsed)
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
        if engine.dialect.name == "postgresql":
            _choose_fold_collation(engine, shown)
    except BaseException as exc:
        engine.dispose()
        if isinstance(exc, SQLAlchemyError):
            raise StoreError(f"cannot open database {shown}: {reason(exc)}") from exc
        raise
    return engine, shown


def shown_url(url: URL) -> str:
    """The URL as messages and the log show it: its password masked, and those given as query parameters
    too (libpq takes `password` and `sslpassword` there)."""
    masked = {name: "***" for name in url.query if "password" in name.lower()}
    shown = url.update_query_dict(masked).render_as_string(hide_password=True)
    return shown.replace("=%2A%2A%2A", "=***")  # as the user part shows it


@contextmanager
def session(engine: Engine, shown: str, write: bool = False) -> Iterator[Session]:
    """A session in one transaction: committed at the end, rolled back on any exception. A `write`
    one on SQLite holds the write lock from its start. Any other reads one snapshot of the database
    from its first statement to its end, so that what it reads in several statements (a page, a
    report's tables) agrees even while others write; on PostgreSQL it is also read-only. A value the
    database cannot hold is the caller's: InvalidInputError, not StoreError (the database works)."""
    try:
        with Session(engine, expire_on_commit=False) as s, s.begin():
            if engine.dialect.name == "sqlite":
                # pysqlite begins no transaction before a SELECT: each would read the newest data
                s.connection().exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
            elif not write:
                s.connection().exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            elif engine.dialect.name == "postgresql":
                # One writer at a time, as on SQLite: a write reads what it will change only once the writer
                # before it committed (two runs saving one new recording both inserted it, and one failed).
                # Given up after SQLite's busy timeout: a writer stuck elsewhere is an error, not a hang.
                s.connection().exec_driver_sql(f"SET LOCAL lock_timeout = {LOCK_WAIT_MS}")
                s.connection().exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK})")
            _check_still_at_head(s.connection(), shown)
            yield s
    except DataError as exc:  # a value given it cannot hold: a NUL in PostgreSQL's text, an integer past its range
        raise InvalidInputError(f"the database cannot hold a value given: {reason(exc)}") from exc
    except StatementError as exc:  # a column type's own refusal (models.Bounded, UTCDateTime) is the caller's
        if isinstance(exc.orig, OhpError):
            raise exc.orig from exc
        raise StoreError(f"database error on {shown}: {reason(exc)}") from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"database error on {shown}: {reason(exc)}") from exc


def reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # the driver's own error, without the SQL and its parameters
    return str(orig if orig is not None else exc).splitlines()[0]


def _check_still_at_head(conn: Connection, shown: str) -> None:
    """StoreError unless the database is still at the schema this process opened it at. A newer ohp may migrate it
    under a process left running (a web app): what this one read and wrote in the old schema's shape would be wrong
    (revision 0018 moved closed recordings' segments to an index of their own, which it would not know)."""
    current = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    if current != head_revision():
        raise StoreError(
            f"database {shown} has schema revision {current!r} since this process opened it at {head_revision()!r}: "
            "a newer ohp migrated it; go on with that version of ohp"
        )


@functools.cache  # read on every session (_check_still_at_head)
def head_revision() -> str:
    """The newest schema revision, from the migrations' file names (`0006_consent.py` is revision "0006"),
    so that opening an up-to-date database needs no alembic (a test checks alembic agrees)."""
    return max(path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


@functools.cache
def _revisions() -> tuple[str, frozenset[str]]:
    """The head revision and all known revisions, as alembic reads them (once per process)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    if head is None:  # alembic's None: no revisions at all (several heads raise in alembic itself)
        raise RuntimeError(f"no migrations found in {MIGRATIONS / 'versions'}")
    return head, frozenset(r.revision for r in script.walk_revisions())


def _new_database_script(conn: Connection, shown: str) -> list[str] | None:
    """For an SQLite database with nothing in it, the statements that make it at the newest revision at once
    (pipeline.store.headscript); None for any other, or when the script is not at that revision. StoreError for
    one that holds tables but no schema revision: another program's database, which migrating would write ohp's
    tables into."""
    if conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar():
        if _stamped_revision(conn) is None:
            raise StoreError(
                f"{shown} holds tables but no ohp schema revision: not an ohp database, and ohp leaves it as it is"
            )
        return None
    from pipeline.store.headscript import head_script

    return head_script()


def _migrate(conn: Connection, shown: str) -> None:
    """Alembic's migrations from the database's revision to the newest."""
    head, known = _revisions()
    current = _current_revision(conn)
    if current is not None and current not in known:
        raise StoreError(
            f"database {shown} has schema revision {current!r}, which this version of ohp "
            f"does not know (its newest is {head!r}): a newer ohp wrote it"
        )
    if current != head:
        from alembic import command

        log.info("migrating database %s from schema revision %s to %s", shown, current or "(empty)", head)
        command.upgrade(alembic_config(connection=conn), "head")


def _current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _stamped_revision(conn: Connection) -> str | None:
    """The database's schema revision by one plain query; None when it has none (a new database)."""
    try:
        with conn.begin_nested() if conn.in_transaction() else conn.begin():
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # The busy timeout first: switching to WAL below may have to wait for another process.
    for pragma in (f"busy_timeout={LOCK_WAIT_MS}", "foreign_keys=ON", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as exc:
        # A new file: the switch reads its header, then writes it. When another process is writing the file
        # (switching it too: two `ohp run`s starting on a new database), SQLite refuses the second step at
        # once, without the busy timeout (waiting there could deadlock). So wait for the other one's write
        # as a write transaction from the start does, then switch (or find it switched: a read only).
        if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
            raise
        log.debug("SQLite database busy while switching to WAL: waiting for the other writer")
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute("ROLLBACK")
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
    # lower() as Python's, which fold_case and PostgreSQL's in FOLD_COLLATION are: SQLite's own folds ASCII only.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def folded(conn: Connection, value: SQLColumnExpression[str | None]) -> ColumnElement[str | None]:
    """`value` folded in SQL as fold_case folds it: by Python's str.lower on SQLite (registered as lower()), by
    ICU's in FOLD_COLLATION on PostgreSQL where the server has it (else by the database's locale)."""
    collation = conn.get_execution_options().get(_FOLD_OPTION)
    if not collation:
        return func.replace(func.lower(value), "i\u0307", "i")
    # ASCII (one byte a character in UTF-8) by the C locale's lower(): as Python's there, and a third of ICU's
    # cost, which a language filter pays on every segment the query matches.
    return case(
        (func.octet_length(value) == func.length(value), func.lower(value.collate("C"))),
        else_=func.replace(func.lower(value.collate(collation)), "i\u0307", "i").collate("C"),
    )


class CodePointOrder(FunctionElement[str]):
    """A text value sorted by code point (by_code_point); SQLAlchemy's way to a construct compiled per dialect."""

    inherit_cache = True
    type = Text()


def by_code_point(value: SQLColumnExpression[str] | SQLColumnExpression[str | None]) -> CodePointOrder:
    """`value` to ORDER BY: text sorts by code point on every database, as SQLite compares it (bytes of UTF-8) and
    Python's sorted() does. PostgreSQL sorts by the database's collation, in which a language's (en_US.UTF-8, ICU's
    en) sorts a < Ä < B where SQLite sorts B < a < Ä: tied search hits, pages of them and listings came out in
    another order on each database. "C" is its collation of code points."""
    return CodePointOrder(value)


@compiles(CodePointOrder)
def _code_point_order(element: CodePointOrder, compiler: SQLCompiler, **kw: Any) -> str:
    [value] = element.clauses
    return compiler.process(value, **kw)  # SQLite's own order (BINARY); other databases sort as they do


@compiles(CodePointOrder, "postgresql")
def _postgresql_code_point_order(element: CodePointOrder, compiler: SQLCompiler, **kw: Any) -> str:
    [value] = element.clauses
    return compiler.process(value.collate("C"), **kw)


def _choose_fold_collation(engine: Engine, shown: str) -> None:
    """Have `folded` use FOLD_COLLATION on this engine if the server folds in it as Python does: PostgreSQL built
    with ICU (most are) and a UTF-8 database. Probed once, when the store opens."""
    with engine.connect() as conn:
        encoding = conn.scalar(text("SHOW server_encoding"))
        folds = None
        if encoding == "UTF8":
            try:
                icu = conn.execution_options(**{_FOLD_OPTION: FOLD_COLLATION})
                folds = icu.scalar(select(folded(icu, cast(literal(_FOLD_PROBE), Text))))
            except DBAPIError as exc:  # no such collation
                log.debug("no ICU case folding on %s: %s", shown, reason(exc))
    if folds == fold_case(_FOLD_PROBE):
        engine.update_execution_options(**{_FOLD_OPTION: FOLD_COLLATION})
    else:
        log.warning(
            "database %s folds case by its own locale, not as ohp does (its server has no ICU collation %s, or its "
            "encoding %s is not UTF-8): filters by interviewee, place, speaker name or language may miss letters "
            "beyond ASCII that differ in case",
            shown,
            FOLD_COLLATION,
            encoding,
        )


def _upgrade(engine: Engine, shown: str) -> None:
    """Bring the schema to head; a no-op (one small query) when it is there already."""
    with engine.connect() as conn:
        if _stamped_revision(conn) == head_revision():
            return
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # Table rebuilds (alembic batch mode) must not cascade deletes: foreign keys are off
            # while migrating, checked before the commit, and on again for the pooled connection.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            _upgrade_locked(conn, shown)
        finally:
            if sqlite:
                conn.rollback()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def _upgrade_locked(conn: Connection, shown: str) -> None:
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # one migrating process at a time
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    if sqlite and (script := _new_database_script(conn, shown)):  # looked at again, now that we hold the lock
        log.info("making database %s at schema revision %s", shown, head_revision())
        for statement in script:
            conn.exec_driver_sql(statement)
    else:
        _migrate(conn, shown)
    if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
        raise StoreError(f"migrating {shown} left rows whose foreign keys point nowhere")
    conn.commit()
