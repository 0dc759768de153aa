"""`mes user …`: create users, list them, set passwords, disable, and create the first admin at set-up."""

from __future__ import annotations

import asyncio
import getpass
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from cloud_api.domain.access import Role

if TYPE_CHECKING:  # SQLAlchemy is imported only by the commands that use it: `mes gateway` stays small
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

user_app = typer.Typer(help="Users and roles (admin, manager, operator, viewer).", no_args_is_help=True)
T = TypeVar("T")

PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin")]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:50]
    except (KeyError, OSError):
        return "cli"


def _in_transaction(work: Callable[[AsyncConnection], Awaitable[T]], database_url: str | None = None) -> T:
    """Run `work` in one transaction (default MES_DATABASE_URL); a refused change prints its reason and exits 1."""

    async def in_transaction(engine: AsyncEngine) -> T:
        async with engine.begin() as conn:
            return await work(conn)

    return _with_engine(in_transaction, database_url)


def _with_engine(work: Callable[[AsyncEngine], Awaitable[T]], database_url: str | None = None) -> T:
    """Run `work` with an engine of one connection: the use cases that hash take it only around the hash."""
    from cloud_api.adapters.database import make_engine
    from cloud_api.domain.errors import DomainError
    from cloud_api.settings import CentralSettings

    async def run() -> T:
        engine = make_engine(database_url or CentralSettings().database_url, 1)  # type: ignore[call-arg]
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except DomainError as error:
        typer.echo(f"refused: {error.code.value} {error.data or ''} {error.detail or ''}".rstrip(), err=True)
        raise typer.Exit(1) from None


def _read_password() -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        typer.echo("no password on stdin", err=True)
        raise typer.Exit(2)
    return line


@user_app.command("add")
def add(
    username: str,
    role: Annotated[Role, typer.Option(help="admin, manager, operator or viewer")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the user name)")] = None,
    password_stdin: PasswordStdin = False,
    no_login: Annotated[bool, typer.Option("--no-login", help="No password at all (a badge-only operator)")] = False,
) -> None:
    """Create a user. Without --password-stdin a one-time password is printed (changed at first login)."""
    from cloud_api.auth.user_admin import create_user
    from cloud_api.auth.users import NewUser

    password = _read_password() if password_stdin else None
    try:
        command = NewUser(username=username, display_name=name, role=role, password=password, can_log_in=not no_login)
    except ValueError as error:
        typer.echo(f"invalid: {error}", err=True)
        raise typer.Exit(2) from None
    result = _with_engine(lambda engine: create_user(engine, command, _actor()))
    typer.echo(f"user {result.user.username} ({result.user.role.value}) created")
    if result.one_time_password:
        typer.echo(f"one-time password (shown once, must be changed at first login): {result.one_time_password}")


@user_app.command("list")
def list_command(role: Annotated[Role | None, typer.Option(help="Only this role")] = None) -> None:
    """List users (never their passwords)."""
    from cloud_api.auth.users import list_users

    found = _in_transaction(lambda conn: list_users(conn, role))
    for user in found:
        flags = [
            flag
            for flag, on in (
                ("disabled", not user.active),
                ("no-password", user.password_hash is None),
                ("must-change-password", user.must_change_password),
            )
            if on
        ]
        typer.echo(f"{user.username:<24} {user.role.value:<9} {user.display_name:<20} {' '.join(flags)}".rstrip())


@user_app.command("set-password")
def set_password(username: str, password_stdin: PasswordStdin = False) -> None:
    """Set a password from stdin, or print a one-time password; ends the user's sessions."""
    from cloud_api.auth.user_admin import set_password as set_user_password

    password = _read_password() if password_stdin else None
    result = _with_engine(lambda engine: set_user_password(engine, username, password, _actor()))
    typer.echo(f"password of {username} set; its sessions ended")
    if result.one_time_password:
        typer.echo(f"one-time password (shown once, must be changed at first login): {result.one_time_password}")


def _set_active(username: str, active: bool) -> None:
    from cloud_api.auth.users import UserChange, change_user

    _in_transaction(lambda conn: change_user(conn, username, UserChange(active=active), _actor()))
    typer.echo(f"{username} {'enabled' if active else 'disabled; its sessions ended'}")


@user_app.command("disable")
def disable(username: str) -> None:
    """Disable a user: no login, no API call, not a valid worker id any more."""
    _set_active(username, False)


@user_app.command("enable")
def enable(username: str) -> None:
    """Enable a disabled user again."""
    _set_active(username, True)


@user_app.command("bootstrap-admin")
def bootstrap_admin() -> None:
    """Create `admin` with a one-time password when no admin exists yet (prints it once); else do nothing."""
    from cloud_api.auth.user_admin import bootstrap_admin as bootstrap

    password = _with_engine(lambda engine: bootstrap(engine, _actor()))
    if password is None:
        typer.echo("an admin exists already: nothing done")
        return
    typer.echo(f"admin created; one-time password (shown once, change it at first login): {password}")


# -- `mes up`: the local stack's secret and accounts ------------------------------------------------------------

SIMULATOR_USER = "line-simulator"
JWT_SECRET_FILE = "jwt_secret"


@dataclass(frozen=True, slots=True)
class LocalAccounts:
    jwt_secret: str = field(repr=False)
    admin_password: str | None = field(repr=False)  # only on the run that created the admin
    simulator_password: str = field(repr=False)
    simulator_username: str = SIMULATOR_USER

    def simulator_env(self) -> dict[str, str]:
        return {"MES_SIM_USERNAME": self.simulator_username, "MES_SIM_PASSWORD": self.simulator_password}

    def banner(self) -> str:
        if self.admin_password is not None:
            return (
                f"admin       user admin, one-time password {self.admin_password}  "
                "(shown this once; change it at the first login: console, or POST /api/v1/auth/password "
                'as in README.md "First run")'
            )
        return "admin       user admin (password set before; forgotten: mes user set-password admin)"


def _jwt_secret(state_dir: Path) -> str:
    """The stack's signing key, made once and kept beside the data (0600), so a restart keeps sessions."""
    path = state_dir / JWT_SECRET_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as sink:
            sink.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def local_accounts(database_url: str, state_dir: Path) -> LocalAccounts:
    """The JWT secret, the first admin (once) and the simulator's manager account with a fresh password."""
    from cloud_api.auth import user_admin

    simulator_password = secrets.token_urlsafe(24)

    async def work(engine: AsyncEngine) -> str | None:
        # Both hashes first, with no connection held; then one transaction for both accounts.
        admin_secret = await user_admin.bootstrap_secret(engine)
        simulator_secret = await user_admin.service_secret(SIMULATOR_USER, simulator_password)
        async with engine.begin() as conn:
            password = await user_admin.bootstrap_admin_in(conn, admin_secret, "mes-up") if admin_secret else None
            await user_admin.ensure_service_user(conn, SIMULATOR_USER, Role.MANAGER, simulator_secret, "mes-up")
        return password

    admin_password = _with_engine(work, database_url)
    return LocalAccounts(_jwt_secret(state_dir), admin_password, simulator_password)
