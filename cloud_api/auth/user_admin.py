"""User use cases that hash a password: the checks that refuse a request, the hash, then one short transaction.

Why: the hash waits its turn at the process's hash gate (one argon2 at a time, up to MES_LOGIN_QUEUE_MAX waiting),
which under a shift's sign-in burst takes tens of seconds. Hashed inside the transaction, an admin's request held a
pooled connection (and its transaction and row locks) all that while, and a few of them starved the pool: 503s for
everyone. Here no connection is checked out while the hash waits. The checks that refused a request before it cost
a hash still do, in the same order and with the same errors (a short read, released before hashing); the
transaction runs them again (another request may have come in between) and writes the same rows and audit trail.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cloud_api.auth import passwords, users
from cloud_api.auth import repository as repo
from cloud_api.auth.repository import UserRecord
from cloud_api.auth.users import NewUser, Secret, UserChange, UserResult
from cloud_api.domain.access import Role
from cloud_api.domain.errors import DomainError
from mes_contracts.errors import ErrorCode

BOOTSTRAP_ADMIN = "admin"


async def create_user(engine: AsyncEngine, command: NewUser, actor: str) -> UserResult:
    secret = None
    if command.can_log_in:
        async with engine.connect() as conn:
            await users.check_name_free(conn, command.username)
        secret = await users.hash_secret(users.new_user_password(command))
    async with engine.begin() as conn:
        return await users.create_user(conn, command, actor, secret)


async def change_user(engine: AsyncEngine, username: str, change: UserChange, actor: str) -> UserResult:
    secret = None
    if change.reset_password:
        async with engine.connect() as conn:
            user = await users.get_user(conn, username)
            await users.check_keeps_an_admin(conn, user, change.role, change.active)
        secret = await users.hash_secret(passwords.one_time_password())
    async with engine.begin() as conn:
        return await users.change_user(conn, username, change, actor, secret)


async def set_password(
    engine: AsyncEngine, username: str, password: str | None, actor: str, must_change: bool | None = None
) -> UserResult:
    """Set (or generate, when None) a user's password; ends the user's sessions. CLI."""
    async with engine.connect() as conn:
        await users.get_user(conn, username)
    secret = await users.hash_secret(users.chosen_password(username, password))
    async with engine.begin() as conn:
        return await users.set_password(conn, username, secret, actor, must_change, generated=password is None)


async def bootstrap_secret(engine: AsyncEngine) -> Secret | None:
    """A hashed one-time password for `admin` when no admin exists (else None: nothing to do, no hash)."""
    async with engine.connect() as conn:
        if await repo.any_admin(conn):
            return None
        if await repo.name_taken(conn, BOOTSTRAP_ADMIN) is not None:
            raise _admin_name_taken()
    return await users.hash_secret(passwords.one_time_password())


def _admin_name_taken() -> DomainError:
    return DomainError(
        ErrorCode.DUPLICATE_USER,
        {"username": BOOTSTRAP_ADMIN},
        "a non-admin user is called admin: create an admin with `mes user add`",
    )


async def bootstrap_admin_in(conn: AsyncConnection, secret: Secret, actor: str = "setup") -> str | None:
    """Create `admin` with the one-time password of bootstrap_secret unless an admin exists; the password, once."""
    await repo.lock_bootstrap(conn)  # two `mes up` at once must not both decide that no admin exists
    if await repo.any_admin(conn):
        return None
    if await repo.name_taken(conn, BOOTSTRAP_ADMIN) is not None:
        raise _admin_name_taken()
    command = NewUser(username=BOOTSTRAP_ADMIN, display_name="관리자", role=Role.ADMIN)
    return (await users.create_user(conn, command, actor, secret)).one_time_password


async def bootstrap_admin(engine: AsyncEngine, actor: str = "setup") -> str | None:
    """Create `admin` with a one-time password when no admin exists; the password is returned once, else None."""
    secret = await bootstrap_secret(engine)
    if secret is None:
        return None
    async with engine.begin() as conn:
        return await bootstrap_admin_in(conn, secret, actor)


async def service_secret(username: str, password: str) -> Secret:
    """A machine account's given password, checked and hashed (for ensure_service_user)."""
    return await users.hash_secret(users.chosen_password(username, password))


async def ensure_service_user(
    conn: AsyncConnection, username: str, role: Role, secret: Secret, actor: str = "setup"
) -> UserRecord:
    """A machine account (the line simulator) with this password and role, created or reset; audited."""
    user = await repo.find_user(conn, username, lock=True)
    if user is None:
        command = NewUser(username=username, role=role, password=secret.plain, must_change_password=False)
        return (await users.create_user(conn, command, actor, secret)).user
    if user.role is not role or not user.active:
        user = (await users.change_user(conn, username, UserChange(role=role, active=True), actor)).user
    return (await users.set_password(conn, username, secret, actor, must_change=False)).user
