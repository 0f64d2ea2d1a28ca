"""Who is asking, and may they: sessions, HTTP Basic, roles, CSRF tokens, slowed-down wrong passwords."""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException, Request

from pipeline.store import ROLES, Store, UserRecord

CSRF_HEADER = "X-CSRF-Token"


def session_secret(home: Path) -> str:
    """A random secret made once and kept (readable by its owner only) in `home` (the configuration's)."""
    path = home / "web-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # two servers starting: one wins
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return Path(path).read_text().strip()


def csrf_token(request: Request) -> str:
    """The session's token that every form and API write must carry (a cross-site page cannot read it)."""
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(32)
    return request.session["csrf"]


def check_csrf(request: Request, sent: str | None) -> None:
    expected = request.session.get("csrf")
    if not expected or not sent or not secrets.compare_digest(expected, sent):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


@dataclass
class Throttle:
    """Wrong passwords cost time: each failure for a name or an address doubles the wait (to 10 s)."""

    failures: dict[str, tuple[int, float]] = field(default_factory=dict)  # key -> (count, last time)

    def delay(self, *keys: str) -> float:
        now = time.monotonic()
        counts = [n for n, when in (self.failures.get(k, (0, now)) for k in keys) if now - when < 900]
        worst = max(counts, default=0)
        return 0.0 if worst == 0 else min(0.25 * 2 ** (worst - 1), 10.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self.failures[key] = (self.failures.get(key, (0, now))[0] + 1, now)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self.failures.pop(key, None)


async def login(store: Store, throttle: Throttle, name: str, password: str, address: str) -> UserRecord | None:
    """The user if the password is right, after the wait earlier failures have earned."""
    keys = (f"user:{name}", f"ip:{address}")
    await asyncio.sleep(throttle.delay(*keys))
    user = await asyncio.to_thread(store.check_password, name, password)
    (throttle.succeeded if user else throttle.failed)(*keys)
    return user


def may(user: UserRecord, role: str) -> bool:
    return ROLES.index(user.role) >= ROLES.index(role)


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, _, password = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return name, password


async def current_user(request: Request) -> UserRecord | None:
    """The signed-in user (session cookie), or one giving HTTP Basic credentials (API clients)."""
    store: Store = request.app.state.store
    if name := request.session.get("user"):
        return await asyncio.to_thread(store.user, name)
    if credentials := basic_credentials(request):
        address = request.client.host if request.client else "?"
        return await login(store, request.app.state.throttle, *credentials, address)
    return None


def requires(role: str, *, write: bool = False):
    """A dependency: the user, who must have `role`; writes over a session must carry the CSRF token."""

    async def dependency(request: Request) -> UserRecord:
        user = await current_user(request)
        if user is None:
            raise HTTPException(401, "log in first")
        if not may(user, role):
            raise HTTPException(403, f"this needs the {role} role (you are {user.role})")
        if write and request.session.get("user"):  # Basic credentials are no ambient authority: no token
            check_csrf(request, request.headers.get(CSRF_HEADER))
        return user

    return dependency
