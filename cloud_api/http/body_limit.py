"""Request body size limit (ASGI middleware): by Content-Length up front and by counting streamed bytes."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_api.firmware.settings import FirmwareSettings
from cloud_api.http.errors import scope_error_response
from cloud_api.http.limits_settings import limit_settings
from mes_contracts.errors import ErrorCode

log = logging.getLogger(__name__)

FIRMWARE_UPLOAD = ("POST", "/api/v1/firmware")
MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and the small form fields around the binary


class BodyTooLarge(HTTPException):
    """Raised from receive(); an HTTPException so FastAPI's body parsing passes it on to the error mapping (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413)
        self.data = {"max_bytes": limit}


def body_limit(scope: Scope) -> int:
    """MES_MAX_BODY_BYTES, except the firmware upload, which may carry MES_FIRMWARE_MAX_SIZE_BYTES."""
    state = scope["app"].state
    limit = limit_settings(state).max_body_bytes
    if (scope.get("method"), scope.get("path")) == FIRMWARE_UPLOAD:
        firmware: FirmwareSettings | None = getattr(state, "firmware_settings", None)  # None: no firmware routes
        if firmware is not None:
            limit = max(limit, firmware.max_size_bytes + MULTIPART_OVERHEAD)
    return limit


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length before we see it; count the bytes anyway
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            # Refuse before reading a byte: the client may be about to send gigabytes.
            await self._refuse(scope, receive, send, declared, limit)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            # Reached here only when no exception handler turned it into a response (e.g. a raw stream reader).
            if started:
                raise
            await self._refuse(scope, receive, send, received, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, size: int, limit: int) -> None:
        log.info("request body of %s %s refused: %s bytes > %s", scope.get("method"), scope.get("path"), size, limit)
        response = scope_error_response(scope, ErrorCode.PAYLOAD_TOO_LARGE, {"max_bytes": limit})
        response.headers["Connection"] = "close"  # the unread rest of the body must not be taken for a request
        await response(scope, receive, send)
