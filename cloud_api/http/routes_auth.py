"""Authentication routes: login, refresh (rotation), logout, who am I, change my password."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from cloud_api.auth import sessions
from cloud_api.auth.sessions import Session
from cloud_api.domain.access import PASSWORD_MAX_LENGTH
from cloud_api.domain.errors import DomainError
from cloud_api.http.deps import AuthSettingsDep, DbDep, LangDep, PublicDep, SelfDep
from cloud_api.http.ratelimit import login_throttle_check, login_throttle_record, request_ip
from mes_contracts.errors import ErrorCode, success_message
from mes_contracts.start import success_body

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)


class Refresh(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class Logout(BaseModel):
    all_sessions: bool = Field(default=False, description="end every session of this user, not only this one")


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)
    new_password: str = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)


def _tokens(session: Session, key: str, lang: str) -> JSONResponse:
    body = success_body(success_message(key, lang), session.public()).to_json_dict()
    return JSONResponse(content=body, headers=NO_STORE)


@router.post("/login", summary="Log in: an access token (15 min) and a refresh token (7 days)")
async def login(
    body: Login, request: Request, db: DbDep, settings: AuthSettingsDep, lang: LangDep, _: PublicDep
) -> JSONResponse:
    await login_throttle_check(request, body.username)
    try:
        session = await sessions.login(db, settings, body.username, body.password, request_ip(request))
    except DomainError as error:
        if error.code is ErrorCode.INVALID_CREDENTIALS:
            await login_throttle_record(request, body.username, False)
        raise
    await login_throttle_record(request, body.username, True)
    return _tokens(session, "logged_in", lang)


@router.post("/refresh", summary="Trade a refresh token for a new pair (the old one is used up)")
async def refresh(
    body: Refresh, request: Request, db: DbDep, settings: AuthSettingsDep, lang: LangDep, _: PublicDep
) -> JSONResponse:
    session = await sessions.refresh(db, settings, body.refresh_token, request_ip(request))
    return _tokens(session, "token_refreshed", lang)


@router.post("/logout", summary="End this session (or all of the user's sessions)")
async def logout(principal: SelfDep, db: DbDep, lang: LangDep, body: Logout | None = None) -> dict[str, Any]:
    count = await sessions.logout(db, principal, body.all_sessions if body else False)
    return success_body(success_message("logged_out", lang), {"revoked_tokens": count}).to_json_dict()


@router.get("/me", summary="The calling user")
async def me(principal: SelfDep) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "username": principal.username,
            "role": principal.role.value if principal.role else None,
            "must_change_password": principal.must_change_password,
            "session_id": principal.session_id,
        },
    }


@router.post("/password", summary="Change your own password; other sessions end, a new pair is returned")
async def change_password(
    body: PasswordChange, request: Request, principal: SelfDep, db: DbDep, settings: AuthSettingsDep, lang: LangDep
) -> JSONResponse:
    # The current password is a password guess like a login's: same throttle.
    await login_throttle_check(request, principal.username)
    try:
        session = await sessions.change_password(db, settings, principal, body.current_password, body.new_password)
    except DomainError as error:
        if error.code is ErrorCode.INVALID_CREDENTIALS:
            await login_throttle_record(request, principal.username, False)
        raise
    await login_throttle_record(request, principal.username, True)
    return _tokens(session, "password_changed", lang)
