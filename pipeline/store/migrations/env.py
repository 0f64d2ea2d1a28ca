"""Alembic environment of the store.

`pipeline.store.database` runs it on its own connection, passed as config.attributes["connection"]
inside a transaction it commits; otherwise (a developer making a revision) it connects to the
config's sqlalchemy.url. See the docstring of pipeline/store/database.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

from pipeline.store.models import Base, UTCDateTime, in_models

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write the store's UTC timestamps as plain timezone-aware DateTime in migrations."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by rebuilding them
        render_item=render_item,
        include_name=in_models,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


config = context.config
if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    run(connection)
elif (url := config.get_main_option("sqlalchemy.url")) is not None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        run(conn)
else:
    raise RuntimeError("alembic: no connection given and no sqlalchemy.url in the configuration")
