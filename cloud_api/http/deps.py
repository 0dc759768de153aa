"""Typed FastAPI dependencies: the database, the response language, and who is calling (one per route)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Depends, Header, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cloud_api.adapters.database import Database
from cloud_api.auth import sessions, tokens
from cloud_api.auth.settings import AuthSettings
from cloud_api.domain.access import ADMINS, MANAGERS, OPERATORS, VIEWERS, Principal, Role, RouteAccess
from cloud_api.domain.errors import DomainError
from cloud_api.firmware import tokens as station_tokens
from cloud_api.http.language import choose_lang
from cloud_api.http.ratelimit import enforce_user_limit
from cloud_api.settings import CentralSettings
from mes_contracts.errors import ErrorCode

log = logging.getLogger(__name__)

# One scheme each, so /docs shows which credential a route takes.
user_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="access_token",
    description="Access token from POST /api/v1/auth/login (15 min; renew with /auth/refresh)",
)
station_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="station_token",
    description="A station's firmware token (POST /api/v1/stations/{station}/token)",
)
Credentials = HTTPAuthorizationCredentials | None


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings(request: Request) -> CentralSettings:
    settings: CentralSettings = request.app.state.settings
    return settings


def get_auth_settings(request: Request) -> AuthSettings:
    settings: AuthSettings = request.app.state.auth_settings  # validated at start (create_app)
    return settings


def get_lang(
    settings: Annotated[CentralSettings, Depends(get_settings)],
    accept_language: Annotated[str | None, Header()] = None,
    lang: Annotated[Literal["ko", "en"] | None, Query(description="ko or en; overrides Accept-Language")] = None,
) -> str:
    """Korean by default (the spec's wording); `?lang=en` or `Accept-Language: en` switches messages to English.
    Declared here, `lang` is a known query parameter of every route that answers in a language (QueryGuard)."""
    return choose_lang(settings.language, accept_language, lang)


DbDep = Annotated[Database, Depends(get_db)]
LangDep = Annotated[str, Depends(get_lang)]
AuthSettingsDep = Annotated[AuthSettings, Depends(get_auth_settings)]


async def authenticate(
    request: Request,
    db: DbDep,
    settings: AuthSettingsDep,
    credentials: Annotated[Credentials, Security(user_bearer)] = None,
) -> Principal:
    """The user behind a valid access token (any role; `allow` checks the role). FastAPI runs it once a request."""
    if credentials is None:
        raise DomainError(ErrorCode.UNAUTHORIZED, None, "missing bearer token")
    claims = tokens.decode_access(settings, credentials.credentials)
    await enforce_user_limit(request, claims.username)  # before the database: a flood costs no query
    principal = await sessions.principal_for(db, claims)
    request.state.principal = principal
    return principal


def get_actor(principal: Annotated[Principal, Depends(authenticate)]) -> str:
    """Who acts: the authenticated user (a route must still declare its roles with `allow`)."""
    return principal.username


ActorDep = Annotated[str, Depends(get_actor)]


def _declare(dependency: Callable[..., object], access: RouteAccess) -> None:
    # The route table and the start-up check find a route's rule on its dependency (see cloud_api.auth.route_table).
    dependency.access = access  # type: ignore[attr-defined]
    dependency.allowed_roles = access.roles  # type: ignore[attr-defined]


def allow(*roles: Role, during_password_change: bool = False) -> Callable[..., Awaitable[Principal]]:
    """Dependency for a route that users with one of these roles may call; 401 without a valid token, 403 else."""
    access = RouteAccess(roles=frozenset(roles), during_password_change=during_password_change)

    async def _principal(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.must_change_password and not access.during_password_change:
            raise DomainError(ErrorCode.FORBIDDEN, {"password_change_required": True}, "password change required")
        if not access.admits(principal.role):
            raise DomainError(
                ErrorCode.FORBIDDEN,
                {"required_roles": sorted(r.value for r in access.roles)},
                f"role {principal.role} may not call this route",
            )
        return principal

    _declare(_principal, access)
    return _principal


def allow_public() -> Callable[[], None]:
    """Dependency that declares a route callable without any credential (health, login, the console page)."""

    def _public() -> None:
        return None

    _declare(_public, RouteAccess(public=True))
    return _public


async def _station(
    request: Request, db: DbDep, credentials: Annotated[Credentials, Security(station_bearer)] = None
) -> Principal:
    if credentials is None:
        raise DomainError(ErrorCode.UNAUTHORIZED, None, "missing station token")
    async with db.transaction() as conn:
        station = await station_tokens.authenticate_station(conn, f"Bearer {credentials.credentials}")
    principal = Principal(f"station:{station}", None, station=station)
    await enforce_user_limit(request, principal.username)
    request.state.principal = principal
    return principal


_declare(_station, RouteAccess(station=True))


def station_only() -> Callable[..., Awaitable[Principal]]:
    """Dependency for a route only a station token opens (firmware download); user tokens are refused (401)."""
    return _station


PublicDep = Annotated[None, Depends(allow_public())]
StationDep = Annotated[Principal, Depends(station_only())]
AdminDep = Annotated[Principal, Depends(allow(*ADMINS))]
ManagerDep = Annotated[Principal, Depends(allow(*MANAGERS))]
OperatorDep = Annotated[Principal, Depends(allow(*OPERATORS))]
ViewerDep = Annotated[Principal, Depends(allow(*VIEWERS))]
# The caller's own account (me, logout, password change): any role, also while a password change is due.
SelfDep = Annotated[Principal, Depends(allow(*VIEWERS, during_password_change=True))]
