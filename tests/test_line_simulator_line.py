"""Line simulator flow against an in-memory centre and gateways (httpx MockTransport, no sockets, no servers)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from line_simulator.config import LineConfig, LineReport, StationConfig, load_stations
from line_simulator.line import run_line
from mes_contracts.completion import CompletionRecord, parse_completion_file_name
from mes_contracts.curve_file import is_curve_name, parse_curve
from mes_contracts.errors import ErrorCode
from mes_contracts.route import ROUTE, get_step, previous_step

API = "http://central.test"


class FakeFloor:
    """The centre, the station gateways' /start relay, and the gateways' pending/ pickup, all in memory."""

    def __init__(self, root: Path) -> None:
        self.stations = [
            StationConfig(
                step.process_id,
                f"ST-{step.sequence:02d}",
                root / f"st{step.sequence}",
                f"http://gw{step.sequence}.test",
            )
            for step in ROUTE
        ]
        self.lots: dict[str, str] = {}
        self.runs: dict[str, dict[str, str]] = {}
        self.records: list[dict[str, Any]] = []
        self.rejected: list[tuple[str, str]] = []
        self.curves: list[str] = []
        self.unavailable_once = {"http://gw3.test"}
        self.sizes: dict[Path, int] = {}

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url == f"{API}/api/v1/lots" and request.method == "POST":
            body = json.loads(request.content)
            assert body == {"product_model": "WF-WAIST-01", "target_quantity": 100, "shift": "D"}
            lot = f"WF-KR-251122D-{len(self.lots) + 1:03d}"
            self.lots[lot], self.runs[lot] = "CREATED", {}
            return httpx.Response(
                201,
                json={
                    "status": "success",
                    "message": "LOT이 생성되었습니다",
                    "data": {"lot_number": lot, "status": "CREATED"},
                },
            )
        if url.startswith(f"{API}/api/v1/lots/"):
            lot = url.rsplit("/", 1)[1]
            done = sum(1 for s in self.runs[lot].values() if s == "COMPLETED")
            return httpx.Response(
                200,
                json={
                    "status": "success",
                    "data": {
                        "lot_number": lot,
                        "status": self.lots[lot],
                        "progress": {"completed_processes": done, "total_processes": 8},
                    },
                },
            )
        gateway = url.removesuffix("/start")
        if gateway in self.unavailable_once:
            self.unavailable_once.discard(gateway)
            return httpx.Response(
                503,
                json={"status": "error", "message": "unavailable", "error_code": "SERVICE_UNAVAILABLE", "data": None},
            )
        return self.start(json.loads(request.content))

    def start(self, body: dict[str, Any]) -> httpx.Response:
        lot, process_id = body["lot_number"], body["process_id"]
        step, runs = get_step(process_id), self.runs[lot]
        if process_id in runs:
            return httpx.Response(
                409,
                json={
                    "status": "error",
                    "message": "dup",
                    "error_code": "DUPLICATE_START",
                    "data": {"work_order_id": "WO-x"},
                },
            )
        previous = previous_step(process_id)
        if previous is not None and runs.get(previous.process_id) != "COMPLETED":
            return httpx.Response(
                400,
                json={
                    "status": "error",
                    "message": "이전 공정이 완료되지 않았습니다",
                    "error_code": "PREVIOUS_PROCESS_NOT_COMPLETED",
                    "data": {
                        "lot_number": lot,
                        "current_process": step.name_ko,
                        "previous_process": previous.name_ko,
                        "required_action": f"{previous.name_ko} 공정을 먼저 완료해주세요",
                    },
                },
            )
        runs[process_id] = "STARTED"
        self.lots[lot] = "IN_PROGRESS"
        data = {
            **body,
            "work_order_id": f"WO-20251122-{sum(map(len, self.runs.values())):03d}",
            "sequence_number": step.sequence,
        }
        if process_id == "PROC-007":  # the centre issues the serials at this start (FR-SN-001)
            data["serial_numbers"] = [f"{lot}-{n:04d}" for n in range(1, 4)]
        if process_id == "PROC-004":
            data["firmware_info"] = {
                "version": "1.2.4",
                "filename": "firmware_v1.2.4.bin",
                "file_size": 1,
                "md5_hash": "0" * 32,
                "download_url": "/api/v1/firmware/download/1.2.4",
            }
        return httpx.Response(200, json={"status": "success", "message": "착공이 등록되었습니다", "data": data})

    def verdict(self, name: str, data: bytes) -> str | None:
        if is_curve_name(name):  # a rig's curve beside the completion file (the gateway's curve pickup)
            parse_curve(name, data)
            self.curves.append(name)
            return None
        parsed = parse_completion_file_name(name)
        if parsed is None:
            return ErrorCode.INVALID_FILE_NAME
        try:
            raw = json.loads(data.decode("utf-8"))
            record = CompletionRecord.model_validate(raw)
        except ValueError as error:
            return ErrorCode.INVALID_JSON if isinstance(error, json.JSONDecodeError) else ErrorCode.INVALID_PROCESS_DATA
        if (record.lot_number, record.process_id) != (parsed.lot_number, parsed.process_id):
            return ErrorCode.FILE_CONTENT_MISMATCH
        if self.runs.get(record.lot_number, {}).get(record.process_id) is None:
            return ErrorCode.PROCESS_NOT_STARTED
        self.runs[record.lot_number][record.process_id] = "COMPLETED"
        if record.process_id == "PROC-008":
            self.lots[record.lot_number] = "COMPLETED"
        self.records.append(raw)
        return None

    async def pickup(self) -> None:
        """Move files that have stopped growing; ignore `*.tmp`, as a real gateway must."""
        while True:
            for station in self.stations:
                pending = station.work_dir / "pending"
                for path in list(pending.glob("*")) if pending.exists() else []:
                    size = path.stat().st_size
                    stable = self.sizes.get(path) == size and time.time() - path.stat().st_mtime > 0.08
                    self.sizes[path] = size
                    if path.name.endswith(".tmp") or not stable:
                        continue
                    code = self.verdict(path.name, path.read_bytes())
                    folder = station.work_dir / ("completed" if code is None else "error")
                    folder.mkdir(exist_ok=True)
                    target = folder / path.name
                    if target.exists():
                        target = folder / f"{path.stem}_{time.time_ns()}.json"
                    shutil.move(path, target)
                    if code is not None:
                        self.rejected.append((path.name, code))
                        (folder / f"{target.name}.error.log").write_text(json.dumps({"error_code": code}))
            await asyncio.sleep(0.02)


@pytest.fixture
def floor(tmp_path: Path) -> FakeFloor:
    return FakeFloor(tmp_path)


def config_for(floor: FakeFloor, **changes: Any) -> LineConfig:
    settings: dict[str, Any] = {"api_url": API, "stations": floor.stations, "lots": 2, "speed": 500.0, "seed": 5}
    settings.update(changes)
    return LineConfig(**settings)


async def play(floor: FakeFloor, config: LineConfig, report: LineReport | None = None) -> LineReport:
    mover = asyncio.create_task(floor.pickup())
    try:
        return await run_line(config, report, transport=httpx.MockTransport(floor.handle))
    finally:
        mover.cancel()


async def test_two_lots_run_through_the_line(floor: FakeFloor, capsys: pytest.CaptureFixture[str]) -> None:
    report = await asyncio.wait_for(play(floor, config_for(floor, failure_rate=0.3)), timeout=60)

    assert report.ok, report
    assert report.lot_numbers == ["WF-KR-251122D-001", "WF-KR-251122D-002"]
    assert report.lots_completed == 2 and report.lot_statuses == dict.fromkeys(report.lot_numbers, "COMPLETED")
    assert (report.starts_accepted, report.starts_refused, report.files_completed) == (16, 1, 16)
    assert report.start_retries == 1
    refusal = report.refusals[0]
    assert (refusal.process_id, refusal.error_code, refusal.http_status) == (
        "PROC-003",
        "PREVIOUS_PROCESS_NOT_COMPLETED",
        400,
    )
    assert (report.bad_files_written, report.bad_files_rejected, report.bad_files_accepted) == (8, 8, 0)
    expected = {
        ErrorCode.INVALID_JSON,
        ErrorCode.INVALID_PROCESS_DATA,
        ErrorCode.INVALID_FILE_NAME,
        ErrorCode.FILE_CONTENT_MISMATCH,
    }
    assert sorted(code for _, code in floor.rejected) == sorted([*expected, *expected])

    assert len(floor.records) == 16
    # PROC-006: a curve per test point, PROC-003: one temperature curve, per LOT (each parsed by the fake floor)
    assert report.curve_files_written == len(floor.curves) == 2 * (3 + 1)
    firmware = [r for r in floor.records if r["process_id"] == "PROC-004"]
    assert {r["process_data"]["firmware_version"] for r in firmware} == {"v1.2.4"}
    assert {(r["process_id"], r["worker_id"]) for r in floor.records} == {
        (s.process_id, f"W{s.sequence:03d}") for s in ROUTE
    }
    fails = sum(CompletionRecord.model_validate(r).typed_data().outcome() == "FAIL" for r in floor.records)
    assert fails == report.failed_results
    for station in floor.stations:
        assert list((station.work_dir / "pending").iterdir()) == []

    out = capsys.readouterr().out
    assert "[WF-KR-251122D-001] PROC-003 센서 검사 [시연] 착공 거부 HTTP 400 PREVIOUS_PROCESS_NOT_COMPLETED" in out
    assert "LMA 조립 공정을 먼저 완료해주세요" in out
    assert "잘못된 파일 result_final.json" in out and "→ error/ (INVALID_FILE_NAME)" in out
    assert "PROC-001 레이저 마킹 착공 OK WO-" in out
    assert out.count("LOT 상태 COMPLETED (8/8 공정)") == 2


async def test_cancellation_stops_cleanly(floor: FakeFloor) -> None:
    report = LineReport()
    task = asyncio.create_task(play(floor, config_for(floor, lots=0, speed=20.0), report))
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert report.lot_numbers and report.starts_accepted >= 1
    for station in floor.stations:
        for folder in ("pending", "completed", "error"):
            directory = station.work_dir / folder
            assert not any(name.endswith(".tmp") for name in (os.listdir(directory) if directory.exists() else []))


async def test_refused_start_abandons_the_lot_and_stops_after_repeats(floor: FakeFloor) -> None:

    def refuse_workers(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/start":
            return httpx.Response(
                404,
                json={
                    "status": "error",
                    "message": "작업자 ID가 존재하지 않습니다",
                    "error_code": "WORKER_NOT_FOUND",
                    "data": None,
                },
            )
        return floor.handle(request)

    config = config_for(floor, lots=0, out_of_order_demo=False, bad_file_every=0)
    report = await asyncio.wait_for(run_line(config, transport=httpx.MockTransport(refuse_workers)), timeout=30)
    assert report.lots_aborted == 3 and report.fatal_error and not report.ok
    assert {r.error_code for r in report.refusals} == {"WORKER_NOT_FOUND"}


def test_config_validation_and_defaults(floor: FakeFloor) -> None:
    config = config_for(floor)
    assert config.worker_ids["PROC-001"] == "W001" and config.worker_ids["PROC-008"] == "W008"
    assert config.delay(2.0) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="PROC-008"):
        LineConfig(api_url=API, stations=floor.stations[:7])
    with pytest.raises(ValueError):
        config_for(floor, shift="X")
    with pytest.raises(ValueError):
        config_for(floor, failure_rate=1.5)


def test_stations_json(tmp_path: Path) -> None:
    path = tmp_path / "stations.json"
    items = [
        {
            "process_id": s.process_id,
            "station_id": f"ST-{s.sequence:02d}",
            "work_dir": f"work/st{s.sequence}",
            "gateway_url": f"http://127.0.0.1:87{10 + s.sequence}/",
        }
        for s in ROUTE
    ]
    items[0]["worker_id"] = "W101"
    path.write_text(json.dumps(items))
    stations = load_stations(path)
    assert stations[2].work_dir == tmp_path / "work" / "st3"
    assert stations[2].gateway_url == "http://127.0.0.1:8713"
    assert LineConfig(api_url=API, stations=stations).worker_ids["PROC-001"] == "W101"
    path.write_text(json.dumps({"stations": [{"process_id": "PROC-001"}]}))
    with pytest.raises(ValueError, match="lacks"):
        load_stations(path)


def test_cli_entry_reports_a_bad_stations_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from line_simulator.cli_entry import main

    assert main(API, tmp_path / "missing.json", 1, 1.0, None, 0.05) == 2
    (tmp_path / "partial.json").write_text(
        json.dumps([{"process_id": "PROC-001", "station_id": "ST-01", "work_dir": "w", "gateway_url": "http://x"}])
    )
    assert main(API, tmp_path / "partial.json", 1, 1.0, None, 0.05) == 2
    assert "PROC-002" in capsys.readouterr().err


async def test_a_lot_failing_final_inspection_names_the_rejected_unit_then_passes_the_rest(floor: FakeFloor) -> None:
    """PROC-008 FAIL as a packing station reports it: the rejected unit's serial with FAIL, then the LOT's PASS
    (a LOT-level FAIL alone named no unit: the centre left every serial IN_PROGRESS)."""
    config = config_for(floor, lots=1, failure_rate=1.0, bad_file_every=0, out_of_order_demo=False)
    report = await asyncio.wait_for(play(floor, config), timeout=60)

    assert report.ok and report.lots_completed == 1, report
    final = [r for r in floor.records if r["process_id"] == "PROC-008"]
    verdicts = [CompletionRecord.model_validate(r).typed_data().outcome() for r in final]
    assert verdicts == ["FAIL", "PASS"]
    rejected, boxed = final
    assert rejected["serial_number"] in {f"{rejected['lot_number']}-{n:04d}" for n in range(1, 4)}
    assert rejected["process_data"]["inspection_notes"]  # what the inspector saw
    assert "serial_number" not in boxed and "serial_number" not in boxed["process_data"]
    assert rejected["start_time"] == boxed["start_time"] and rejected["complete_time"] <= boxed["complete_time"]
    # Processes with no serial yet, or whose contract has no unit, still fail LOT-level, one file each.
    others = [r for r in floor.records if r["process_id"] != "PROC-008"]
    assert len(others) == 7 and not any("serial_number" in r for r in others)
    assert report.files_completed == 9 and report.failed_results == 6  # PROC-001/003/004/006/007 + the unit


async def test_without_serials_in_the_start_answer_final_inspection_fails_lot_level(floor: FakeFloor) -> None:
    """A centre that answered PROC-007 without serial numbers: nothing to name, the LOT-level FAIL as before."""
    original = floor.start

    def without_serials(body: dict[str, Any]) -> httpx.Response:
        answer = original(body)
        data = json.loads(answer.content)
        (data.get("data") or {}).pop("serial_numbers", None)
        return httpx.Response(answer.status_code, json=data)

    floor.start = without_serials  # type: ignore[method-assign]
    config = config_for(floor, lots=1, failure_rate=1.0, bad_file_every=0, out_of_order_demo=False)
    report = await asyncio.wait_for(play(floor, config), timeout=60)
    assert report.ok, report
    final = [r for r in floor.records if r["process_id"] == "PROC-008"]
    assert [CompletionRecord.model_validate(r).typed_data().outcome() for r in final] == ["FAIL"]
