"""Firmware error codes and messages, kept here until they move into mes_contracts.errors."""

# Each FirmwareError is a DomainError whose `code` is a placeholder already in mes_contracts (NOT_FOUND or
# INVALID_REQUEST), so any generic handler still renders it; the firmware routes render the real code and status.
# When the codes land in mes_contracts, raise `DomainError(ErrorCode.<CODE>)` instead and drop this module.

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloud_api.domain.errors import DomainError
from mes_contracts.errors import ErrorCode


@dataclass(frozen=True, slots=True)
class FirmwareCode:
    code: str
    http_status: int
    ko: str
    en: str
    placeholder: ErrorCode


FIRMWARE_NOT_FOUND = FirmwareCode(
    "FIRMWARE_NOT_FOUND", 404, "펌웨어 버전이 존재하지 않습니다", "Firmware version does not exist", ErrorCode.NOT_FOUND
)
DUPLICATE_FIRMWARE_VERSION = FirmwareCode(
    "DUPLICATE_FIRMWARE_VERSION", 409, "이미 등록된 펌웨어 버전입니다", "The firmware version already exists",
    ErrorCode.INVALID_REQUEST,
)
INVALID_FIRMWARE = FirmwareCode(
    "INVALID_FIRMWARE", 422, "펌웨어 파일 또는 정보가 올바르지 않습니다", "Invalid firmware file or data",
    ErrorCode.INVALID_REQUEST,
)
UNAUTHORIZED = FirmwareCode(
    "UNAUTHORIZED", 401, "인증이 필요합니다", "Authentication required", ErrorCode.INVALID_REQUEST
)

SUCCESS_MESSAGES: dict[str, tuple[str, str]] = {
    "firmware_uploaded": ("펌웨어가 등록되었습니다", "Firmware uploaded"),
    "firmware_activated": ("펌웨어가 활성화되었습니다", "Firmware activated"),
    "station_token_created": ("스테이션 토큰이 발급되었습니다", "Station token issued"),
    "station_token_revoked": ("스테이션 토큰이 폐기되었습니다", "Station tokens revoked"),
}


def success_message(key: str, lang: str = "ko") -> str:
    ko, en = SUCCESS_MESSAGES[key]
    return en if lang == "en" else ko


class FirmwareError(DomainError):
    def __init__(self, spec: FirmwareCode, data: dict[str, Any] | None = None, detail: str | None = None):
        super().__init__(spec.placeholder, data, detail or spec.code)
        self.spec = spec

    @property
    def http_status(self) -> int:
        return self.spec.http_status

    def message(self, lang: str = "ko") -> str:
        return self.spec.en if lang == "en" else self.spec.ko
