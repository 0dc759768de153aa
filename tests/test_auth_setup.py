"""Set-up side of the users (security issue, part 1): the workers migration, the first admin, the simulator login."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from psycopg import sql

from cloud_api.auth import passwords
from db.migrate import upgrade
from deploy.localstack.children import mes_command
from deploy.localstack.postgres import PostgresServer
from line_simulator.client import LineClient
from tests.support.auth import RoleAuth, bearer, login

ONE_TIME = re.compile(r"one-time password[^:]*: (\S+)")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mes_command(*args), env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


@pytest.fixture
def fresh_db(postgres: PostgresServer) -> Iterator[tuple[str, str]]:
    """A new database on the session server: (owner SQLAlchemy URL, application SQLAlchemy URL)."""
    if getattr(postgres, "owner", None) is None:
        pytest.skip("needs the local two-role PostgreSQL (the Docker path has one role)")
    db_name = f"users_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.owner_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
    base_owner, base_app = postgres.owner_url.rsplit("/", 1)[0], postgres.url.rsplit("/", 1)[0]
    yield f"{base_owner}/{db_name}", f"{base_app}/{db_name}"
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db_name)))


def test_migration_turns_workers_into_operator_users_and_bootstrap_prints_the_admin_password_once(
    fresh_db: tuple[str, str], postgres: PostgresServer
) -> None:
    owner_url, app_url = fresh_db
    upgrade(owner_url, "0002")
    plain = owner_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO workers (worker_id, name, active) VALUES ('W001', '홍길동', true), ('W002', '퇴사자', false)"
        )
    upgrade(owner_url, "head", app_role=postgres.user)
    app_dsn = app_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(app_dsn, autocommit=True) as conn:
        users = conn.execute(
            "SELECT username, display_name, role, active, password_hash FROM users ORDER BY username"
        ).fetchall()
        assert users == [("W001", "홍길동", "operator", True, None), ("W002", "퇴사자", "operator", False, None)]
        assert conn.execute("SELECT worker_id, name, active FROM workers ORDER BY worker_id").fetchall() == [
            ("W001", "홍길동", True),
            ("W002", "퇴사자", False),
        ]
        conn.execute("INSERT INTO workers (worker_id, name) VALUES ('W003', '신입')")  # old writers keep working
        assert conn.execute("SELECT role FROM users WHERE username = 'W003'").fetchone() == ("operator",)

    env = {"MES_DATABASE_URL": app_url}
    first = cli(env, "user", "bootstrap-admin")
    assert first.returncode == 0, first.stderr
    match = ONE_TIME.search(first.stdout)
    assert match, first.stdout
    with psycopg.connect(app_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT role, must_change_password, password_hash FROM users WHERE username = 'admin'"
        ).fetchone()
        assert row is not None and row[:2] == ("admin", True)
        assert passwords.verify_password(match.group(1), row[2]).ok
        assert not passwords.verify_password("admin", row[2]).ok
    again = cli(env, "user", "bootstrap-admin")
    assert again.returncode == 0 and "exists already" in again.stdout and not ONE_TIME.search(again.stdout)


async def test_line_simulator_client_logs_in_refreshes_and_logs_in_again(
    api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    username, password = f"sim-{secrets.token_hex(4)}", "simulator-password-1"
    created = httpx.post(
        f"{api_url}/api/v1/users",
        auth=auth.admin,
        timeout=15,
        json={"username": username, "role": "manager", "password": password},
    )
    assert created.status_code == 201
    async with LineClient(api_url, credentials=(username, password)) as client:
        lot = await client.create_lot("WF-WAIST-01", 100, "D")
        assert lot.ok, lot.body
        number = str(lot.data["lot_number"])
        assert client._login is not None
        client._login._renew_at = 0.0  # as if the 15 minutes were nearly over: it refreshes first
        assert (await client.get_lot(number)).ok
        used = db.execute(
            "SELECT count(*) FROM refresh_tokens t JOIN users u ON u.id = t.user_id "
            "WHERE u.username = %s AND t.used_at IS NOT NULL",
            (username,),
        ).fetchone()
        assert used == (1,)
        # Every session of the user ends (an admin's reset, a restart with a new key): it logs in again.
        other = login(api_url, username, password)["access_token"]
        ended = httpx.post(
            f"{api_url}/api/v1/auth/logout", headers=bearer(other), json={"all_sessions": True}, timeout=15
        )
        assert ended.status_code == 200
        assert (await client.get_lot(number)).ok
    async with LineClient(api_url, credentials=(username, "wrong-password-1")) as client:
        refused = await client.create_lot("WF-WAIST-01", 100, "D")
        assert refused.http_status == 401 and refused.error_code == "INVALID_CREDENTIALS"
