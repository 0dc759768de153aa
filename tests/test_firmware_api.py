"""Firmware distribution over REST (spec §4.4): upload, list, activate, PROC-004 firmware_info, station download."""

from __future__ import annotations

import hashlib
import json
import random
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from cloud_api.domain.access import Role
from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.postgres import PostgresServer
from deploy.localstack.services import find_free_port
from edge_gateway.firmware_sync import META_NAME, sync_firmware
from line_simulator.payloads import completion_record
from tests.support.auth import ApiAuth, ApiUser
from tests.support.line import SEOUL, start_body
from tests.support.stations import allow_processes

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def firmware_api(central_env: dict[str, str], logs_dir: Path, name: str, env: dict[str, str]) -> Iterator[str]:
    port = find_free_port()
    argv = mes_command("api", "--port", str(port))
    child = ChildProcess(name, argv, {**central_env, **env}, logs_dir / f"{name}.log", cwd=REPO).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/health", 30, child)
        yield url
    finally:
        child.stop()


def new_version() -> str:
    rng = secrets.SystemRandom()
    return f"v{rng.randrange(1, 999)}.{rng.randrange(1000)}.{rng.randrange(100000)}"


def firmware_bytes(size: int = 65536) -> bytes:
    return secrets.token_bytes(size)


def upload(
    client: httpx.Client, version: str, data: bytes, target_mcu: str | None = None, notes: str | None = None
) -> httpx.Response:
    form = {
        "version": version,
        **({"target_mcu": target_mcu} if target_mcu else {}),
        **({"notes": notes} if notes else {}),
    }
    return client.post("/api/v1/firmware", data=form, files={"file": ("build.bin", data, "application/octet-stream")})


def deactivate_all(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE firmware_versions SET active = false WHERE active")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("firmware-store")


@pytest.fixture(scope="module")
def api(central_env: dict[str, str], logs_dir: Path, postgres: PostgresServer, store: Path) -> Iterator[str]:
    deactivate_all(postgres.dsn)
    with firmware_api(
        central_env,
        logs_dir,
        "api-firmware",
        {
            "MES_FIRMWARE_STORAGE": "local",
            "MES_FIRMWARE_LOCAL_DIR": str(store),
            "MES_FIRMWARE_MAX_SIZE_BYTES": str(1024 * 1024),
        },
    ) as url:
        yield url
    deactivate_all(postgres.dsn)  # other modules' PROC-004 starts must not suddenly carry firmware_info


@pytest.fixture(scope="module")
def admin(api: str, api_users: dict[Role, ApiUser]) -> ApiAuth:
    """Upload, activation and station tokens are for admins (who may also create LOTs and start processes)."""
    return ApiAuth(api, api_users[Role.ADMIN])


@pytest.fixture
def client(api: str, admin: ApiAuth) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api, timeout=15, auth=admin) as http:
        yield http


def station_token(client: httpx.Client, station: str | None = None) -> str:
    response = client.post(f"/api/v1/stations/{station or 'st04-' + secrets.token_hex(4)}/token")
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["token"])


def lot_ready_for_proc_004(client: httpx.Client) -> str:
    lot = str(client.post("/api/v1/lots", json={"shift": "D"}).json()["data"]["lot_number"])
    for process_id in ("PROC-001", "PROC-002", "PROC-003"):
        assert client.post("/api/v1/process/start", json=start_body(lot, process_id)).status_code == 200
        now = datetime.now(SEOUL).replace(microsecond=0)
        record = completion_record(process_id, lot, "W002", now - timedelta(minutes=5), now, random.Random(4))
        response = client.post("/api/v1/process/complete", json=record)
        assert response.status_code == 200, response.text
    return lot


def test_upload_list_activate_and_proc_004_start_carries_firmware_info(client: httpx.Client) -> None:
    version, data = new_version(), firmware_bytes()
    uploaded = upload(client, version, data, notes="토크 보정 개선")
    assert uploaded.status_code == 201, uploaded.text
    body = uploaded.json()
    assert body["status"] == "success" and body["message"] == "펌웨어가 등록되었습니다"
    info = body["data"]
    assert info["version"] == version and info["filename"] == f"firmware_{version}.bin"
    assert info["file_size"] == len(data) and info["md5_hash"] == hashlib.md5(data).hexdigest()
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["target_mcu"] == "STM32F103" and info["active"] is False and "storage_key" not in info

    listed = client.get("/api/v1/firmware").json()["data"]
    assert [item["version"] for item in listed].count(version) == 1
    assert client.get(f"/api/v1/firmware/{version}").json()["data"]["notes"] == "토크 보정 개선"

    activated = client.post(f"/api/v1/firmware/{version}/activate")
    assert activated.status_code == 200 and activated.json()["data"]["active"] is True
    assert activated.json()["data"]["activated_by"] == "t-admin"  # the logged-in user, nothing the caller says

    lot = lot_ready_for_proc_004(client)
    started = client.post("/api/v1/process/start", json=start_body(lot, "PROC-004"))
    assert started.status_code == 200, started.text
    assert started.json()["data"]["firmware_info"] == {
        "version": version,
        "filename": f"firmware_{version}.bin",
        "file_size": len(data),
        "md5_hash": hashlib.md5(data).hexdigest(),
        "download_url": f"/api/v1/firmware/download/{version}",
    }
    other = client.post(
        "/api/v1/process/start",
        json=start_body(client.post("/api/v1/lots", json={"shift": "D"}).json()["data"]["lot_number"], "PROC-001"),
    )
    assert "firmware_info" not in other.json()["data"]  # only PROC-004 answers carry it


def test_proc_004_start_without_an_active_firmware_has_no_firmware_info(
    client: httpx.Client, postgres: PostgresServer
) -> None:
    lot = lot_ready_for_proc_004(client)
    deactivate_all(postgres.dsn)
    started = client.post("/api/v1/process/start", json=start_body(lot, "PROC-004"))
    assert started.status_code == 200 and "firmware_info" not in started.json()["data"]


def test_activating_another_version_deactivates_the_first_of_that_mcu(
    client: httpx.Client, db: psycopg.Connection
) -> None:
    mcu = f"TEST-{secrets.token_hex(3)}"
    first, second = new_version(), new_version()
    for version in (first, second):
        assert upload(client, version, firmware_bytes(512), target_mcu=mcu).status_code == 201
    assert client.post(f"/api/v1/firmware/{first}/activate").status_code == 200
    assert client.post(f"/api/v1/firmware/{second}/activate").status_code == 200
    assert client.post(f"/api/v1/firmware/{second}/activate").status_code == 200  # idempotent
    rows = db.execute(
        "SELECT version, active FROM firmware_versions WHERE target_mcu = %s ORDER BY version", (mcu,)
    ).fetchall()
    assert dict(rows) == {first: False, second: True}
    listed = client.get("/api/v1/firmware", params={"target_mcu": mcu}).json()["data"]
    assert {item["version"]: item["active"] for item in listed} == {first: False, second: True}


def test_download_with_station_token_gives_exact_bytes_and_headers(client: httpx.Client) -> None:
    version, data = new_version(), firmware_bytes(100_003)
    assert upload(client, version.removeprefix("v"), data).status_code == 201  # "1.2.3" is stored as "v1.2.3"
    token = station_token(client)
    response = client.get(f"/api/v1/firmware/download/{version}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == f'attachment; filename="firmware_{version}.bin"'
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["x-firmware-md5"] == hashlib.md5(data).hexdigest()
    assert response.headers["x-firmware-target-mcu"] == "STM32F103"


def test_download_refuses_missing_bad_and_revoked_tokens(client: httpx.Client) -> None:
    version = new_version()
    assert upload(client, version, firmware_bytes(256)).status_code == 201
    url = f"/api/v1/firmware/download/{version}"
    missing = client.get(url, auth=None)
    assert missing.status_code == 401 and missing.json()["error_code"] == "UNAUTHORIZED"
    assert missing.json()["message"] == "인증이 필요합니다" and missing.headers["www-authenticate"] == "Bearer"
    assert client.get(url, headers={"Authorization": "Bearer mes_st_nope"}).status_code == 401
    assert client.get(url, headers={"Authorization": "Basic dXNlcjpwdw=="}).status_code == 401
    station = f"st04-{secrets.token_hex(4)}"
    old, new = station_token(client, station), station_token(client, station)
    assert client.get(url, headers={"Authorization": f"Bearer {old}"}).status_code == 401  # replaced by `new`
    assert client.get(url, headers={"Authorization": f"Bearer {new}"}).status_code == 200
    revoked = client.delete(f"/api/v1/stations/{station}/token")
    assert revoked.status_code == 200 and revoked.json()["data"]["revoked"] == 1
    assert client.get(url, headers={"Authorization": f"Bearer {new}"}).status_code == 401


def test_unknown_version_is_404_for_every_route(client: httpx.Client) -> None:
    token = station_token(client)
    for response in (
        client.get("/api/v1/firmware/v0.0.0-missing"),
        client.post("/api/v1/firmware/v9.9.9-nope/activate"),
        client.get("/api/v1/firmware/download/v0.0.1-x", headers={"Authorization": f"Bearer {token}"}),
        client.get("/api/v1/firmware/not-a-version"),
    ):
        assert response.status_code == 404
        assert response.json()["error_code"] == "FIRMWARE_NOT_FOUND"
        assert response.json()["message"] == "펌웨어 버전이 존재하지 않습니다"


def test_duplicate_version_is_409(client: httpx.Client) -> None:
    version = new_version()
    assert upload(client, version, firmware_bytes(128)).status_code == 201
    again = upload(client, version.removeprefix("v"), firmware_bytes(128))
    assert again.status_code == 409
    assert again.json() == {
        "status": "error",
        "message": "이미 등록된 펌웨어 버전입니다",
        "error_code": "DUPLICATE_FIRMWARE_VERSION",
        "data": {"version": version},
    }


def test_concurrent_uploads_of_one_version_store_one_row_and_one_object(
    api: str, store: Path, admin: ApiAuth, db: psycopg.Connection
) -> None:
    version, data = new_version(), firmware_bytes(4096)
    admin.token()

    def attempt(_: int) -> int:
        with httpx.Client(base_url=api, timeout=15, auth=admin) as http:
            return upload(http, version, data).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(attempt, range(6)))
    assert statuses == [201, 409, 409, 409, 409, 409]
    assert db.execute("SELECT count(*) FROM firmware_versions WHERE version = %s", (version,)).fetchone() == (1,)
    assert [p.name for p in (store / version).rglob("*") if p.is_file()] == [f"firmware_{version}.bin"]


def test_concurrent_activations_leave_exactly_one_active(
    api: str, client: httpx.Client, admin: ApiAuth, db: psycopg.Connection
) -> None:
    mcu = f"RACE-{secrets.token_hex(3)}"
    versions = [new_version() for _ in range(4)]
    for version in versions:
        assert upload(client, version, firmware_bytes(64), target_mcu=mcu).status_code == 201

    def activate(version: str) -> int:
        with httpx.Client(base_url=api, timeout=15, auth=admin) as http:
            return http.post(f"/api/v1/firmware/{version}/activate").status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(activate, versions * 3)) == {200}
    active = db.execute("SELECT count(*) FROM firmware_versions WHERE target_mcu = %s AND active", (mcu,))
    assert active.fetchone() == (1,)


def test_invalid_uploads_are_422(client: httpx.Client) -> None:
    cases: list[dict[str, Any]] = [
        {"version": "1.2", "data": b"x"},
        {"version": "v1.2.3/../../x", "data": b"x"},
        {"version": new_version(), "data": b""},
        {"version": new_version(), "data": b"x" * (1024 * 1024 + 1)},
        {"version": new_version(), "data": b"x", "target_mcu": "STM 32"},
    ]
    for case in cases:
        response = upload(client, case["version"], case["data"], case.get("target_mcu"))
        assert response.status_code == 422, case["version"]
        assert response.json()["error_code"] == "INVALID_FIRMWARE"
    no_file = client.post("/api/v1/firmware", data={"version": new_version()})
    assert no_file.status_code == 422 and no_file.json()["error_code"] == "INVALID_REQUEST"
    english = client.post(
        "/api/v1/firmware",
        data={"version": "bad"},
        headers={"Accept-Language": "en"},
        files={"file": ("a.bin", b"x", "application/octet-stream")},
    )
    assert english.json()["message"] == "Invalid firmware file or data"


async def test_gateway_sync_downloads_from_the_api_then_stays_up_to_date(
    client: httpx.Client, api: str, tmp_path: Path
) -> None:
    version, data = new_version(), firmware_bytes(70_000)
    info = upload(client, version, data).json()["data"]
    firmware_info = {key: info[key] for key in ("version", "filename", "file_size", "md5_hash", "download_url")}
    token = station_token(client)
    (tmp_path / "firmware_v0.0.1.bin").write_bytes(b"old firmware")
    first = await sync_firmware(firmware_info, tmp_path, api, token, backoff_s=0.01)
    assert first.action == "downloaded" and first.attempts == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [META_NAME, f"firmware_{version}.bin"]
    assert (tmp_path / f"firmware_{version}.bin").read_bytes() == data
    second = await sync_firmware(firmware_info, tmp_path, api, token)
    assert second.action == "up_to_date"


def test_proc_004_start_through_a_gateway_syncs_the_station_firmware(
    client: httpx.Client,
    api: str,
    broker: Any,
    ingestor: Any,
    logs_dir: Path,
    tmp_path: Path,
    db: psycopg.Connection,
) -> None:
    version, data = new_version(), firmware_bytes(4096)
    assert upload(client, version, data).status_code == 201
    assert client.post(f"/api/v1/firmware/{version}/activate").status_code == 200
    station = f"st04g{secrets.token_hex(2)}"
    allow_processes(db, station, ["PROC-004"])  # a stand-in station (station_processes)
    port = find_free_port()
    env = {
        "MES_GW_STATION": station,
        "MES_GW_WORK_DIR": str(tmp_path),
        "MES_GW_MQTT_PORT": str(broker.port),
        "MES_GW_LOCAL_PORT": str(port),
        "MES_GW_API_BASE_URL": api,
        "MES_GW_FIRMWARE_TOKEN": station_token(client, station),
    }
    gateway = ChildProcess(
        f"gateway-{station}", mes_command("gateway", "--station", station), env, logs_dir / f"gateway-{station}.log"
    ).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/status", 30, gateway)
        lot = lot_ready_for_proc_004(client)
        answer = httpx.post(f"http://127.0.0.1:{port}/start", json=start_body(lot, "PROC-004"), timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["firmware_sync"]["status"] == "READY"
        stored = tmp_path / "firmware" / f"firmware_{version}.bin"
        assert hashlib.md5(stored.read_bytes()).hexdigest() == hashlib.md5(data).hexdigest()
        meta = json.loads((tmp_path / "firmware" / META_NAME).read_text())
        assert meta["version"] == version and meta["status"] == "READY"
    finally:
        gateway.stop()
