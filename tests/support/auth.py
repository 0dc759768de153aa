"""Test users of every role, made with the real `mes user add`, and an httpx Auth that logs in through the API."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from cloud_api.domain.access import Role
from deploy.localstack.children import mes_command

# The suite's key: tests sign their own (bad) tokens with it. Never used outside the tests.
JWT_SECRET = "withforce-mes-test-suite-jwt-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
ISSUER, AUDIENCE = "withforce-mes", "withforce-mes-api"
AUTH_ENV = {"MES_JWT_SECRET": JWT_SECRET}
RENEW_AFTER_S = 10 * 60  # log in again well before the 15-minute access token runs out


@dataclass(frozen=True, slots=True)
class ApiUser:
    username: str
    password: str = field(repr=False)
    role: Role


def role_users(prefix: str = "t") -> dict[Role, ApiUser]:
    return {role: ApiUser(f"{prefix}-{role.value}", f"{role.value}-Passw0rd-{prefix}", role) for role in Role}


def add_users(env: Mapping[str, str], users: list[ApiUser]) -> None:
    """`mes user add NAME --role R --password-stdin` for each user, the CLI processes running side by side."""
    children = []
    for user in users:
        argv = mes_command("user", "add", user.username, "--role", user.role.value, "--password-stdin")
        children.append(
            (
                user,
                subprocess.Popen(
                    argv,
                    env={**os.environ, **env},
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                ),
            )
        )
    for user, child in children:
        out, _ = child.communicate(f"{user.password}\n", timeout=120)
        if child.returncode != 0 and "DUPLICATE_USER" not in out:
            raise RuntimeError(f"mes user add {user.username} failed ({child.returncode}):\n{out}")


def login(api_url: str, username: str, password: str) -> dict[str, Any]:
    response = httpx.post(f"{api_url}/api/v1/auth/login", json={"username": username, "password": password}, timeout=30)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class ApiAuth(httpx.Auth):
    """Bearer auth for httpx (sync and async): logs in once, and again after 10 minutes."""

    requires_response_body = True

    def __init__(self, api_url: str, user: ApiUser) -> None:
        self.api_url = api_url.rstrip("/")
        self.user = user
        self._lock = threading.Lock()
        self._token: str | None = None
        self._at = 0.0

    @property
    def username(self) -> str:
        return self.user.username

    def token(self) -> str:
        """A valid access token now (logs in outside any client when needed)."""
        with self._lock:
            if self._token is None or time.monotonic() - self._at > RENEW_AFTER_S:
                self._store(login(self.api_url, self.user.username, self.user.password))
            assert self._token is not None
            return self._token

    def headers(self) -> dict[str, str]:
        return bearer(self.token())

    def _store(self, data: dict[str, Any]) -> str:
        self._token, self._at = str(data["access_token"]), time.monotonic()
        return self._token

    def _login_request(self) -> httpx.Request:
        return httpx.Request(
            "POST",
            f"{self.api_url}/api/v1/auth/login",
            json={"username": self.user.username, "password": self.user.password},
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "Authorization" in request.headers:  # a test that sends its own credential (a station token) keeps it
            yield request
            return
        with self._lock:
            token = self._token if time.monotonic() - self._at <= RENEW_AFTER_S else None
        if token is None:
            token = self._from_login((yield self._login_request()))
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def _from_login(self, response: httpx.Response) -> str:
        assert response.status_code == 200, f"login of {self.user.username} failed: {response.text}"
        with self._lock:
            return self._store(response.json()["data"])


@dataclass
class RoleAuth:
    """One logged-in ApiAuth per role: `auth.manager`, `auth.for_role(Role.VIEWER)`."""

    by_role: dict[Role, ApiAuth]

    def for_role(self, role: Role) -> ApiAuth:
        return self.by_role[role]

    @property
    def admin(self) -> ApiAuth:
        return self.by_role[Role.ADMIN]

    @property
    def manager(self) -> ApiAuth:
        return self.by_role[Role.MANAGER]

    @property
    def operator(self) -> ApiAuth:
        return self.by_role[Role.OPERATOR]

    @property
    def viewer(self) -> ApiAuth:
        return self.by_role[Role.VIEWER]


def role_auth(api_url: str, users: Mapping[Role, ApiUser]) -> RoleAuth:
    auth = RoleAuth({role: ApiAuth(api_url, user) for role, user in users.items()})
    for one in auth.by_role.values():
        one.token()  # log in now: fifty threads must not all log in at their first request
    return auth


def forge(
    claims: dict[str, Any], key: str = JWT_SECRET, algorithm: str = "HS256", headers: dict[str, Any] | None = None
) -> str:
    """A token signed as the tests choose (negative tests)."""
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def claims_for(username: str, role: Role, session_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": username,
        "role": role.value,
        "typ": "access",
        "sid": session_id,
        "jti": f"test-{now}-{time.monotonic_ns()}",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}
