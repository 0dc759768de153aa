"""Users and passwords (security issue, part 1): CLI, admin API, must-change-password, bcrypt imports, workers."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from typing import Any

import bcrypt
import httpx
import psycopg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.auth import passwords
from cloud_api.auth.users import UserChange, change_user
from cloud_api.domain.access import Role
from cloud_api.domain.errors import DomainError
from deploy.localstack.children import mes_command
from deploy.localstack.postgres import PostgresServer
from mes_contracts.errors import ErrorCode
from tests.support.auth import RoleAuth, bearer, login
from tests.support.line import start_body

ONE_TIME = re.compile(r"one-time password[^:]*: (\S+)")


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mes_command(*args), env={**os.environ, **env}, input=stdin, capture_output=True, text=True, timeout=120
    )


def name(prefix: str = "u") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def api(
    api_url: str, method: str, path: str, token: str | None = None, auth: httpx.Auth | None = None, **kwargs: Any
) -> httpx.Response:
    headers = bearer(token) if token else {}
    return httpx.request(method, f"{api_url}{path}", headers=headers, auth=auth, timeout=30, **kwargs)


def new_lot(api_url: str, auth: RoleAuth) -> str:
    created = api(api_url, "POST", "/api/v1/lots", auth=auth.manager, json={"shift": "D"})
    assert created.status_code == 201, created.text
    return str(created.json()["data"]["lot_number"])


def test_cli_one_time_password_must_be_changed_before_anything_else(
    central_env: dict[str, str], api_url: str, db: psycopg.Connection
) -> None:
    username = name("op")
    added = cli(central_env, "user", "add", username, "--role", "operator", "--name", "김작업")
    assert added.returncode == 0, added.stderr
    match = ONE_TIME.search(added.stdout)
    assert match, added.stdout
    one_time = match.group(1)
    stored = db.execute(
        "SELECT password_hash, must_change_password, display_name FROM users WHERE username = %s", (username,)
    ).fetchone()
    assert stored is not None and stored[0].startswith("$argon2id$") and stored[1:] == (True, "김작업")

    first = login(api_url, username, one_time)
    assert first["user"]["must_change_password"] is True
    token = first["access_token"]
    blocked = api(api_url, "GET", "/api/v1/lots", token)
    assert blocked.status_code == 403 and blocked.json()["error_code"] == "FORBIDDEN"
    assert blocked.json()["data"] == {"password_change_required": True}
    assert api(api_url, "GET", "/api/v1/auth/me", token).json()["data"]["must_change_password"] is True

    wrong = api(
        api_url,
        "POST",
        "/api/v1/auth/password",
        token,
        json={"current_password": "not-it-at-all", "new_password": "a-good-new-password"},
    )
    assert wrong.status_code == 401 and wrong.json()["error_code"] == "INVALID_CREDENTIALS"
    weak = api(
        api_url, "POST", "/api/v1/auth/password", token, json={"current_password": one_time, "new_password": "short"}
    )
    assert weak.status_code == 422 and "new_password: at least 10 characters" in weak.json()["data"]["errors"]
    same = api(
        api_url, "POST", "/api/v1/auth/password", token, json={"current_password": one_time, "new_password": one_time}
    )
    assert same.status_code == 422

    changed = api(
        api_url,
        "POST",
        "/api/v1/auth/password",
        token,
        json={"current_password": one_time, "new_password": "a-good-new-password"},
    )
    assert changed.status_code == 200 and changed.json()["message"] == "비밀번호가 변경되었습니다"
    fresh = changed.json()["data"]
    assert fresh["user"]["must_change_password"] is False
    assert api(api_url, "GET", "/api/v1/lots", token).status_code == 401  # the old session ended
    assert api(api_url, "GET", "/api/v1/lots", fresh["access_token"]).status_code == 200
    assert db.execute("SELECT must_change_password FROM users WHERE username = %s", (username,)).fetchone() == (False,)
    assert db.execute(
        "SELECT count(*) FROM audit_log WHERE action = 'user.password_change' AND entity_key = %s", (username,)
    ).fetchone() == (1,)
    listed = cli(central_env, "user", "list", "--role", "operator")
    assert listed.returncode == 0 and username in listed.stdout and "$argon2" not in listed.stdout


def test_disabled_operator_cannot_log_in_call_or_start(
    central_env: dict[str, str], api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    username = name("op")
    added = cli(
        central_env, "user", "add", username, "--role", "operator", "--password-stdin", stdin="operator-password-1\n"
    )
    assert added.returncode == 0 and "one-time" not in added.stdout, added.stderr
    token = login(api_url, username, "operator-password-1")["access_token"]
    lot = new_lot(api_url, auth)
    started = api(api_url, "POST", "/api/v1/process/start", token, json=start_body(lot, "PROC-001", username))
    assert started.status_code == 200, started.text  # an operator user is a worker id of the start API

    disabled = cli(central_env, "user", "disable", username)
    assert disabled.returncode == 0, disabled.stderr
    refused = api(api_url, "POST", "/api/v1/auth/login", json={"username": username, "password": "operator-password-1"})
    assert refused.status_code == 401 and refused.json()["error_code"] == "INVALID_CREDENTIALS"
    assert api(api_url, "GET", "/api/v1/lots", token).status_code == 401  # at once, not at the token's expiry
    other = new_lot(api_url, auth)
    worker = api(
        api_url, "POST", "/api/v1/process/start", auth=auth.operator, json=start_body(other, "PROC-001", username)
    )
    assert worker.status_code == 404 and worker.json()["error_code"] == "WORKER_NOT_FOUND"
    assert db.execute(
        "SELECT action FROM audit_log WHERE entity_key = %s AND action = 'user.disable'", (username,)
    ).fetchall() == [("user.disable",)]

    assert cli(central_env, "user", "enable", username).returncode == 0
    assert login(api_url, username, "operator-password-1")["access_token"]


def test_bcrypt_hash_from_an_import_verifies_and_is_upgraded_to_argon2id(api_url: str, db: psycopg.Connection) -> None:
    username, password = name("imp"), "imported-password-1"
    legacy = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    db.execute(
        "INSERT INTO users (username, display_name, role, password_hash) VALUES (%s, %s, 'viewer', %s)",
        (username, "이관 사용자", legacy),
    )
    wrong = api(api_url, "POST", "/api/v1/auth/login", json={"username": username, "password": "not-the-password"})
    assert wrong.status_code == 401
    assert db.execute("SELECT password_hash FROM users WHERE username = %s", (username,)).fetchone() == (legacy,)
    assert login(api_url, username, password)["user"]["role"] == "viewer"
    upgraded = db.execute("SELECT password_hash FROM users WHERE username = %s", (username,)).fetchone()
    assert upgraded is not None and upgraded[0].startswith("$argon2id$")
    assert passwords.verify_password(password, upgraded[0]).ok
    assert login(api_url, username, password)["access_token"]  # and it keeps working with the new hash


def test_workers_api_makes_operator_users_and_refuses_other_users_names(
    api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    worker_id = f"W{secrets.randbelow(90000) + 10000}"
    made = api(
        api_url, "POST", "/api/v1/workers", auth=auth.manager, json={"worker_id": worker_id, "name": "새 작업자"}
    )
    assert made.status_code == 201 and made.json()["data"] == {
        "worker_id": worker_id,
        "name": "새 작업자",
        "active": True,
    }
    assert db.execute("SELECT role, password_hash FROM users WHERE username = %s", (worker_id,)).fetchone() == (
        "operator",
        None,
    )  # badge only: no password login
    listed = api(api_url, "GET", "/api/v1/workers", auth=auth.viewer).json()["data"]
    assert {"worker_id": worker_id, "name": "새 작업자", "active": True} in listed
    no_password = api(api_url, "POST", "/api/v1/auth/login", json={"username": worker_id, "password": "anything-1"})
    assert no_password.status_code == 401

    assert (
        api(
            api_url, "POST", "/api/v1/workers", auth=auth.operator, json={"worker_id": name("w"), "name": "x"}
        ).status_code
        == 403
    )
    for taken in ("t-manager", worker_id.lower()):
        clash = api(api_url, "POST", "/api/v1/workers", auth=auth.manager, json={"worker_id": taken, "name": "x"})
        assert clash.status_code == 409 and clash.json()["error_code"] == "DUPLICATE_USER", taken
    assert db.execute("SELECT role FROM users WHERE username = 't-manager'").fetchone() == ("manager",)

    retired = api(
        api_url,
        "POST",
        "/api/v1/workers",
        auth=auth.manager,
        json={"worker_id": worker_id, "name": "새 작업자", "active": False},
    )
    assert retired.status_code == 201 and retired.json()["data"]["active"] is False
    refused = api(
        api_url,
        "POST",
        "/api/v1/process/start",
        auth=auth.operator,
        json=start_body(new_lot(api_url, auth), "PROC-001", worker_id),
    )
    assert refused.status_code == 404 and refused.json()["error_code"] == "WORKER_NOT_FOUND"


def test_admin_user_api_create_change_role_reset_and_disable(
    api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    username = name("v")
    created = api(
        api_url,
        "POST",
        "/api/v1/users",
        auth=auth.admin,
        json={"username": username, "display_name": "조회자", "role": "viewer"},
    )
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
    one_time = created.json()["data"]["one_time_password"]
    shown = api(api_url, "GET", f"/api/v1/users/{username}", auth=auth.admin).json()["data"]
    assert "one_time_password" not in shown and "password_hash" not in shown
    assert shown["has_password"] is True and shown["must_change_password"] is True and shown["role"] == "viewer"
    listed = api(api_url, "GET", "/api/v1/users", auth=auth.admin, params={"role": "viewer"}).json()["data"]
    assert username in [u["username"] for u in listed] and all(u["role"] == "viewer" for u in listed)
    clash = api(
        api_url, "POST", "/api/v1/users", auth=auth.admin, json={"username": username.upper(), "role": "viewer"}
    )
    assert clash.status_code == 409 and clash.json()["error_code"] == "DUPLICATE_USER"
    assert api(api_url, "GET", "/api/v1/users", auth=auth.manager).status_code == 403
    assert api(api_url, "GET", "/api/v1/users/no%20such", auth=auth.admin).status_code == 422
    assert api(api_url, "GET", "/api/v1/users/nosuch-user", auth=auth.admin).json()["error_code"] == "USER_NOT_FOUND"

    token = api(
        api_url,
        "POST",
        "/api/v1/auth/password",
        login(api_url, username, one_time)["access_token"],
        json={"current_password": one_time, "new_password": "viewer-password-1"},
    ).json()["data"]["access_token"]
    assert api(api_url, "POST", "/api/v1/lots", token, json={"shift": "D"}).status_code == 403
    promoted = api(
        api_url,
        "PATCH",
        f"/api/v1/users/{username}",
        auth=auth.admin,
        json={"role": "manager", "reason": "생산 관리 담당"},
    )
    assert promoted.status_code == 200 and promoted.json()["data"]["role"] == "manager"
    assert api(api_url, "POST", "/api/v1/lots", token, json={"shift": "D"}).status_code == 201  # the role now
    audit = db.execute(
        "SELECT actor, old_value, new_value, reason FROM audit_log WHERE action = 'user.role_change' "
        "AND entity_key = %s",
        (username,),
    ).fetchall()
    assert audit == [("t-admin", {"role": "viewer"}, {"role": "manager"}, "생산 관리 담당")]

    reset = api(api_url, "PATCH", f"/api/v1/users/{username}", auth=auth.admin, json={"reset_password": True})
    assert reset.status_code == 200 and reset.json()["data"]["must_change_password"] is True
    assert api(api_url, "GET", "/api/v1/lots", token).status_code == 401  # its sessions ended
    assert (
        api(
            api_url, "POST", "/api/v1/auth/login", json={"username": username, "password": "viewer-password-1"}
        ).status_code
        == 401
    )
    assert login(api_url, username, reset.json()["data"]["one_time_password"])["user"]["must_change_password"]

    off = api(api_url, "PATCH", f"/api/v1/users/{username}", auth=auth.admin, json={"active": False})
    assert off.status_code == 200 and off.json()["data"]["active"] is False
    actions = [
        row[0]
        for row in db.execute(
            "SELECT action FROM audit_log WHERE entity_key = %s AND entity = 'user' "
            "AND action LIKE 'user.%%' ORDER BY id",
            (username,),
        )
    ]
    assert actions == ["user.create", "user.password_change", "user.role_change", "user.password_reset", "user.disable"]
    trail = db.execute(
        "SELECT coalesce(old_value::text, '') || coalesce(new_value::text, '') FROM audit_log WHERE entity_key = %s",
        (username,),
    ).fetchall()
    assert not any("$argon2" in row[0] or one_time in row[0] for row in trail)


async def test_the_last_active_admin_cannot_be_demoted_or_disabled(postgres: PostgresServer) -> None:
    engine = create_async_engine(postgres.url)
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            try:  # everything below is rolled back: the session's users stay as they are
                await conn.exec_driver_sql(
                    "UPDATE users SET role = 'viewer' WHERE role = 'admin' AND username <> 't-admin'"
                )
                for change in (UserChange(role=Role.VIEWER), UserChange(active=False)):
                    with pytest.raises(DomainError) as refused:
                        await change_user(conn, "t-admin", change, "tester")
                    assert refused.value.code is ErrorCode.INVALID_REQUEST
                    assert "last active admin" in str(refused.value.data)
            finally:
                await transaction.rollback()
    finally:
        await engine.dispose()
