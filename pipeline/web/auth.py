"""Who is asking, and may they: sessions (revocable), HTTP Basic, roles, CSRF tokens, throttled wrong passwords."""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException, Request

from pipeline import access
from pipeline.errors import ForbiddenError
from pipeline.store import Store, UserRecord
from pipeline.store.users import MAX_NAME_CHARS, name_key
from pipeline.utils import atomic_file

CSRF_HEADER = "X-CSRF-Token"
MIN_SECRET_CHARS = 32  # of the session secret: ohp makes 64 (48 random bytes)


def session_secret(home: Path) -> str:
    """A random secret made once and kept (readable by its owner only) in `home` (the configuration's)."""
    path = home / "web-secret"
    try:
        secret: str | None = path.read_text().strip()
    except FileNotFoundError:
        secret = None
    if secret is None or len(secret) < MIN_SECRET_CHARS:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Two servers starting where there is none: the first's is kept. A short one is replaced: the empty file
            # an ohp before atomic writes left when killed (or cut off by a power cut) while making it.
            with atomic_file(path, private=True, exclusive=secret is None) as file:
                file.write(secrets.token_urlsafe(48).encode())
        except FileExistsError:
            pass
        secret = path.read_text().strip()
    return secret


def csrf_token(request: Request) -> str:
    """The session's token that every form and API write must carry (a cross-site page cannot read it)."""
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(32)
    return request.session["csrf"]


def check_csrf(request: Request, sent: str | None) -> None:
    expected = request.session.get("csrf")
    if not expected or not sent or not secrets.compare_digest(expected, sent):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


# Login throttling, per account and per client (as Symfony's login throttling and django-axes do).
WINDOW = 15 * 60.0  # seconds a failure counts
ACCOUNT_LIMIT = 10  # failures for one account in a window: then its logins are refused unchecked until they expire
CLIENT_LIMIT = 50  # failures from one client address (spraying many names)
MAX_WAIT = 10.0  # seconds: each failure before doubles the wait, from 0.25 s, to this
MAX_ENTRIES = 10_000  # accounts and clients remembered: the oldest go first


class TooManyFailures(HTTPException):
    def __init__(self, retry_after: float) -> None:
        minutes = max(1, round(retry_after / 60))
        super().__init__(
            429,
            f"too many wrong passwords: try again in {minutes} minute(s)",
            headers={"Retry-After": str(int(retry_after) + 1)},
        )


@dataclass
class Throttle:
    """Wrong passwords cost time, counted per account (its name as compared) and per client address.

    An attempt is counted as a failure when it starts, before its wait, so parallel guesses see each
    other; a right password then clears its account's count and takes back its own count for the client
    (not earlier failures: logging in to one's own account does not clear a spray of others' names).
    Over a limit, attempts are refused without checking the password, until the failures expire."""

    failures: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)  # key -> (count, last)

    def _count(self, key: str, now: float) -> int:
        count, last = self.failures.get(key, (0, now))
        return count if now - last < WINDOW else 0

    def _set(self, key: str, count: int, now: float) -> None:
        self.failures[key] = (count, now)
        self.failures.move_to_end(key)  # the dict stays ordered by last failure: expired ones first
        while self.failures and (
            len(self.failures) > MAX_ENTRIES or now - next(iter(self.failures.values()))[1] >= WINDOW
        ):
            self.failures.popitem(last=False)

    def attempt(self, account: str | None, client: str) -> float:
        """Count an attempt on `account` (None: a name no account can have) from `client`; the seconds to
        wait before checking it. TooManyFailures (the attempt not counted) over a limit."""
        now = time.monotonic()
        limits = {f"client:{client}": CLIENT_LIMIT} | ({f"account:{account}": ACCOUNT_LIMIT} if account else {})
        counts = {key: self._count(key, now) for key in limits}
        if any(counts[key] >= limit for key, limit in limits.items()):
            last = max(self.failures[key][1] for key, limit in limits.items() if counts[key] >= limit)
            raise TooManyFailures(WINDOW - (now - last))
        for key, count in counts.items():
            self._set(key, count + 1, now)
        worst = max(counts.values())
        return 0.0 if worst == 0 else min(0.25 * 2 ** (worst - 1), MAX_WAIT)

    def succeeded(self, account: str, client: str) -> None:
        self.failures.pop(f"account:{account}", None)
        count, last = self.failures.get(f"client:{client}", (0, 0.0))
        if count > 1:
            self.failures[f"client:{client}"] = (count - 1, last)
        else:
            self.failures.pop(f"client:{client}", None)


async def login(store: Store, throttle: Throttle, name: str, password: str, address: str) -> UserRecord | None:
    """The user if the password is right, after the wait earlier failures have earned (TooManyFailures
    over a limit). A name longer than any account's is wrong without asking the store."""
    account = name_key(name) if len(name) <= MAX_NAME_CHARS else None
    await asyncio.sleep(throttle.attempt(account, address))
    user = await asyncio.to_thread(store.check_password, name, password) if account else None
    if user is not None and account:
        throttle.succeeded(account, address)
    return user


def client_address(request: Request) -> str:
    return request.client.host if request.client else "?"


async def check_current_password(request: Request, user: UserRecord, account: UserRecord, password: str) -> None:
    """ForbiddenError if setting `account`'s password needs the user's current one (access.needs_current_password)
    and `password` is not it. A wrong one is a failed login (its waits and limits): a stolen session guesses no
    faster than the login page lets anyone."""
    if not access.needs_current_password(user, account):
        return
    store, throttle = request.app.state.store, request.app.state.throttle
    if not password or await login(store, throttle, user.name, password, client_address(request)) is None:
        raise ForbiddenError("your current password is missing or wrong: a new one needs it")


def sign_in(request: Request, user: UserRecord) -> None:
    """A fresh session (and CSRF token) for the user, valid while their session version stays."""
    request.session.clear()
    request.session.update(user=user.name, version=user.session_version)


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
        user = await asyncio.to_thread(store.user, name)
        if user is None or user.session_version != request.session.get("version"):
            request.session.clear()  # logged out, a new password, or removed: the session has ended
            return None
        return user
    if credentials := basic_credentials(request):
        return await login(store, request.app.state.throttle, *credentials, client_address(request))
    return None


def requires(*changes: str, writes: bool = False):
    """A dependency: the signed-in user, who may make these changes (pipeline.access.CHANGES; none: only
    read, or `writes` what pipeline.access decides on in the route). A change asked for over a session
    must carry the CSRF token."""

    async def dependency(request: Request) -> UserRecord:
        user = await current_user(request)
        if user is None:
            raise HTTPException(401, "log in first")
        access.check_change(user, *changes)
        if (changes or writes) and request.session.get("user"):  # Basic credentials are no ambient authority
            check_csrf(request, request.headers.get(CSRF_HEADER))
        return user

    return dependency
