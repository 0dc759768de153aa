"""The managers' web console: one page shell plus a few plain JS/CSS files (no build step), served publicly.

The files hold no data: everything shown comes from the API with the signed-in user's token. Only the names in
`static/` are served (an allow-list read at import, so a request can never name another path).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud_api.domain.errors import DomainError
from cloud_api.http.deps import PublicDep
from mes_contracts.errors import ErrorCode

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).parent / "static"
PAGE = STATIC / "console.html"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
FILES = {path.name: path for path in STATIC.iterdir() if path.suffix in TYPES}
# Revalidate every time (a deployment changes them) but let the browser keep a copy: 304s cost nearly nothing.
CACHE = {"Cache-Control": "no-cache"}


@router.get("/")
async def root(_: PublicDep) -> RedirectResponse:
    return RedirectResponse("/console")


@router.get("/console")
async def console(_: PublicDep) -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers=CACHE)


@router.get("/console/static/{name}")
async def static_file(name: str, _: PublicDep) -> Response:
    path = FILES.get(name)
    if path is None:
        raise DomainError(ErrorCode.NOT_FOUND, {"file": name})
    return Response(path.read_bytes(), media_type=TYPES[path.suffix], headers=CACHE)
