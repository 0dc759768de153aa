"""User use cases (admin API, CLI, workers): create, change, reset passwords, bootstrap the first admin."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters.database import utc_now
from cloud_api.audit.trail import record_audit
from cloud_api.auth import hash_gate, passwords
from cloud_api.auth import repository as repo
from cloud_api.auth.repository import UserRecord
from cloud_api.domain.access import PASSWORD_MAX_LENGTH, USERNAME_PATTERN, Role, password_problems
from cloud_api.domain.errors import DomainError
from mes_contracts.errors import ErrorCode

log = logging.getLogger(__name__)

BOOTSTRAP_ADMIN = "admin"


class NewUser(BaseModel):
    username: str = Field(pattern=USERNAME_PATTERN)
    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    role: Role
    active: bool = True
    can_log_in: bool = Field(default=True, description="false: no password at all (a badge-only operator)")
    password: str | None = Field(
        default=None,
        max_length=PASSWORD_MAX_LENGTH,
        description="omitted: a one-time password is generated and returned once",
    )
    must_change_password: bool | None = Field(default=None, description="default: true for a generated password")


class UserChange(BaseModel):
    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    role: Role | None = None
    active: bool | None = None
    reset_password: bool = Field(default=False, description="issue a one-time password (returned once)")
    reason: str | None = Field(default=None, max_length=500)


@dataclass(frozen=True, slots=True)
class UserResult:
    user: UserRecord
    one_time_password: str | None = None

    def public(self) -> dict[str, Any]:
        data = self.user.public()
        if self.one_time_password is not None:
            data["one_time_password"] = self.one_time_password
        return data


def _invalid(*errors: str) -> DomainError:
    return DomainError(ErrorCode.INVALID_REQUEST, {"errors": list(errors)})


async def _hash(password: str) -> str:
    # argon2 takes ~0.17 s of CPU on four threads: off the event loop, through the process's bounded gate.
    return await hash_gate.gate().run(passwords.hash_password, password)


async def get_user(conn: AsyncConnection, username: str) -> UserRecord:
    user = await repo.find_user(conn, username)
    if user is None:
        raise DomainError(ErrorCode.USER_NOT_FOUND, {"username": username})
    return user


async def create_user(conn: AsyncConnection, command: NewUser, actor: str) -> UserResult:
    taken = await repo.name_taken(conn, command.username)
    if taken is not None:
        raise DomainError(ErrorCode.DUPLICATE_USER, {"username": taken})
    secret, must_change = None, False
    if command.can_log_in:
        if command.password is not None:
            problems = password_problems(command.password, command.username)
            if problems:
                raise _invalid(*(p.replace("new_password", "password") for p in problems))
            secret = command.password
            must_change = bool(command.must_change_password)
        else:
            secret = passwords.one_time_password()
            must_change = command.must_change_password is not False
    password_hash = await _hash(secret) if secret is not None else None
    user = await repo.insert_user(
        conn,
        command.username,
        command.display_name or command.username,
        command.role,
        password_hash,
        must_change,
        command.active,
        utc_now(),
    )
    await record_audit(
        conn, actor=actor, action="user.create", entity="user", entity_key=user.username, new=_trail(user)
    )
    log.info("user %s (%s) created by %s", user.username, user.role.value, actor)
    generated = secret if secret is not None and command.password is None else None
    return UserResult(user, generated)


def _trail(user: UserRecord) -> dict[str, Any]:
    """Audit view of a user: never the hash, only whether there is one."""
    data = user.public()
    data.pop("created_at", None)
    data.pop("updated_at", None)
    return data


async def _keep_an_admin(conn: AsyncConnection, user: UserRecord, role: Role | None, active: bool | None) -> None:
    losing = (
        user.role is Role.ADMIN and user.active and ((role is not None and role is not Role.ADMIN) or active is False)
    )
    if losing and await repo.other_active_admins(conn, user.id) == 0:
        raise _invalid("role/active: the last active admin cannot be demoted or disabled")


async def change_user(conn: AsyncConnection, username: str, change: UserChange, actor: str) -> UserResult:
    """Apply an admin's change; role and active changes and resets are audited each under their own action."""
    user = await repo.find_user(conn, username, lock=True)
    if user is None:
        raise DomainError(ErrorCode.USER_NOT_FOUND, {"username": username})
    await _keep_an_admin(conn, user, change.role, change.active)
    now = utc_now()
    fields: dict[str, Any] = {}
    if change.display_name is not None and change.display_name != user.display_name:
        fields["display_name"] = change.display_name
    if change.role is not None and change.role is not user.role:
        fields["role"] = change.role
    if change.active is not None and change.active != user.active:
        fields["active"] = change.active
    secret = passwords.one_time_password() if change.reset_password else None
    if secret is not None:
        fields.update(password_hash=await _hash(secret), must_change_password=True, password_changed_at=now)
    if not fields:
        return UserResult(user)
    updated = await repo.update_user(conn, user.id, now, **fields)
    if change.active is False or secret is not None:
        # A disabled account or a reset password: every session of the user ends now.
        await repo.revoke_user_sessions(conn, user.id, "disabled" if change.active is False else "password_reset", now)
    await _audit_change(conn, actor, user, updated, fields, change.reason)
    return UserResult(updated, secret)


async def _audit_change(
    conn: AsyncConnection, actor: str, before: UserRecord, after: UserRecord, fields: dict[str, Any], reason: str | None
) -> None:
    key = before.username
    if "role" in fields:
        await record_audit(
            conn,
            actor=actor,
            action="user.role_change",
            entity="user",
            entity_key=key,
            old={"role": before.role.value},
            new={"role": after.role.value},
            reason=reason,
        )
    if "active" in fields:
        action = "user.enable" if after.active else "user.disable"
        await record_audit(
            conn,
            actor=actor,
            action=action,
            entity="user",
            entity_key=key,
            old={"active": before.active},
            new={"active": after.active},
            reason=reason,
        )
    if "display_name" in fields:
        await record_audit(
            conn,
            actor=actor,
            action="user.update",
            entity="user",
            entity_key=key,
            old={"display_name": before.display_name},
            new={"display_name": after.display_name},
            reason=reason,
        )
    if "password_hash" in fields:
        await record_audit(
            conn,
            actor=actor,
            action="user.password_reset",
            entity="user",
            entity_key=key,
            old={"must_change_password": before.must_change_password},
            new={"must_change_password": True},
            reason=reason,
        )


async def set_password(
    conn: AsyncConnection, username: str, password: str | None, actor: str, must_change: bool | None = None
) -> UserResult:
    """Set (or generate, when None) a user's password; ends the user's sessions. CLI and `mes up`."""
    user = await repo.find_user(conn, username, lock=True)
    if user is None:
        raise DomainError(ErrorCode.USER_NOT_FOUND, {"username": username})
    if password is not None:
        problems = password_problems(password, username)
        if problems:
            raise _invalid(*problems)
    secret = password if password is not None else passwords.one_time_password()
    flag = must_change if must_change is not None else password is None
    now = utc_now()
    updated = await repo.update_user(
        conn, user.id, now, password_hash=await _hash(secret), must_change_password=flag, password_changed_at=now
    )
    await repo.revoke_user_sessions(conn, user.id, "password_set", now)
    await record_audit(
        conn,
        actor=actor,
        action="user.password_set",
        entity="user",
        entity_key=username,
        old={"had_password": user.password_hash is not None},
        new={"must_change_password": flag},
    )
    return UserResult(updated, secret if password is None else None)


async def change_own_password(
    conn: AsyncConnection, user: UserRecord, current: str, new: str, now: datetime
) -> UserRecord:
    """The user's own change (current password already verified): clears must_change_password, ends sessions."""
    problems = password_problems(new, user.username, current)
    if problems:
        raise _invalid(*problems)
    updated = await repo.update_user(
        conn, user.id, now, password_hash=await _hash(new), must_change_password=False, password_changed_at=now
    )
    await repo.revoke_user_sessions(conn, user.id, "password_change", now)
    await record_audit(
        conn,
        actor=user.username,
        action="user.password_change",
        entity="user",
        entity_key=user.username,
        old={"must_change_password": user.must_change_password},
        new={"must_change_password": False},
    )
    return updated


async def list_users(conn: AsyncConnection, role: Role | None = None) -> list[UserRecord]:
    return await repo.list_users(conn, role)


async def bootstrap_admin(conn: AsyncConnection, actor: str = "setup") -> str | None:
    """Create `admin` with a one-time password when no admin exists; the password is returned once, else None."""
    await repo.lock_bootstrap(conn)
    if await repo.any_admin(conn):
        return None
    if await repo.name_taken(conn, BOOTSTRAP_ADMIN) is not None:
        raise DomainError(
            ErrorCode.DUPLICATE_USER,
            {"username": BOOTSTRAP_ADMIN},
            "a non-admin user is called admin: create an admin with `mes user add`",
        )
    created = await create_user(conn, NewUser(username=BOOTSTRAP_ADMIN, display_name="관리자", role=Role.ADMIN), actor)
    return created.one_time_password


async def ensure_service_user(
    conn: AsyncConnection, username: str, role: Role, password: str, actor: str = "setup"
) -> UserRecord:
    """A machine account (the line simulator) with this password and role, created or reset; audited."""
    user = await repo.find_user(conn, username, lock=True)
    if user is None:
        created = await create_user(
            conn, NewUser(username=username, role=role, password=password, must_change_password=False), actor
        )
        return created.user
    if user.role is not role or not user.active:
        user = (await change_user(conn, username, UserChange(role=role, active=True), actor)).user
    return (await set_password(conn, username, password, actor, must_change=False)).user
