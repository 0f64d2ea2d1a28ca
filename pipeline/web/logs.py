"""The web server's own log lines (uvicorn's: its start, its errors with their tracebacks, the access lines), made
inert as ohp's own are on standard error: an error's message or traceback can quote what a request sent."""

from __future__ import annotations

import copy
import logging
from typing import Any

from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter, DefaultFormatter

from pipeline.utils import inert


class _Inert(logging.Formatter):
    """What a record says (its message, its traceback) with control characters shown (`inert`); the formatter's own
    colours stay."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = inert(record.message)
        if isinstance(record.args, tuple):  # the access lines are formatted from their arguments
            record.args = tuple(inert(arg) if isinstance(arg, str) else arg for arg in record.args)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return inert(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return inert(super().formatStack(stack_info))


class InertDefault(_Inert, DefaultFormatter):
    pass


class InertAccess(_Inert, AccessFormatter):
    pass


def server_logging() -> dict[str, Any]:
    """uvicorn's logging configuration with inert formatters, for uvicorn.run(log_config=...)."""
    configured = copy.deepcopy(LOGGING_CONFIG)
    configured["formatters"]["default"]["()"] = f"{__name__}.InertDefault"
    configured["formatters"]["access"]["()"] = f"{__name__}.InertAccess"
    return configured
