"""The server-rendered pages (Jinja2, autoescaped); their scripts talk to the JSON API."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from pipeline import access
from pipeline.changes import change_text, change_time
from pipeline.errors import InvalidInputError
from pipeline.records import CONSENT_LEVELS
from pipeline.stages.codebook import Codebook
from pipeline.store import UserRecord

from . import views
from .api import Id, QueryId, write
from .auth import check_csrf, client_address, csrf_token, login, requires, sign_in

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
templates.env.globals.update(may_change=access.may_change)
Viewer = Annotated[UserRecord, Depends(requires())]


def page(request: Request, name: str, user: UserRecord | None, status_code: int = 200, **context) -> HTMLResponse:
    context = {"user": user, "csrf": csrf_token(request), **context}
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def safe_next(target: str) -> str:
    """Where to go after logging in: a path on this site only, never another host."""
    parts = urlsplit(target)
    return target if target.startswith("/") and not target.startswith("//") and not parts.netloc else "/"


@router.get("/login")
async def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return page(request, "login.html", None, next=safe_next(next))


@router.post("/login")
async def login_submit(
    request: Request,
    name: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    check_csrf(request, csrf_token)
    user = await login(request.app.state.store, request.app.state.throttle, name, password, client_address(request))
    if user is None:
        return page(request, "login.html", None, status_code=401, next=safe_next(next), error="wrong name or password")
    sign_in(request, user)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
async def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> RedirectResponse:
    """Ends the user's sessions, on this browser and wherever a copy of its cookie is."""
    check_csrf(request, csrf_token)
    if name := request.session.get("user"):
        await write(request, request.app.state.store.end_sessions, name)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/")
async def recordings(
    request: Request, user: Viewer, sort: str = "path", desc: bool = False, q: str = "", language: str = ""
) -> HTMLResponse:
    found = await run_in_threadpool(views.recordings, request.app.state.store, user, sort, desc, q, language)
    return page(
        request,
        "recordings.html",
        user,
        recordings=found,
        sort=sort,
        desc=desc,
        q=q,
        language=language,
        sorts=views.SORTS,
    )


async def _recording_page(
    request: Request, user: UserRecord, recording_id: int, review: bool, doubtful: bool = False
) -> HTMLResponse:
    codebook = request.app.state.codebook
    rec, segs = await run_in_threadpool(views.transcript, request.app.state.store, codebook, recording_id, user)
    if review:  # the segments with themes to decide or decided, and the ones around them
        segs = views.review_segments(segs)
    if doubtful:  # only the segments with doubtful words, the likeliest wrong first
        segs = sorted((s for s in segs if s["risk"] is not None), key=lambda s: s["risk"])
    return page(
        request,
        "recording.html",
        user,
        recording=rec,
        turns=views.turns(segs),
        review=review,
        doubtful=doubtful,
        themes=themes_of(codebook),
        legend=views.legend(codebook, segs),
        consent_levels=CONSENT_LEVELS,
    )


def themes_of(codebook: Codebook) -> list[tuple[str, str]]:
    """The codebook's themes as (id, label), for a list to choose from."""
    return [(theme, codebook.label(theme)) for theme in codebook.ids]


@router.get("/recordings/{recording_id}")
async def recording(request: Request, recording_id: Id, user: Viewer) -> HTMLResponse:
    return await _recording_page(request, user, recording_id, review=False)


@router.get("/recordings/{recording_id}/doubtful")
async def doubtful(request: Request, recording_id: Id, user: Viewer) -> HTMLResponse:
    """The review queue by risk: the doubtful passages, the likeliest wrong first."""
    return await _recording_page(request, user, recording_id, review=False, doubtful=True)


@router.post("/recordings/{recording_id}/details")
async def details(
    request: Request,
    recording_id: Id,
    user: Viewer,
    csrf_token: Annotated[str, Form()] = "",
    interviewee: Annotated[str, Form()] = "",
    place: Annotated[str, Form()] = "",
    recorded_on: Annotated[str, Form()] = "",
    consent: Annotated[str, Form()] = "open",
    release_on: Annotated[str, Form()] = "",
    seen_interviewee: Annotated[str, Form()] = "",
    seen_place: Annotated[str, Form()] = "",
    seen_recorded_on: Annotated[str, Form()] = "",
    seen_consent: Annotated[str, Form()] = "",
    seen_release_on: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """What is known of the recording, its consent included: researchers only. The page's form says what it showed
    (seen_*): only the fields changed on it are set, so a page shown before someone else's change does not undo it,
    and a consent or release date only on the state the page showed (else a conflict), so it never opens a recording
    closed meanwhile. A form that does not say (no seen_consent) sets every field."""
    check_csrf(request, csrf_token)
    access.check_change(user, "metadata", "consent")
    store = request.app.state.store

    def changed(value: str, seen: str) -> str | None:
        return None if seen_consent and value == seen else value  # None: left as it is now

    access_seen = None
    if seen_consent and (consent != seen_consent or release_on.strip() != seen_release_on):
        current = await run_in_threadpool(store.recording, recording_id)
        access_seen = replace(current, consent=seen_consent, release_on=seen_release_on or None)
    await write(
        request,
        store.set_metadata,
        recording_id,
        interviewee=changed(interviewee.strip(), seen_interviewee),
        place=changed(place.strip(), seen_place),
        recorded_on=changed(recorded_on.strip(), seen_recorded_on),
        consent=changed(consent, seen_consent),
        release_on=changed(release_on.strip(), seen_release_on),
        changed_by=user.name,
        access_seen=access_seen,
    )
    return RedirectResponse(f"/recordings/{recording_id}", status_code=303)


@router.get("/recordings/{recording_id}/review")
async def review(request: Request, recording_id: Id, user: Viewer) -> HTMLResponse:
    return await _recording_page(request, user, recording_id, review=True)


@router.get("/search")
async def search(
    request: Request,
    user: Viewer,
    q: str = "",
    theme: str = "",
    speaker: str = "",
    language: str = "",
    interviewee: str = "",
    place: str = "",
    date_from: str = "",
    date_to: str = "",
    doubtful: bool = False,
) -> HTMLResponse:
    params = views.SearchParams(
        q,
        theme or None,
        speaker=speaker,
        language=language,
        interviewee=interviewee,
        place=place,
        date_from=date_from,
        date_to=date_to,
        doubtful=doubtful,
        limit=50,
    )
    results, error = None, None
    if q.strip():
        try:
            results = await run_in_threadpool(
                views.search, request.app.state.store, request.app.state.codebook, params, user
            )
        except InvalidInputError as e:  # QuerySyntaxError names the place; or a date that is not a date
            error = str(e)
    codebook = request.app.state.codebook
    return page(request, "search.html", user, params=params, results=results, error=error, themes=themes_of(codebook))


@router.get("/history")
async def history(request: Request, user: Viewer, recording: QueryId = None, segment: QueryId = None) -> HTMLResponse:
    store = request.app.state.store
    if recording is None and segment is None:
        return page(request, "error.html", user, status_code=400, message="give a recording or a segment")
    changes = await run_in_threadpool(views.history, store, user, recording, segment)
    codebook = request.app.state.codebook
    return page(
        request,
        "history.html",
        user,
        changes=changes[::-1],
        recording=recording,
        segment=segment,
        change_text=lambda state: change_text(state, codebook),
        change_time=change_time,
    )
