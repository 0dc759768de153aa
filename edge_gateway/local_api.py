"""Loopback HTTP interface for the station window and the simulator: POST /start, GET /status and /window/*."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge_gateway.activity import StationActivity
from edge_gateway.start_relay import StartRelay, error_answer
from edge_gateway.window_api import WindowSources
from edge_gateway.window_api import routes as window_routes
from mes_contracts.errors import ErrorCode

logger = logging.getLogger(__name__)

StatusSource = Callable[[], Awaitable[dict[str, Any]]]
SHUTDOWN_GRACE_S = 3


def create_app(relay: StartRelay, status: StatusSource, window: WindowSources | None = None) -> Starlette:
    activity: StationActivity | None = window.activity if window is not None else None

    async def start(request: Request) -> JSONResponse:
        raw = await request.body()
        http_status, body = await relay.start(raw)
        if activity is not None:
            try:
                activity.record_start(raw, http_status, body)
            except Exception:  # the answer reaches the station whatever the day book thinks of it
                logger.exception("start answer not noted for the station window")
        return JSONResponse(body, status_code=http_status)

    async def get_status(request: Request) -> JSONResponse:
        return JSONResponse(await status())

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        status_code = exc.status_code if isinstance(exc, HTTPException) else 500
        code = ErrorCode.NOT_FOUND if status_code in (404, 405) else ErrorCode.INVALID_REQUEST
        if status_code >= 500:
            code = ErrorCode.INTERNAL_ERROR
        _, body = error_answer(code)
        headers = exc.headers if isinstance(exc, HTTPException) else None
        return JSONResponse(body, status_code=status_code, headers=headers)

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("local API %s %s failed", request.method, request.url.path, exc_info=exc)
        http_status, body = error_answer(ErrorCode.INTERNAL_ERROR)
        return JSONResponse(body, status_code=http_status)

    return Starlette(
        routes=[
            Route("/start", start, methods=["POST"]),
            Route("/status", get_status, methods=["GET"]),
            *(window_routes(window) if window is not None else []),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )


def bind_loopback(host: str, port: int) -> socket.socket:
    """Bind before serving so a taken port fails the start clearly; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: no port sharing with another process
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class LocalServer:
    def __init__(self, app: Starlette, sock: socket.socket) -> None:
        self._sock = sock
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=SHUTDOWN_GRACE_S
        )
        self._server = _QuietServer(config)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    async def run(self) -> None:
        """Serve until cancelled, then close the listener and let open requests finish briefly."""
        serving = asyncio.ensure_future(self._server.serve(sockets=[self._sock]))
        try:
            await asyncio.shield(serving)
        finally:
            self._server.should_exit = True
            try:
                await asyncio.wait([serving], timeout=SHUTDOWN_GRACE_S + 1)
            finally:
                if not serving.done():
                    serving.cancel()
                self._sock.close()
