"""A change kept in a recording's history, as people read it: the web app's history page and `ohp history`."""

from __future__ import annotations

from pipeline.access import consent_text
from pipeline.records import speaker_title
from pipeline.stages.codebook import Codebook


def change_text(state: dict | None, codebook: Codebook) -> str:
    """One side of a change: a segment's text, a theme's decision, a speaker's name and role, or a recording's
    consent."""
    if not state:
        return ""
    if "text" in state:
        return state["text"]
    if "consent" in state:
        return consent_text(state["consent"], state.get("release_on"))
    if "theme" in state:
        return f"{codebook.label(state['theme'])}: {state.get('status')}"
    if "label" in state:
        return speaker_title(state["label"], state.get("name"), state.get("role"))
    return ", ".join(f"{k}: {v}" for k, v in state.items())


def change_time(changed_at: str) -> str:
    """When a change was made, as people read it: the stored UTC time to the second, "2026-12-02 14:30:57"."""
    return changed_at[:19].replace("T", " ")
