"""The accounts page: researchers list, add and remove accounts and set passwords; anyone sets their own
(giving the current one).

Who may do what is pipeline.access's (check_account_change); the forms carry the session's CSRF token.
A new password or a removal ends the account's sessions (pipeline.store.users).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from pipeline import access
from pipeline.records import ROLES
from pipeline.store import UserRecord

from . import views
from .api import write
from .auth import check_csrf, check_current_password, requires
from .pages import page

router = APIRouter(include_in_schema=False)
Viewer = Annotated[UserRecord, Depends(requires())]


@router.get("/users")
async def accounts(request: Request, user: Viewer, done: str = "") -> HTMLResponse:
    manages = access.may_change(user, "users")
    found = await run_in_threadpool(request.app.state.store.list_users) if manages else [user]
    return page(request, "users.html", user, accounts=found, manages=manages, roles=ROLES, done=done[:200])


@router.post("/users")
async def add(
    request: Request,
    user: Viewer,
    name: Annotated[str, Form()],
    password: Annotated[str, Form()],
    role: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()] = "",
) -> RedirectResponse:
    check_csrf(request, csrf_token)
    access.check_account_change(user, "add")
    added = await write(request, request.app.state.store.add_user, name, password, role)
    return RedirectResponse(f"/users?done=added {added.name}", status_code=303)


@router.post("/users/{name}/password")
async def set_password(
    request: Request,
    user: Viewer,
    name: str,
    password: Annotated[str, Form()],
    current_password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> RedirectResponse:
    check_csrf(request, csrf_token)
    found = await run_in_threadpool(views.account, request.app.state.store, user, name, "password")
    await check_current_password(request, user, found, current_password)
    await write(request, request.app.state.store.set_password, found.name, password)
    # One's own new password ends one's own session too: log in again with it.
    target = "/login" if found.id == user.id else f"/users?done=new password for {found.name}"
    return RedirectResponse(target, status_code=303)


@router.post("/users/{name}/remove")
async def remove(
    request: Request, user: Viewer, name: str, csrf_token: Annotated[str, Form()] = ""
) -> RedirectResponse:
    check_csrf(request, csrf_token)
    found = await run_in_threadpool(views.account, request.app.state.store, user, name, "remove")
    await write(request, request.app.state.store.remove_user, found.name)
    return RedirectResponse(f"/users?done=removed {found.name}", status_code=303)
