"""The web app's accounts: names, roles and argon2id password hashes."""

from __future__ import annotations

import functools

import argon2
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import InvalidInputError
from pipeline.records import ROLES, UserRecord
from pipeline.store.models import UserRow, iso


@functools.cache
def _hasher() -> argon2.PasswordHasher:
    return argon2.PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown names, so they take as long as wrong passwords."""
    return _hasher().hash("no such user")


def _user(row: UserRow) -> UserRecord:
    return UserRecord(row.id, row.name, row.role, iso(row.created_at) or "")


def add_user(s: Session, name: str, password: str, role: str) -> UserRecord:
    """A new account; InvalidInputError if the name is taken, the role unknown or the password empty."""
    if role not in ROLES:
        raise InvalidInputError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    if not name.strip() or not password:
        raise InvalidInputError("a user needs a name and a password")
    if s.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
        raise InvalidInputError(f"user {name!r} exists already")
    row = UserRow(name=name, password_hash=_hasher().hash(password), role=role)
    s.add(row)
    s.flush()
    return _user(row)


def _user_row(s: Session, name: str) -> UserRow | None:
    return s.scalars(select(UserRow).where(UserRow.name == name)).one_or_none()


def user(s: Session, name: str) -> UserRecord | None:
    row = _user_row(s, name)
    return None if row is None else _user(row)


def user_and_hash(s: Session, name: str) -> tuple[UserRecord, str] | None:
    """The user and their password hash, to check a password against after the session (hashing is slow)."""
    row = _user_row(s, name)
    return None if row is None else (_user(row), row.password_hash)


def check_password(found: tuple[UserRecord, str] | None, password: str) -> UserRecord | None:
    """The user (of `user_and_hash`), if the password is theirs; None otherwise (an unknown name costs a
    hash too)."""
    try:
        _hasher().verify(found[1] if found else _dummy_hash(), password)
    except argon2.exceptions.VerificationError:
        return None
    return None if found is None else found[0]
