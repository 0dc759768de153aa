"""The one exception type use cases raise; adapters translate it to HTTP or MQTT replies."""

from __future__ import annotations

from typing import Any

from mes_contracts.errors import ERRORS, ErrorCode, error_message


class DomainError(Exception):
    def __init__(self, code: ErrorCode, data: dict[str, Any] | None = None, detail: str | None = None):
        super().__init__(f"{code}: {detail or ''}".strip(": "))
        self.code = code
        self.data = data
        self.detail = detail

    @property
    def http_status(self) -> int:
        return ERRORS[self.code].http_status

    def message(self, lang: str = "ko") -> str:
        return error_message(self.code, lang)
