"""User administration (admins): list, look up, create, change role/active/name, reset a password."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from cloud_api.adapters.database import Database
from cloud_api.auth import user_admin, users
from cloud_api.domain.access import USERNAME_PATTERN, Role
from cloud_api.http.deps import AdminDep, DbDep, LangDep
from cloud_api.http.query_guard import QueryGuard
from mes_contracts.errors import success_message
from mes_contracts.start import success_body

router = APIRouter(prefix="/api/v1/users", tags=["users"])
NO_STORE = {"Cache-Control": "no-store"}  # answers may carry a one-time password
Username = Annotated[str, Path(pattern=USERNAME_PATTERN)]


def _shown(db: Database, data: dict[str, Any]) -> dict[str, Any]:
    """Times in the factory's zone with their offset, like every other answer."""
    shown = {k: db.local(v).isoformat() if isinstance(v, datetime) else v for k, v in data.items()}
    return dict(jsonable_encoder(shown))


@router.get("", summary="Users, by name (never their password hashes)", dependencies=[QueryGuard])
async def list_all(db: DbDep, principal: AdminDep, role: Annotated[Role | None, Query()] = None) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        found = await users.list_users(conn, role)
    return {"status": "success", "data": [_shown(db, user.public()) for user in found]}


@router.get("/{username}", summary="One user")
async def detail(username: Username, db: DbDep, principal: AdminDep) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        user = await users.get_user(conn, username)
    return {"status": "success", "data": _shown(db, user.public())}


@router.post("", status_code=201, summary="Create a user; without a password a one-time password is returned once")
async def create(body: users.NewUser, db: DbDep, lang: LangDep, principal: AdminDep) -> JSONResponse:
    result = await user_admin.create_user(db.engine, body, principal.username)  # hashes with no connection held
    content = success_body(success_message("user_created", lang), _shown(db, result.public())).to_json_dict()
    return JSONResponse(status_code=201, content=content, headers=NO_STORE)


@router.patch("/{username}", summary="Change role, active, display name; reset_password returns a one-time password")
async def change(
    username: Username, body: users.UserChange, db: DbDep, lang: LangDep, principal: AdminDep
) -> JSONResponse:
    result = await user_admin.change_user(db.engine, username, body, principal.username)
    content = success_body(success_message("user_updated", lang), _shown(db, result.public())).to_json_dict()
    return JSONResponse(content=content, headers=NO_STORE)
