"""Error codes of the MES contracts with their HTTP status and Korean/English messages."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    LOT_NOT_FOUND = "LOT_NOT_FOUND"
    PREVIOUS_PROCESS_NOT_COMPLETED = "PREVIOUS_PROCESS_NOT_COMPLETED"
    DUPLICATE_START = "DUPLICATE_START"
    INVALID_PROCESS_SEQUENCE = "INVALID_PROCESS_SEQUENCE"
    WORKER_NOT_FOUND = "WORKER_NOT_FOUND"
    DUPLICATE_LOT = "DUPLICATE_LOT"
    PRODUCT_MODEL_NOT_FOUND = "PRODUCT_MODEL_NOT_FOUND"
    LOT_SEQUENCE_EXHAUSTED = "LOT_SEQUENCE_EXHAUSTED"
    INVALID_LOT_STATE = "INVALID_LOT_STATE"
    PROCESS_NOT_STARTED = "PROCESS_NOT_STARTED"
    INVALID_PROCESS_DATA = "INVALID_PROCESS_DATA"
    INVALID_FILE_NAME = "INVALID_FILE_NAME"
    INVALID_JSON = "INVALID_JSON"
    FILE_CONTENT_MISMATCH = "FILE_CONTENT_MISMATCH"
    INVALID_REQUEST = "INVALID_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    GATEWAY_TIMEOUT = "GATEWAY_TIMEOUT"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    FIRMWARE_NOT_FOUND = "FIRMWARE_NOT_FOUND"
    DUPLICATE_FIRMWARE_VERSION = "DUPLICATE_FIRMWARE_VERSION"
    INVALID_FIRMWARE = "INVALID_FIRMWARE"
    UNAUTHORIZED = "UNAUTHORIZED"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    http_status: int
    ko: str
    en: str


ERRORS: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.LOT_NOT_FOUND: ErrorSpec(404, "LOT 번호가 존재하지 않습니다", "LOT number does not exist"),
    ErrorCode.PREVIOUS_PROCESS_NOT_COMPLETED: ErrorSpec(
        400, "이전 공정이 완료되지 않았습니다", "The previous process has not been completed"
    ),
    ErrorCode.DUPLICATE_START: ErrorSpec(409, "이미 착공된 공정입니다", "The process has already been started"),
    ErrorCode.INVALID_PROCESS_SEQUENCE: ErrorSpec(400, "잘못된 공정 순서입니다", "Invalid process sequence"),
    ErrorCode.WORKER_NOT_FOUND: ErrorSpec(404, "작업자 ID가 존재하지 않습니다", "Worker ID does not exist"),
    ErrorCode.DUPLICATE_LOT: ErrorSpec(409, "이미 존재하는 LOT 번호입니다", "The LOT number already exists"),
    ErrorCode.PRODUCT_MODEL_NOT_FOUND: ErrorSpec(
        404, "제품 모델이 존재하지 않습니다", "Product model does not exist"
    ),
    ErrorCode.LOT_SEQUENCE_EXHAUSTED: ErrorSpec(
        409, "당일 LOT 순번을 모두 사용했습니다", "All LOT sequence numbers of the day are used"
    ),
    ErrorCode.INVALID_LOT_STATE: ErrorSpec(
        409, "현재 LOT 상태에서 허용되지 않는 작업입니다", "Not allowed in the LOT's current state"
    ),
    ErrorCode.PROCESS_NOT_STARTED: ErrorSpec(
        409, "착공되지 않은 공정의 완공입니다", "Completion for a process that was not started"
    ),
    ErrorCode.INVALID_PROCESS_DATA: ErrorSpec(
        422, "공정 데이터가 올바르지 않습니다", "Process data is invalid"
    ),
    ErrorCode.INVALID_FILE_NAME: ErrorSpec(
        422, "완공 파일명 형식이 올바르지 않습니다", "Completion file name does not follow the convention"
    ),
    ErrorCode.INVALID_JSON: ErrorSpec(422, "JSON 형식이 올바르지 않습니다", "The file is not valid JSON"),
    ErrorCode.FILE_CONTENT_MISMATCH: ErrorSpec(
        422, "파일명과 파일 내용이 일치하지 않습니다", "File name and file content disagree"
    ),
    ErrorCode.INVALID_REQUEST: ErrorSpec(422, "요청 데이터 형식 오류입니다", "Invalid request data"),
    ErrorCode.NOT_FOUND: ErrorSpec(404, "요청한 자원을 찾을 수 없습니다", "Resource not found"),
    ErrorCode.SERVICE_UNAVAILABLE: ErrorSpec(
        503, "서비스를 일시적으로 사용할 수 없습니다", "Service temporarily unavailable"
    ),
    ErrorCode.GATEWAY_TIMEOUT: ErrorSpec(
        504, "서버 응답 시간이 초과되었습니다", "The server did not answer in time"
    ),
    ErrorCode.INTERNAL_ERROR: ErrorSpec(500, "내부 오류가 발생했습니다", "Internal error"),
    ErrorCode.FIRMWARE_NOT_FOUND: ErrorSpec(404, "펌웨어 버전이 존재하지 않습니다", "Firmware version does not exist"),
    ErrorCode.DUPLICATE_FIRMWARE_VERSION: ErrorSpec(
        409, "이미 등록된 펌웨어 버전입니다", "The firmware version already exists"
    ),
    ErrorCode.INVALID_FIRMWARE: ErrorSpec(
        422, "펌웨어 파일 또는 정보가 올바르지 않습니다", "Invalid firmware file or data"
    ),
    ErrorCode.UNAUTHORIZED: ErrorSpec(401, "인증이 필요합니다", "Authentication required"),
}

SUCCESS_MESSAGES: dict[str, tuple[str, str]] = {
    "process_started": ("착공이 등록되었습니다", "Process start registered"),
    "process_completed": ("완공이 등록되었습니다", "Process completion registered"),
    "duplicate_completion": ("이미 등록된 완공입니다", "Completion already registered"),
    "lot_created": ("LOT이 생성되었습니다", "LOT created"),
    "lot_closed": ("LOT이 종료되었습니다", "LOT closed"),
    "worker_created": ("작업자가 등록되었습니다", "Worker registered"),
    "firmware_uploaded": ("펌웨어가 등록되었습니다", "Firmware uploaded"),
    "firmware_activated": ("펌웨어가 활성화되었습니다", "Firmware activated"),
    "station_token_created": ("스테이션 토큰이 발급되었습니다", "Station token issued"),
    "station_token_revoked": ("스테이션 토큰이 폐기되었습니다", "Station tokens revoked"),
}


def error_message(code: ErrorCode, lang: str = "ko") -> str:
    spec = ERRORS[code]
    return spec.en if lang == "en" else spec.ko


def success_message(key: str, lang: str = "ko") -> str:
    ko, en = SUCCESS_MESSAGES[key]
    return en if lang == "en" else ko


def required_action(previous_process_name: str, lang: str = "ko") -> str:
    if lang == "en":
        return f"Complete the {previous_process_name} process first"
    return f"{previous_process_name} 공정을 먼저 완료해주세요"
