"""The station window's part of the loopback API: one summary to poll, retry of an error/ file, label reprint.

`GET /window/summary` gathers everything the window shows in one answer (the window polls it every second):
the gateway status (broker, centre, outbox), today's activity at the station, the work folders, the firmware
folder (PROC-004), the serial labels of the print queue (PROC-007) and the recent alerts. `POST /window/retry`
moves a corrected file from error/ back to pending/ (logged in retries.log). `POST /window/reprint` relays an
FR-SN-003 reprint to the centre's REST API in the operator's name: the window sends the operator's user name and
password with the reason and the worker; the gateway signs in, asks `POST /api/v1/label/reprint` and returns the
centre's answer (the window itself never talks to the centre). Without `MES_GW_API_BASE_URL` it answers 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge_gateway.activity import StationActivity
from edge_gateway.alerts_board import AlertBoard
from edge_gateway.firmware_sync import FirmwareSyncer, read_meta
from edge_gateway.label_view import read_labels
from edge_gateway.start_relay import error_answer
from edge_gateway.work_files import RetryRefused, list_work_files, retry_error_file
from mes_contracts.errors import ErrorCode

logger = logging.getLogger(__name__)

StatusSource = Callable[[], Awaitable[dict[str, Any]]]
REPRINT_TIMEOUT_S = 20.0
FIRMWARE_GIVE_UP_ATTEMPTS = 3  # firmware_sync's attempts: after these the operator must call someone


@dataclass
class WindowSources:
    """What the window routes read; built by the composition root (tests build it with their own parts)."""

    work_dir: Path
    status: StatusSource
    activity: StationActivity
    alerts: AlertBoard
    print_queue_file: Path
    firmware: FirmwareSyncer | None = None
    api_base_url: str | None = None


def firmware_state(sources: WindowSources) -> dict[str, Any]:
    """firmware_meta.json as is, DOWNLOADING while a sync runs, and the last sync's attempts and message."""
    meta = read_meta(sources.work_dir / "firmware")
    last = sources.activity.firmware_sync or {}
    status = "DOWNLOADING" if sources.firmware is not None and sources.firmware.busy else meta.get("status")
    attempts = last.get("attempts")
    failed = last.get("status") == "ERROR"
    return {
        "configured": sources.firmware is not None,
        "meta": meta or None,
        "status": status,
        "version": meta.get("version") or last.get("version"),
        "attempts": attempts,
        "retries": max(0, int(attempts) - 1) if isinstance(attempts, int) else None,
        "gave_up": failed and isinstance(attempts, int) and attempts >= FIRMWARE_GIVE_UP_ATTEMPTS,
        "message": last.get("message"),
    }


def routes(sources: WindowSources) -> list[Route]:
    async def summary(request: Request) -> JSONResponse:
        status = await sources.status()
        files = await asyncio.to_thread(list_work_files, sources.work_dir, time.time())
        labels = await asyncio.to_thread(read_labels, sources.print_queue_file)
        return JSONResponse(
            {
                "status": status,
                "activity": sources.activity.snapshot(),
                "files": files,
                "firmware": await asyncio.to_thread(firmware_state, sources),
                "labels": labels,
                "alerts": sources.alerts.snapshot(status.get("print_queue")),
                "reprint_available": bool(sources.api_base_url),
            }
        )

    async def retry(request: Request) -> JSONResponse:
        body = await _json_object(request)
        name = body.get("name")
        if not isinstance(name, str):
            return _error(ErrorCode.INVALID_REQUEST, {"errors": ["name: a file name of error/ is required"]})
        worker = body.get("worker_id") if isinstance(body.get("worker_id"), str) else None
        try:
            entry = await asyncio.to_thread(retry_error_file, sources.work_dir, name, worker)
        except RetryRefused as refused:
            code = ErrorCode.NOT_FOUND if refused.code == "NOT_FOUND" else ErrorCode.INVALID_REQUEST
            return _error(code, {"reason": refused.code, "detail": str(refused)})
        return JSONResponse({"status": "success", "message": "pending/ 로 다시 보냈습니다", "data": entry})

    async def reprint(request: Request) -> JSONResponse:
        if not sources.api_base_url:
            return _error(ErrorCode.SERVICE_UNAVAILABLE, {"reason": "no_api_base_url"})
        body = await _json_object(request)
        lang = "en" if request.query_params.get("lang") == "en" else "ko"
        status_code, answer = await relay_reprint(sources.api_base_url, body, lang)
        return JSONResponse(answer, status_code=status_code)

    return [
        Route("/window/summary", summary, methods=["GET"]),
        Route("/window/retry", retry, methods=["POST"]),
        Route("/window/reprint", reprint, methods=["POST"]),
    ]


async def relay_reprint(api_base_url: str, body: dict[str, Any], lang: str) -> tuple[int, dict[str, Any]]:
    """Sign in as the operator, ask for the reprint; the centre's status and body (503 when it is away)."""
    wanted = {key: body.get(key) for key in ("serial_number", "lot_number", "reason", "worker_id", "printer_id")}
    wanted = {key: value for key, value in wanted.items() if value not in (None, "")}
    headers = {"Accept-Language": lang}
    try:
        async with httpx.AsyncClient(base_url=api_base_url.rstrip("/"), timeout=REPRINT_TIMEOUT_S) as client:
            login = await client.post(
                "/api/v1/auth/login",
                json={"username": body.get("username"), "password": body.get("password")},
                headers=headers,
            )
            if login.status_code != 200:
                return login.status_code, login.json()
            token = login.json()["data"]["access_token"]
            answer = await client.post(
                "/api/v1/label/reprint", json=wanted, headers={**headers, "Authorization": f"Bearer {token}"}
            )
            return answer.status_code, answer.json()
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        logger.warning("reprint relay failed: %s", error)
        return _raw_error(ErrorCode.SERVICE_UNAVAILABLE, {"reason": "server_down"})


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _raw_error(code: ErrorCode, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return error_answer(code, data)


def _error(code: ErrorCode, data: dict[str, Any]) -> JSONResponse:
    status_code, body = error_answer(code, data)
    return JSONResponse(body, status_code=status_code)
