"""Station window, Tk-free: scan recognition, the big answer, the banner and panels (quick tier)."""

from __future__ import annotations

from typing import Any

import pytest

from station_ui.config import check_loopback, process_of
from station_ui.presenter import DANGER, INFO, SUCCESS, WARNING, scan_verdict, start_verdict
from station_ui.scan import ScanKind, classify
from station_ui.status_presenter import age_text, banner_of, present
from station_ui.theme import pick_family, pick_sizes, pick_theme

LOT = "WF-KR-251110D-001"


@pytest.mark.parametrize(
    ("text", "kind", "lot"),
    [
        (LOT, ScanKind.LOT, LOT),
        (f" {LOT.lower()}\r\n", ScanKind.LOT, LOT),  # Caps Lock off on the wedge, CR/LF from the scanner
        (f"{LOT}-0042", ScanKind.SERIAL, LOT),
        ("W003", ScanKind.WORKER, None),
        ("w.kim_01", ScanKind.WORKER, None),
        ("홍길동", ScanKind.UNKNOWN, None),
        ("WF-KR-251110X-001", ScanKind.WORKER, None),  # not a LOT (shift X): only a worker id by its characters
    ],
)
def test_a_scan_is_recognised_by_its_format(text: str, kind: ScanKind, lot: str | None) -> None:
    scan = classify(text)
    assert (scan.kind, scan.lot_number) == (kind, lot)


def test_badge_then_lot_flow_and_refusals_without_a_request() -> None:
    assert scan_verdict(classify("W003"), None, "ko") == scan_verdict(classify("W003"), "W001", "ko")
    badge = scan_verdict(classify("W003"), None, "ko")
    assert badge is not None and badge.tone == INFO and "W003" in badge.headline and badge.beep is None
    no_worker = scan_verdict(classify(LOT), None, "ko")
    assert (
        no_worker is not None and no_worker.tone == WARNING and no_worker.headline == "작업자 카드를 먼저 스캔해주세요"
    )
    assert scan_verdict(classify(LOT), "W003", "ko") is None  # a start to send
    unknown = scan_verdict(classify("???"), "W003", "en")
    assert unknown is not None and unknown.headline == "Unknown barcode" and unknown.beep == "error"


def test_a_start_fills_the_screen_green_with_the_work_order() -> None:
    body = {
        "status": "success",
        "message": "착공이 등록되었습니다",
        "data": {"lot_number": LOT, "work_order_id": "WO-20251110-0007", "process_id": "PROC-003"},
    }
    verdict = start_verdict(200, body, "PROC-003", "ko")
    assert (verdict.tone, verdict.headline, verdict.beep) == (SUCCESS, "착공이 등록되었습니다", "ok")
    assert "WO-20251110-0007" in verdict.detail and "센서 검사" in verdict.detail


def test_an_out_of_order_start_is_red_with_the_required_action_in_either_language() -> None:
    body = {
        "status": "error",
        "message": "이전 공정이 완료되지 않았습니다",
        "error_code": "PREVIOUS_PROCESS_NOT_COMPLETED",
        "data": {"required_action": "LMA 조립 공정을 먼저 완료해주세요"},
    }
    ko = start_verdict(400, body, "PROC-003", "ko")
    assert (ko.tone, ko.headline, ko.detail, ko.beep) == (
        DANGER,
        "이전 공정이 완료되지 않았습니다",
        "LMA 조립 공정을 먼저 완료해주세요",
        "error",
    )
    en = start_verdict(400, body, "PROC-003", "en")
    assert en.headline == "The previous process has not been completed"
    assert en.detail.startswith("Complete the ") and en.detail.endswith(" process first")


def test_unreachable_gateway_busy_centre_and_firmware_failure() -> None:
    gone = start_verdict(None, None, "PROC-001", "ko", "http://127.0.0.1:8701")
    assert gone.tone == DANGER and "127.0.0.1:8701" in gone.detail
    busy = {"status": "error", "message": "x", "error_code": "SERVICE_UNAVAILABLE", "data": {"reason": "broker_down"}}
    assert "잠시 후 다시 스캔해주세요" in start_verdict(503, busy, "PROC-001", "ko").detail
    failed_fw = {
        "status": "success",
        "data": {"work_order_id": "WO-1", "firmware_sync": {"status": "ERROR", "message": "펌웨어 v1 다운로드에 실패"}},
    }
    verdict = start_verdict(200, failed_fw, "PROC-004", "ko")
    assert verdict.tone == WARNING and "펌웨어 v1 다운로드에 실패" in verdict.detail and verdict.beep == "error"


def _summary(**status: Any) -> dict[str, Any]:
    base = {"connected": True, "server_online": True, "outbox": {"depth": 0, "full": False}}
    return {"status": {**base, **status}, "activity": {}, "files": {}}


def test_banner_priority_gateway_then_link_then_outbox() -> None:
    assert banner_of(_summary(), "ko") is None
    assert banner_of(None, "ko").text.startswith("게이트웨이 응답 없음")  # type: ignore[union-attr]
    offline = banner_of(_summary(connected=False, outbox={"full": True}), "ko")
    assert offline is not None and offline.text == "서버 연결 끊김 — 완공 파일은 보관 후 자동 전송됩니다"
    centre = banner_of(_summary(server_online=False), "ko")
    assert centre is not None and centre.text == offline.text and "수집기" in centre.detail
    full = banner_of(_summary(outbox={"depth": 9, "full": True}), "en")
    assert full is not None and full.text.startswith("Outbox full")


def test_panels_from_a_summary() -> None:
    summary = _summary(outbox={"depth": 3, "oldest_pending_age_s": 125.0, "full": False})
    summary["activity"] = {
        "starts_today": 4,
        "refusals_today": 1,
        "current": {"lot_number": LOT, "process_id": "PROC-007", "work_order_id": "WO-9", "worker_id": "W007"},
    }
    summary["files"] = {
        "pending": [{"name": "a.json", "age_s": 3.0}],
        "pending_count": 1,
        "completed": [{"name": "b.json", "modified": "2025-11-10T09:00:01+09:00"}],
        "completed_today": 12,
        "error": [
            {"name": "c.json", "error_code": "INVALID_JSON", "message": "JSON 형식이 올바르지 않습니다", "log": "L"}
        ],
        "error_count": 1,
    }
    summary["labels"] = [
        {"label_key": f"{LOT}-0001", "label_type": "SERIAL", "state": "printed", "printer_id": "P7", "reprint": True},
        {
            "label_key": f"{LOT}-0002",
            "label_type": "SERIAL",
            "state": "queued",
            "printer_id": "P7",
            "waiting_state": "paper_out",
        },
        {"label_key": LOT, "label_type": "LOT", "state": "printed", "printer_id": "P1"},
    ]
    summary["alerts"] = [
        {"source": "printer", "printer_id": "P7", "printer_state": "paper_out", "waiting": 2},
        {
            "source": "centre",
            "kind": "nelson",
            "rule": 1,
            "process_id": "PROC-006",
            "characteristic": "peak_torque",
            "message_ko": "관리한계(3σ) 밖의 점",
            "message_en": "point beyond 3 sigma",
            "raised_at": "2025-11-10T09:30:05+09:00",
        },
    ]
    model = present(summary, "PROC-007", "ko")
    assert model.banner is None and model.connection.tone == SUCCESS
    assert model.current == f"{LOT} · PROC-007 라벨 프린팅 · WO-9 · W007"
    assert model.today == "오늘 착공 4 · 완공 12 · 거부 1"
    assert model.outbox.text == "전송 대기 3건 · 가장 오래된 대기 2분"
    assert model.pending == [("a.json", "3초")] and model.completed == [("b.json", "09:00:01")]
    assert model.errors == [("c.json", "INVALID_JSON", "JSON 형식이 올바르지 않습니다")] and model.error_logs == {
        "c.json": "L"
    }
    assert model.serials == [(f"{LOT}-0001", "출력 완료 ↺", "P7"), (f"{LOT}-0002", "대기 (용지 부족)", "P7")]
    assert [line.tone for line in model.alerts] == [WARNING, DANGER]
    assert model.alerts[0].text == "프린터 P7: 용지 부족 (대기 2장)"
    assert model.alerts[1].text == "09:30:05 SPC 규칙 1 위반: 관리한계(3σ) 밖의 점 (PROC-006 · peak_torque)"
    english = present(summary, "PROC-007", "en").alerts
    assert english[1].text == "09:30:05 SPC rule 1 broken: point beyond 3 sigma (PROC-006 · peak_torque)"
    assert model.firmware == []  # not a PROC-004 station


def test_firmware_panel_says_when_three_downloads_failed() -> None:
    summary = _summary()
    summary["firmware"] = {"status": "ERROR", "version": "v1.2.3", "retries": 2, "attempts": 3, "gave_up": True}
    lines = present(summary, "PROC-004", "ko").firmware
    assert lines[0].text == "버전 v1.2.3 · 상태 오류 · 재시도 2" and lines[0].tone == DANGER
    assert lines[1].text.startswith("펌웨어 다운로드 3회 실패")
    summary["firmware"] = {"status": "DOWNLOADING", "version": "v1.2.4", "retries": None}
    assert present(summary, "PROC-004", "en").firmware[0].text == "Version v1.2.4 · DOWNLOADING · retries -"
    summary["firmware"] = {"status": None, "meta": None}
    assert present(summary, "PROC-004", "ko").firmware[0].text.startswith("펌웨어 정보 없음")


def test_gateway_gone_shows_the_banner_and_empty_panels() -> None:
    model = present(None, "PROC-001", "ko")
    assert model.banner is not None and model.connection.tone == DANGER and model.pending == []


def test_small_helpers() -> None:
    assert [age_text(s, "ko") for s in (None, 5, 600, 7200)] == ["-", "5초", "10분", "2.0시간"]
    assert process_of("st03") == "PROC-003" and process_of("press-1", "PROC-006") == "PROC-006"
    with pytest.raises(ValueError, match="--process"):
        process_of("press-1")
    with pytest.raises(ValueError, match="unknown process"):
        process_of("st01", "PROC-099")
    assert check_loopback("http://127.0.0.1:8703/") == "http://127.0.0.1:8703"
    with pytest.raises(ValueError, match="loopback"):
        check_loopback("http://10.0.0.5:8703")
    assert pick_sizes("auto", 1920).geometry == "1920x1080" and pick_sizes("auto", 1280).geometry == "1280x1024"
    assert pick_family({"Arial", "NanumGothic"}) == "NanumGothic"
    assert pick_family({"Noto Sans CJK KR", "NanumGothic"}) == "Noto Sans CJK KR"
    assert pick_theme(True, ["bootstrap-light", "bootstrap-dark"]) == "bootstrap-dark"
    assert pick_theme(False, ["flatly", "darkly"]) == "flatly"
