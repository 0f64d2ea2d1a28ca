"""The errors ohp raises on purpose. Each message says what and where (the file, the id, the field).

The CLI and the web app map these, and only these, to their messages and status codes: not found
(404, exit 2), invalid input (400 or 422, exit 2), conflict (409), forbidden (403). Anything else is
a bug: a 500 with the traceback in the log.
"""

from __future__ import annotations

from typing import Any


class OhpError(Exception):
    """Something ohp refuses or cannot do, said in words a user can act on."""


class NotFoundError(OhpError, LookupError):
    """No such recording, segment, annotation, speaker, user, ..."""


class InvalidInputError(OhpError, ValueError):
    """A value, a file or a request that ohp will not take: the message says which and why."""


class ConflictError(OhpError):
    """Someone else changed the thing since the caller read it; `current` is what it is now."""

    def __init__(self, message: str, current: Any = None) -> None:
        super().__init__(message)
        self.current = current


class TextChangedError(ConflictError):
    """Someone changed a segment's text since the caller read it: a correction of it, or evidence (offsets into
    it), would land on other words. `current` is the segment's text and version now, and who changed it."""


class ForbiddenError(OhpError):
    """The user's role or the recording's consent does not allow it."""
