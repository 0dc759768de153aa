"""Sessions: login, refresh-token rotation with reuse detection, logout, and who an access token speaks for."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters.database import Database
from cloud_api.audit.trail import record_audit
from cloud_api.auth import hash_gate, passwords, tokens
from cloud_api.auth import repository as repo
from cloud_api.auth.repository import UserRecord
from cloud_api.auth.settings import AuthSettings
from cloud_api.auth.users import change_own_password, check_own_password, hash_secret
from cloud_api.domain.access import Principal, Role, valid_username
from cloud_api.domain.errors import DomainError
from mes_contracts.errors import ErrorCode

log = logging.getLogger(__name__)

PRUNE_AFTER_DAYS = 30


@dataclass(frozen=True, slots=True)
class Session:
    """A token pair as the login and refresh answers carry it."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    username: str
    role: Role
    display_name: str | None = None
    must_change_password: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
            "user": {
                "username": self.username,
                "role": self.role.value,
                "display_name": self.display_name,
                "must_change_password": self.must_change_password,
            },
        }


def _unauthorized(reason: str) -> DomainError:
    return DomainError(ErrorCode.UNAUTHORIZED, None, reason)


async def _new_family(conn: AsyncConnection, settings: AuthSettings, user: UserRecord, now: datetime) -> Session:
    # Housekeeping at each login: rows that expired a month ago no longer tell anything (reuse, sessions).
    await repo.prune_expired(conn, user.id, now - timedelta(days=PRUNE_AFTER_DAYS))
    family = uuid.uuid4()
    refresh = tokens.new_refresh_token()
    await repo.insert_refresh(
        conn,
        tokens.hash_refresh_token(refresh),
        family,
        None,
        user.id,
        now,
        now + timedelta(seconds=settings.refresh_token_ttl_s),
    )
    access = tokens.issue_access(settings, user.username, user.role, str(family), now.timestamp())
    return Session(
        access.token,
        access.expires_in,
        refresh,
        settings.refresh_token_ttl_s,
        user.username,
        user.role,
        user.display_name,
        user.must_change_password,
    )


async def check_password(db: Database, username: str, password: str) -> tuple[UserRecord | None, str]:
    """The user when `password` is right and the account may log in, with the reason for the audit trail.

    Unknown users, users without a password and disabled users cost the same hashing time as a wrong password.
    The hash runs with no connection checked out (a burst of sign-ins must not hold the pool) and through the
    process's hash gate (hash_gate: a few at a time, the rest queue; 503 only past MES_LOGIN_QUEUE_MAX).
    """
    user = None
    if valid_username(username):
        async with db.engine.connect() as conn:
            user = await repo.find_user(conn, username)
    stored = user.password_hash if user else None
    verified = await hash_gate.gate().run(passwords.verify_password, password, stored)
    if user is None:
        return None, "unknown_user"
    if user.password_hash is None:
        return None, "no_password"
    if not verified.ok:
        return None, "wrong_password"
    if not user.active:
        return None, "disabled"
    if verified.new_hash is not None:
        async with db.transaction() as conn:
            await repo.update_user(conn, user.id, db.now(), password_hash=verified.new_hash)
        log.info("password hash of %s upgraded to argon2id", user.username)
    return user, "ok"


async def login(db: Database, settings: AuthSettings, username: str, password: str, client_ip: str | None) -> Session:
    """A new session for right credentials; INVALID_CREDENTIALS (one answer for every cause) otherwise.

    Both outcomes are audited; a failure in its own transaction, so it stays recorded although the call fails.
    """
    user, reason = await check_password(db, username, password)
    async with db.transaction() as conn:
        if user is None:
            await record_audit(
                conn,
                actor=username[:100] or "anonymous",
                action="auth.login_failed",
                entity="user",
                entity_key=username[:200] or None,
                new={"reason": reason, "client_ip": client_ip},
            )
            session = None
        else:
            session = await _new_family(conn, settings, user, db.now())
            await record_audit(
                conn,
                actor=user.username,
                action="auth.login",
                entity="user",
                entity_key=user.username,
                new={"client_ip": client_ip, "role": user.role.value},
            )
    if session is None:
        log.info("login refused for %r from %s: %s", username[:50], client_ip, reason)
        raise DomainError(ErrorCode.INVALID_CREDENTIALS)
    return session


async def refresh(db: Database, settings: AuthSettings, refresh_token: str, client_ip: str | None) -> Session:
    """Rotate a refresh token. A token used again after the grace window revokes its whole family (audited)."""
    if not tokens.looks_like_refresh_token(refresh_token):
        raise _unauthorized("not a refresh token")
    presented = tokens.hash_refresh_token(refresh_token)
    reused = False
    async with db.transaction() as conn:
        record = await repo.lock_refresh(conn, presented)
        now = db.now()
        if record is None or record.revoked_at is not None or record.expires_at <= now or not record.active:
            raise _unauthorized("unknown, revoked or expired refresh token, or disabled user")
        if record.used_at is None:
            return await _rotate(conn, settings, record, refresh_token, now)
        if _in_grace(settings, record, now):
            again = _same_successor(settings, record, refresh_token)
            if again is not None:
                log.info(
                    "refresh token of %s used twice within %.0f s: same successor",
                    record.username,
                    settings.refresh_grace_s,
                )
                return _session_for(settings, record, again, now)
        reused = True
        revoked = await repo.revoke_family(conn, record.family_id, "reuse", now)
        await record_audit(
            conn,
            actor=record.username,
            action="auth.refresh_reuse",
            entity="user",
            entity_key=record.username,
            new={
                "family_id": record.family_id,
                "token_id": record.id,
                "used_at": record.used_at,
                "revoked_tokens": revoked,
                "client_ip": client_ip,
            },
        )
    if reused:  # raised after the commit: the family stays revoked and the reuse stays recorded
        log.warning("refresh token reuse for %s from %s: session family revoked", record.username, client_ip)
        raise _unauthorized("refresh token reused")
    raise AssertionError("unreachable")


def _in_grace(settings: AuthSettings, record: repo.RefreshRecord, now: datetime) -> bool:
    return (
        record.used_at is not None
        and record.successor_usable
        and (now - record.used_at).total_seconds() <= settings.refresh_grace_s
    )


def _same_successor(settings: AuthSettings, record: repo.RefreshRecord, token: str) -> str | None:
    for candidate in tokens.successor_candidates(settings, token):
        if tokens.hash_refresh_token(candidate) == record.successor_hash:
            return candidate
    return None  # the key changed in between (rotation): treated as a reuse


async def _rotate(
    conn: AsyncConnection, settings: AuthSettings, record: repo.RefreshRecord, token: str, now: datetime
) -> Session:
    successor = tokens.successor_candidates(settings, token)[0]
    successor_id = await repo.insert_refresh(
        conn,
        tokens.hash_refresh_token(successor),
        record.family_id,
        record.id,
        record.user_id,
        now,
        now + timedelta(seconds=settings.refresh_token_ttl_s),
    )
    await repo.mark_used(conn, record.id, successor_id, now)
    return _session_for(settings, record, successor, now)


def _session_for(settings: AuthSettings, record: repo.RefreshRecord, refresh_token: str, now: datetime) -> Session:
    access = tokens.issue_access(settings, record.username, record.role, str(record.family_id), now.timestamp())
    return Session(
        access.token,
        access.expires_in,
        refresh_token,
        settings.refresh_token_ttl_s,
        record.username,
        record.role,
        record.display_name,
        record.must_change_password,
    )


async def logout(db: Database, principal: Principal, all_sessions: bool = False) -> int:
    """Revoke the caller's session (or every session of the caller); its access tokens stop working at once."""
    async with db.transaction() as conn:
        user = await repo.find_user(conn, principal.username)
        now = db.now()
        if user is None:
            raise _unauthorized("user vanished")
        if all_sessions:
            count = await repo.revoke_user_sessions(conn, user.id, "logout", now)
        else:
            count = await repo.revoke_family(conn, uuid.UUID(str(principal.session_id)), "logout", now)
        await record_audit(
            conn,
            actor=principal.username,
            action="auth.logout",
            entity="user",
            entity_key=principal.username,
            new={"session_id": principal.session_id, "all_sessions": all_sessions},
        )
    return count


async def principal_for(db: Database, claims: tokens.AccessClaims) -> Principal:
    """The caller behind valid access-token claims, as the database sees them now (role, active, session)."""
    async with db.engine.connect() as conn:
        state = await repo.principal_state(conn, claims.username, uuid.UUID(claims.session_id))
    if state is None or not state.active:
        raise _unauthorized("unknown or disabled user")
    if state.revoked or not state.known:
        raise _unauthorized("session ended")
    return Principal(claims.username, state.role, None, claims.session_id, state.must_change_password)


async def change_password(
    db: Database, settings: AuthSettings, principal: Principal, current: str, new: str
) -> Session:
    """The caller's own password change; the old sessions end and a fresh one is returned."""
    user, reason = await check_password(db, principal.username, current)
    if user is None:
        log.info("password change of %s refused: %s", principal.username, reason)
        raise DomainError(ErrorCode.INVALID_CREDENTIALS)
    check_own_password(user.username, current, new)
    secret = await hash_secret(new)  # no connection checked out while the hash waits at the gate
    async with db.transaction() as conn:
        locked = await repo.find_user(conn, user.username, lock=True)
        assert locked is not None
        updated = await change_own_password(conn, locked, secret, db.now())
        return await _new_family(conn, settings, updated, db.now())
