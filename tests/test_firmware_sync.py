"""Gateway firmware sync against a loopback HTTP server: download, verify, retry, fail cleanly, stay up to date."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from edge_gateway.firmware_sync import META_NAME, FirmwareSyncer, FirmwareSyncFailed, sync_firmware

TOKEN = "mes_st_test-token"
VERSION = "v1.2.3"


@dataclass
class FakeCentre:
    """What the download endpoint serves; `bad_answers` requests are spoiled in `mode` before good ones."""

    payload: bytes = b""
    mode: str = "ok"  # ok | corrupt | short | 500 | 401
    bad_answers: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""


@pytest.fixture
def centre() -> Iterator[FakeCentre]:
    state = FakeCentre(payload=secrets.token_bytes(65536))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append({"path": self.path, "authorization": self.headers.get("Authorization", "")})
            spoil = state.mode != "ok" and len(state.requests) <= state.bad_answers
            if self.headers.get("Authorization") != f"Bearer {TOKEN}" or (spoil and state.mode == "401"):
                return self._answer(401, b'{"error_code":"UNAUTHORIZED"}')
            if spoil and state.mode == "500":
                return self._answer(500, b"{}")
            body = state.payload
            if spoil and state.mode == "corrupt":
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            if spoil and state.mode == "short":
                body = body[:-100]
            return self._answer(200, body, {"X-Firmware-Target-MCU": "STM32F103"})

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    thread.join()
    server.server_close()


def info_for(payload: bytes, version: str = VERSION) -> dict[str, Any]:
    return {
        "version": version,
        "filename": f"firmware_{version}.bin",
        "file_size": len(payload),
        "md5_hash": hashlib.md5(payload).hexdigest(),
        "download_url": f"/api/v1/firmware/download/{version}",
    }


def meta(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / META_NAME).read_text(encoding="utf-8")))


def old_station(folder: Path) -> None:
    old = b"old firmware"
    (folder / "firmware_v1.0.0.bin").write_bytes(old)
    (folder / META_NAME).write_text(
        json.dumps(
            {
                **info_for(old, "v1.0.0"),
                "status": "uploaded",
                "downloaded_at": "2025-01-01T10:00:00+09:00",
                "target_mcu": "STM32F103",
            }
        )
    )


async def sync(centre: FakeCentre, folder: Path, **kwargs: Any) -> Any:
    return await sync_firmware(info_for(centre.payload), folder, centre.base_url, TOKEN, backoff_s=0.01, **kwargs)


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


async def test_mismatch_replaces_the_old_firmware_and_writes_meta_ready(centre: FakeCentre, tmp_path: Path) -> None:
    old_station(tmp_path)
    result = await sync(centre, tmp_path)
    assert result.action == "downloaded" and result.attempts == 1 and result.version == VERSION
    assert names(tmp_path) == [META_NAME, "firmware_v1.2.3.bin"]
    binary = (tmp_path / "firmware_v1.2.3.bin").read_bytes()
    assert binary == centre.payload and hashlib.md5(binary).hexdigest() == meta(tmp_path)["md5_hash"]
    written = meta(tmp_path)
    assert written["status"] == "READY" and written["version"] == VERSION and written["target_mcu"] == "STM32F103"
    assert written["filename"] == "firmware_v1.2.3.bin" and written["file_size"] == len(centre.payload)
    assert written["downloaded_at"][-6] in "+-"  # ISO 8601 with an offset
    assert centre.requests == [{"path": f"/api/v1/firmware/download/{VERSION}", "authorization": f"Bearer {TOKEN}"}]


async def test_up_to_date_station_makes_no_request(centre: FakeCentre, tmp_path: Path) -> None:
    await sync(centre, tmp_path)
    meta_before = (tmp_path / META_NAME).read_bytes()
    again = await sync(centre, tmp_path)
    assert again.action == "up_to_date" and len(centre.requests) == 1
    assert (tmp_path / META_NAME).read_bytes() == meta_before  # the vendor app's watcher sees no change


async def test_a_verified_binary_without_meta_is_adopted_without_download(centre: FakeCentre, tmp_path: Path) -> None:
    (tmp_path / "firmware_v1.2.3.bin").write_bytes(centre.payload)  # e.g. a crash between .bin and meta
    result = await sync(centre, tmp_path)
    assert result.action == "restored" and centre.requests == [] and meta(tmp_path)["status"] == "READY"


async def test_a_damaged_binary_is_downloaded_again(centre: FakeCentre, tmp_path: Path) -> None:
    await sync(centre, tmp_path)
    (tmp_path / "firmware_v1.2.3.bin").write_bytes(b"flipped bits")
    result = await sync(centre, tmp_path)
    assert result.action == "downloaded" and len(centre.requests) == 2
    assert (tmp_path / "firmware_v1.2.3.bin").read_bytes() == centre.payload


async def test_corrupt_bytes_three_attempts_then_failure_and_a_consistent_folder(
    centre: FakeCentre, tmp_path: Path
) -> None:
    old_station(tmp_path)
    centre.mode, centre.bad_answers = "corrupt", 99
    with pytest.raises(FirmwareSyncFailed) as failure:
        await sync(centre, tmp_path)
    assert len(centre.requests) == 3 and failure.value.attempts == 3 and failure.value.version == VERSION
    assert "MD5" in failure.value.operator_message and "3회 시도" in failure.value.operator_message
    assert failure.value.operator_message.startswith("펌웨어 v1.2.3 다운로드에 실패했습니다")
    assert names(tmp_path) == [META_NAME]  # the old binary is gone: it must not be flashed; no partial file
    assert meta(tmp_path)["status"] == "ERROR" and meta(tmp_path)["version"] == VERSION
    assert meta(tmp_path)["downloaded_at"] is None


@pytest.mark.parametrize("mode", ["short", "500", "corrupt"])
async def test_a_server_that_recovers_within_three_attempts(centre: FakeCentre, tmp_path: Path, mode: str) -> None:
    centre.mode, centre.bad_answers = mode, 2
    result = await sync(centre, tmp_path)
    assert result.action == "downloaded" and result.attempts == 3 and len(centre.requests) == 3
    assert (tmp_path / "firmware_v1.2.3.bin").read_bytes() == centre.payload


async def test_a_refused_token_is_not_retried(centre: FakeCentre, tmp_path: Path) -> None:
    with pytest.raises(FirmwareSyncFailed) as failure:
        await sync_firmware(info_for(centre.payload), tmp_path, centre.base_url, "wrong", backoff_s=0.01)
    assert len(centre.requests) == 1 and failure.value.attempts == 1
    assert "인증 토큰" in failure.value.operator_message


async def test_unreachable_centre_fails_after_three_attempts(tmp_path: Path) -> None:
    with pytest.raises(FirmwareSyncFailed) as failure:
        await sync_firmware(info_for(b"x"), tmp_path, "http://127.0.0.1:9", TOKEN, backoff_s=0.01)
    assert failure.value.attempts == 3 and "서버에 연결할 수 없습니다" in failure.value.reason


@pytest.mark.parametrize(
    "change",
    [
        {"filename": "../firmware_v1.2.3.bin"},
        {"filename": "boot.ini"},
        {"md5_hash": "zz"},
        {"file_size": 0},
        {"version": None, "file_size": "big"},
    ],
)
async def test_unsafe_firmware_info_is_refused_before_any_request(
    centre: FakeCentre, tmp_path: Path, change: dict[str, Any]
) -> None:
    with pytest.raises(FirmwareSyncFailed) as failure:
        await sync_firmware({**info_for(centre.payload), **change}, tmp_path, centre.base_url, TOKEN)
    assert failure.value.attempts == 0 and centre.requests == [] and list(tmp_path.iterdir()) == []


async def test_syncer_annotates_only_firmware_start_answers(centre: FakeCentre, tmp_path: Path) -> None:
    syncer = FirmwareSyncer(tmp_path / "firmware", centre.base_url, TOKEN, backoff_s=0.01)
    plain = {"status": "success", "message": "착공이 등록되었습니다", "data": {"process_id": "PROC-003"}}
    assert await syncer.after_start(plain) is plain
    answer = {
        "status": "success",
        "message": "착공이 등록되었습니다",
        "data": {"process_id": "PROC-004", "firmware_info": info_for(centre.payload)},
    }
    synced = await syncer.after_start(answer)
    expected = {"status": "READY", "version": VERSION, "action": "downloaded", "attempts": 1}
    assert synced["data"]["firmware_sync"] == expected
    centre.mode, centre.bad_answers = "corrupt", 99
    (tmp_path / "firmware" / "firmware_v1.2.3.bin").write_bytes(b"damaged")
    failed = await syncer.after_start(answer)
    assert failed["data"]["firmware_sync"]["status"] == "ERROR"
    assert failed["data"]["firmware_sync"]["attempts"] == 3  # the station window says so after three
    assert failed["data"]["firmware_sync"]["message"].startswith("펌웨어 v1.2.3 다운로드에 실패했습니다")
