"""Route × role matrix generated from the app's own routes: every route called as every kind of caller.

Allowed callers never get 401/403; everyone else gets exactly 401 (no or wrong kind of credential) or 403 (a user
whose role or pending password change forbids it) — never a 2xx or 3xx.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from cloud_api.auth.settings import AuthSettings
from cloud_api.domain.access import Role
from cloud_api.http.app import create_app
from cloud_api.http.deps import PublicDep, ViewerDep
from cloud_api.http.route_access import RouteRule, UndeclaredAccess, require_declared_access, route_rules
from cloud_api.http.route_table import markdown_table
from cloud_api.settings import CentralSettings
from tests.support.auth import JWT_SECRET, RoleAuth, bearer, login

README = Path(__file__).resolve().parents[1] / "README.md"
PARAM = re.compile(r"\{(\w+)(:\w+)?\}")


@pytest.fixture(scope="module")
def app() -> FastAPI:
    """The same app the API process serves, built in-process only to read its routes."""
    return create_app(
        CentralSettings(database_url="postgresql+psycopg://x@127.0.0.1/none"),
        AuthSettings(jwt_secret=SecretStr(JWT_SECRET)),
    )


@dataclass(frozen=True)
class Caller:
    name: str
    headers: Callable[[], dict[str, str]]
    column: str  # the route-table column that says whether this caller is allowed
    user: bool = False  # a valid user token: refused with 403 where a user may not go, 401 on station routes
    pending_password: bool = False

    def refusal(self, rule: RouteRule) -> int:
        return 403 if self.user and not rule.access.station else 401


@pytest.fixture(scope="module")
def callers(api_url: str, auth: RoleAuth) -> list[Caller]:
    def user(role: Role) -> Caller:
        return Caller(role.value, auth.for_role(role).headers, role.value, user=True)

    station = httpx.post(f"{api_url}/api/v1/stations/matrix-{secrets.token_hex(3)}/token", auth=auth.admin, timeout=15)
    assert station.status_code == 201, station.text
    station_token = station.json()["data"]["token"]

    pending = f"matrix-{secrets.token_hex(3)}"
    made = httpx.post(
        f"{api_url}/api/v1/users",
        auth=auth.admin,
        timeout=15,
        json={"username": pending, "role": "admin", "password": "pending-password-1", "must_change_password": True},
    )
    assert made.status_code == 201, made.text
    pending_token = login(api_url, pending, "pending-password-1")["access_token"]

    gone = f"matrix-{secrets.token_hex(3)}"
    assert (
        httpx.post(
            f"{api_url}/api/v1/users",
            auth=auth.admin,
            timeout=15,
            json={"username": gone, "role": "admin", "password": "gone-password-1"},
        ).status_code
        == 201
    )
    gone_token = login(api_url, gone, "gone-password-1")["access_token"]
    assert (
        httpx.patch(f"{api_url}/api/v1/users/{gone}", auth=auth.admin, timeout=15, json={"active": False}).status_code
        == 200
    )

    return [
        Caller("anonymous", dict, "anonymous"),
        *(user(role) for role in Role),
        Caller("station token", lambda: bearer(station_token), "station token"),
        # An admin who must still change the password: only public routes and its own account.
        Caller("admin with a pending password change", lambda: bearer(pending_token), "admin", True, True),
        # A disabled admin's still unexpired token: nothing but the public routes.
        Caller("disabled admin", lambda: bearer(gone_token), "anonymous"),
    ]


def _call(api_url: str, rule: RouteRule, headers: dict[str, str]) -> httpx.Response:
    path = PARAM.sub(lambda m: f"matrix-{m.group(1)}", rule.path)
    # A body of the wrong shape: an allowed call stops at validation (422) and changes nothing.
    body: list[object] | None = [] if rule.method in ("POST", "PUT", "PATCH") else None
    with httpx.stream(
        rule.method, f"{api_url}{path}", headers=headers, timeout=30, follow_redirects=False, json=body
    ) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()  # an event stream (/api/v1/events) never ends: its status is the answer
    return response


def _expected_allowed(rule: RouteRule, caller: Caller) -> bool:
    if caller.pending_password and not rule.access.public:
        return rule.access.during_password_change and rule.allows(caller.column)
    return rule.allows(caller.column)


def test_every_route_times_every_caller(app: FastAPI, api_url: str, callers: list[Caller]) -> None:
    rules = route_rules(app)
    assert len(rules) >= 30 and any(rule.access.station for rule in rules)
    wrong: list[str] = []
    served = 0
    for rule in rules:
        for caller in callers:
            response = _call(api_url, rule, caller.headers())
            allowed = _expected_allowed(rule, caller)
            status = response.status_code
            served += allowed and status < 300
            if allowed and status in (401, 403):
                wrong.append(f"{rule.method} {rule.path} as {caller.name}: refused {status} {response.text[:120]}")
            if not allowed and status != caller.refusal(rule):
                wrong.append(f"{rule.method} {rule.path} as {caller.name}: {status}, expected {caller.refusal(rule)}")
            if not allowed and status == 401 and response.headers.get("www-authenticate") != "Bearer":
                wrong.append(f"{rule.method} {rule.path} as {caller.name}: 401 without WWW-Authenticate")
            pending = not allowed and caller.pending_password and rule.allows(caller.column) and status == 403
            if pending and response.json().get("data") != {"password_change_required": True}:
                wrong.append(f"{rule.method} {rule.path}: 403 without password_change_required")
    assert not wrong, "\n".join(wrong)
    assert served >= 60  # allowed callers really get answers (GET routes), not just "not 401/403"


def test_an_undeclared_route_stops_the_app_from_starting() -> None:
    bare = FastAPI()

    @bare.get("/declared")
    async def declared(_: ViewerDep) -> None:
        return None

    require_declared_access(bare)  # declared routes (and FastAPI's own docs routes) pass

    @bare.get("/forgotten")
    async def forgotten() -> None:
        return None

    with pytest.raises(UndeclaredAccess, match="/forgotten"):
        require_declared_access(bare)

    twice = FastAPI()

    @twice.get("/twice")
    async def ambiguous(_: ViewerDep, __: PublicDep) -> None:
        return None

    with pytest.raises(UndeclaredAccess, match="/twice"):  # two rules on one route: which one holds?
        route_rules(twice)


def test_openapi_publishes_each_routes_roles(api_url: str) -> None:
    schema = httpx.get(f"{api_url}/openapi.json", timeout=15).json()
    assert schema["paths"]["/api/v1/lots"]["post"]["x-roles"] == "admin, manager"
    assert schema["paths"]["/api/v1/lots"]["get"]["x-roles"] == "admin, manager, operator, viewer"
    assert schema["paths"]["/api/v1/firmware/download/{version}"]["get"]["x-roles"] == "station token"
    assert schema["paths"]["/api/v1/auth/login"]["post"]["x-roles"] == "public"
    assert set(schema["components"]["securitySchemes"]) == {"access_token", "station_token"}


def test_console_signs_in_and_keeps_tokens_in_memory_only(api_url: str) -> None:
    page = httpx.get(f"{api_url}/console", timeout=15).text
    for script in re.findall(r'<script src="([^"]+)"', page):  # the console's own scripts (no build step)
        page += httpx.get(f"{api_url}{script}", timeout=15).text
    for wiring in (
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/password",
        "Authorization",
        'type="password"',
    ):
        assert wiring in page, wiring
    assert "localStorage" not in page and "sessionStorage" not in page and "document.cookie" not in page


def test_readme_route_table_matches_the_app(app: FastAPI) -> None:
    text = README.read_text(encoding="utf-8")
    assert markdown_table(app) in text, "README route table is stale: run `.venv/bin/mes routes --write README.md`"
