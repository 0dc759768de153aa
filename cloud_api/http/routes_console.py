"""The managers' small web console (create and follow LOTs), served as one static page."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from cloud_api.http.deps import PublicDep

router = APIRouter(include_in_schema=False)
PAGE = Path(__file__).parent / "static" / "console.html"


@router.get("/")
async def root(_: PublicDep) -> RedirectResponse:
    return RedirectResponse("/console")


@router.get("/console")
async def console(_: PublicDep) -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))
