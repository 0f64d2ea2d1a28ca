"""`ohp user`: the web app's accounts (add, list, passwd, remove).

The store checks names (normalised, unique but for case and spaces, no "/") and passwords (8 characters or more)
as it does for the web app's accounts page; a new password or a removal ends the user's sessions.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from pipeline.cli import DbOption, console, open_store
from pipeline.errors import NotFoundError
from pipeline.records import UserRole

# Annotated: pipeline.cli imports this module at its end, and mypy cannot infer a type across that cycle.
app: typer.Typer = typer.Typer(help="Accounts of the web app.", no_args_is_help=True)

PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input")]


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Login name")],
    role: Annotated[
        UserRole,
        typer.Option(
            help="viewer: read and search; annotator: also review and correct; researcher: also metadata and accounts"
        ),
    ],
    password_stdin: PasswordStdin = False,
    db: DbOption = None,
) -> None:
    """Add a person who may use the web app (`ohp serve`); the password is stored hashed (argon2)."""
    user = open_store(db).add_user(name, read_password(password_stdin), role.value)
    console.print(f"user {user.name} ({user.role}) added", highlight=False)


@app.command("list")
def list_users(db: DbOption = None) -> None:
    """The accounts: name, role, since when."""
    table = Table("name", "role", "since")
    for user in open_store(db).list_users():
        table.add_row(user.name, user.role, user.created_at[:10])
    console.print(table)


@app.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument(help="Login name")],
    password_stdin: PasswordStdin = False,
    db: DbOption = None,
) -> None:
    """Set a user's password; every session of theirs ends (they log in again)."""
    store = open_store(db)
    if store.user(name) is None:  # said before asking for a password
        raise NotFoundError(f"no user {name!r}")
    user = store.set_password(name, read_password(password_stdin))
    console.print(f"password of {user.name} set; their sessions have ended", highlight=False)


@app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="Login name")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
    db: DbOption = None,
) -> None:
    """Remove a user: they can no longer log in and their sessions end; what they did stays, under their name."""
    store = open_store(db)
    if not yes:
        typer.confirm(f"remove user {name}?", abort=True)
    user = store.remove_user(name)
    console.print(f"user {user.name} ({user.role}) removed", highlight=False)
