"""User use cases inside one transaction (admin API, CLI, workers): create, change, reset passwords, first admin.

Nothing here hashes a password: the hash (argon2 through the process's hash gate, which may queue for seconds under
a sign-in burst) is made before any connection is taken, and passed in as a `Secret`; cloud_api/auth/user_admin.py
runs the checks that come before the hash, the hash, then the transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class Secret:
    """A password and its argon2 hash, made with no connection checked out (see the module docstring)."""

    plain: str = field(repr=False)
    hashed: str = field(repr=False)


async def hash_secret(plain: str) -> Secret:
    # argon2 takes ~0.17 s of CPU on four threads: off the event loop, through the process's bounded gate.
    return Secret(plain, await hash_gate.gate().run(passwords.hash_password, plain))


def _needs(secret: Secret | None, needed: bool) -> None:
    if needed != (secret is not None):
        raise ValueError("a password is hashed before the transaction (cloud_api/auth/user_admin.py)")


async def check_name_free(conn: AsyncConnection, username: str) -> None:
    taken = await repo.name_taken(conn, username)
    if taken is not None:
        raise DomainError(ErrorCode.DUPLICATE_USER, {"username": taken})


def new_user_password(command: NewUser) -> str:
    """The password a new user who can log in gets: the one given (checked), else a generated one-time password."""
    if command.password is None:
        return passwords.one_time_password()
    problems = password_problems(command.password, command.username)
    if problems:
        raise _invalid(*(p.replace("new_password", "password") for p in problems))
    return command.password


def chosen_password(username: str, password: str | None) -> str:
    """A password set by an admin or the CLI: the one given (checked), else a generated one-time password."""
    if password is None:
        return passwords.one_time_password()
    problems = password_problems(password, username)
    if problems:
        raise _invalid(*problems)
    return password


def check_own_password(username: str, current: str, new: str) -> None:
    problems = password_problems(new, username, current)
    if problems:
        raise _invalid(*problems)


async def get_user(conn: AsyncConnection, username: str) -> UserRecord:
    user = await repo.find_user(conn, username)
    if user is None:
        raise DomainError(ErrorCode.USER_NOT_FOUND, {"username": username})
    return user


async def create_user(conn: AsyncConnection, command: NewUser, actor: str, secret: Secret | None) -> UserResult:
    """`secret`: new_user_password(command), hashed (None for a user who cannot log in)."""
    _needs(secret, command.can_log_in)
    await check_name_free(conn, command.username)
    must_change = False
    if command.can_log_in:
        generated = command.password is None
        must_change = command.must_change_password is not False if generated else bool(command.must_change_password)
    user = await repo.insert_user(
        conn,
        command.username,
        command.display_name or command.username,
        command.role,
        secret.hashed if secret is not None else None,
        must_change,
        command.active,
        utc_now(),
    )
    await record_audit(
        conn, actor=actor, action="user.create", entity="user", entity_key=user.username, new=_trail(user)
    )
    log.info("user %s (%s) created by %s", user.username, user.role.value, actor)
    return UserResult(user, secret.plain if secret is not None and command.password is None else None)


def _trail(user: UserRecord) -> dict[str, Any]:
    """Audit view of a user: never the hash, only whether there is one."""
    data = user.public()
    data.pop("created_at", None)
    data.pop("updated_at", None)
    return data


async def check_keeps_an_admin(conn: AsyncConnection, user: UserRecord, role: Role | None, active: bool | None) -> None:
    losing = (
        user.role is Role.ADMIN and user.active and ((role is not None and role is not Role.ADMIN) or active is False)
    )
    if losing and await repo.other_active_admins(conn, user.id) == 0:
        raise _invalid("role/active: the last active admin cannot be demoted or disabled")


async def change_user(
    conn: AsyncConnection, username: str, change: UserChange, actor: str, secret: Secret | None = None
) -> UserResult:
    """Apply an admin's change; role and active changes and resets are audited each under their own action.

    `secret`: a hashed one-time password when change.reset_password, else None."""
    _needs(secret, change.reset_password)
    user = await repo.find_user(conn, username, lock=True)
    if user is None:
        raise DomainError(ErrorCode.USER_NOT_FOUND, {"username": username})
    await check_keeps_an_admin(conn, user, change.role, change.active)
    now = utc_now()
    fields: dict[str, Any] = {}
    if change.display_name is not None and change.display_name != user.display_name:
        fields["display_name"] = change.display_name
    if change.role is not None and change.role is not user.role:
        fields["role"] = change.role
    if change.active is not None and change.active != user.active:
        fields["active"] = change.active
    if secret is not None:
        fields.update(password_hash=secret.hashed, must_change_password=True, password_changed_at=now)
    if not fields:
        return UserResult(user)
    updated = await repo.update_user(conn, user.id, now, **fields)
    if change.active is False or secret is not None:
        # A disabled account or a reset password: every session of the user ends now.
        await repo.revoke_user_sessions(conn, user.id, "disabled" if change.active is False else "password_reset", now)
    await _audit_change(conn, actor, user, updated, fields, change.reason)
    return UserResult(updated, secret.plain if secret is not None else None)


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
    conn: AsyncConnection,
    username: str,
    secret: Secret,
    actor: str,
    must_change: bool | None = None,
    generated: bool = False,
) -> UserResult:
    """Set a user's password (chosen_password, hashed); ends the user's sessions. CLI and `mes up`.

    `generated`: a one-time password, returned once and to be changed at first login unless must_change says."""
    user = await repo.find_user(conn, username, lock=True)
    if user is None:
        raise DomainError(ErrorCode.USER_NOT_FOUND, {"username": username})
    flag = must_change if must_change is not None else generated
    now = utc_now()
    updated = await repo.update_user(
        conn, user.id, now, password_hash=secret.hashed, must_change_password=flag, password_changed_at=now
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
    return UserResult(updated, secret.plain if generated else None)


async def change_own_password(conn: AsyncConnection, user: UserRecord, secret: Secret, now: datetime) -> UserRecord:
    """The user's own change (current password verified, new one checked and hashed): ends the user's sessions."""
    updated = await repo.update_user(
        conn, user.id, now, password_hash=secret.hashed, must_change_password=False, password_changed_at=now
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
