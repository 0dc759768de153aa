"""Reference data routes: the process route, product models, workers; health and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from cloud_api.http.deps import DbDep, LangDep, ManagerDep, PublicDep, ViewerDep
from cloud_api.http.query_guard import QueryGuard
from cloud_api.services.workers import WorkerIn, list_workers, upsert_worker
from mes_contracts.errors import success_message
from mes_contracts.route import ROUTE
from mes_contracts.start import success_body

router = APIRouter(tags=["reference"])


@router.get("/api/v1/route", summary="The eight processes in order", dependencies=[QueryGuard])
async def route(lang: LangDep, principal: ViewerDep) -> dict[str, Any]:
    return {
        "status": "success",
        "data": [{"process_id": s.process_id, "process_name": s.name(lang), "sequence": s.sequence} for s in ROUTE],
    }


@router.get("/api/v1/product-models", dependencies=[QueryGuard])
async def product_models(db: DbDep, principal: ViewerDep) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT model_code, model_name, description FROM product_models ORDER BY id"))
        return {"status": "success", "data": [dict(r) for r in rows.mappings()]}


@router.get("/api/v1/workers", dependencies=[QueryGuard])
async def workers(db: DbDep, principal: ViewerDep) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        return {"status": "success", "data": await list_workers(conn)}


@router.post("/api/v1/workers", status_code=201)
async def add_worker(worker: WorkerIn, db: DbDep, lang: LangDep, principal: ManagerDep) -> JSONResponse:
    async with db.transaction() as conn:
        data = await upsert_worker(conn, worker, principal.username)
    return JSONResponse(
        status_code=201, content=success_body(success_message("worker_created", lang), data).to_json_dict()
    )


@router.get("/health", summary="Liveness of the API and its database and Redis")
async def health(request: Request, db: DbDep, _: PublicDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # health must answer, whatever broke
        checks["database"] = f"down: {type(error).__name__}"
    try:
        await request.app.state.redis.ping()
        checks["redis"] = "ok"
    except Exception as error:
        checks["redis"] = f"down: {type(error).__name__}"
    healthy = checks["database"] == "ok"
    return JSONResponse(
        status_code=200 if healthy else 503, content={"status": "ok" if healthy else "degraded", "checks": checks}
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(_: PublicDep) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
