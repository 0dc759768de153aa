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
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    DUPLICATE_USER = "DUPLICATE_USER"
    PRINTER_NOT_FOUND = "PRINTER_NOT_FOUND"
    PRINTER_NOT_CONNECTED = "PRINTER_NOT_CONNECTED"
    PRINTER_OUT_OF_PAPER = "PRINTER_OUT_OF_PAPER"
    INVALID_LABEL_DATA = "INVALID_LABEL_DATA"
    SERIAL_NOT_FOUND = "SERIAL_NOT_FOUND"
    DUPLICATE_PRINTER = "DUPLICATE_PRINTER"
    # A message the centre could not store (data error, constraint, unexpected failure): quarantined in
    # dead_letters and answered with this code so the station moves the file to error/ and goes on.
    MESSAGE_NOT_STORABLE = "MESSAGE_NOT_STORABLE"
    # The station that sent a start or completion is not configured for that process (station_processes).
    STATION_NOT_ALLOWED = "STATION_NOT_ALLOWED"
    # A station-side pickup problem with one file: not a regular file, unreadable, or too large.
    INVALID_FILE = "INVALID_FILE"
    # A curve file or a measurement batch that breaks the measurement contract (header, numbers, time order, size).
    INVALID_MEASUREMENT_DATA = "INVALID_MEASUREMENT_DATA"
    # SPC (issue 14): too few values in the period to estimate limits; an alert id that does not exist.
    SPC_NOT_ENOUGH_DATA = "SPC_NOT_ENOUGH_DATA"
    ALERT_NOT_FOUND = "ALERT_NOT_FOUND"
    # An envelope version this centre does not speak (a gateway newer than the centre: upgrade the centre first).
    UNSUPPORTED_MESSAGE_VERSION = "UNSUPPORTED_MESSAGE_VERSION"


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
    ErrorCode.PRODUCT_MODEL_NOT_FOUND: ErrorSpec(404, "제품 모델이 존재하지 않습니다", "Product model does not exist"),
    ErrorCode.LOT_SEQUENCE_EXHAUSTED: ErrorSpec(
        409, "당일 LOT 순번을 모두 사용했습니다", "All LOT sequence numbers of the day are used"
    ),
    ErrorCode.INVALID_LOT_STATE: ErrorSpec(
        409, "현재 LOT 상태에서 허용되지 않는 작업입니다", "Not allowed in the LOT's current state"
    ),
    ErrorCode.PROCESS_NOT_STARTED: ErrorSpec(
        409, "착공되지 않은 공정의 완공입니다", "Completion for a process that was not started"
    ),
    ErrorCode.INVALID_PROCESS_DATA: ErrorSpec(422, "공정 데이터가 올바르지 않습니다", "Process data is invalid"),
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
    ErrorCode.GATEWAY_TIMEOUT: ErrorSpec(504, "서버 응답 시간이 초과되었습니다", "The server did not answer in time"),
    ErrorCode.INTERNAL_ERROR: ErrorSpec(500, "내부 오류가 발생했습니다", "Internal error"),
    ErrorCode.FIRMWARE_NOT_FOUND: ErrorSpec(404, "펌웨어 버전이 존재하지 않습니다", "Firmware version does not exist"),
    ErrorCode.DUPLICATE_FIRMWARE_VERSION: ErrorSpec(
        409, "이미 등록된 펌웨어 버전입니다", "The firmware version already exists"
    ),
    ErrorCode.INVALID_FIRMWARE: ErrorSpec(
        422, "펌웨어 파일 또는 정보가 올바르지 않습니다", "Invalid firmware file or data"
    ),
    ErrorCode.UNAUTHORIZED: ErrorSpec(401, "인증이 필요합니다", "Authentication required"),
    ErrorCode.INVALID_CREDENTIALS: ErrorSpec(
        401, "아이디 또는 비밀번호가 올바르지 않습니다", "Wrong user name or password"
    ),
    ErrorCode.FORBIDDEN: ErrorSpec(403, "권한이 없습니다", "Not allowed for your role"),
    ErrorCode.RATE_LIMITED: ErrorSpec(
        429, "요청이 너무 많습니다. 잠시 후 다시 시도해주세요", "Too many requests; try again later"
    ),
    ErrorCode.PAYLOAD_TOO_LARGE: ErrorSpec(413, "요청 크기가 너무 큽니다", "Request body too large"),
    ErrorCode.USER_NOT_FOUND: ErrorSpec(404, "사용자가 존재하지 않습니다", "User does not exist"),
    ErrorCode.DUPLICATE_USER: ErrorSpec(409, "이미 존재하는 사용자입니다", "The user already exists"),
    ErrorCode.PRINTER_NOT_FOUND: ErrorSpec(404, "프린터 ID가 등록되지 않음", "Printer ID is not registered"),
    ErrorCode.PRINTER_NOT_CONNECTED: ErrorSpec(503, "프린터 연결 실패", "Printer not connected"),
    ErrorCode.PRINTER_OUT_OF_PAPER: ErrorSpec(503, "용지 부족", "Printer is out of paper"),
    ErrorCode.INVALID_LABEL_DATA: ErrorSpec(422, "라벨 데이터가 올바르지 않습니다", "Invalid label data"),
    ErrorCode.SERIAL_NOT_FOUND: ErrorSpec(404, "시리얼 번호가 존재하지 않습니다", "Serial number does not exist"),
    ErrorCode.DUPLICATE_PRINTER: ErrorSpec(409, "이미 등록된 프린터 ID입니다", "The printer ID already exists"),
    ErrorCode.MESSAGE_NOT_STORABLE: ErrorSpec(
        422, "서버가 저장할 수 없는 데이터입니다 (격리 보관됨)", "The server cannot store this data (quarantined)"
    ),
    ErrorCode.STATION_NOT_ALLOWED: ErrorSpec(
        403, "이 스테이션에 허용되지 않은 공정입니다", "This station is not configured for the process"
    ),
    ErrorCode.INVALID_FILE: ErrorSpec(
        422,
        "처리할 수 없는 파일입니다 (일반 파일이 아니거나 크기 초과 또는 읽기 실패)",
        "The file cannot be processed (not a regular file, too large, or unreadable)",
    ),
    ErrorCode.INVALID_MEASUREMENT_DATA: ErrorSpec(422, "측정 데이터가 올바르지 않습니다", "Invalid measurement data"),
    ErrorCode.SPC_NOT_ENOUGH_DATA: ErrorSpec(
        422, "관리한계를 계산할 데이터가 부족합니다", "Not enough data in the period to compute control limits"
    ),
    ErrorCode.ALERT_NOT_FOUND: ErrorSpec(404, "알림이 존재하지 않습니다", "The alert does not exist"),
    ErrorCode.UNSUPPORTED_MESSAGE_VERSION: ErrorSpec(
        422,
        "지원하지 않는 메시지 버전입니다 (서버를 먼저 업그레이드하세요)",
        "Unsupported message version (upgrade the server first)",
    ),
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
    "logged_in": ("로그인되었습니다", "Logged in"),
    "logged_out": ("로그아웃되었습니다", "Logged out"),
    "token_refreshed": ("토큰이 갱신되었습니다", "Token refreshed"),
    "user_created": ("사용자가 등록되었습니다", "User created"),
    "user_updated": ("사용자 정보가 변경되었습니다", "User updated"),
    "password_changed": ("비밀번호가 변경되었습니다", "Password changed"),
    "label_printed": ("라벨이 출력되었습니다.", "The label was printed."),
    "label_reprinted": ("라벨이 재출력되었습니다.", "The label was reprinted."),
    "printer_registered": ("프린터가 등록되었습니다", "Printer registered"),
    "printer_updated": ("프린터 정보가 변경되었습니다", "Printer updated"),
    "print_result_recorded": ("출력 결과가 등록되었습니다", "Print result recorded"),
    "samples_recorded": ("측정값이 저장되었습니다", "Samples stored"),
    "spc_baseline_set": ("SPC 기준선이 등록되었습니다", "SPC baseline set"),
    "alert_acknowledged": ("알림이 확인 처리되었습니다", "Alert acknowledged"),
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
