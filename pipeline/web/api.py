"""The JSON API the pages use, and other tools may (session cookie + CSRF header, or HTTP Basic)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from pipeline import access
from pipeline.records import (
    ANNOTATION_STATUSES,
    CONSENT_LEVELS,
    MAX_FIELD_CHARS,
    MAX_TEXT_CHARS,
    NOT_REJECTED,
    AnnotationStatus,
)
from pipeline.store import Store, UserRecord
from pipeline.store.annotations import MAX_EVIDENCE_SPANS
from pipeline.store.models import MAX_ID
from pipeline.store.users import MAX_NAME_CHARS, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS

from . import views
from .auth import check_current_password, requires

T = TypeVar("T")
router = APIRouter(prefix="/api", tags=["api"])
Viewer = Annotated[UserRecord, Depends(requires())]
Corrector = Annotated[UserRecord, Depends(requires("text"))]
Coder = Annotated[UserRecord, Depends(requires("annotations"))]
Reverter = Annotated[UserRecord, Depends(requires("text", "annotations"))]  # a revert undoes either
Describer = Annotated[UserRecord, Depends(requires("metadata"))]
AccountChanger = Annotated[UserRecord, Depends(requires(writes=True))]  # access.check_account_change decides
Id = Annotated[int, PathParameter(ge=1, le=MAX_ID)]  # out of range: 404 (see app)
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def store_of(request: Request) -> Store:
    return request.app.state.store


async def write(request: Request, change: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store write in a worker thread. On SQLite, one at a time: writers queued here wait their
    turn at once, where SQLite's busy handler would have them sleep and retry (long tail latencies)."""
    lock = request.app.state.write_lock
    if lock is None:
        return await run_in_threadpool(change, *args, **kwargs)

    def locked() -> T:
        with lock:
            return change(*args, **kwargs)

    return await run_in_threadpool(locked)


class TextChange(BaseModel):
    text: str = Field(max_length=MAX_TEXT_CHARS)
    version: int = Field(ge=0, le=MAX_ID - 1, description="the segment version the new text was based on")


class NewAnnotation(BaseModel):
    theme: str = Field(min_length=1, max_length=128)
    evidence: list[tuple[int, int]] = Field(
        default=[], max_length=MAX_EVIDENCE_SPANS, description="[start, end) character offsets into the text"
    )
    version: int | None = Field(
        default=None, ge=0, le=MAX_ID - 1, description="the segment version the evidence is into (409 if changed)"
    )


class Decision(BaseModel):
    status: str = Field(description=" or ".join(ANNOTATION_STATUSES))
    # Required, as for a text correction: a decision made without one would overwrite a newer one unseen.
    version: int = Field(ge=0, le=MAX_ID - 1, description="the annotation version decided on")


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    password: str = Field(min_length=MIN_PASSWORD_CHARS, max_length=MAX_PASSWORD_CHARS)
    role: str = Field(description="viewer, annotator or researcher")


class NewPassword(BaseModel):
    password: str = Field(min_length=MIN_PASSWORD_CHARS, max_length=MAX_PASSWORD_CHARS)
    current_password: str = Field(
        default="", max_length=MAX_PASSWORD_CHARS, description="your current password: needed to set your own"
    )


class Metadata(BaseModel):
    interviewee: str | None = Field(default=None, max_length=MAX_FIELD_CHARS)
    place: str | None = Field(default=None, max_length=MAX_FIELD_CHARS)
    recorded_on: str | None = Field(default=None, description="YYYY-MM-DD")
    consent: str | None = Field(default=None, description=" or ".join(CONSENT_LEVELS))
    release_on: str | None = Field(
        default=None, description="YYYY-MM-DD: the day a restricted or closed recording opens"
    )


@router.get("/recordings", summary="Every recording with its stages and waiting suggestions")
async def list_recordings(
    request: Request, user: Viewer, sort: str = "path", desc: bool = False, q: str = "", language: str = ""
) -> list[dict]:
    return await run_in_threadpool(views.recordings, store_of(request), user, sort, desc, q, language)


@router.get("/recordings/{recording_id}", summary="One recording")
async def get_recording(request: Request, recording_id: Id, user: Viewer) -> dict:
    return await run_in_threadpool(views.recording, store_of(request), recording_id, user)


@router.patch("/recordings/{recording_id}", summary="Set a recording's metadata (researchers)")
async def set_metadata(request: Request, recording_id: Id, change: Metadata, user: Describer) -> dict:
    if change.consent is not None or change.release_on is not None:
        access.check_change(user, "consent")
    record = await write(
        request, store_of(request).set_metadata, recording_id, **change.model_dump(), changed_by=user.name
    )
    return asdict(record)


@router.get("/recordings/{recording_id}/segments", summary="A recording's segments, versions and themes")
async def get_segments(request: Request, recording_id: Id, user: Viewer) -> list[dict]:
    return await run_in_threadpool(views.segments, store_of(request), request.app.state.codebook, recording_id, user)


@router.get("/recordings/{recording_id}/audio", summary="The recording's audio file (HTTP range requests)")
async def get_audio(request: Request, recording_id: Id, user: Viewer) -> FileResponse:
    # Only the path the database holds for this recording is ever served, only while the file there is the
    # recording's, and only as the audio ohp decoded there (a transcript imported without audio is no audio:
    # it could be HTML or a script).
    path, media_type = await run_in_threadpool(views.recording_audio, store_of(request), recording_id, user)
    return FileResponse(path, media_type=media_type)


@router.patch("/segments/{segment_id}", summary="Correct a segment's text (409 with the current version on conflict)")
async def correct_text(request: Request, segment_id: Id, change: TextChange, user: Corrector) -> dict:
    seg, version = await write(
        request, store_of(request).correct_text, segment_id, change.text, user.name, change.version
    )
    return {"id": seg.id, "text": seg.text, "version": version, "start": seg.start, "end": seg.end}


@router.post(
    "/segments/{segment_id}/annotations",
    status_code=201,
    summary="Add a theme to a segment (409 if someone rejected it: accept it with PATCH to overturn that)",
)
async def add_annotation(request: Request, segment_id: Id, new: NewAnnotation, user: Coder) -> dict:
    codebook = request.app.state.codebook
    if new.theme not in codebook.ids:
        raise HTTPException(400, f"{new.theme!r} is not a theme of the codebook")
    record = await write(
        request,
        store_of(request).add_annotation,
        segment_id,
        new.theme,
        user.name,
        tuple(new.evidence),
        version=new.version,
    )
    return views.annotation_json(record, request.app.state.codebook)


@router.patch("/annotations/{annotation_id}", summary="Accept, reject or un-decide an annotation (409 on conflict)")
async def decide(request: Request, annotation_id: Id, decision: Decision, user: Coder) -> dict:
    record = await write(
        request, store_of(request).decide, annotation_id, decision.status, user.name, version=decision.version
    )
    return views.annotation_json(record, request.app.state.codebook)


@router.get("/search", summary="Full-text search, with the filters of `ohp search`")
async def search(
    request: Request,
    user: Viewer,
    q: str,
    theme: str | None = None,
    status: Annotated[Sequence[AnnotationStatus], Query()] = NOT_REJECTED,
    speaker: str | None = None,
    recording: QueryId = None,
    language: str | None = None,
    interviewee: str | None = None,
    place: str | None = None,
    date_from: Annotated[str | None, Query(alias="from")] = None,
    date_to: Annotated[str | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,  # past it: 422, not the database's overflow
    doubtful: bool = False,
) -> dict:
    params = views.SearchParams(
        q,
        theme,
        tuple(status),
        speaker,
        recording,
        language,
        interviewee,
        place,
        date_from,
        date_to,
        limit,
        offset,
        doubtful,
    )
    return await run_in_threadpool(views.search, store_of(request), request.app.state.codebook, params, user)


@router.get("/history", summary="Changes to a recording or a segment, oldest first")
async def history(request: Request, user: Viewer, recording: QueryId = None, segment: QueryId = None) -> list[dict]:
    if recording is None and segment is None:
        raise HTTPException(400, "give recording or segment")
    found = await run_in_threadpool(views.history, store_of(request), user, recording, segment)
    return [asdict(change) for change in found]


@router.post("/history/{history_id}/revert", summary="Undo a text correction or a decision")
async def revert(request: Request, history_id: Id, user: Reverter) -> dict:
    return asdict(await write(request, store_of(request).revert, history_id, user.name))


@router.get("/users", summary="The accounts (researchers)")
async def list_users(request: Request, user: Viewer) -> list[dict]:
    access.check_change(user, "users")  # a read: no CSRF token needed
    return [views.account_json(account) for account in await run_in_threadpool(store_of(request).list_users)]


@router.post("/users", status_code=201, summary="Add an account (researchers)")
async def add_user(request: Request, new: NewUser, user: AccountChanger) -> dict:
    access.check_account_change(user, "add")
    return views.account_json(await write(request, store_of(request).add_user, new.name, new.password, new.role))


@router.put(
    "/users/{name}/password",
    summary="Set an account's password (researchers; anyone their own, giving the current one): its sessions end",
)
async def set_password(request: Request, name: str, new: NewPassword, user: AccountChanger) -> dict:
    found = await run_in_threadpool(views.account, store_of(request), user, name, "password")
    await check_current_password(request, user, found, new.current_password)
    return views.account_json(await write(request, store_of(request).set_password, found.name, new.password))


@router.delete("/users/{name}", summary="Remove an account (researchers): its sessions end, its work stays")
async def remove_user(request: Request, name: str, user: AccountChanger) -> dict:
    found = await run_in_threadpool(views.account, store_of(request), user, name, "remove")
    return views.account_json(await write(request, store_of(request).remove_user, found.name))
