"""Accounts: a session version that ending a user's sessions raises, and a name key for uniqueness.

A signed session cookie names its user and the session version it was made under; a request counts
only while that is still the user's version (logout, a new password and removing the user end every
session). `name_key` is the name as compared (NFKC, stripped, case-folded): Ann and "ann " are one user.

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import logging
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_version", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("name_key", sa.String(length=255), nullable=True))
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("name", sa.String), sa.column("name_key"))
    connection = op.get_bind()
    taken: set[str] = set()
    for user_id, name in connection.execute(sa.select(users.c.id, users.c.name).order_by(users.c.id)).all():
        # As pipeline.store.users.name_key, frozen here: a migration must not change with the code.
        key = unicodedata.normalize("NFKC", name).strip().casefold()
        if key in taken:  # two accounts that differ only by case or spaces: the later one keeps a key of its own
            log.warning("user %r has the name of an earlier user but for case or spaces: rename it", name)
            key = f"{key}#{user_id}"
        taken.add(key)
        connection.execute(sa.update(users).where(users.c.id == user_id).values(name_key=key))
    with op.batch_alter_table("users") as batch:
        batch.alter_column("name_key", existing_type=sa.String(length=255), nullable=False)
        batch.create_unique_constraint(op.f("uq_users_name_key"), ["name_key"])


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("uq_users_name_key"), type_="unique")
        batch.drop_column("name_key")
        batch.drop_column("session_version")
