"""Every word the window shows, in Korean (default) and English; `t(key, lang, **values)`."""

from __future__ import annotations

TEXTS: dict[str, tuple[str, str]] = {
    "title": ("작업장 {station} — {process}", "Station {station} — {process}"),
    "scan_prompt": (
        "바코드를 스캔하세요 (LOT 번호 · 시리얼 · 작업자 카드)",
        "Scan a barcode (LOT · serial · worker badge)",
    ),
    "worker": ("작업자", "Worker"),
    "no_worker": ("작업자 카드를 스캔하세요", "Scan your worker badge"),
    "worker_set": ("작업자 {worker} 확인", "Worker {worker} signed in"),
    "worker_set_hint": ("이제 LOT 바코드를 스캔하세요", "Now scan the LOT barcode"),
    "need_worker": ("작업자 카드를 먼저 스캔해주세요", "Scan your worker badge first"),
    "need_worker_hint": ("LOT {lot} 착공 전에 작업자 확인이 필요합니다", "LOT {lot} needs a worker before the start"),
    "unknown_scan": ("알 수 없는 바코드입니다", "Unknown barcode"),
    "unknown_scan_hint": (
        "LOT 번호, 시리얼 번호 또는 작업자 카드를 스캔하세요: {value}",
        "Scan a LOT, serial or worker badge: {value}",
    ),
    "sending": ("착공 요청 중… {lot}", "Sending the start… {lot}"),
    "started": ("착공이 등록되었습니다", "Process start registered"),
    "work_order": ("작업지시 {wo} · LOT {lot} · {process}", "Work order {wo} · LOT {lot} · {process}"),
    "serial_of": ("시리얼 {serial} → LOT {lot}", "Serial {serial} → LOT {lot}"),
    "gateway_unreachable": ("게이트웨이에 연결할 수 없습니다", "The station gateway does not answer"),
    "gateway_unreachable_hint": (
        "게이트웨이 프로그램이 실행 중인지 확인하세요 ({url})",
        "Check that the gateway is running ({url})",
    ),
    "retry_later": ("잠시 후 다시 스캔해주세요", "Scan again in a moment"),
    "call_manager": ("관리자에게 문의하세요", "Call your supervisor"),
    "offline_banner": (
        "서버 연결 끊김 — 완공 파일은 보관 후 자동 전송됩니다",
        "Server connection lost — completion files are kept and sent automatically",
    ),
    "centre_down_banner": (
        "서버(수집기) 응답 없음 — 완공 파일은 보관 후 자동 전송됩니다",
        "Server (ingestor) not answering — completion files are kept and sent automatically",
    ),
    "gateway_down_banner": (
        "게이트웨이 응답 없음 — 게이트웨이 프로그램을 확인하세요",
        "Gateway not answering — check the gateway program",
    ),
    "outbox_full_banner": (
        "보관함이 가득 찼습니다 — 새 완공 파일을 받을 수 없습니다. 관리자에게 문의하세요",
        "Outbox full — new completion files cannot be taken. Call your supervisor",
    ),
    "online": ("서버 연결됨", "Connected"),
    "current": ("현재 LOT", "Current LOT"),
    "none": ("없음", "none"),
    "today": (
        "오늘 착공 {starts} · 완공 {completions} · 거부 {refusals}",
        "Today: {starts} starts · {completions} completions · {refusals} refused",
    ),
    "outbox": ("전송 대기 {depth}건", "Outbox: {depth} waiting"),
    "outbox_oldest": ("가장 오래된 대기 {age}", "oldest waiting {age}"),
    "outbox_full": ("보관함 가득 참", "outbox full"),
    "pending": ("대기 파일 (pending) {count}", "Waiting files (pending) {count}"),
    "completed": ("최근 완료 (completed) — 오늘 {count}", "Recently completed — today {count}"),
    "error": ("오류 파일 (error) {count}", "Error files (error) {count}"),
    "retry": ("수정 후 다시 보내기", "Send again (after fixing)"),
    "retry_pick": ("다시 보낼 오류 파일을 고르세요", "Pick an error file to send again"),
    "retried": ("{name} → pending/ 다시 보냄", "{name} → sent back to pending/"),
    "retry_failed": ("다시 보내지 못했습니다: {detail}", "Could not send it again: {detail}"),
    "error_log": ("오류 내용", "Error log"),
    "firmware": ("펌웨어 (PROC-004)", "Firmware (PROC-004)"),
    "firmware_line": (
        "버전 {version} · 상태 {status} · 재시도 {retries}",
        "Version {version} · {status} · retries {retries}",
    ),
    "firmware_none": ("펌웨어 정보 없음 (firmware_meta.json 없음)", "No firmware yet (no firmware_meta.json)"),
    "firmware_gave_up": (
        "펌웨어 다운로드 3회 실패 — 네트워크를 확인하고 관리자에게 문의하세요",
        "Firmware download failed 3 times — check the network and call your supervisor",
    ),
    "FW_READY": ("준비됨", "READY"),
    "FW_DOWNLOADING": ("다운로드 중", "DOWNLOADING"),
    "FW_ERROR": ("오류", "ERROR"),
    "serials": ("시리얼 라벨 (PROC-007) {count}", "Serial labels (PROC-007) {count}"),
    "reprint": ("라벨 재출력", "Reprint label"),
    "reprint_pick": ("재출력할 시리얼을 고르세요", "Pick a serial to reprint"),
    "reprint_title": ("라벨 재출력 — {serial}", "Reprint label — {serial}"),
    "reprint_reason": ("재출력 사유", "Reason"),
    "reprint_worker": ("작업자 ID (카드 스캔)", "Worker id (scan badge)"),
    "reprint_user": ("사용자 ID (로그인)", "User name (sign-in)"),
    "reprint_password": ("비밀번호", "Password"),
    "reprint_send": ("재출력", "Reprint"),
    "cancel": ("취소", "Cancel"),
    "reprinted": ("{serial} 라벨을 재출력했습니다", "{serial} label reprinted"),
    "reprint_failed": ("재출력 실패: {message}", "Reprint failed: {message}"),
    "reprint_unavailable": (
        "재출력은 서버 주소(MES_GW_API_BASE_URL)가 설정된 게이트웨이에서만 가능합니다",
        "Reprint needs the gateway's server address (MES_GW_API_BASE_URL)",
    ),
    "REASON_DAMAGED": ("라벨 훼손", "Label damaged"),
    "REASON_UNREADABLE": ("바코드 인식 불가", "Barcode unreadable"),
    "REASON_LOST": ("라벨 분실", "Label lost"),
    "REASON_MISPRINT": ("인쇄 불량", "Misprint"),
    "LABEL_queued": ("대기", "queued"),
    "LABEL_printing": ("출력 중", "printing"),
    "LABEL_printed": ("출력 완료", "printed"),
    "LABEL_failed": ("실패", "failed"),
    "LABEL_uncertain": ("확인 필요", "check"),
    "alerts": ("알림 {count}", "Alerts {count}"),
    "alert_printer": ("프린터 {printer}: {state} (대기 {waiting}장)", "Printer {printer}: {state} ({waiting} waiting)"),
    "alert_nelson": ("SPC 규칙 {rule} 위반", "SPC rule {rule} broken"),
    "alert_cpk": ("Cpk {cpk:.2f} < {threshold:.2f}", "Cpk {cpk:.2f} < {threshold:.2f}"),
    "PRINTER_offline": ("연결 끊김", "offline"),
    "PRINTER_paper_out": ("용지 부족", "out of paper"),
    "PRINTER_head_open": ("헤드 열림", "head open"),
    "PRINTER_paused": ("일시 정지", "paused"),
    "lang": ("English", "한국어"),
    "theme": ("밝게/어둡게", "Light/Dark"),
    "seconds": ("{n}초", "{n} s"),
    "minutes": ("{n}분", "{n} min"),
    "hours": ("{n}시간", "{n} h"),
    "file_col": ("파일", "File"),
    "time_col": ("시각", "Time"),
    "code_col": ("오류", "Error"),
    "serial_col": ("시리얼", "Serial"),
    "state_col": ("상태", "State"),
    "printer_col": ("프린터", "Printer"),
}

REASONS = ("REASON_DAMAGED", "REASON_UNREADABLE", "REASON_LOST", "REASON_MISPRINT")


def t(key: str, lang: str = "ko", **values: object) -> str:
    ko, en = TEXTS[key]
    text = en if lang == "en" else ko
    return text.format(**values) if values else text


def has(key: str) -> bool:
    return key in TEXTS
