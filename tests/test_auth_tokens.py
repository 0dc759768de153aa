"""JWT negative suite and refresh-token rotation against the real API process (security issue, part 2)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from cloud_api.auth.settings import DEV_JWT_SECRET
from cloud_api.auth.tokens import hash_refresh_token
from cloud_api.domain.access import Role
from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.services import find_free_port
from tests.support.auth import JWT_SECRET, ApiUser, RoleAuth, bearer, claims_for, forge, login


def new_user(api_url: str, auth: RoleAuth, role: Role = Role.VIEWER) -> ApiUser:
    """A fresh user made by the admin API, so a test may end its sessions without disturbing others."""
    user = ApiUser(f"tok-{secrets.token_hex(4)}", f"pw-{secrets.token_urlsafe(12)}", role)
    created = httpx.post(
        f"{api_url}/api/v1/users",
        auth=auth.admin,
        timeout=15,
        json={"username": user.username, "role": role.value, "password": user.password},
    )
    assert created.status_code == 201, created.text
    return user


@pytest.fixture
def session(api_url: str, auth: RoleAuth) -> Iterator[tuple[ApiUser, dict[str, Any]]]:
    user = new_user(api_url, auth)
    yield user, login(api_url, user.username, user.password)


def me(api_url: str, token: str) -> httpx.Response:
    return httpx.get(f"{api_url}/api/v1/auth/me", headers=bearer(token), timeout=15)


def refresh(api_url: str, token: str) -> httpx.Response:
    return httpx.post(f"{api_url}/api/v1/auth/refresh", json={"refresh_token": token}, timeout=15)


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error_code"] == "UNAUTHORIZED" and response.json()["status"] == "error"
    assert response.headers["www-authenticate"] == "Bearer"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# -- login ----------------------------------------------------------------------------------------------------------


def test_login_gives_a_token_pair_that_works(api_url: str, session: tuple[ApiUser, dict[str, Any]]) -> None:
    user, tokens = session
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
    assert tokens["refresh_expires_in"] == 7 * 24 * 3600 and tokens["refresh_token"].startswith("mes_rt_")
    assert tokens["user"] == {
        "username": user.username,
        "role": "viewer",
        "display_name": user.username,
        "must_change_password": False,
    }
    answer = me(api_url, tokens["access_token"])
    assert answer.status_code == 200
    assert answer.json()["data"]["username"] == user.username and answer.json()["data"]["role"] == "viewer"


def test_wrong_password_and_unknown_user_get_one_answer_and_are_audited(
    api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    user = new_user(api_url, auth)
    wrong = httpx.post(
        f"{api_url}/api/v1/auth/login", json={"username": user.username, "password": "nope-nope"}, timeout=15
    )
    unknown = httpx.post(
        f"{api_url}/api/v1/auth/login", json={"username": "nobody-x1", "password": "nope-nope"}, timeout=15
    )
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "status": "error",
            "message": "아이디 또는 비밀번호가 올바르지 않습니다",
            "error_code": "INVALID_CREDENTIALS",
            "data": None,
        }
    )
    response = httpx.post(
        f"{api_url}/api/v1/auth/login", json={"username": user.username, "password": user.password}, timeout=15
    )
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    rows = db.execute(
        "SELECT action, new_value->>'reason' FROM audit_log WHERE entity = 'user' AND entity_key = %s "
        "AND action LIKE 'auth.login%%' ORDER BY id",
        (user.username,),
    ).fetchall()
    assert rows == [("auth.login_failed", "wrong_password"), ("auth.login", None)]
    assert db.execute(
        "SELECT count(*) FROM audit_log WHERE action = 'auth.login_failed' "
        "AND new_value->>'reason' = 'unknown_user' AND actor = 'nobody-x1'"
    ).fetchone() == (1,)
    trail = db.execute(
        "SELECT old_value::text, new_value::text FROM audit_log WHERE entity_key = %s", (user.username,)
    ).fetchall()
    assert user.password not in json.dumps(trail) and "nope-nope" not in json.dumps(trail)


# -- the negative suite ---------------------------------------------------------------------------------------------


def _bad_tokens(username: str, sid: str, real: str, refresh_token: str) -> dict[str, str]:
    good = claims_for(username, Role.VIEWER, sid)
    header, payload, signature = real.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    now = int(time.time())
    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(good)}.",
        "alg none, signature kept": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}",
        "wrong algorithm HS512": forge(good, algorithm="HS512"),
        "wrong algorithm HS384": forge(good, algorithm="HS384"),
        "wrong key": forge(good, key="another-secret-of-enough-length-0123456789"),
        "expired beyond the leeway": forge({**good, "iat": now - 3600, "nbf": now - 3600, "exp": now - 120}),
        "not yet valid": forge({**good, "nbf": now + 3600}),
        "issued in the future": forge({**good, "iat": now + 3600}),
        "wrong audience": forge({**good, "aud": "someone-else"}),
        "wrong issuer": forge({**good, "iss": "evil"}),
        "tampered claims (role admin)": f"{header}.{_b64({**claims, 'role': 'admin'})}.{signature}",
        "tampered claims (other user)": f"{header}.{_b64({**claims, 'sub': 't-admin'})}.{signature}",
        "refresh token as access token": refresh_token,
        "signed refresh-type token": forge({**good, "typ": "refresh"}),
        "no exp": forge(claims_for(username, Role.VIEWER, sid, exp=None)),
        "no sub": forge(claims_for(username, Role.VIEWER, sid, sub=None)),
        "sub not a string": forge({**good, "sub": 12345}),
        "unknown session": forge(claims_for(username, Role.VIEWER, "00000000-0000-4000-8000-000000000000")),
        "not a JWT": "hello",
    }


def test_jwt_negative_suite(api_url: str, session: tuple[ApiUser, dict[str, Any]]) -> None:
    user, tokens = session
    sid = me(api_url, tokens["access_token"]).json()["data"]["session_id"]
    control = forge(claims_for(user.username, Role.VIEWER, sid))
    assert me(api_url, control).status_code == 200  # the suite's forging is right: only the defect differs
    within_leeway = int(time.time()) - 10
    assert me(api_url, forge(claims_for(user.username, Role.VIEWER, sid, exp=within_leeway))).status_code == 200
    for name, token in _bad_tokens(user.username, sid, tokens["access_token"], tokens["refresh_token"]).items():
        response = httpx.get(f"{api_url}/api/v1/lots", headers={"Authorization": f"Bearer {token}"}, timeout=15)
        assert response.status_code == 401, f"{name}: {response.status_code} {response.text}"
        assert_unauthorized(response)
    assert_unauthorized(httpx.get(f"{api_url}/api/v1/lots", timeout=15))
    assert_unauthorized(httpx.get(f"{api_url}/api/v1/lots", headers={"Authorization": "Basic dTpw"}, timeout=15))
    assert_unauthorized(httpx.get(f"{api_url}/api/v1/lots", headers={"Authorization": "Bearer"}, timeout=15))


# -- refresh rotation -----------------------------------------------------------------------------------------------


def test_refresh_rotates_and_the_new_pair_works(
    api_url: str, session: tuple[ApiUser, dict[str, Any]], db: psycopg.Connection
) -> None:
    _, first = session
    second = refresh(api_url, first["refresh_token"])
    assert second.status_code == 200 and second.json()["message"] == "토큰이 갱신되었습니다"
    pair = second.json()["data"]
    assert pair["refresh_token"] != first["refresh_token"] and pair["access_token"] != first["access_token"]
    assert me(api_url, pair["access_token"]).status_code == 200
    third = refresh(api_url, pair["refresh_token"])
    assert third.status_code == 200
    rows = db.execute(
        "SELECT t.used_at IS NOT NULL, t.replaced_by = s.id, t.family_id = s.family_id FROM refresh_tokens t "
        "JOIN refresh_tokens s ON s.parent_id = t.id WHERE t.token_hash = %s",
        (hash_refresh_token(first["refresh_token"]),),
    ).fetchall()
    assert rows == [(True, True, True)]


def test_refresh_reuse_after_rotation_revokes_the_family_and_is_audited(
    api_url: str, session: tuple[ApiUser, dict[str, Any]], db: psycopg.Connection
) -> None:
    user, first = session
    rotated = refresh(api_url, first["refresh_token"]).json()["data"]
    # Outside the grace window: the first use happened a minute "ago".
    db.execute(
        "UPDATE refresh_tokens SET used_at = used_at - interval '1 minute' WHERE token_hash = %s",
        (hash_refresh_token(first["refresh_token"]),),
    )
    assert_unauthorized(refresh(api_url, first["refresh_token"]))  # a thief replays the old token
    assert_unauthorized(refresh(api_url, rotated["refresh_token"]))  # the whole family is gone …
    assert_unauthorized(me(api_url, rotated["access_token"]))  # … and its access tokens with it
    assert_unauthorized(me(api_url, first["access_token"]))
    family = db.execute(
        "SELECT DISTINCT revoked_reason FROM refresh_tokens WHERE family_id = "
        "(SELECT family_id FROM refresh_tokens WHERE token_hash = %s)",
        (hash_refresh_token(first["refresh_token"]),),
    ).fetchall()
    assert family == [("reuse",)]
    audit = db.execute(
        "SELECT actor, new_value FROM audit_log WHERE action = 'auth.refresh_reuse' AND entity_key = %s",
        (user.username,),
    ).fetchall()
    assert len(audit) == 1 and audit[0][0] == user.username
    assert audit[0][1]["revoked_tokens"] == 2 and first["refresh_token"] not in json.dumps(audit[0][1])
    assert login(api_url, user.username, user.password)["access_token"]  # a fresh login still works


def test_two_near_simultaneous_refreshes_keep_the_client_logged_in(
    api_url: str, session: tuple[ApiUser, dict[str, Any]], db: psycopg.Connection
) -> None:
    user, first = session
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: refresh(api_url, first["refresh_token"]), range(2)))
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    successors = {a.json()["data"]["refresh_token"] for a in answers}
    assert len(successors) == 1  # both get the same successor: whichever the client keeps is the live one
    again = refresh(api_url, first["refresh_token"])  # a third, sequential retry inside the window
    assert again.status_code == 200 and again.json()["data"]["refresh_token"] in successors
    for answer in answers:
        assert me(api_url, answer.json()["data"]["access_token"]).status_code == 200
    onward = refresh(api_url, successors.pop())
    assert onward.status_code == 200 and me(api_url, onward.json()["data"]["access_token"]).status_code == 200
    assert db.execute(
        "SELECT count(*) FROM audit_log WHERE action = 'auth.refresh_reuse' AND entity_key = %s", (user.username,)
    ).fetchone() == (0,)


def test_logout_revokes_the_session(
    api_url: str, session: tuple[ApiUser, dict[str, Any]], db: psycopg.Connection
) -> None:
    user, tokens = session
    other = login(api_url, user.username, user.password)  # a second session of the same user
    out = httpx.post(f"{api_url}/api/v1/auth/logout", headers=bearer(tokens["access_token"]), timeout=15)
    assert out.status_code == 200 and out.json()["message"] == "로그아웃되었습니다"
    assert_unauthorized(me(api_url, tokens["access_token"]))
    assert_unauthorized(refresh(api_url, tokens["refresh_token"]))
    assert me(api_url, other["access_token"]).status_code == 200  # only that session ended
    everything = httpx.post(
        f"{api_url}/api/v1/auth/logout", headers=bearer(other["access_token"]), json={"all_sessions": True}, timeout=15
    )
    assert everything.status_code == 200
    assert_unauthorized(me(api_url, other["access_token"]))
    assert db.execute(
        "SELECT count(*) FROM audit_log WHERE action = 'auth.logout' AND actor = %s", (user.username,)
    ).fetchone() == (2,)


def test_unknown_and_malformed_refresh_tokens_are_refused(api_url: str) -> None:
    assert_unauthorized(refresh(api_url, "mes_rt_" + secrets.token_urlsafe(32)))
    assert_unauthorized(refresh(api_url, "not-a-refresh-token"))
    assert refresh(api_url, "").status_code == 422


# -- the secret -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret, why",
    [
        (None, "MES_JWT_SECRET is not set"),
        ("short-secret", "shorter than 32 bytes"),
        (DEV_JWT_SECRET, "development default"),
    ],
)
def test_the_api_refuses_to_start_with_a_weak_secret(central_env: dict[str, str], secret: str | None, why: str) -> None:
    env = {k: v for k, v in central_env.items() if k != "MES_JWT_SECRET"}
    if secret is not None:
        env["MES_JWT_SECRET"] = secret
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MES_")}
    done = subprocess.run(
        mes_command("api", "--port", str(find_free_port())),
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "refusing to start" in done.stderr and why in done.stderr, done.stderr[-2000:]


def test_dev_mode_starts_and_a_rotated_secret_still_verifies_old_tokens(
    central_env: dict[str, str], logs_dir: Path, api_url: str, session: tuple[ApiUser, dict[str, Any]]
) -> None:
    user, tokens = session
    new_secret = secrets.token_urlsafe(48)
    env = {**central_env, "MES_JWT_SECRET": new_secret, "MES_JWT_PREVIOUS_SECRET": JWT_SECRET}
    port = find_free_port()
    child = ChildProcess(
        "api-rotated", mes_command("api", "--port", str(port)), env, logs_dir / "api-rotated.log"
    ).start()
    try:
        rotated = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{rotated}/health", 60, child)
        assert me(rotated, tokens["access_token"]).status_code == 200  # signed with the previous key
        fresh = login(rotated, user.username, user.password)["access_token"]
        assert me(rotated, fresh).status_code == 200
        assert_unauthorized(me(api_url, fresh))  # the old key's API does not know the new key
    finally:
        child.stop()
    dev = {k: v for k, v in central_env.items() if k != "MES_JWT_SECRET"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MES_")}
    port = find_free_port()
    child = ChildProcess(
        "api-dev", mes_command("api", "--port", str(port)), {**dev, "MES_DEV_MODE": "true"}, logs_dir / "api-dev.log"
    )
    child.env = {**clean, **dev, "MES_DEV_MODE": "true"}
    child.start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", 60, child)
    finally:
        child.stop()
