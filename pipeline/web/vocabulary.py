"""The vocabulary page, for researchers: terms people wrote in corrections where the recogniser wrote
something else, to accept into the project's vocabulary (the next `ohp run` hints them) or to ignore."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pipeline import access
from pipeline.records import UserRecord
from pipeline.stages.vocabulary import Suggestion, add_terms, check_term, known_terms, only_in_closed, suggest

from .api import write
from .auth import check_csrf, requires
from .pages import page

router = APIRouter(include_in_schema=False)
Viewer = Annotated[UserRecord, Depends(requires())]


def _suggestions(request: Request) -> list[Suggestion]:
    """Every recording's suggestions (researchers see closed ones), those only closed recordings have marked."""
    store = request.app.state.store
    closed = access.closed_ids(store.list_recordings())
    return suggest(store.corrected_words(), known_terms(request.app.state.vocabulary), store.ignored_terms(), closed)


def _only_in_closed(request: Request, term: str) -> tuple[bool, str | None]:
    """Whether the term holds a word written only in corrections of closed recordings, and that word when it is
    not the whole term (`only_in_closed`)."""
    store = request.app.state.store
    found = only_in_closed([term], store.corrected_words(), access.closed_ids(store.list_recordings()))
    return (True, found[0][1]) if found else (False, None)


def _check(request: Request, user: UserRecord, csrf_token: str) -> None:
    """A change to the vocabulary: the session's CSRF token, and a user who may make it."""
    check_csrf(request, csrf_token)
    access.check_change(user, "vocabulary")


@router.get("/vocabulary")
async def vocabulary(request: Request, user: Viewer, done: str = "") -> HTMLResponse:
    access.check_change(user, "vocabulary")
    found = await run_in_threadpool(_suggestions, request)
    return page(request, "vocabulary.html", user, suggestions=found, path=request.app.state.vocabulary, done=done[:200])


@router.post("/vocabulary/accept")
async def accept(
    request: Request,
    user: Viewer,
    term: Annotated[str, Form(max_length=200)],
    csrf_token: Annotated[str, Form()] = "",
    confirm_closed: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Add the term to the vocabulary file; one written only in corrections of closed recordings only once the
    researcher confirms it (`confirm_closed`, from the page this answers with): the file is shared and hinted for
    every recording, so a closed interviewee's name must not go there by a slip."""
    _check(request, user, csrf_token)
    term = check_term(term)
    if confirm_closed != "yes":
        closed_only, word = await run_in_threadpool(_only_in_closed, request, term)
        if closed_only:
            return page(
                request, "vocabulary_confirm.html", user, term=term, word=word, path=request.app.state.vocabulary
            )

    def append() -> bool:
        [added] = add_terms(request.app.state.vocabulary, [term])  # one accept at a time (add_terms' lock)
        return added

    added = await run_in_threadpool(append)
    return RedirectResponse(f"/vocabulary?done={'added' if added else 'already there'}", status_code=303)


@router.post("/vocabulary/ignore")
async def ignore(
    request: Request, user: Viewer, term: Annotated[str, Form(max_length=200)], csrf_token: Annotated[str, Form()] = ""
) -> RedirectResponse:
    _check(request, user, csrf_token)
    await write(request, request.app.state.store.ignore_term, check_term(term), user.name)
    return RedirectResponse("/vocabulary?done=ignored", status_code=303)
