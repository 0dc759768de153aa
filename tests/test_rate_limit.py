"""Per-IP rate limit against real API processes (two uvicorn workers) and a real Redis; trusted proxies."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI, Form, Header, Request
from pydantic import ValidationError

from cloud_api.domain.access import Role
from cloud_api.domain.errors import DomainError
from cloud_api.http.errors import install_error_handlers
from cloud_api.http.limits_settings import LimitSettings
from cloud_api.http.ratelimit import enforce_user_limit, install_limits, login_throttle_check, login_throttle_record
from cloud_api.http.ratelimit_store import client_ip, ip_key
from cloud_api.settings import CentralSettings
from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.services import RedisServer, find_free_port
from mes_contracts.errors import ErrorCode
from tests.support.auth import ApiAuth, ApiUser, RoleAuth

ROUTE = "/api/v1/route"  # cheap (no query beyond the session check): the limiter is what is measured


@contextmanager
def api_process(
    central_env: Mapping[str, str], logs_dir: Path, name: str, env: Mapping[str, str], workers: int = 1
) -> Iterator[str]:
    """An API of its own (`mes api --workers N`) on a free port, with ENV over the shared central settings."""
    port = find_free_port()
    child = ChildProcess(
        name,
        mes_command("api", "--port", str(port), "--workers", str(workers)),
        {**central_env, **env},
        logs_dir / f"{name}.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/metrics", 60, child)  # public, exempt and needs neither database nor Redis
        yield url
    finally:
        child.stop()


def redis_db(server: RedisServer, db: int) -> str:
    """A Redis database of its own, so counts of other tests (and other API processes) never mix in."""
    return re.sub(r"/\d+$", f"/{db}", server.url)


def flush(url: str) -> None:
    with redis.Redis.from_url(url) as client:
        client.flushdb()


async def _burst(
    url: str, count: int, auth: ApiAuth, headers_for: object, concurrency: int = 25, path: str = ROUTE
) -> list[httpx.Response]:
    # No keep-alive: every request is a new connection, so the kernel deals them to both workers.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    token = auth.headers()  # a token from the suite's API: same database and key, valid here too
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one(i: int) -> httpx.Response:
            headers = headers_for(i) if callable(headers_for) else {}
            return await client.get(path, headers={**token, **headers})

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def burst(url: str, count: int, auth: ApiAuth, headers_for: object = None) -> list[httpx.Response]:
    return asyncio.run(_burst(url, count, auth, headers_for))


def worker_metrics(url: str, tries: int = 200) -> dict[int, float]:
    """Allowed-request counter of each worker, keyed by pid, from /metrics scraped on fresh connections."""
    seen: dict[int, float] = {}
    for _ in range(tries):
        with httpx.Client(base_url=url, timeout=10) as client:
            text = client.get("/metrics").text
        pid = int(float(re.search(r"^mes_api_worker_pid (\S+)$", text, re.M).group(1)))  # type: ignore[union-attr]
        allowed = re.search(r"^mes_api_rate_limit_allowed_total (\S+)$", text, re.M)
        seen[pid] = float(allowed.group(1)) if allowed else 0.0
        if len(seen) >= 2:
            break
    return seen


def assert_rate_limited(response: httpx.Response, window_s: int = 60) -> None:
    assert response.status_code == 429
    body = response.json()
    assert body["status"] == "error"
    assert body["error_code"] == "RATE_LIMITED"
    assert body["message"] == "요청이 너무 많습니다. 잠시 후 다시 시도해주세요"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window_s
    assert body["data"]["retry_after"] == retry_after


@pytest.fixture(scope="module")
def limited_api(central_env: dict[str, str], logs_dir: Path, redis_server: RedisServer) -> Iterator[tuple[str, str]]:
    redis_url = redis_db(redis_server, 11)
    env = {"MES_RATE_LIMIT_PER_MINUTE": "100", "MES_REDIS_URL": redis_url}
    with api_process(central_env, logs_dir, "api-rate-limited", env, workers=2) as url:
        yield url, redis_url


@pytest.fixture(scope="module")
def proxied_api(central_env: dict[str, str], logs_dir: Path, redis_server: RedisServer) -> Iterator[tuple[str, str]]:
    redis_url = redis_db(redis_server, 12)
    env = {
        "MES_RATE_LIMIT_PER_MINUTE": "20",
        "MES_RATE_LIMIT_USER_PER_MINUTE": "30",
        "MES_REDIS_URL": redis_url,
        "MES_TRUSTED_PROXIES": "127.0.0.1/32",
    }
    with api_process(central_env, logs_dir, "api-behind-proxy", env) as url:
        yield url, redis_url


def test_150_requests_across_two_workers_exactly_100_allowed(limited_api: tuple[str, str], auth: RoleAuth) -> None:
    url, redis_url = limited_api
    flush(redis_url)
    before = worker_metrics(url)
    responses = burst(url, 150, auth.viewer)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 100
    assert statuses.count(429) == 50
    for response in responses:
        if response.status_code == 429:
            assert_rate_limited(response)
    after = worker_metrics(url)
    assert len(after) == 2, f"only one worker answered /metrics: {after}"
    served = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    assert all(count > 0 for count in served.values()), f"one worker served nothing: {served}"
    assert sum(served.values()) == 100


def test_rotating_forwarded_for_from_an_untrusted_peer_does_not_help(
    limited_api: tuple[str, str], auth: RoleAuth
) -> None:
    url, redis_url = limited_api
    flush(redis_url)

    def spoofed(i: int) -> dict[str, str]:
        fake = f"{random.randint(1, 223)}.{random.randint(0, 255)}.{random.randint(0, 255)}.{i % 250 + 1}"
        return {"X-Forwarded-For": fake, "X-Real-IP": fake, "Forwarded": f"for={fake}"}

    statuses = [r.status_code for r in burst(url, 150, auth.viewer, spoofed)]
    assert statuses.count(200) == 100
    assert statuses.count(429) == 50


def test_unauthenticated_requests_count_too(limited_api: tuple[str, str]) -> None:
    url, redis_url = limited_api
    flush(redis_url)
    with httpx.Client(base_url=url, timeout=10) as client:
        statuses = [client.get(ROUTE).status_code for _ in range(105)]
    assert statuses[:100] == [401] * 100
    assert statuses[100:] == [429] * 5


def test_health_and_metrics_are_never_limited(limited_api: tuple[str, str], auth: RoleAuth) -> None:
    url, redis_url = limited_api
    flush(redis_url)
    assert [r.status_code for r in burst(url, 100, auth.viewer)].count(200) == 100
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get(ROUTE, headers=auth.viewer.headers()).status_code == 429
        assert client.get("/metrics").status_code == 200
        assert client.get("/health").status_code in (200, 503)  # 503 only if a dependency is down, never 429


def test_limited_answer_in_english_on_request(limited_api: tuple[str, str], auth: RoleAuth) -> None:
    url, redis_url = limited_api
    flush(redis_url)
    burst(url, 100, auth.viewer)
    with httpx.Client(base_url=url, timeout=10) as client:
        response = client.get(ROUTE, headers={"Accept-Language": "en", **auth.viewer.headers()})
    assert response.status_code == 429
    assert response.json()["message"] == "Too many requests; try again later"
    assert response.headers["X-Request-ID"]


def test_behind_a_trusted_proxy_each_client_has_its_own_budget(proxied_api: tuple[str, str], auth: RoleAuth) -> None:
    url, redis_url = proxied_api
    flush(redis_url)
    # What a proxy appends is the right-most entry; everything left of it came from the client and is ignored.
    client_a = [
        r.status_code
        for r in burst(url, 25, auth.viewer, lambda i: {"X-Forwarded-For": f"198.51.100.{i + 1}, 203.0.113.7"})
    ]
    assert client_a.count(200) == 20
    assert client_a.count(429) == 5
    # (Another account for B: the per-user limit of 30 is not what is measured here.)
    client_b = [r.status_code for r in burst(url, 20, auth.manager, lambda i: {"X-Forwarded-For": "203.0.113.8"})]
    assert client_b.count(200) == 20
    with httpx.Client(base_url=url, timeout=10, headers=auth.viewer.headers()) as client:
        # A chain through a second trusted hop still names client A: the trusted hop is skipped, not counted.
        assert_rate_limited(client.get(ROUTE, headers={"X-Forwarded-For": "203.0.113.7, 127.0.0.1"}))
        # The proxy itself (no X-Forwarded-For) is a client of its own.
        assert client.get(ROUTE).status_code == 200


def test_counts_are_kept_in_redis_per_client_ip(proxied_api: tuple[str, str], auth: RoleAuth) -> None:
    url, redis_url = proxied_api
    flush(redis_url)
    burst(url, 3, auth.viewer, lambda i: {"X-Forwarded-For": "2001:db8:1:2::10"})
    burst(url, 2, auth.viewer, lambda i: {"X-Forwarded-For": "2001:db8:1:2::99"})  # same /64: same budget
    with redis.Redis.from_url(redis_url) as client:
        assert client.zcard("mes:rl:ip:2001:db8:1:2::/64") == 5
        assert 0 < client.pttl("mes:rl:ip:2001:db8:1:2::/64") <= 60_000


def test_per_user_limit_on_the_real_api(proxied_api: tuple[str, str], auth: RoleAuth) -> None:
    """MES_RATE_LIMIT_USER_PER_MINUTE=30 there: one account from many IPs still gets 30."""
    url, redis_url = proxied_api
    flush(redis_url)
    statuses = [r.status_code for r in burst(url, 40, auth.operator, lambda i: {"X-Forwarded-For": f"203.0.113.{i}"})]
    assert statuses.count(200) == 30
    assert statuses.count(429) == 10
    with httpx.Client(base_url=url, timeout=10) as client:
        refused = client.get(ROUTE, headers={"X-Forwarded-For": "192.0.2.99", **auth.operator.headers()})
        assert_rate_limited(refused)
        other_user = client.get(ROUTE, headers={"X-Forwarded-For": "192.0.2.99", **auth.viewer.headers()})
        assert other_user.status_code == 200


def test_login_throttle_on_the_real_api(proxied_api: tuple[str, str], api_users: dict[Role, ApiUser]) -> None:
    url, redis_url = proxied_api
    flush(redis_url)
    user = api_users[Role.VIEWER]

    def login(password: str, ip: str) -> httpx.Response:
        return httpx.post(
            f"{url}/api/v1/auth/login",
            json={"username": user.username, "password": password},
            headers={"X-Forwarded-For": ip},
            timeout=30,
        )

    assert [login("wrong-password", "203.0.113.50").status_code for _ in range(5)] == [401] * 5
    assert_rate_limited(login(user.password, "203.0.113.50"), window_s=900)  # even the right password waits
    assert login(user.password, "203.0.113.51").status_code == 200  # the same account from elsewhere


def test_redis_down_fails_open(central_env: dict[str, str], logs_dir: Path, auth: RoleAuth) -> None:
    dead_redis = f"redis://127.0.0.1:{find_free_port()}/0"  # nothing listens there
    env = {"MES_RATE_LIMIT_PER_MINUTE": "5", "MES_RATE_LIMIT_USER_PER_MINUTE": "5", "MES_REDIS_URL": dead_redis}
    with api_process(central_env, logs_dir, "api-redis-down", env) as url:
        statuses = [r.status_code for r in burst(url, 20, auth.viewer)]
        with httpx.Client(base_url=url, timeout=10) as client:
            metrics = client.get("/metrics").text
    assert statuses.count(200) == 20
    for scope in ("ip", "user"):
        failures = re.search(rf'^mes_api_rate_limit_redis_errors_total\{{scope="{scope}"\}} (\S+)$', metrics, re.M)
        assert failures is not None and float(failures.group(1)) >= 20


# Per-user limit and login throttling: the functions the auth routes call, on a tiny app with the real Redis.


def tiny_app(redis_url: str, **limits: int) -> FastAPI:
    app = FastAPI()
    app.state.settings = CentralSettings(database_url="postgresql+psycopg://unused@127.0.0.1/unused")
    install_error_handlers(app)
    install_limits(app, LimitSettings(rate_limit_per_minute=0, **limits))  # type: ignore[arg-type]

    @app.get("/me")
    async def me(request: Request, x_user: Annotated[str, Header()]) -> dict[str, str]:
        await enforce_user_limit(request, x_user)
        return {"status": "success"}

    @app.post("/login")
    async def login(request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()]) -> Any:
        await login_throttle_check(request, username)
        ok = password == "right"
        await login_throttle_record(request, username, ok)
        if not ok:
            raise DomainError(ErrorCode.INVALID_CREDENTIALS)
        return {"status": "success"}

    return app


async def _with_app(redis_url: str, limits: dict[str, int], steps: Any) -> Any:
    app = tiny_app(redis_url, **limits)
    app.state.redis = aioredis.from_url(redis_url)
    try:
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://mes") as client:
            return await steps(client)
    finally:
        await app.state.redis.aclose()


@pytest.fixture
def tiny_redis(redis_server: RedisServer) -> str:
    url = redis_db(redis_server, 13)
    flush(url)
    return url


def test_per_user_limit(tiny_redis: str) -> None:
    async def steps(client: httpx.AsyncClient) -> None:
        alice = [(await client.get("/me", headers={"X-User": "alice"})).status_code for _ in range(5)]
        assert alice == [200] * 5
        refused = await client.get("/me", headers={"X-User": " ALICE "})  # same account, same budget
        assert_rate_limited(refused)
        assert (await client.get("/me", headers={"X-User": "bob"})).status_code == 200

    asyncio.run(_with_app(tiny_redis, {"rate_limit_user_per_minute": 5}, steps))


def test_login_throttled_after_repeated_failures_per_user_and_ip(tiny_redis: str) -> None:
    async def attempt(client: httpx.AsyncClient, user: str, password: str = "wrong") -> httpx.Response:
        return await client.post("/login", data={"username": user, "password": password})

    async def steps(client: httpx.AsyncClient) -> None:
        assert [(await attempt(client, "kim")).status_code for _ in range(3)] == [401] * 3
        throttled = await attempt(client, "kim", "right")  # even the right password waits now
        assert_rate_limited(throttled, window_s=900)
        assert (await attempt(client, "lee", "right")).status_code == 200  # another account from this IP
        # A success clears that account's failures from this IP.
        assert [(await attempt(client, "park")).status_code for _ in range(2)] == [401] * 2
        assert (await attempt(client, "park", "right")).status_code == 200
        assert [(await attempt(client, "park")).status_code for _ in range(2)] == [401] * 2
        assert (await attempt(client, "park", "right")).status_code == 200
        # The IP as a whole: 3 (kim) + 4 (park) failures so far; 1 more reaches 8 and every account waits.
        assert (await attempt(client, "choi")).status_code == 401
        assert_rate_limited(await attempt(client, "jung", "right"), window_s=900)

    limits = {"login_max_failures_per_user_ip": 3, "login_max_failures_per_ip": 8}
    asyncio.run(_with_app(tiny_redis, limits, steps))


def test_login_failures_age_out_of_the_window(tiny_redis: str) -> None:
    async def steps(client: httpx.AsyncClient) -> None:
        for _ in range(2):
            await client.post("/login", data={"username": "han", "password": "wrong"})
        refused = await client.post("/login", data={"username": "han", "password": "right"})
        assert_rate_limited(refused, window_s=2)
        await asyncio.sleep(float(refused.headers["Retry-After"]) + 0.2)
        assert (await client.post("/login", data={"username": "han", "password": "right"})).status_code == 200

    limits = {"login_max_failures_per_user_ip": 2, "login_failure_window_s": 2}
    asyncio.run(_with_app(tiny_redis, limits, steps))


# Client IP rules (pure functions) and settings validation.

TRUSTED = LimitSettings(trusted_proxies=["10.0.0.0/8", "127.0.0.1"]).proxy_networks


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.4", ["203.0.113.9"], "198.51.100.4"),  # untrusted peer: its header means nothing
        ("127.0.0.1", [], "127.0.0.1"),  # the proxy's own request
        ("127.0.0.1", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),  # left of the proxy's entry: the client's own words
        ("127.0.0.1", ["6.6.6.6", "203.0.113.9, 10.1.2.3"], "203.0.113.9"),  # two headers; a trusted hop skipped
        ("127.0.0.1", ["10.0.0.1, 10.0.0.2"], "10.0.0.1"),  # only proxies: the furthest one
        ("127.0.0.1", ["[2001:db8::7]:4431"], "2001:db8::7"),
        ("127.0.0.1", ["203.0.113.9:51234"], "203.0.113.9"),
        ("::ffff:127.0.0.1", ["203.0.113.9"], "203.0.113.9"),  # IPv4-mapped peer of a dual-stack socket
        ("127.0.0.1", ["203.0.113.9, garbage"], "garbage"),  # what our proxy wrote, however odd
    ],
)
def test_client_ip(peer: str, forwarded: list[str], expected: str) -> None:
    assert client_ip(peer, forwarded, TRUSTED) == expected


def test_ip_keys_group_ipv6_by_64() -> None:
    assert ip_key("2001:db8:1:2:aaaa::1") == ip_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert ip_key("::ffff:192.0.2.1") == ip_key("192.0.2.1") == "192.0.2.1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MES_TRUSTED_PROXIES", "10.0.0.0/8,not-a-network"),
        ("MES_RATE_LIMIT_PER_MINUTE", "-1"),
        ("MES_CORS_ORIGINS", "console.example.com"),
        ("MES_RATE_LIMIT_EXEMPT_PATHS", "health"),
        ("MES_MAX_BODY_BYTES", "0"),
    ],
)
def test_invalid_settings_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("MES_").lower()):
        LimitSettings()
