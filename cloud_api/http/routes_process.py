"""Process routes: start (착공, spec §3.4.1) and completion (완공) for tools that cannot drop files."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse

from cloud_api.http.deps import DbDep, LangDep, OperatorDep
from cloud_api.services.handlers import handle_completion, handle_start
from cloud_api.services.process_complete import CompletionSource
from mes_contracts.completion import CompletionRecord
from mes_contracts.start import StartRequest

router = APIRouter(prefix="/api/v1/process", tags=["process"])
IdempotencyKey = Annotated[
    uuid.UUID | None,
    Header(description="Optional UUID; a retried request with the same key gets the first answer"),
]


@router.post("/start", summary="Register a process start (착공)")
async def start(
    request: StartRequest, db: DbDep, lang: LangDep, principal: OperatorDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    raw = request.model_dump(mode="json")
    answer = await handle_start(db, raw, "rest", idempotency_key, lang, principal.username)
    return JSONResponse(status_code=answer.http_status, content=answer.body)


@router.post("/complete", summary="Register a process completion (완공) with the completion-file body")
async def complete(
    record: Annotated[CompletionRecord, Body()],
    db: DbDep,
    lang: LangDep,
    principal: OperatorDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    raw: dict[str, Any] = record.model_dump(mode="json")
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    source = CompletionSource(
        station="rest", message_id=idempotency_key or uuid.uuid4(), sha256=digest, actor=principal.username
    )
    answer = await handle_completion(db, raw, source, lang)
    return JSONResponse(status_code=answer.http_status, content=answer.body)
