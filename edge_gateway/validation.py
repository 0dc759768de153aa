"""From a ready file's name and bytes to a publishable completion or a local rejection with its error code."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from mes_contracts.completion import CompletionFileName, CompletionRecord, parse_completion_file_name
from mes_contracts.errors import ErrorCode, error_message
from mes_contracts.process_data import describe_validation_error

_NOT_PARSED = object()


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def decode_json(data: bytes) -> Any:
    """Strict UTF-8 JSON (a leading BOM accepted, NaN/Infinity refused); raises ValueError."""
    text = data.decode("utf-8-sig")
    return json.loads(text, parse_constant=_reject_constant)


@dataclass(frozen=True, slots=True)
class Rejection:
    """The file cannot be sent; it goes to error/ with this code, Korean message and details."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, code: ErrorCode, details: dict[str, Any] | None = None) -> Rejection:
        return cls(code.value, error_message(code), details or {})


@dataclass(frozen=True, slots=True)
class Completion:
    """A valid completion file: the record exactly as in the file, plus its name and content hash."""

    file_name: str
    parts: CompletionFileName
    record: dict[str, Any]
    sha256: str


def check_completion(name: str, data: bytes, parsed: Any = _NOT_PARSED) -> Completion | Rejection:
    """Name → JSON → CompletionRecord → name/content agreement, first failure wins (spec §3.4.2)."""
    parts = parse_completion_file_name(name)
    if parts is None:
        return Rejection.of(
            ErrorCode.INVALID_FILE_NAME,
            {
                "file_name": name,
                "expected": "{LOT_NUMBER}_{PROCESS_ID}_{YYYYMMDDHHMMSS}.json",
            },
        )
    if parsed is _NOT_PARSED:
        try:
            parsed = decode_json(data)
        except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return Rejection.of(ErrorCode.INVALID_JSON, {"error": str(error)})
    try:
        record = CompletionRecord.model_validate(parsed)
    except ValidationError as error:
        return Rejection.of(ErrorCode.INVALID_PROCESS_DATA, {"errors": describe_validation_error(error)})
    if record.lot_number != parts.lot_number or record.process_id != parts.process_id:
        return Rejection.of(
            ErrorCode.FILE_CONTENT_MISMATCH,
            {
                "file_name": {"lot_number": parts.lot_number, "process_id": parts.process_id},
                "content": {"lot_number": record.lot_number, "process_id": record.process_id},
            },
        )
    return Completion(name, parts, parsed, hashlib.sha256(data).hexdigest())


def reply_rejection(body: dict[str, Any], http_status: int, message_id: object) -> Rejection:
    """A `rejected` reply from the centre, as the error log records it."""
    code = body.get("error_code") or ErrorCode.INTERNAL_ERROR.value
    message = body.get("message") or error_message(ErrorCode.INTERNAL_ERROR)
    return Rejection(
        str(code),
        str(message),
        {
            "http_status": http_status,
            "message_id": str(message_id),
            "data": body.get("data"),
        },
    )
