"""The app: store, codebook, sessions, routes, and errors shown as messages (never a stack trace).

ohp's own errors (pipeline.errors) are answered with their status: not found 404, invalid input 400,
conflict 409 (with the current state), forbidden 403; a request FastAPI cannot read is 422, except a path
that names nothing (an id out of range), which is 404. A body over MAX_BODY_BYTES is 413. Anything else
is a bug: a 500 that says no more, and its traceback in the log.

Every response, errors included, carries the headers of SECURITY_HEADERS (`OhpApp`), and its cookies are
Secure when the request came by HTTPS (directly, or through a trusted proxy that says so) or when the
configuration asks for secure cookies.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from pipeline.config import Config
from pipeline.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from pipeline.stages.codebook import load_codebook
from pipeline.store import Store, StoreError, UserRecord

from . import accounts, analysis, api, pages, views, vocabulary
from .auth import Throttle, requires, session_secret

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # the largest request: a correction of 20,000 characters fits many times over
STATIC_PATH = "/static"
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",  # a response is what its type says, never sniffed into a script
    "Content-Security-Policy": "default-src 'self'; media-src 'self'; object-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
}


class OhpApp(FastAPI):
    """FastAPI, whose every response (its error pages too) carries SECURITY_HEADERS and Secure cookies
    where they belong."""

    secure_cookies = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)

        async def send_safely(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                # A page, an answer or audio of an interview stays in no cache, the browser's own included: on a
                # shared archive workstation the next person could bring it back after a logout. The stylesheets
                # and scripts are no one's.
                if not scope["path"].startswith(STATIC_PATH + "/"):
                    headers["Cache-Control"] = "no-store"
                # The scheme as a trusted proxy gave it: ProxyHeadersMiddleware sets it in this scope.
                if self.secure_cookies or scope.get("scheme") == "https":
                    cookies = headers.getlist("set-cookie")
                    del headers["set-cookie"]
                    for cookie in cookies:
                        headers.append("set-cookie", cookie if "; secure" in cookie.lower() else cookie + "; secure")
            await send(message)

        await super().__call__(scope, receive, send_safely)


def create_app(store: Store, config: Config | None = None) -> FastAPI:
    """The web app over `store`; its codebook, session secret, home, proxies and cookie setting from
    `config` (else read now)."""
    config = config or Config.load()
    app = OhpApp(
        title="ohp",
        description="Oral-history interviews: listen, read, review themes, correct, search.",
        docs_url=None,  # the API's description is for signed-in users only: /openapi.json, below
        redoc_url=None,
        openapi_url=None,
        max_body_size=MAX_BODY_BYTES,
    )
    app.secure_cookies = config.secure_cookies
    app.state.store = store
    app.state.codebook = load_codebook(config.codebook)
    app.state.vocabulary = config.vocabulary  # where accepted suggestions go (pipeline.web.vocabulary)
    app.state.throttle = Throttle()
    app.state.write_lock = threading.Lock() if store.url.startswith("sqlite") else None  # see api.write
    # Signed (not readable by other sites), SameSite=Lax: a cross-site POST carries no session.
    secret = config.secret or session_secret(config.home)
    app.add_middleware(
        SessionMiddleware, secret_key=secret, session_cookie="ohp_session", same_site="lax", max_age=12 * 3600
    )
    if config.trusted_proxies:  # the client's address and scheme from their X-Forwarded-For and -Proto
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(config.trusted_proxies))
    app.mount(STATIC_PATH, StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(accounts.router)
    app.include_router(vocabulary.router)
    app.include_router(analysis.router)  # /agreement, /collection

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(user: Annotated[UserRecord, Depends(requires())]) -> JSONResponse:
        return JSONResponse(app.openapi())

    def error(request: Request, status: int, message: str, **extra) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
            return JSONResponse({"detail": message, **extra}, status_code=status)
        if status == 401:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return pages.page(request, "error.html", None, status_code=status, message=message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if all(e["loc"][:1] == ("path",) for e in exc.errors()):  # /recordings/9223372036854775808: no such thing
            return error(request, 404, f"nothing at {request.url.path}")
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error(request, 422, f"invalid request: {problems}")

    @app.exception_handler(ConflictError)
    async def conflict(request: Request, exc: ConflictError) -> Response:
        current = exc.current
        if not (isinstance(current, dict) or current is None):
            current = views.annotation_json(current, request.app.state.codebook)
        return error(request, 409, str(exc), current=current)

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> Response:
        return error(request, 404, str(exc))

    @app.exception_handler(InvalidInputError)
    async def invalid_input(request: Request, exc: InvalidInputError) -> Response:
        return error(request, 400, str(exc))

    @app.exception_handler(ForbiddenError)
    async def forbidden(request: Request, exc: ForbiddenError) -> Response:
        return error(request, 403, str(exc))

    @app.exception_handler(StoreError)
    async def database(request: Request, exc: StoreError) -> Response:
        log.error("%s", exc)
        return error(request, 503, "the database cannot be used just now: try again")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error(request, 500, "something went wrong on the server (it is in the server's log)")

    return app
