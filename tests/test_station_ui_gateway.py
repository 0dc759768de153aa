"""The gateway's loopback routes for the station window (/window/*), in process with a fake broker link."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_gateway.activity import StationActivity
from edge_gateway.alerts_board import AlertBoard
from edge_gateway.dispositions import ErrorReport, move_to_error
from edge_gateway.local_api import create_app
from edge_gateway.printing.queue_store import PrintQueueStore
from edge_gateway.start_relay import StartRelay
from edge_gateway.window_api import WindowSources, firmware_state
from mes_contracts.envelope import Envelope, Outcome, ReplyPayload
from mes_contracts.labels import PrinterConfig
from mes_contracts.topics import StationAddress
from tests.support.print_centre import make_job

LOT = "WF-KR-251110D-001"
NAME = f"{LOT}_PROC-007_20251110_090000.json"


class Link:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body
        self._seq = itertools.count()
        self.connected = True

    def next_seq(self) -> int:
        return next(self._seq)

    async def request(self, topic: str, envelope: Envelope, timeout: float) -> ReplyPayload:
        outcome = Outcome.ACCEPTED if self.status == 200 else Outcome.REJECTED
        return ReplyPayload(in_reply_to=envelope.message_id, outcome=outcome, http_status=self.status, body=self.body)


async def _status() -> dict[str, Any]:
    return {"connected": True, "server_online": True, "print_queue": {"printers": {"P7": {"state": "paper_out"}}}}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    for folder in ("pending", "completed", "error"):
        (tmp_path / folder).mkdir()
    return tmp_path


def _client(work: Path, link: Link, activity: StationActivity, alerts: AlertBoard | None = None) -> httpx.AsyncClient:
    sources = WindowSources(work, _status, activity, alerts or AlertBoard(), work / "print_queue.sqlite3")
    app = create_app(StartRelay(link, StationAddress("KR", "L1", "st07"), "gw-st07", 5), _status, sources)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


def _start(lot: str = LOT) -> dict[str, str]:
    return {
        "lot_number": lot,
        "process_id": "PROC-007",
        "process_name": "라벨 프린팅",
        "worker_id": "W007",
        "start_time": "2025-11-10T09:00:00+09:00",
    }


async def test_start_answers_feed_the_day_book(work: Path) -> None:
    serials = [f"{LOT}-0001", f"{LOT}-0002"]
    ok = {
        "status": "success",
        "data": {**_start(), "work_order_id": "WO-7", "serial_numbers": serials, "printer_id": "P7"},
    }
    activity = StationActivity()
    async with _client(work, Link(200, ok), activity) as client:
        assert (await client.post("/start", json=_start())).status_code == 200
        summary = (await client.get("/window/summary")).json()
    assert summary["activity"]["starts_today"] == 1 and summary["activity"]["refusals_today"] == 0
    assert summary["activity"]["current"]["work_order_id"] == "WO-7"
    assert summary["activity"]["serial_starts"] == [{"lot_number": LOT, "printer_id": "P7", "serials": serials}]
    refused = {"status": "error", "error_code": "DUPLICATE_START", "message": "이미 착공된 공정입니다", "data": None}
    async with _client(work, Link(409, refused), activity) as client:
        assert (await client.post("/start", json=_start())).status_code == 409
        summary = (await client.get("/window/summary")).json()
    assert summary["activity"]["refusals_today"] == 1
    assert summary["activity"]["recent_answers"][0]["error_code"] == "DUPLICATE_START"
    assert summary["activity"]["current"]["work_order_id"] == "WO-7"  # a refusal does not change the current LOT


async def test_work_folders_are_listed_with_the_korean_error_log(work: Path) -> None:
    (work / "pending" / "b.json").write_text("{}")
    (work / "pending" / ".b.json.tmp").write_text("{}")  # a temporary: not listed
    (work / "completed" / "a.json").write_text("{}")  # not a completion file name: listed, not counted
    (work / "completed" / f"{LOT}_PROC-007_20251110080000.json").write_text("{}")
    (work / "pending" / NAME).write_text("{broken")
    move_to_error(
        work / "pending" / NAME, work / "error", ErrorReport(NAME, "INVALID_JSON", "JSON 형식이 올바르지 않습니다", {})
    )
    async with _client(work, Link(200, {}), StationActivity()) as client:
        files = (await client.get("/window/summary")).json()["files"]
    assert [f["name"] for f in files["pending"]] == ["b.json"] and files["pending_count"] == 1
    assert sorted(f["name"] for f in files["completed"]) == [f"{LOT}_PROC-007_20251110080000.json", "a.json"]
    assert files["completed_today"] == 1
    (error,) = files["error"]
    assert (error["name"], error["error_code"], error["message"]) == (
        NAME,
        "INVALID_JSON",
        "JSON 형식이 올바르지 않습니다",
    )
    assert "original_name: " + NAME in error["log"]


async def test_retry_moves_a_fixed_file_back_to_pending_and_logs_it(work: Path) -> None:
    (work / "pending" / NAME).write_text("{broken")
    move_to_error(
        work / "pending" / NAME, work / "error", ErrorReport(NAME, "INVALID_JSON", "JSON 형식이 올바르지 않습니다", {})
    )
    (work / "error" / NAME).write_text(json.dumps({"fixed": True}))
    async with _client(work, Link(200, {}), StationActivity()) as client:
        for bad in ("../pending/x.json", f"{NAME}.error.log", "missing.json", ""):
            refused = await client.post("/window/retry", json={"name": bad})
            assert refused.status_code in (404, 422) and refused.json()["status"] == "error", bad
        answer = await client.post("/window/retry", json={"name": NAME, "worker_id": "W007"})
        assert answer.status_code == 200, answer.text
        again = await client.post("/window/retry", json={"name": NAME})
    assert again.status_code == 404
    assert (work / "pending" / NAME).read_text() == '{"fixed": true}'
    assert not (work / "error" / NAME).exists() and not (work / "error" / f"{NAME}.error.log").exists()
    (entry,) = [json.loads(line) for line in (work / "retries.log").read_text().splitlines()]
    assert (entry["file"], entry["worker_id"], entry["previous_error_code"]) == (NAME, "W007", "INVALID_JSON")


async def test_retry_refuses_when_pending_holds_the_name(work: Path) -> None:
    (work / "error" / NAME).write_text("{}")
    (work / "pending" / NAME).write_text("{}")
    async with _client(work, Link(200, {}), StationActivity()) as client:
        answer = await client.post("/window/retry", json={"name": NAME})
    assert answer.status_code == 422 and answer.json()["data"]["reason"] == "NAME_TAKEN"
    assert (work / "error" / NAME).exists()


async def test_serial_labels_and_alerts(work: Path) -> None:
    printer = PrinterConfig(printer_id="P7", station="st07", transport="tcp", host="127.0.0.1")
    store = PrintQueueStore(work / "print_queue.sqlite3")
    try:
        store.accept(make_job(printer, f"{LOT}-0001"), 1.0)
        store.accept(make_job(printer, f"{LOT}-0002"), 2.0)
    finally:
        store.close()
    alerts = AlertBoard()
    spc = {"alert_id": 5, "kind": "spc", "severity": "critical", "message": "관리 한계 이탈"}
    alerts.add_payload(json.dumps({"type": "alert", "payload": spc}).encode())
    alerts.add_payload(json.dumps(spc).encode())  # a redelivery shows once
    alerts.add_payload(b"not json")
    async with _client(work, Link(200, {}), StationActivity(), alerts) as client:
        summary = (await client.get("/window/summary")).json()
    assert [(label["label_key"], label["state"]) for label in summary["labels"]] == [
        (f"{LOT}-0002", "queued"),
        (f"{LOT}-0001", "queued"),
    ]
    assert [a["source"] for a in summary["alerts"]] == ["printer", "centre"]
    assert summary["alerts"][0]["printer_state"] == "paper_out" and summary["alerts"][1]["alert_id"] == 5
    assert summary["reprint_available"] is False


async def test_reprint_without_a_server_address_is_refused(work: Path) -> None:
    async with _client(work, Link(200, {}), StationActivity()) as client:
        answer = await client.post("/window/reprint", json={"serial_number": f"{LOT}-0001"})
    assert answer.status_code == 503 and answer.json()["data"]["reason"] == "no_api_base_url"


def test_firmware_state_reads_the_meta_and_the_last_sync(work: Path) -> None:
    activity = StationActivity()
    sources = WindowSources(work, _status, activity, AlertBoard(), work / "q.sqlite3")
    assert firmware_state(sources)["status"] is None
    (work / "firmware").mkdir()
    meta = {"version": "v1.2.3", "status": "ERROR", "filename": "firmware_v1.2.3.bin"}
    (work / "firmware" / "firmware_meta.json").write_text(json.dumps(meta))
    body = {"status": "success", "data": {"firmware_sync": {"status": "ERROR", "version": "v1.2.3", "attempts": 3}}}
    activity.record_start(json.dumps(_start()).encode(), 200, body)
    state = firmware_state(sources)
    assert (state["status"], state["version"], state["retries"], state["gave_up"]) == ("ERROR", "v1.2.3", 2, True)
