"""Play the line: create LOTs, start each process at its station gateway, then drop the vendor app's file."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime
from typing import Any

import httpx

from line_simulator.client import LineClient, Reply
from line_simulator.clock import now_kst
from line_simulator.config import LineConfig, LineReport, Refusal, StationConfig
from line_simulator.payloads import completion_record, start_request
from line_simulator.process_values import FAILABLE_PROCESSES
from line_simulator.stations import LotAborted, drop_bad_files, place_file, say
from mes_contracts.errors import ErrorCode, required_action
from mes_contracts.route import FIRMWARE_PROCESS_ID, ROUTE, ProcessStep, next_step, previous_step

logger = logging.getLogger(__name__)

# "Work" time of each process at speed 1.0, in seconds (divided by the speed, floored at MIN_DELAY).
WORK_SECONDS: dict[str, float] = {
    "PROC-001": 2.0,
    "PROC-002": 5.0,
    "PROC-003": 3.0,
    "PROC-004": 3.0,
    "PROC-005": 4.0,
    "PROC-006": 4.5,
    "PROC-007": 2.0,
    "PROC-008": 3.0,
}
BETWEEN_LOTS_SECONDS = 2.0
SERIAL_PROCESS_ID = "PROC-007"  # its start issues the serial numbers and queues their labels
FINAL_PROCESS_ID = "PROC-008"  # packing + visual inspection: a rejected unit is named by its serial
DEMO_PROCESS_ID = "PROC-002"  # while this one is still running, the next process is started out of order
STATUS_POLLS = 20


class LineStopped(Exception):
    """The whole run cannot go on (the API refuses to create LOTs, too many LOTs abandoned)."""


async def run_line(
    config: LineConfig, report: LineReport | None = None, transport: httpx.AsyncBaseTransport | None = None
) -> LineReport:
    """Run `config.lots` LOTs through the eight processes (forever when 0); re-raises CancelledError cleanly.

    Pass a `report` to keep the counts even when the run is cancelled; `transport` swaps the HTTP layer (tests).
    """
    report = report if report is not None else LineReport()
    rng = random.Random(config.seed)
    say(
        "-",
        f"라인 시뮬레이터 시작: API {config.api_url}, 스테이션 {len(config.stations)}개, "
        f"LOT {config.lots or '∞'}개, 속도 ×{config.pace:g}, 불량률 {config.failure_rate:.0%}",
    )

    def on_retry(what: str, reason: str, attempt: int, delay: float) -> None:
        if attempt == 1 or attempt % 10 == 0:
            say("-", f"{what}: {reason} — {delay:.1f}초 후 재시도 ({attempt}회)")

    try:
        async with LineClient(
            config.api_url, on_retry=on_retry, transport=transport, credentials=config.credentials()
        ) as client:
            line = _Line(config, client, report, rng)
            await line.run()
    except asyncio.CancelledError:
        say("-", "중지 요청: 시뮬레이터를 멈춥니다")
        raise
    finally:
        say("-", report.summary())
    return report


class _Line:
    def __init__(self, config: LineConfig, client: LineClient, report: LineReport, rng: random.Random) -> None:
        self.config = config
        self.client = client
        self.report = report
        self.rng = rng
        self.stations = config.station_map()
        self.side_tasks: list[asyncio.Task[None]] = []  # broken-file drops, followed beside the LOT flow

    async def run(self) -> None:
        try:
            await self.run_lots()
            await asyncio.gather(*self.side_tasks)
        finally:
            for task in self.side_tasks:
                task.cancel()
            await asyncio.gather(*self.side_tasks, return_exceptions=True)

    async def run_lots(self) -> None:
        index, aborted_in_a_row = 0, 0
        while self.config.lots == 0 or index < self.config.lots:
            index += 1
            self.side_tasks = [task for task in self.side_tasks if not task.done()]
            try:
                await self.lot(index)
                aborted_in_a_row = 0
            except LotAborted as error:
                self.report.lots_aborted += 1
                aborted_in_a_row += 1
                say(self.report.lot_numbers[-1] if self.report.lot_numbers else "-", f"LOT 중단: {error}")
                if aborted_in_a_row >= self.config.max_consecutive_aborts:
                    self.report.fatal_error = f"{aborted_in_a_row} LOTs in a row abandoned; last: {error}"
                    say("-", f"연속 {aborted_in_a_row}개 LOT 중단 — 시뮬레이터를 멈춥니다")
                    return
            except LineStopped as error:
                self.report.fatal_error = str(error)
                say("-", f"시뮬레이터 중지: {error}")
                return
            if self.config.lots == 0 or index < self.config.lots:
                await asyncio.sleep(self.config.delay(BETWEEN_LOTS_SECONDS))

    async def lot(self, index: int) -> None:
        lot_number = await self.create_lot()
        every = self.config.bad_file_every
        bad_process = self.rng.choice(ROUTE).process_id if every and (index - 1) % every == 0 else None
        demo = self.config.out_of_order_demo and index == 1
        serials: list[str] = []  # issued by the PROC-007 start; the labels on the units from then on
        for step in ROUTE:
            started = await self.process(lot_number, step, demo and step.process_id == DEMO_PROCESS_ID, serials)
            if step.process_id == SERIAL_PROCESS_ID:
                serials = _serials(started)
            if step.process_id == bad_process:
                station = self.stations[step.process_id]
                self.side_tasks.append(
                    asyncio.create_task(drop_bad_files(self.config, self.report, self.rng, lot_number, station))
                )
        await self.final_status(lot_number)

    async def create_lot(self) -> str:
        config = self.config
        reply = await self.client.create_lot(
            config.product_model, config.target_quantity, config.shift, config.lot_printer_id
        )
        lot_number = reply.data.get("lot_number")
        if not reply.ok or not isinstance(lot_number, str):
            raise LineStopped(f"LOT 생성 실패 HTTP {reply.http_status} {reply.error_code or ''} {reply.message}")
        self.report.lot_numbers.append(lot_number)
        say(lot_number, f"LOT 생성 OK ({config.product_model} × {config.target_quantity}, {config.shift}조)")
        return lot_number

    async def process(self, lot_number: str, step: ProcessStep, demo: bool, serials: list[str]) -> dict[str, Any]:
        """Start, work, drop the completion file(s); the start's answer data."""
        station = self.stations[step.process_id]
        worker_id = self.config.worker_ids[step.process_id]
        start_time = now_kst()
        started = await self.start(lot_number, step, station, worker_id, start_time)
        if demo:
            await self.out_of_order_start(lot_number, step)
        work = self.config.delay(WORK_SECONDS.get(step.process_id, 3.0) * self.rng.uniform(0.8, 1.2))
        fail = self.rng.random() < self.config.failure_rate and step.process_id in FAILABLE_PROCESSES
        await asyncio.sleep(work)
        overrides: dict[str, Any] = {}
        version = _firmware_version(started) if step.process_id == FIRMWARE_PROCESS_ID else None
        if version:
            overrides["process_data"] = {"firmware_version": version}
        if step.process_id == SERIAL_PROCESS_ID and started.get("printer_id"):
            # The vendor app reports the printer the centre sent this LOT's serial labels to.
            overrides["process_data"] = {"printer_id": started["printer_id"]}
        complete_time = max(now_kst(), start_time)
        if fail and step.process_id == FINAL_PROCESS_ID and serials:
            await self.reject_unit(lot_number, step, worker_id, start_time, complete_time, serials)
            fail = False  # the rest of the LOT passes and is boxed
        record = completion_record(
            step.process_id, lot_number, worker_id, start_time, complete_time, self.rng, fail, **overrides
        )
        await place_file(self.config, self.report, self.rng, station, record)
        return started

    async def reject_unit(
        self, lot_number: str, step: ProcessStep, worker_id: str, start: datetime, end: datetime, serials: list[str]
    ) -> None:
        """Final inspection rejects one unit, as a real packing station reports it: by the serial on its label.

        A LOT-level FAIL names no unit, so the centre can mark no serial FAILED, and no LOT-level PASS followed:
        every serial of the LOT stayed IN_PROGRESS (README "Serial genealogy"). Now the rejected unit's FAIL
        (that serial → FAILED), then the caller's LOT-level PASS for the units boxed (the others → PASSED).
        """
        found_at = start + (end - start) / 2  # found during the inspection, before the cart is boxed
        record = completion_record(
            step.process_id,
            lot_number,
            worker_id,
            start,
            found_at,
            self.rng,
            True,
            serial_number=self.rng.choice(serials),
        )
        say(lot_number, f"{step.process_id} {step.name_ko} 불량 판정: {record['serial_number']}")
        await place_file(self.config, self.report, self.rng, self.stations[step.process_id], record)

    async def start(
        self, lot_number: str, step: ProcessStep, station: StationConfig, worker_id: str, start_time: Any
    ) -> dict[str, Any]:
        body = start_request(step.process_id, lot_number, worker_id, start_time)
        deadline = time.monotonic() + self.config.previous_wait
        announced = False
        while True:
            reply = await self.client.start(station.gateway_url, body)
            self.report.start_retries += reply.retries
            if reply.ok or reply.error_code == ErrorCode.DUPLICATE_START:
                self.report.starts_accepted += 1
                note = "착공 OK" if reply.ok else "이미 착공됨 (DUPLICATE_START) — 계속"
                say(lot_number, f"{step.process_id} {step.name_ko} {note} {reply.data.get('work_order_id', '')}")
                return reply.data
            if reply.error_code == ErrorCode.PREVIOUS_PROCESS_NOT_COMPLETED and time.monotonic() < deadline:
                if not announced:
                    say(lot_number, f"{step.process_id} {step.name_ko} 이전 공정 완공 반영 대기 중…")
                    announced = True
                await asyncio.sleep(self.config.delay(1.0))
                continue
            self.refuse(lot_number, step, reply, "착공 거부")
            raise LotAborted(f"{step.process_id} start refused: {reply.error_code or reply.http_status}")

    async def out_of_order_start(self, lot_number: str, running: ProcessStep) -> None:
        """Demo of FR-PROC-003: start the next process while this one is still running; it must be refused."""
        target = next_step(running.process_id)
        if target is None:
            return
        station = self.stations[target.process_id]
        body = start_request(target.process_id, lot_number, self.config.worker_ids[target.process_id], now_kst())
        say(lot_number, f"[시연] {running.name_ko} 완공 전에 {target.process_id} {target.name_ko} 착공 시도")
        reply = await self.client.start(station.gateway_url, body)
        self.report.start_retries += reply.retries
        if reply.ok or reply.error_code == ErrorCode.DUPLICATE_START:
            self.report.starts_accepted += 1
            say(lot_number, f"[시연] 경고: 순서를 어긴 착공이 수락되었습니다 ({target.process_id})")
            logger.warning("out-of-order start of %s for %s was accepted", target.process_id, lot_number)
            return
        self.refuse(lot_number, target, reply, "[시연] 착공 거부")

    def refuse(self, lot_number: str, step: ProcessStep, reply: Reply, label: str) -> None:
        self.report.starts_refused += 1
        self.report.refusals.append(
            Refusal(lot_number, step.process_id, reply.http_status, reply.error_code, reply.message)
        )
        hint = reply.data.get("required_action")
        if hint is None and reply.error_code == ErrorCode.PREVIOUS_PROCESS_NOT_COMPLETED:
            previous = previous_step(step.process_id)
            hint = required_action(previous.name_ko) if previous else None
        say(
            lot_number,
            f"{step.process_id} {step.name_ko} {label} HTTP {reply.http_status} "
            f"{reply.error_code or ''}: {reply.message}" + (f" ({hint})" if hint else ""),
        )

    async def final_status(self, lot_number: str) -> None:
        """Read the LOT back; completion of PROC-008 may take a moment to reach the centre."""
        status, data = "?", {}
        for _ in range(STATUS_POLLS):
            reply = await self.client.get_lot(lot_number)
            data = reply.data
            status = str(data.get("status", f"HTTP {reply.http_status}"))
            if status in ("COMPLETED", "CLOSED") or reply.http_status >= 400:
                break
            await asyncio.sleep(0.5)
        progress = data.get("progress") or {}
        done = f" ({progress.get('completed_processes')}/{progress.get('total_processes')} 공정)" if progress else ""
        self.report.lot_statuses[lot_number] = status
        if status == "COMPLETED":
            self.report.lots_completed += 1
        say(lot_number, f"LOT 상태 {status}{done}")


def _serials(start_data: dict[str, Any]) -> list[str]:
    """The serial numbers the PROC-007 start issued ([] when the answer has none, e.g. DUPLICATE_START)."""
    found = start_data.get("serial_numbers")
    return [s for s in found if isinstance(s, str) and s] if isinstance(found, list) else []


def _firmware_version(start_data: dict[str, Any]) -> str | None:
    """The version the server handed out at the PROC-004 start (`1.2.3` → `v1.2.3`), if any."""
    info = start_data.get("firmware_info")
    version = info.get("version") if isinstance(info, dict) else None
    if not isinstance(version, str) or not version:
        return None
    return version if version.lower().startswith("v") else f"v{version}"
