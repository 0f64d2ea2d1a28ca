"""Recordings put into a test database the way the pipeline puts them there: each step a RecordingResult
that one Store.save_result saves, as if that stage had just run (the transcribe stage, the speakers stage,
the tag stage)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from pipeline.records import (
    AudioInfo,
    Entity,
    RecordingResult,
    Segment,
    SpeakerRecord,
    StageRun,
    ThemeSuggestion,
    Transcript,
)
from pipeline.store import Store


def save_transcription(
    store: Store, info: AudioInfo, transcript: Transcript, settings: dict, key: str, report: dict
) -> int:
    """A transcript as the transcribe stage saves it; the recording's id."""
    result = RecordingResult(info, transcript, stages={"transcribe": StageRun(settings, key, report)})
    return store.save_result(result).export.recording.id


def _stored(store: Store, recording_id: int) -> RecordingResult:
    # Imported here: pipeline.process brings spaCy and torch, which the store tests' writer processes do without.
    from pipeline.process import stored_result

    return stored_result(store.recording(recording_id), store.transcript(recording_id))


def save_speakers(
    store: Store,
    recording_id: int,
    speakers: list[SpeakerRecord],
    settings: dict,
    key: str,
    report: dict,
    segments: list[Segment] | None = None,
) -> list[SpeakerRecord]:
    """What the speakers stage found, over the stored segments or `segments` (split anew); the speakers as stored."""
    result = _stored(store, recording_id)
    if segments is not None:
        result.transcript = replace(result.transcript, segments=segments)
    result.speakers = speakers
    result.stages["speakers"] = StageRun(settings, key, report)
    return store.save_result(result).export.speakers


def save_tags(
    store: Store,
    recording_id: int,
    suggestions: dict[int, list[ThemeSuggestion]],
    entities: dict[int, list[Entity]],
    tagger: str,
    settings: dict,
    key: str,
) -> dict[str, int]:
    """A tagging run over the stored segments, suggestions and entities by segment id; what it changed."""
    result = _stored(store, recording_id)
    index = {segment.id: i for i, segment in enumerate(result.transcript.segments)}
    result.themes = {index[sid]: found for sid, found in suggestions.items()}
    result.entities = {index[sid]: found for sid, found in entities.items()}
    result.tagger = tagger
    result.stages["tag"] = StageRun(settings, key, {})
    return store.save_result(result).tag_counts


def saved_meanwhile(monkeypatch, module, name: str, database_url: str, save: Callable[[Store], object]) -> None:
    """The first call of the store's `module.name` runs `save` on a store of its own (`ohp run` beside) before it
    reads: a pass saving a recording between the reads of what should see the recording as one state."""
    read = getattr(module, name)

    def meanwhile(*args, **kwargs):
        monkeypatch.setattr(module, name, read)
        with Store(database_url) as other:
            save(other)
        return read(*args, **kwargs)

    monkeypatch.setattr(module, name, meanwhile)
