"""Small helpers several stages share."""

from __future__ import annotations


def timestamp(seconds: float, separator: str = ".", hours: bool = True) -> str:
    """01:02:03.456 (SRT wants a comma before the milliseconds)."""
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}" if hours or h else f"{m:02d}:{s:02d}{separator}{ms:03d}"


def clock(seconds: float) -> str:
    """00:12:31, for people reading a transcript."""
    return timestamp(seconds)[:8]
