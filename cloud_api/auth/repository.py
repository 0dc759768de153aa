"""SQL of users and refresh-token families (the `users` and `refresh_tokens` tables of migration 0003)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.domain.access import Role

USER_COLUMNS = (
    "id, username, display_name, role, password_hash, active, must_change_password, "
    "password_changed_at, created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    display_name: str
    role: Role
    password_hash: str | None
    active: bool
    must_change_password: bool
    password_changed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        """What the API and the audit trail may show: never the hash."""
        return {
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role.value,
            "active": self.active,
            "must_change_password": self.must_change_password,
            "has_password": self.password_hash is not None,
            "password_changed_at": self.password_changed_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _user(row: Sequence[Any]) -> UserRecord:
    """A row of USER_COLUMNS (in UserRecord's field order), its role as a Role."""
    record = UserRecord(*row)
    return replace(record, role=Role(record.role))


async def find_user(conn: AsyncConnection, username: str, lock: bool = False) -> UserRecord | None:
    lock_clause = " FOR UPDATE" if lock else ""
    row = (
        await conn.execute(text(f"SELECT {USER_COLUMNS} FROM users WHERE username = :u{lock_clause}"), {"u": username})
    ).first()
    return _user(row) if row else None


async def name_taken(conn: AsyncConnection, username: str) -> str | None:
    """The existing spelling of `username` in any letter case (W001 and w001 would be one person twice)."""
    return (
        await conn.execute(text("SELECT username FROM users WHERE lower(username) = lower(:u)"), {"u": username})
    ).scalar()


async def list_users(conn: AsyncConnection, role: Role | None = None) -> list[UserRecord]:
    where = "WHERE role = :r " if role is not None else ""
    rows = await conn.execute(
        text(f"SELECT {USER_COLUMNS} FROM users {where}ORDER BY username"), {"r": role.value if role else None}
    )
    return [_user(row) for row in rows]


async def insert_user(
    conn: AsyncConnection,
    username: str,
    display_name: str,
    role: Role,
    password_hash: str | None,
    must_change: bool,
    active: bool,
    now: datetime,
) -> UserRecord:
    row = await conn.execute(
        text(
            "INSERT INTO users (username, display_name, role, password_hash, active, must_change_password, "
            "password_changed_at, created_at, updated_at) VALUES (:u, :n, :r, :h, :a, :m, :pc, :now, :now) "
            f"RETURNING {USER_COLUMNS}"
        ),
        {
            "u": username,
            "n": display_name,
            "r": role.value,
            "h": password_hash,
            "a": active,
            "m": must_change,
            "pc": now if password_hash else None,
            "now": now,
        },
    )
    return _user(row.one())


async def update_user(conn: AsyncConnection, user_id: int, now: datetime, **fields: Any) -> UserRecord:
    """Set the given columns (names from this module only, never from a request) and updated_at."""
    allowed = {"display_name", "role", "active", "password_hash", "must_change_password", "password_changed_at"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    values = {k: (v.value if isinstance(v, Role) else v) for k, v in fields.items()}
    assignments = ", ".join(f"{name} = :{name}" for name in values)
    row = await conn.execute(
        text(f"UPDATE users SET {assignments}, updated_at = :now WHERE id = :id RETURNING {USER_COLUMNS}"),
        {**values, "now": now, "id": user_id},
    )
    return _user(row.one())


async def other_active_admins(conn: AsyncConnection, user_id: int) -> int:
    return int(
        (
            await conn.execute(
                text(
                    "SELECT count(*) FROM users "
                    "WHERE role = 'admin' AND active AND password_hash IS NOT NULL AND id <> :id"
                ),
                {"id": user_id},
            )
        ).scalar_one()
    )


async def any_admin(conn: AsyncConnection) -> bool:
    return bool((await conn.execute(text("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')"))).scalar())


async def lock_bootstrap(conn: AsyncConnection) -> None:
    # Two `mes up` or bootstrap runs at once must not both decide that no admin exists.
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('mes-bootstrap-admin'))"))


# -- refresh tokens -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    id: int
    family_id: uuid.UUID
    user_id: int
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    replaced_by: int | None
    username: str
    display_name: str
    role: Role
    active: bool
    must_change_password: bool
    successor_hash: str | None
    successor_usable: bool


async def insert_refresh(
    conn: AsyncConnection,
    token_hash: str,
    family_id: uuid.UUID,
    parent_id: int | None,
    user_id: int,
    now: datetime,
    expires_at: datetime,
) -> int:
    return int(
        (
            await conn.execute(
                text(
                    "INSERT INTO refresh_tokens (token_hash, family_id, parent_id, user_id, issued_at, expires_at) "
                    "VALUES (:h, :f, :p, :u, :now, :exp) RETURNING id"
                ),
                {"h": token_hash, "f": family_id, "p": parent_id, "u": user_id, "now": now, "exp": expires_at},
            )
        ).scalar_one()
    )


async def lock_refresh(conn: AsyncConnection, token_hash: str) -> RefreshRecord | None:
    """The token (locked: two refreshes of one token take turns), its user and its successor, if any."""
    row = (
        await conn.execute(
            text(
                "SELECT t.id, t.family_id, t.user_id, t.expires_at, t.used_at, t.revoked_at, t.replaced_by, "
                "u.username, u.display_name, u.role, u.active, u.must_change_password, "
                "s.token_hash AS successor_hash, "
                "COALESCE(s.used_at IS NULL AND s.revoked_at IS NULL, false) AS successor_usable "
                "FROM refresh_tokens t JOIN users u ON u.id = t.user_id "
                "LEFT JOIN refresh_tokens s ON s.id = t.replaced_by "
                "WHERE t.token_hash = :h FOR UPDATE OF t"
            ),
            {"h": token_hash},
        )
    ).first()
    if row is None:
        return None
    record = RefreshRecord(*row)
    successor = record.successor_hash.strip() if record.successor_hash else None
    return replace(record, role=Role(record.role), successor_hash=successor)


async def prune_expired(conn: AsyncConnection, user_id: int, before: datetime) -> int:
    """Forget the user's refresh tokens that expired before `before` (a refresh adds a row every 15 minutes)."""
    result = await conn.execute(
        text("DELETE FROM refresh_tokens WHERE user_id = :u AND expires_at < :before"), {"u": user_id, "before": before}
    )
    return int(result.rowcount or 0)


async def mark_used(conn: AsyncConnection, token_id: int, successor_id: int, now: datetime) -> None:
    await conn.execute(
        text("UPDATE refresh_tokens SET used_at = :now, replaced_by = :s WHERE id = :id"),
        {"now": now, "s": successor_id, "id": token_id},
    )


async def revoke_family(conn: AsyncConnection, family_id: uuid.UUID, reason: str, now: datetime) -> int:
    result = await conn.execute(
        text(
            "UPDATE refresh_tokens SET revoked_at = :now, revoked_reason = :r "
            "WHERE family_id = :f AND revoked_at IS NULL"
        ),
        {"now": now, "r": reason, "f": family_id},
    )
    return int(result.rowcount or 0)


async def revoke_user_sessions(conn: AsyncConnection, user_id: int, reason: str, now: datetime) -> int:
    """Revoke every family of the user that still has a live token; returns how many families."""
    result = await conn.execute(
        text(
            "WITH live AS (SELECT DISTINCT family_id FROM refresh_tokens WHERE user_id = :u AND revoked_at IS NULL) "
            "UPDATE refresh_tokens t SET revoked_at = :now, revoked_reason = :r FROM live "
            "WHERE t.family_id = live.family_id AND t.revoked_at IS NULL RETURNING t.family_id"
        ),
        {"u": user_id, "now": now, "r": reason},
    )
    return len({row[0] for row in result})


@dataclass(frozen=True, slots=True)
class PrincipalState:
    """An access token's holder as the database sees it now, and whether the token's session is known and live."""

    role: Role
    active: bool
    must_change_password: bool
    revoked: bool
    known: bool


async def principal_state(conn: AsyncConnection, username: str, family_id: uuid.UUID) -> PrincipalState | None:
    """What an access token's holder is now: role, active, must-change flag, and whether its session was revoked."""
    row = (
        await conn.execute(
            text(
                "SELECT u.role, u.active, u.must_change_password, "
                "EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = :f AND t.user_id = u.id "
                "AND t.revoked_at IS NOT NULL) AS revoked, "
                "EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = :f AND t.user_id = u.id) AS known "
                "FROM users u WHERE u.username = :u"
            ),
            {"u": username, "f": family_id},
        )
    ).first()
    if row is None:
        return None
    role, active, must_change, revoked, known = row
    return PrincipalState(Role(role), active, must_change, revoked, known)
