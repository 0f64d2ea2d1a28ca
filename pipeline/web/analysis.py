"""The researchers' pages on the collection: agreement between coders (/agreement) and the collection at a
glance (/collection), each chart drawn on the server (SVG in the page) and downloadable as PNG, SVG and the
CSV behind it. Who may see them, and which recordings count, is pipeline.access's to say."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from pipeline import access
from pipeline.analysis.agreement import UNITS_RULE
from pipeline.analysis.charts import FORMATS, render
from pipeline.analysis.report import agreement_report, choose_coders, report_tables, theme_label
from pipeline.analysis.tables import Table, agreement_tables, disagreements_csv
from pipeline.store import Store, UserRecord

from .auth import requires
from .pages import page, templates

router = APIRouter(include_in_schema=False)
Viewer = Annotated[UserRecord, Depends(requires())]
PAGES = {"collection": "The collection at a glance", "agreement": "Agreement between coders"}
NAME = re.compile(r"[a-z-]{1,40}")
PIECE = 1 << 16  # bytes of the disagreements' CSV sent at a time, as the store streams them
templates.env.globals.update(sees_analysis=access.may_see_analysis)  # the menu's links


def _scope(store: Store, user: UserRecord) -> list[int] | None:
    """The recordings the user sees, as ids; None when that is every recording."""
    everything = store.list_recordings()
    seen = access.visible(user, everything)
    return None if len(seen) == len(everything) else [r.id for r in seen]


def _coders(value: str) -> list[str] | None:
    return [name.strip() for name in value.split(",") if name.strip()] or None


def tables(request: Request, user: UserRecord, kind: str, coders: str, accepted_only: bool) -> list[Table]:
    access.check_analysis(user)
    store, codebook = request.app.state.store, request.app.state.codebook
    scope = _scope(store, user)
    if kind == "agreement":
        found = agreement_report(store, scope, codebook, _coders(coders))
        return agreement_tables(found, theme_label(codebook)) if found.coders else []
    return report_tables(store, scope, codebook, accepted_only=accepted_only, with_agreement=False)


def _inline(svg: bytes) -> str:
    """An SVG document as markup for the page (its XML prologue and doctype dropped)."""
    text = svg.decode("utf-8")
    return text[text.index("<svg") :]


@router.get("/collection")
@router.get("/agreement")
async def analysis_page(request: Request, user: Viewer, coders: str = "", accepted_only: bool = False) -> HTMLResponse:
    kind = request.url.path.strip("/")
    found = await run_in_threadpool(tables, request, user, kind, coders, accepted_only)
    charts = await run_in_threadpool(lambda: {t.name: _inline(render(t, "svg")) for t in found})
    return page(
        request,
        "analysis.html",
        user,
        kind=kind,
        title=PAGES[kind],
        tables=found,
        charts=charts,
        rule=UNITS_RULE,
        coders=coders,
        accepted_only=accepted_only,
    )


def _in_pieces(lines: Iterable[str]) -> Iterator[bytes]:
    """The lines as UTF-8, PIECE bytes or so at a time (a piece each line would be a trip to a thread each)."""
    piece: list[bytes] = []
    size = 0
    for line in lines:
        piece.append(line.encode("utf-8"))
        size += len(piece[-1])
        if size >= PIECE:
            yield b"".join(piece)
            piece, size = [], 0
    yield b"".join(piece)


@router.get("/agreement/disagreements.csv")
async def disagreements(request: Request, user: Viewer, coders: str = "") -> Response:
    def lines() -> Iterator[str]:
        access.check_analysis(user)
        store, codebook = request.app.state.store, request.app.state.codebook
        scope = _scope(store, user)
        names = choose_coders(store, scope, _coders(coders))
        return disagreements_csv(store.disagreements(scope, names), theme_label(codebook))

    found = await run_in_threadpool(lines)  # refused (403, 400) here, before the response starts
    disposition = 'attachment; filename="disagreements.csv"'
    return StreamingResponse(
        _in_pieces(found), media_type="text/csv; charset=utf-8", headers={"Content-Disposition": disposition}
    )


@router.get("/{kind}/{name}.{fmt}")
async def analysis_file(
    request: Request, user: Viewer, kind: str, name: str, fmt: str, coders: str = "", accepted_only: bool = False
) -> Response:
    if kind not in PAGES or not NAME.fullmatch(name) or fmt not in {*FORMATS, "csv"}:
        raise HTTPException(404, "no such file")
    found = await run_in_threadpool(tables, request, user, kind, coders, accepted_only)
    table = next((t for t in found if t.name == name), None)
    if table is None:
        raise HTTPException(404, f"no chart {name!r} here")
    if fmt == "csv":
        content: bytes = table.csv().encode("utf-8")
        media = "text/csv; charset=utf-8"
    else:
        content, media = await run_in_threadpool(render, table, fmt), FORMATS[fmt]
    disposition = f'attachment; filename="{name}.{fmt}"'
    return Response(content, media_type=media, headers={"Content-Disposition": disposition})
