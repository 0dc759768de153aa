"""Station firmware sync after a PROC-004 start (spec §4.4): compare firmware_meta.json, download, verify."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx

logger = logging.getLogger(__name__)

META_NAME = "firmware_meta.json"
BIN_GLOB = "firmware_v*.bin"
DEFAULT_TARGET_MCU = "STM32F103"
_FILENAME = re.compile(r"^firmware_v[0-9A-Za-z][0-9A-Za-z.-]{0,60}\.bin$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_DISK = "펌웨어 폴더를 정리하거나 쓸 수 없습니다 (파일이 사용 중일 수 있습니다: {})"


class FirmwareSyncFailed(Exception):
    """The station could not get the firmware; `operator_message` is the Korean alert for the operator."""

    def __init__(self, version: str, reason: str, attempts: int) -> None:
        self.version = version
        self.reason = reason
        self.attempts = attempts
        self.operator_message = (
            f"펌웨어 {version} 다운로드에 실패했습니다: {reason} ({attempts}회 시도). "
            "네트워크 연결을 확인하고 관리자에게 문의하세요."
        )
        super().__init__(self.operator_message)


class _Failure(Exception):
    def __init__(self, reason: str, retry: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.retry = reason, retry


@dataclass(frozen=True, slots=True)
class Wanted:
    """The start reply's firmware_info, checked: the file name is used as a local path, so it must be plain."""

    version: str
    filename: str
    file_size: int
    md5_hash: str
    download_url: str
    target_mcu: str | None = None

    @classmethod
    def parse(cls, info: dict[str, Any]) -> Wanted:
        try:
            wanted = cls(
                str(info["version"]),
                str(info["filename"]),
                int(info["file_size"]),
                str(info["md5_hash"]).lower(),
                str(info["download_url"]),
                info.get("target_mcu"),
            )
            valid = bool(
                _FILENAME.fullmatch(wanted.filename)
                and _MD5.fullmatch(wanted.md5_hash)
                and wanted.file_size > 0
                and wanted.download_url
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            valid = False
        if not valid:
            version = str(info.get("version", "?")) if isinstance(info, dict) else "?"
            raise FirmwareSyncFailed(version, "착공 응답의 펌웨어 정보가 올바르지 않습니다", 0)
        return wanted


@dataclass(frozen=True, slots=True)
class SyncResult:
    version: str
    path: Path
    action: Literal["up_to_date", "restored", "downloaded"]
    attempts: int = 0


def file_matches(path: Path, wanted: Wanted) -> bool:
    try:
        with path.open("rb") as source:
            if os.fstat(source.fileno()).st_size != wanted.file_size:
                return False
            return hashlib.file_digest(source, _md5).hexdigest() == wanted.md5_hash
    except OSError:
        return False


def _md5() -> Any:
    return hashlib.md5(usedforsecurity=False)


def read_meta(firmware_dir: Path) -> dict[str, Any]:
    """The meta file's object; {} when it is missing or unreadable (then nothing matches)."""
    try:
        meta = json.loads((firmware_dir / META_NAME).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def meta_matches(meta: dict[str, Any], wanted: Wanted) -> bool:
    return (
        meta.get("version") == wanted.version
        and meta.get("filename") == wanted.filename
        and meta.get("file_size") == wanted.file_size
        and str(meta.get("md5_hash", "")).lower() == wanted.md5_hash
    )


def replace_atomically(temp: Path, final: Path, tries: int = 10) -> None:
    """os.replace, retried briefly: on Windows the vendor app may hold the target open for a moment."""
    for attempt in range(tries):
        try:
            os.replace(temp, final)
            return
        except PermissionError:
            if attempt == tries - 1:
                raise
            time.sleep(0.1)


def write_meta(firmware_dir: Path, wanted: Wanted, status: str, target_mcu: str) -> None:
    meta = {
        "version": wanted.version,
        "filename": wanted.filename,
        "file_size": wanted.file_size,
        "md5_hash": wanted.md5_hash,
        "downloaded_at": datetime.now().astimezone().isoformat(timespec="seconds") if status == "READY" else None,
        "status": status,
        "target_mcu": target_mcu,
    }
    temp = firmware_dir / f".{META_NAME}.tmp"
    with temp.open("w", encoding="utf-8") as sink:
        json.dump(meta, sink, ensure_ascii=False, indent=2)
        sink.flush()
        os.fsync(sink.fileno())
    replace_atomically(temp, firmware_dir / META_NAME)


def clear_out(firmware_dir: Path, keep: str) -> list[str]:
    """Remove the meta, every other firmware_v*.bin and stale partial downloads; the names removed."""
    (firmware_dir / META_NAME).unlink(missing_ok=True)
    removed = []
    for path in [*firmware_dir.glob(BIN_GLOB), *firmware_dir.glob(".firmware_v*.part")]:
        if path.name != keep:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def _url(api_base_url: str, download_url: str) -> str:
    if download_url.startswith(("http://", "https://")):
        return download_url
    return api_base_url.rstrip("/") + "/" + download_url.lstrip("/")


async def _fetch(http: httpx.AsyncClient, url: str, token: str, wanted: Wanted, target: Path) -> str | None:
    """One download into a hidden .part file, verified, then renamed; the server's target MCU header if any."""
    part = target.with_name(f".{target.name}.part")
    digest, size = _md5(), 0
    try:
        async with http.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status_code in (401, 403):
                raise _Failure(f"인증 토큰이 거부되었습니다 (HTTP {response.status_code})", retry=False)
            if response.status_code == 404:
                raise _Failure("서버에 해당 펌웨어가 없습니다 (HTTP 404)", retry=False)
            if response.status_code != 200:
                raise _Failure(f"서버 응답 오류 (HTTP {response.status_code})")
            with part.open("wb") as sink:
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > wanted.file_size:
                        raise _Failure("파일 크기가 일치하지 않습니다")
                    digest.update(chunk)
                    sink.write(chunk)
                sink.flush()
                os.fsync(sink.fileno())
            mcu = response.headers.get("x-firmware-target-mcu")
        if size != wanted.file_size:
            raise _Failure("파일 크기가 일치하지 않습니다")
        if digest.hexdigest() != wanted.md5_hash:
            raise _Failure("MD5 해시가 일치하지 않습니다")
        replace_atomically(part, target)
        return mcu
    except httpx.HTTPError as error:
        raise _Failure(f"서버에 연결할 수 없습니다 ({type(error).__name__})") from error
    except OSError as error:
        raise _Failure(f"펌웨어 폴더에 쓸 수 없습니다 ({error.strerror or error})", retry=False) from error
    finally:
        part.unlink(missing_ok=True)


async def _download(
    http: httpx.AsyncClient, url: str, token: str, wanted: Wanted, target: Path, attempts: int, backoff_s: float
) -> tuple[int, str | None]:
    attempt = 1
    while True:
        try:
            return attempt, await _fetch(http, url, token, wanted, target)
        except _Failure as failure:
            logger.warning(
                "firmware %s download attempt %s/%s failed: %s", wanted.version, attempt, attempts, failure.reason
            )
            if not failure.retry or attempt >= attempts:
                raise FirmwareSyncFailed(wanted.version, failure.reason, attempt) from failure
        await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
        attempt += 1


async def sync_firmware(
    firmware_info: dict[str, Any],
    firmware_dir: Path,
    api_base_url: str,
    token: str,
    client: httpx.AsyncClient | None = None,
    attempts: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 30.0,
) -> SyncResult:
    """Make `firmware_dir` hold exactly the firmware of `firmware_info`; FirmwareSyncFailed when it cannot.

    Folder invariant: a READY firmware_meta.json always names a `.bin` of the wanted version whose size and MD5
    were verified. When out of date, the old meta and old `firmware_v*.bin` go first (the vendor app can never
    flash an old firmware meanwhile); the binary is downloaded to a hidden `.part` file, verified, renamed into
    place, and only then the meta is written with status READY. When every attempt fails no `.bin` is left and
    the meta names the wanted version with status ERROR (downloaded_at null).
    """
    wanted = Wanted.parse(firmware_info)
    target = firmware_dir / wanted.filename
    try:
        done, mcu = await asyncio.to_thread(_settle_locally, wanted, firmware_dir)
    except OSError as error:
        raise FirmwareSyncFailed(wanted.version, _DISK.format(error.strerror or error), 0) from error
    if done is not None:
        return done
    http = client or httpx.AsyncClient(timeout=timeout_s)
    try:
        tries, server_mcu = await _download(
            http, _url(api_base_url, wanted.download_url), token, wanted, target, max(1, attempts), backoff_s
        )
    except FirmwareSyncFailed:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(write_meta, firmware_dir, wanted, "ERROR", mcu)
        raise
    finally:
        if client is None:
            await http.aclose()
    try:
        await asyncio.to_thread(write_meta, firmware_dir, wanted, "READY", server_mcu or mcu)
    except OSError as error:
        raise FirmwareSyncFailed(wanted.version, _DISK.format(error.strerror or error), tries) from error
    logger.info("firmware %s ready in %s after %s attempt(s)", wanted.version, firmware_dir, tries)
    return SyncResult(wanted.version, target, "downloaded", tries)


def _settle_locally(wanted: Wanted, firmware_dir: Path) -> tuple[SyncResult | None, str]:
    """Up to date, or the folder cleared (and a verified binary adopted); else None: download. Also the MCU."""
    firmware_dir.mkdir(parents=True, exist_ok=True)
    target = firmware_dir / wanted.filename
    meta = read_meta(firmware_dir)
    old_mcu = meta.get("target_mcu")
    mcu = wanted.target_mcu or (old_mcu if isinstance(old_mcu, str) else None) or DEFAULT_TARGET_MCU
    if meta_matches(meta, wanted) and file_matches(target, wanted):
        return SyncResult(wanted.version, target, "up_to_date"), mcu
    removed = clear_out(firmware_dir, wanted.filename)
    logger.info("firmware out of date (have %s, want %s); removed %s", meta.get("version"), wanted.version, removed)
    if file_matches(target, wanted):  # e.g. a crash between the binary and the meta: only the meta is missing
        write_meta(firmware_dir, wanted, "READY", mcu)
        return SyncResult(wanted.version, target, "restored"), mcu
    target.unlink(missing_ok=True)
    return None, mcu


@dataclass
class FirmwareSyncer:
    """The gateway's handle: one sync at a time, and the start answer annotated with the outcome."""

    firmware_dir: Path
    api_base_url: str
    token: str
    client: httpx.AsyncClient | None = None
    attempts: int = 3
    backoff_s: float = 1.0
    timeout_s: float = 30.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @property
    def busy(self) -> bool:
        """A sync (download) is running now: the station window shows DOWNLOADING."""
        return self._lock.locked()

    async def sync(self, firmware_info: dict[str, Any]) -> SyncResult:
        async with self._lock:
            return await sync_firmware(
                firmware_info,
                self.firmware_dir,
                self.api_base_url,
                self.token,
                self.client,
                self.attempts,
                self.backoff_s,
                self.timeout_s,
            )

    async def after_start(self, body: dict[str, Any]) -> dict[str, Any]:
        """A successful start answer carrying firmware_info gets `data.firmware_sync`; others pass unchanged."""
        data = body.get("data")
        if body.get("status") != "success" or not isinstance(data, dict) or not data.get("firmware_info"):
            return body
        try:
            result = await self.sync(data["firmware_info"])
            outcome: dict[str, Any] = {
                "status": "READY",
                "version": result.version,
                "action": result.action,
                "attempts": result.attempts,
            }
        except FirmwareSyncFailed as error:
            logger.error("firmware sync failed: %s", error.reason)
            outcome = {
                "status": "ERROR",
                "version": error.version,
                "message": error.operator_message,
                "attempts": error.attempts,
            }
        return {**body, "data": {**data, "firmware_sync": outcome}}
