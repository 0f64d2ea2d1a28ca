"""One key at a time for the interactive commands (`ohp review`): a key press in a terminal, a line otherwise."""

from __future__ import annotations

import sys

import click
import typer


def read_key(prompt: str, default: str = "") -> str:
    """The key pressed, lower case: one key without Enter in a terminal (click.getchar); when standard input
    is not a terminal (a script, a test), the first character of a line. Ctrl-C and Ctrl-D quit."""
    if not sys.stdin.isatty():
        return typer.prompt(prompt, default=default, show_default=False).strip().lower()[:1]
    typer.echo(f"{prompt}: ", nl=False)
    key = click.getchar()
    if key in ("\x03", "\x04"):  # raw mode delivers Ctrl-C and Ctrl-D as characters
        typer.echo()
        raise typer.Abort()
    shown = default if key in ("\r", "\n") else key
    typer.echo(shown if shown.isprintable() else "")
    return shown.lower()[:1]
