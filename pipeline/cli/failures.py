"""How `ohp` says what went wrong, in one place for every command.

ohp's own errors (pipeline.errors: not found, invalid input, conflict, forbidden) are a red message
and exit code 2. Anything else is a bug: a short message that points to the log, where its traceback is,
and exit code 1.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import typer
from rich.text import Text
from typer import _click
from typer.core import TyperGroup

from pipeline.cli.output import Terminal
from pipeline.errors import OhpError
from pipeline.utils import inert

log = logging.getLogger(__name__)
stderr = Terminal(stderr=True)


def report_error(message: str) -> None:
    # As Text, not markup: a message may hold "[NAME]". Not wrapped: a path in it stays whole.
    stderr.print(Text.assemble(("error:", "red"), " ", message), highlight=False, soft_wrap=True)


class ReportingGroup(TyperGroup):
    """The `ohp` command group: runs the command asked for and reports what it raises."""

    # typer vendors click as typer._click: a group is invoked with its Context (typer.Context, a subclass of
    # it, is what commands get).
    def invoke(self, ctx: _click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _click.ClickException as e:
            # A usage error: typer draws it, outside ohp's console, and its message may quote a file name or a value.
            e.message = inert(e.message)
            raise
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # the command line's own: an exit code a command chose
        except OhpError as e:
            report_error(str(e))
            raise typer.Exit(2) from None
        except BrokenPipeError:
            # The reader went away (`ohp search x | head`): stop quietly, as other Unix tools do, and
            # point stdout at nothing so the interpreter's final flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        except Exception as e:
            log.exception("ohp %s failed", ctx.invoked_subcommand or "")
            report_error(f"ohp failed unexpectedly ({type(e).__name__}: {e}); see the log for its traceback")
            raise typer.Exit(1) from None
