"""Typed FastAPI dependencies: the database, the response language and the acting user."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from cloud_api.adapters.database import Database
from cloud_api.domain.access import Principal, Role
from cloud_api.settings import CentralSettings


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings(request: Request) -> CentralSettings:
    settings: CentralSettings = request.app.state.settings
    return settings


def get_lang(
    settings: Annotated[CentralSettings, Depends(get_settings)],
    accept_language: Annotated[str | None, Header()] = None,
) -> str:
    """Korean by default (the spec's wording); `Accept-Language: en` switches messages to English."""
    if accept_language:
        primary = accept_language.split(",")[0].strip().lower()
        if primary.startswith("en"):
            return "en"
        if primary.startswith("ko"):
            return "ko"
    return settings.language


def get_actor(x_mes_user: Annotated[str | None, Header()] = None) -> str:
    """Who acts. Authentication replaces this single dependency (security issue); until then a header or 'system'."""
    return (x_mes_user or "system")[:50]


DbDep = Annotated[Database, Depends(get_db)]
LangDep = Annotated[str, Depends(get_lang)]
ActorDep = Annotated[str, Depends(get_actor)]


def allow(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """Dependency for a route that these roles may call (placeholder until authentication lands)."""

    async def _principal(actor: Annotated[str, Depends(get_actor)]) -> Principal:
        return Principal(actor, Role.ADMIN)

    _principal.allowed_roles = frozenset(roles)  # type: ignore[attr-defined]
    return _principal


AdminDep = Annotated[Principal, Depends(allow(Role.ADMIN))]
ManagerDep = Annotated[Principal, Depends(allow(Role.ADMIN, Role.MANAGER))]
OperatorDep = Annotated[Principal, Depends(allow(Role.ADMIN, Role.MANAGER, Role.OPERATOR))]
ViewerDep = Annotated[Principal, Depends(allow(Role.ADMIN, Role.MANAGER, Role.OPERATOR, Role.VIEWER))]
