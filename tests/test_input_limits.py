"""Request size limits (Content-Length and chunked), CORS closed by default, no internals in error bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.localstack.services import RedisServer
from tests.support.auth import RoleAuth
from tests.test_rate_limit import api_process, redis_db

MIB = 1024 * 1024
ORIGIN = "https://console.example.com"


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body without Content-Length (Transfer-Encoding: chunked): only counting the bytes can stop it."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b" " * piece


def assert_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413
    body = response.json()
    assert body["status"] == "error"
    assert body["error_code"] == "PAYLOAD_TOO_LARGE"
    assert body["message"] == "요청 크기가 너무 큽니다"
    assert body["data"] == {"max_bytes": limit}


def multipart(size: int, version: str) -> tuple[dict[str, str], bytes]:
    request = httpx.Request(
        "POST",
        "http://x/",
        files={"file": ("fw.bin", b"\x5a" * size)},
        data={"version": version, "target_mcu": "STM32F4"},
    )
    return dict(request.headers), request.read()


@pytest.fixture(scope="module")
def configured_api(central_env: dict[str, str], logs_dir: Path, redis_server: RedisServer) -> Iterator[str]:
    env = {
        "MES_CORS_ORIGINS": f"{ORIGIN}, https://other.example.com",
        "MES_MAX_BODY_BYTES": "2048",
        "MES_FIRMWARE_MAX_SIZE_BYTES": "100000",
        "MES_REDIS_URL": redis_db(redis_server, 14),
    }
    with api_process(central_env, logs_dir, "api-input-limits", env) as url:
        yield url


def test_body_over_the_default_limit_by_content_length(api_url: str, auth: RoleAuth) -> None:
    body = json.dumps({"product_model": "X" * (2 * MIB), "target_quantity": 100, "shift": "D"})
    with httpx.Client(base_url=api_url, timeout=30, auth=auth.manager) as client:
        response = client.post("/api/v1/lots", content=body, headers={"Content-Type": "application/json"})
    assert_too_large(response, MIB)


def test_chunked_body_over_the_default_limit(api_url: str, auth: RoleAuth) -> None:
    with httpx.Client(base_url=api_url, timeout=30, auth=auth.manager) as client:
        response = client.post(
            "/api/v1/lots",
            content=chunks(2 * MIB),
            headers={"Content-Type": "application/json", "Accept-Language": "ko"},
        )
    assert "content-length" not in response.request.headers
    assert_too_large(response, MIB)


def test_a_normal_body_is_not_affected(api_url: str, auth: RoleAuth) -> None:
    with httpx.Client(base_url=api_url, timeout=30, auth=auth.manager) as client:
        response = client.post("/api/v1/workers", json={"worker_id": "W-LIMIT-1", "name": "한도 시험"})
    assert response.status_code == 201


def test_configured_body_limit(configured_api: str, auth: RoleAuth) -> None:
    with httpx.Client(base_url=configured_api, timeout=30, headers=auth.manager.headers()) as client:
        small = client.post("/api/v1/workers", json={"worker_id": "W-LIMIT-2", "name": "x" * 100})
        big = client.post("/api/v1/workers", json={"worker_id": "W-LIMIT-3", "name": "x" * 3000})
        streamed = client.post(
            "/api/v1/workers",
            content=chunks(3000, 500),
            headers={"Content-Type": "application/json", "Accept-Language": "en"},
        )
    assert small.status_code == 201
    assert_too_large(big, 2048)
    assert streamed.status_code == 413
    assert streamed.json()["message"] == "Request body too large"


def test_firmware_upload_has_its_own_larger_limit(configured_api: str, auth: RoleAuth) -> None:
    # MES_MAX_BODY_BYTES is 2 KiB here, MES_FIRMWARE_MAX_SIZE_BYTES 100 000 (+ 64 KiB for the multipart frame).
    headers, body = multipart(50_000, "v9.0.1")
    with httpx.Client(base_url=configured_api, timeout=30, headers=auth.admin.headers()) as client:
        accepted = client.post("/api/v1/firmware", content=body, headers=headers)
        assert accepted.status_code == 201, accepted.text
        assert accepted.json()["data"]["file_size"] == 50_000
        headers, body = multipart(300_000, "v9.0.2")
        refused = client.post("/api/v1/firmware", content=body, headers=headers)
        pieces = (body[i : i + 16_384] for i in range(0, len(body), 16_384))  # the same upload, chunked
        streamed = client.post("/api/v1/firmware", content=pieces, headers={"Content-Type": headers["content-type"]})
        elsewhere = client.post(
            "/api/v1/firmware/v9.0.1/activate",
            content=b"{" + b" " * 50_000 + b"}",
            headers={"Content-Type": "application/json"},
        )
    limit = 100_000 + 64 * 1024
    assert_too_large(refused, limit)
    assert_too_large(streamed, limit)
    assert_too_large(elsewhere, 2048)  # the larger limit is the upload route's only


def test_cors_closed_by_default(api_url: str, auth: RoleAuth) -> None:
    with httpx.Client(base_url=api_url, timeout=10, auth=auth.viewer) as client:
        simple = client.get("/api/v1/route", headers={"Origin": ORIGIN})
        preflight = client.options("/api/v1/lots", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert simple.status_code == 200
    assert not any(name.lower().startswith("access-control-") for name in simple.headers)
    assert not any(name.lower().startswith("access-control-") for name in preflight.headers)


def test_cors_allows_only_configured_origins(configured_api: str, auth: RoleAuth) -> None:
    with httpx.Client(base_url=configured_api, timeout=10, headers=auth.viewer.headers()) as client:
        allowed = client.get("/api/v1/route", headers={"Origin": ORIGIN})
        preflight = client.options(
            "/api/v1/lots",
            headers={
                "Origin": "https://other.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        foreign = client.get("/api/v1/route", headers={"Origin": "https://evil.example.net"})
        foreign_preflight = client.options(
            "/api/v1/lots", headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"}
        )
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "Retry-After" in allowed.headers["access-control-expose-headers"]
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://other.example.com"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "access-control-allow-origin" not in foreign.headers
    assert foreign_preflight.status_code == 400
    assert "access-control-allow-origin" not in foreign_preflight.headers


LEAKS = ("Traceback", 'File "', "psycopg", "sqlalchemy", "INSERT", "SELECT", "UPDATE", "0x00", "NUL")


@pytest.mark.parametrize(
    "body",
    [
        b'{"worker_id": "W-NUL", "name": "a\\u0000b"}',  # valid JSON and schema; PostgreSQL refuses NUL in text
        b'{"worker_id": "W-BAD", "name": ',  # truncated JSON
        b"\xff\xfe not utf-8",
    ],
)
def test_error_bodies_carry_no_internals(api_url: str, auth: RoleAuth, body: bytes) -> None:
    with httpx.Client(base_url=api_url, timeout=10, auth=auth.manager) as client:
        response = client.post("/api/v1/workers", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    payload = response.json()
    assert payload["status"] == "error"
    assert payload["error_code"] == "INVALID_REQUEST"
    for leak in LEAKS:
        assert leak not in response.text
