"""FirmwareStorage: local disk and S3 against a real moto S3 server, plus the API with S3 storage end to end."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from moto.server import ThreadedMotoServer
from pydantic import ValidationError

from cloud_api.domain.access import Role
from cloud_api.firmware.settings import FirmwareSettings
from cloud_api.firmware.storage import FirmwareStorage, LocalDiskStorage, ObjectMissing, check_key, make_storage
from cloud_api.firmware.storage_s3 import S3Storage, make_s3_client
from tests.support.auth import ApiAuth, ApiUser
from tests.test_firmware_api import firmware_api, new_version, station_token, upload

S3_ENV = {
    "MES_FIRMWARE_S3_REGION": "ap-northeast-2",
    "MES_FIRMWARE_S3_ACCESS_KEY_ID": "testing",
    "MES_FIRMWARE_S3_SECRET_ACCESS_KEY": "testing",
}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def s3_settings(endpoint: str, bucket: str, prefix: str = "firmware/") -> FirmwareSettings:
    return FirmwareSettings(
        storage="s3",
        s3_bucket=bucket,
        s3_prefix=prefix,
        s3_endpoint_url=endpoint,
        s3_access_key_id="testing",
        s3_secret_access_key="testing",  # type: ignore[arg-type]
    )


@pytest.fixture
def bucket(moto_endpoint: str) -> tuple[str, Any]:
    name = f"mes-fw-{secrets.token_hex(4)}"
    client = make_s3_client(s3_settings(moto_endpoint, name))
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-2"})
    return name, client


async def round_trip(storage: FirmwareStorage) -> None:
    key = "v1.2.3/0123abcd/firmware_v1.2.3.bin"
    data = secrets.token_bytes(200_001)
    assert not await storage.exists(key)
    await storage.put(key, data)
    assert await storage.exists(key)
    assert await storage.get(key) == data
    chunks = [chunk async for chunk in storage.open(key, chunk_size=65536)]
    assert b"".join(chunks) == data and len(chunks) == 4
    await storage.put(key, b"replaced")
    assert await storage.get(key) == b"replaced"
    await storage.delete(key)
    assert not await storage.exists(key)
    await storage.delete(key)  # deleting twice is fine
    with pytest.raises(ObjectMissing):
        await storage.get(key)
    with pytest.raises(ObjectMissing):
        [chunk async for chunk in storage.open(key)]


async def test_local_disk_round_trip_is_atomic_and_tidy(tmp_path: Path) -> None:
    root = tmp_path / "store"
    await round_trip(LocalDiskStorage(root))
    assert list(root.iterdir()) == []  # emptied folders go, the root stays
    storage = LocalDiskStorage(root)
    await storage.put("a/b.bin", b"x")
    assert sorted(p.name for p in (root / "a").iterdir()) == ["b.bin"]  # no temporary file left


@pytest.mark.parametrize("key", ["", "../x.bin", "/etc/passwd", "a//b", "a/../b", "a\\b", ".hidden", "a/./b"])
def test_keys_that_could_escape_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)


async def test_s3_round_trip_against_moto_server(moto_endpoint: str, bucket: tuple[str, Any]) -> None:
    name, client = bucket
    storage = S3Storage(name, client, prefix="firmware/")
    await round_trip(storage)
    await storage.put("v2.0.0/ab/firmware_v2.0.0.bin", b"payload")
    listed = client.list_objects_v2(Bucket=name)["Contents"]
    assert [item["Key"] for item in listed] == ["firmware/v2.0.0/ab/firmware_v2.0.0.bin"]


async def test_make_storage_builds_s3_from_settings(moto_endpoint: str, bucket: tuple[str, Any]) -> None:
    storage = make_storage(s3_settings(moto_endpoint, bucket[0], prefix=""))
    assert isinstance(storage, S3Storage) and storage.prefix == ""
    await storage.put("k.bin", b"abc")
    assert await storage.get("k.bin") == b"abc"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MES_FIRMWARE_LOCAL_DIR", str(tmp_path))
    settings = FirmwareSettings()
    assert settings.storage == "local" and settings.local_dir == tmp_path
    assert settings.max_size_bytes == 8 * 1024 * 1024
    assert isinstance(make_storage(settings), LocalDiskStorage)
    monkeypatch.setenv("MES_FIRMWARE_STORAGE", "s3")
    with pytest.raises(ValidationError, match="S3_BUCKET"):
        FirmwareSettings()
    monkeypatch.setenv("MES_FIRMWARE_S3_BUCKET", "b")
    monkeypatch.setenv("MES_FIRMWARE_S3_ACCESS_KEY_ID", "only-the-id")
    with pytest.raises(ValidationError, match="both"):
        FirmwareSettings()


def test_api_with_s3_storage_uploads_and_serves_through_moto(
    central_env: dict[str, str],
    logs_dir: Path,
    moto_endpoint: str,
    bucket: tuple[str, Any],
    api_users: dict[Role, ApiUser],
) -> None:
    name, s3 = bucket
    env = {
        **S3_ENV,
        "MES_FIRMWARE_STORAGE": "s3",
        "MES_FIRMWARE_S3_BUCKET": name,
        "MES_FIRMWARE_S3_ENDPOINT_URL": moto_endpoint,
    }
    with (
        firmware_api(central_env, logs_dir, "api-firmware-s3", env) as url,
        httpx.Client(base_url=url, timeout=15, auth=ApiAuth(url, api_users[Role.ADMIN])) as client,
    ):
        version, data = new_version(), secrets.token_bytes(65536)
        assert upload(client, version, data, target_mcu="S3-TEST").status_code == 201
        [stored] = s3.list_objects_v2(Bucket=name)["Contents"]
        assert stored["Key"].startswith(f"firmware/{version}/") and stored["Size"] == len(data)
        token = station_token(client)
        response = client.get(f"/api/v1/firmware/download/{version}", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and response.content == data
        assert response.headers["x-firmware-md5"] == hashlib.md5(data).hexdigest()
        s3.delete_object(Bucket=name, Key=stored["Key"])  # storage lost the object: a clean 404, no half stream
        lost = client.get(f"/api/v1/firmware/download/{version}", headers={"Authorization": f"Bearer {token}"})
        assert lost.status_code == 404 and lost.json()["error_code"] == "FIRMWARE_NOT_FOUND"
