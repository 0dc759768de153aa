"""Request ids: honour a sane incoming X-Request-ID or mint a UUIDv7, expose it to the audit trail and the logs."""

from __future__ import annotations

import logging
import re

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_api.audit.trail import REQUEST_ID
from mes_contracts.envelope import new_message_id

log = logging.getLogger(__name__)

HEADER = "X-Request-ID"
# Anything else (too long, spaces, quotes, non-ASCII) could smuggle text into logs and audit rows: replaced.
_SANE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def accepted_request_id(incoming: str | None) -> str:
    """The caller's id when it is a sane token, else a fresh UUIDv7."""
    if incoming is not None and _SANE.fullmatch(incoming):
        return incoming
    return new_message_id()


class RequestIdMiddleware:
    """Pure ASGI (no extra task): the contextvar set here is the one the route's use case reads."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted_request_id(Headers(scope=scope).get(HEADER))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        token = REQUEST_ID.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            REQUEST_ID.reset(token)
