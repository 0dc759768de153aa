"""Live production view: today's board and the Server-Sent Events channel (issue 13, FR-DASH-001/002).

`GET /api/v1/events` is a text/event-stream fed by the process's one LISTEN link (services/live_events.py).
A browser's EventSource cannot send an Authorization header, so this route also takes the access token as the
`access_token` query parameter (the API's access log is off, so it is not written to a log by us); the stream
ends when that token expires and the console reopens it with a fresh one and `last_event_id`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from sse_starlette.sse import EventSourceResponse

from cloud_api.auth import sessions, tokens
from cloud_api.domain.access import VIEWERS, Principal, RouteAccess
from cloud_api.domain.errors import DomainError
from cloud_api.http.deps import AuthSettingsDep, DbDep, LangDep, ViewerDep, user_bearer
from cloud_api.http.ratelimit import enforce_user_limit
from cloud_api.services import dashboard
from cloud_api.services.live_events import LiveEvents
from mes_contracts.errors import ErrorCode

router = APIRouter(prefix="/api/v1", tags=["dashboard"])

TODAY_PARAMS = frozenset({"shift", "date", "lang"})
EVENT_PARAMS = frozenset({"access_token", "last_event_id"})


def _only(request: Request, allowed: frozenset[str]) -> None:
    """Unknown query parameters are refused (422), not silently ignored (issue 13)."""
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise DomainError(
            ErrorCode.INVALID_REQUEST, {"errors": [f"query.{name}: unknown parameter" for name in unknown]}
        )


@router.get("/dashboard/today", summary="Today's production: per-process counts, yields, LOTs in progress, units/h")
async def today(
    request: Request,
    db: DbDep,
    lang: LangDep,
    principal: ViewerDep,
    shift: Annotated[str | None, Query(pattern="^[DN]$", description="D or N; default: the whole day")] = None,
    day: Annotated[date | None, Query(alias="date", description="a production day; default: today's")] = None,
    lang_query: Annotated[Literal["ko", "en"] | None, Query(alias="lang", description="wins over the header")] = None,
) -> dict[str, Any]:
    _only(request, TODAY_PARAMS)
    return {"status": "success", "data": await dashboard.today(db, day, shift, lang_query or lang)}


class StreamViewer:
    """Viewers and up, by bearer header or `access_token` query parameter; remembers when the token expires."""

    access = RouteAccess(roles=VIEWERS)
    allowed_roles = VIEWERS

    async def __call__(
        self,
        request: Request,
        db: DbDep,
        settings: AuthSettingsDep,
        access_token: Annotated[str | None, Query(description="the access token (EventSource sends no header)")] = None,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(user_bearer)] = None,
    ) -> tuple[Principal, int]:
        token = credentials.credentials if credentials is not None else access_token
        if not token:
            raise DomainError(ErrorCode.UNAUTHORIZED, None, "missing bearer token")
        claims = tokens.decode_access(settings, token)
        await enforce_user_limit(request, claims.username)
        principal = await sessions.principal_for(db, claims)
        if principal.must_change_password:
            raise DomainError(ErrorCode.FORBIDDEN, {"password_change_required": True})
        if principal.role not in VIEWERS:
            raise DomainError(ErrorCode.FORBIDDEN, {"required_roles": sorted(r.value for r in VIEWERS)})
        request.state.principal = principal
        return principal, claims.expires_at


StreamViewerDep = Annotated[tuple[Principal, int], Depends(StreamViewer())]


@router.get("/events", summary="Server-Sent Events: LOT, run, result and serial changes within a second of commit")
async def events(
    request: Request,
    viewer: StreamViewerDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query(description="as Last-Event-ID, for a new EventSource")] = None,
) -> EventSourceResponse:
    _only(request, EVENT_PARAMS)
    hub: LiveEvents = request.app.state.live
    hub.start()
    resume_from = last_event_id_header or last_event_id
    start_id = hub.head  # read with the subscription, no await between: nothing falls in the gap
    subscription = hub.subscribe(resume_from)
    expires_at = viewer[1]
    ping = request.app.state.settings.sse_ping_s

    async def stream() -> AsyncIterator[dict[str, Any]]:
        try:
            # Where a new client starts: reconnecting with this id replays anything after it. A resuming client
            # keeps its own id (no id here) until the replayed events move it on.
            hello = {"event": "hello", "data": '{"kind":"hello"}'}
            yield hello if resume_from else {**hello, "id": start_id}
            while time.time() < expires_at:
                event = await subscription.next(min(ping, max(expires_at - time.time(), 0.1)))
                if event is not None:
                    yield {"event": event.kind, "id": event.id, "data": event.data}
            yield {"event": "expired", "data": '{"kind":"expired"}'}
        finally:
            hub.unsubscribe(subscription)

    return EventSourceResponse(stream(), ping=ping, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
