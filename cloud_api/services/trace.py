"""Trace and recall use cases (issue 13): serial → LOT → processes → data; component lot → LOTs and serials.

Each answer is one SQL statement (adapters/trace_sql.py) validated into the typed models of trace_models.py.
How LOT-level results apply to serials is decided in domain/genealogy.py (README "Trace and recall API").
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

from cloud_api.adapters import trace_sql
from cloud_api.adapters.database import Database
from cloud_api.domain.errors import DomainError
from cloud_api.services.trace_models import FirmwareOut, LotTrace, ProcessOut, Recall, SerialTrace
from mes_contracts.errors import ErrorCode

FIRMWARE_PROCESS = "PROC-004"


def _context(db: Database) -> dict[str, Any]:
    return {"zone": db.zone}


async def serial_trace(db: Database, serial_number: str, lang: str) -> SerialTrace:
    async with db.engine.connect() as conn:
        document = await trace_sql.fetch_serial_trace(conn, serial_number, lang)
    if document is None:
        raise DomainError(ErrorCode.SERIAL_NOT_FOUND, {"serial_number": serial_number})
    trace = SerialTrace.model_validate_json(document, context=_context(db))
    processes = [_with_serial_result(p, serial_number) for p in trace.processes]
    return trace.model_copy(update={"processes": processes, "firmware": flashed_firmware(processes)})


async def lot_trace(db: Database, lot_number: str, lang: str) -> LotTrace:
    async with db.engine.connect() as conn:
        document = await trace_sql.fetch_lot_trace(conn, lot_number, lang)
    if document is None:
        raise DomainError(ErrorCode.LOT_NOT_FOUND, {"lot_number": lot_number})
    trace = LotTrace.model_validate_json(document, context=_context(db))
    counts = dict(Counter(s.status for s in trace.serials))
    return trace.model_copy(update={"firmware": flashed_firmware(trace.processes), "serial_counts": counts})


def _with_serial_result(process: ProcessOut, serial_number: str) -> ProcessOut:
    own = [r for r in process.results if r.serial_number == serial_number]
    return process.model_copy(update={"serial_result": own[-1].result if own else None})


def flashed_firmware(processes: list[ProcessOut]) -> FirmwareOut | None:
    """The firmware of the latest PROC-004 result (the one the board carries)."""
    for process in processes:
        if process.process_id == FIRMWARE_PROCESS:
            flashed = [r.firmware for r in process.results if r.firmware is not None]
            return flashed[-1] if flashed else None
    return None


async def recall(db: Database, component_lot: str, kind: str | None, lang: str) -> Recall:
    async with db.engine.connect() as conn:
        lots = await trace_sql.fetch_recall(conn, component_lot, kind, lang)
    counts: Counter[str] = Counter()
    serials = 0
    for lot in lots:
        for serial in lot["serials"]:
            counts[serial["status"]] += 1
            serials += 1
    return Recall.model_validate(
        {
            "component_kind": kind,
            "component_lot": component_lot,
            "lot_count": len({lot["lot_number"] for lot in lots}),
            "serial_count": serials,
            "serial_counts": dict(counts),
            "lots": lots,
        },
        context=_context(db),
    )


CSV_HEADERS = {
    "ko": ["부품 종류", "부품 LOT", "LOT 번호", "LOT 상태", "생산일", "제품", "소모 공정", "공정명", "소모 시각",
           "작업자", "시리얼 번호", "시리얼 상태"],
    "en": ["component_kind", "component_lot", "lot_number", "lot_status", "production_date", "product_model",
           "process_id", "process_name", "consumed_at", "worker_id", "serial_number", "serial_status"],
}  # fmt: skip


def recall_csv(recall_answer: Recall, lang: str) -> bytes:
    """One row per serial (a LOT without serials: one row with empty serial columns); UTF-8 with BOM for Excel."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADERS["en" if lang == "en" else "ko"])
    for lot in recall_answer.lots:
        head = [
            lot.component_kind,
            recall_answer.component_lot,
            lot.lot_number,
            lot.lot_status,
            lot.production_date.isoformat(),
            lot.product_model,
            lot.process_id,
            lot.process_name,
            lot.consumed_at.isoformat() if lot.consumed_at else "",
            lot.worker_id or "",
        ]
        rows = [[s.serial_number, s.status] for s in lot.serials] or [["", ""]]
        for serial in rows:
            writer.writerow([*head, *serial])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
