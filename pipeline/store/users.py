"""The web app's accounts: names, roles, argon2id password hashes and session versions.

A name is kept as given after Unicode NFKC normalisation and stripping, and compared case-folded
(`name_key`): "Ann", "ann " and "ａｎｎ" are one account. A session counts while its user's
`session_version` is the one it was made under: logging out, a new password and removing the user raise
or remove it, which ends every session of theirs, also those a server started before it restarted made.
It starts at random, so that a new account of a removed one's name does not take over their sessions.
"""

from __future__ import annotations

import functools
import secrets

import argon2
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from pipeline.errors import InvalidInputError, NotFoundError
from pipeline.records import ROLES, UserRecord
from pipeline.store.database import by_code_point
from pipeline.store.models import UserRow, iso
from pipeline.utils import clean_name

MAX_NAME_CHARS = 64
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024  # argon2 hashes any length; a megabyte of password is only work for the server


@functools.cache
def _hasher() -> argon2.PasswordHasher:
    return argon2.PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown names, so they take as long as wrong passwords."""
    return _hasher().hash("no such user")


def name_key(name: str) -> str:
    """A login name as compared: clean and case-folded."""
    return clean_name(name).casefold()


def _check_name(name: str) -> None:
    """InvalidInputError unless a (clean) name can be an account's: 1 to MAX_NAME_CHARS printable characters,
    one segment of the web app's addresses (/users/NAME/password). A "/" or a dot segment would be
    another path there (a browser resolves "." and ".."): the account could not be managed on its page."""
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise InvalidInputError(f"a user's name needs 1 to {MAX_NAME_CHARS} printable characters")
    if "/" in name or name in (".", ".."):
        raise InvalidInputError(
            f"a user's name cannot hold '/' or be '.' or '..' (it is part of the web pages' addresses): {name!r}"
        )


def _check_password(password: str) -> None:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidInputError(f"a password needs {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")


def _user(row: UserRow) -> UserRecord:
    return UserRecord(row.id, row.name, row.role, iso(row.created_at) or "", row.session_version)


def add_user(s: Session, name: str, password: str, role: str) -> UserRecord:
    """A new account; InvalidInputError if the name is taken (but for case or spaces), empty, too long or
    not one segment of an address (_check_name), the role unknown or the password too short."""
    if role not in ROLES:
        raise InvalidInputError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    name = clean_name(name)
    _check_name(name)
    taken = _user_row(s, name)
    if taken is not None:
        same = "exists already" if taken.name == name else f"is taken: user {taken.name!r} exists already"
        raise InvalidInputError(f"user {name!r} {same}")
    _check_password(password)
    row = UserRow(
        name=name,
        name_key=name_key(name),
        password_hash=_hasher().hash(password),
        role=role,
        # Random, not 0: a session of a removed user must not fit a new account of the same name (and id).
        session_version=secrets.randbelow(2**30),  # an INTEGER column: room left to count up
    )
    s.add(row)
    s.flush()
    return _user(row)


def _user_row(s: Session, name: str) -> UserRow | None:
    if len(name) > 4 * MAX_NAME_CHARS:  # no such user; and no use normalising a megabyte
        return None
    # The account of that very name before the one of its key: two that differed only by case or spaces before
    # migration 0008 (Ann, ann) are both kept, the later under a key of its own ("ann#2"), reached by its name alone.
    rows = s.scalars(select(UserRow).where(or_(UserRow.name_key == name_key(name), UserRow.name == name))).all()
    return next((row for row in rows if row.name == name), rows[0] if rows else None)


def _existing(s: Session, name: str) -> UserRow:
    row = _user_row(s, name)
    if row is None:
        raise NotFoundError(f"no user {name!r}")
    return row


def user(s: Session, name: str) -> UserRecord | None:
    row = _user_row(s, name)
    return None if row is None else _user(row)


def list_users(s: Session) -> list[UserRecord]:
    """Every account, by name."""
    return [_user(row) for row in s.scalars(select(UserRow).order_by(by_code_point(UserRow.name_key)))]


def set_password(s: Session, name: str, password: str) -> UserRecord:
    """A new password for the user; their sessions end. NotFoundError, InvalidInputError (too short)."""
    _check_password(password)
    row = _existing(s, name)
    row.password_hash = _hasher().hash(password)
    row.session_version += 1
    s.flush()
    return _user(row)


def end_sessions(s: Session, name: str) -> None:
    """End every session of the user (a no-op for a user removed meanwhile)."""
    row = _user_row(s, name)
    if row is not None:
        s.execute(update(UserRow).where(UserRow.id == row.id).values(session_version=UserRow.session_version + 1))


def remove_user(s: Session, name: str) -> UserRecord:
    """Remove the account (what they did stays, under their name); their sessions end with it."""
    row = _existing(s, name)
    removed = _user(row)
    s.execute(delete(UserRow).where(UserRow.id == row.id))
    return removed


def user_and_hash(s: Session, name: str) -> tuple[UserRecord, str] | None:
    """The user and their password hash, to check a password against after the session (hashing is slow)."""
    row = _user_row(s, name)
    return None if row is None else (_user(row), row.password_hash)


def check_password(found: tuple[UserRecord, str] | None, password: str) -> UserRecord | None:
    """The user (of `user_and_hash`), if the password is theirs; None otherwise (an unknown name costs a
    hash too)."""
    usable = found if len(password) <= MAX_PASSWORD_CHARS else None  # a refused one costs a hash all the same
    try:
        _hasher().verify(usable[1] if usable else _dummy_hash(), password[:MAX_PASSWORD_CHARS])
    except argon2.exceptions.VerificationError:
        return None
    return usable[0] if usable else None
