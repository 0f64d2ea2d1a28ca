"""The app: store, codebook, sessions, routes, and errors shown as messages (never a stack trace).

ohp's own errors (pipeline.errors) are answered with their status: not found 404, invalid input 400,
conflict 409 (with the current state), forbidden 403; a request FastAPI cannot read is 422. Anything else
is a bug: a 500 that says no more, and its traceback in the log.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from pipeline.config import Config
from pipeline.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from pipeline.stages.codebook import load_codebook
from pipeline.store import Store, StoreError

from . import analysis, api, pages, views
from .auth import Throttle, session_secret

log = logging.getLogger(__name__)


def create_app(store: Store, config: Config | None = None) -> FastAPI:
    """The web app over `store`; its codebook, session secret and home from `config` (else read now)."""
    config = config or Config.load()
    app = FastAPI(title="ohp", description="Oral-history interviews: listen, read, review themes, correct, search.")
    app.state.store = store
    app.state.codebook = load_codebook(config.codebook)
    app.state.throttle = Throttle()
    app.state.write_lock = threading.Lock() if store.url.startswith("sqlite") else None  # see api.write
    # Signed (not readable by other sites), SameSite=Lax: a cross-site POST carries no session.
    secret = config.secret or session_secret(config.home)
    app.add_middleware(
        SessionMiddleware, secret_key=secret, session_cookie="ohp_session", same_site="lax", max_age=12 * 3600
    )
    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(analysis.router)  # /agreement, /collection

    @app.middleware("http")
    async def no_framing(request: Request, call_next) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault(
            "Content-Security-Policy", "default-src 'self'; media-src 'self'; object-src 'none'; frame-ancestors 'none'"
        )
        return response

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
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error(request, 422, f"invalid request: {problems}")

    @app.exception_handler(ConflictError)
    async def conflict(request: Request, exc: ConflictError) -> Response:
        current = (
            exc.current if isinstance(exc.current, dict) or exc.current is None else views.annotation_json(exc.current)
        )
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
