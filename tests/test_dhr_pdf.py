"""eDHR per serial (issue 13 point 6): GET /api/v1/trace/serials/{serial}/dhr.pdf, its text layer read by pdftotext.

The items of 21 CFR 820.184 must be in the text: dates, quantities, acceptance records with results and
measurements, the label printed (and reprinted, with the reason), the unit's identification, component lots,
firmware; Korean must come out as Korean (the Nanum font is embedded, not substituted).
"""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from cloud_api.services import dhr_pdf
from cloud_api.services.trace_models import SerialTrace
from line_simulator.payloads import completion_record
from mes_contracts.route import ROUTE
from tests.support.auth import RoleAuth
from tests.support.line import SEOUL, Line

pytestmark = [pytest.mark.processes, pytest.mark.plain_pg]  # pdftotext is a child process
needs_pdftotext = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) missing")
_STAMPS = itertools.count(1)


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "dhr.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True, text=True).stdout


def _sample_trace() -> SerialTrace:
    at = "2026-12-05T09:00:00+09:00"
    measurement = {
        "time": at,
        "test_point_id": "TEMP_SENSOR",
        "characteristic": "temperature",
        "value": 60.4,
        "unit": "°C",
        "target": 60.0,
        "tolerance": 1.0,
        "lower_limit": 59.0,
        "upper_limit": 61.0,
        "result": "PASS",
        "out_of_limits": False,
    }
    processes: list[dict[str, Any]] = []
    for step in ROUTE:
        result = {
            "result_id": step.sequence,
            "level": "LOT",
            "serial_number": None,
            "result": "PASS",
            "failure_reasons": [],
            "worker_id": f"W00{step.sequence}",
            "station": f"KR/L1/st0{step.sequence}",
            "file_name": "x.json",
            "start_time": at,
            "complete_time": at,
            "recorded_at": at,
            "process_data": {},
            "measurements": [measurement] if step.process_id == "PROC-003" else [],
            "component_lots": [],
            "firmware": {
                "version": "v1.2.3",
                "md5_hash": "0" * 32,
                "filename": "f.bin",
                "file_size": 1,
                "target_mcu": "X",
            }
            if step.process_id == "PROC-004"
            else None,
        }
        processes.append(
            {
                "process_id": step.process_id,
                "process_name": step.name_ko,
                "sequence": step.sequence,
                "status": "COMPLETED",
                "work_order_id": f"WO-20261205-00{step.sequence}",
                "start_time": at,
                "start_worker_id": f"W00{step.sequence}",
                "start_station": f"KR/L1/st0{step.sequence}",
                "complete_time": at,
                "complete_worker_id": f"W00{step.sequence}",
                "result": "PASS",
                "completion_count": 1,
                "result_counts": {"total": 1, "lot_level": 1, "unit_level": 0, "passed": 1, "failed": 0},
                "failure_counts": [],
                "results": [result],
            }
        )
    label = {
        "job_id": str(uuid.uuid4()),
        "label_type": "SERIAL",
        "serial_number": "WF-KR-261205D-001-0001",
        "printer_id": "PRINTER-07",
        "reprint": True,
        "reason": "라벨 훼손",
        "worker_id": "W007",
        "requested_by": "kim",
        "status": "printed",
        "requested_at": at,
        "printed_at": at,
    }
    return SerialTrace.model_validate(
        {
            "serial": {"serial_number": "WF-KR-261205D-001-0001", "sequence": 1, "status": "PASSED", "created_at": at},
            "status_history": [],
            "lot": {
                "lot_number": "WF-KR-261205D-001",
                "product_model": "Withforce",
                "model_code": "WF-WAIST-01",
                "target_quantity": 100,
                "shift": "D",
                "production_date": "2026-12-05",
                "status": "COMPLETED",
                "created_by": "kim",
                "created_at": at,
            },
            "processes": processes,
            "component_lots": [
                {
                    "process_id": "PROC-002",
                    "component_kind": "sma_spring",
                    "component_lot": "SPR-1",
                    "serial_number": None,
                }
            ],
            "firmware": processes[3]["results"][0]["firmware"],
            "labels": [label],
        }
    )


@needs_pdftotext
def test_rendered_record_has_every_820_184_item_in_korean(tmp_path: Path) -> None:
    text = pdf_text(dhr_pdf.render(_sample_trace(), "ko", datetime.now(SEOUL)), tmp_path)
    for expected in (
        "기기 이력 기록",  # title, Korean glyphs survive the text layer
        "820.184(a)",
        "820.184(b), (c)",
        "820.184(d)",
        "820.184(e)",
        "820.184(f)",
        "WF-KR-261205D-001-0001",
        "레이저 마킹",
        "포장 + 외관검사",
        "60.4",
        "59 … 61",
        "SPR-1",
        "v1.2.3",
        "0" * 32,
        "라벨 훼손",
        "PRINTER-07",
    ):
        assert expected in text, expected


@needs_pdftotext
def test_english_record(tmp_path: Path) -> None:
    text = pdf_text(dhr_pdf.render(_sample_trace(), "en", datetime.now(SEOUL)), tmp_path)
    assert "Device History Record" in text and "Acceptance records" in text and "레이저 마킹" in text


@pytest.fixture
def passed_serial(line: Line, db: psycopg.Connection) -> tuple[str, str, str]:
    """A LOT of one unit through all 8 processes (PASS); a serial label print and a reprint stored for it."""
    rng = random.Random(820)
    lot = line.create_lot(quantity=1)
    spring = f"SPR-{uuid.uuid4().hex[:8]}"
    serial = ""
    for step in ROUTE:
        worker = f"W{step.sequence:03d}"
        started = line.start_via_gateway(lot, step.process_id, worker)
        assert started.status_code == 200, started.text
        if step.process_id == "PROC-007":
            serial = started.json()["data"]["serial_numbers"][0]
        end = datetime.now(SEOUL).replace(microsecond=0)
        overrides: dict[str, Any] = (
            {"process_data": {"sma_spring_lot": spring}} if step.process_id == "PROC-002" else {}
        )
        record = completion_record(step.process_id, lot, worker, end - timedelta(minutes=2), end, rng, **overrides)
        name = line.drop_record(record, stamp=datetime.now(SEOUL) + timedelta(seconds=next(_STAMPS)))
        assert line.wait_disposition(step.process_id, name) == "completed"
    # Label jobs as the label service stores them, on an inactive printer so no other test's default moves.
    printer = f"PRN-DHR-{uuid.uuid4().hex[:6]}"
    db.execute(
        "INSERT INTO printers (printer_id, station, transport, host, active) VALUES (%s, 'st07', 'tcp', '127.0.0.1', "
        "false)",
        (printer,),
    )
    db.execute(
        "INSERT INTO label_print_jobs (job_id, printer_id, label_type, lot_id, serial_id, label_key, mode, reprint, "
        "requested_by, worker_id, reason, status, printed_at) SELECT gen_random_uuid(), %s, 'SERIAL', s.lot_id, s.id, "
        "s.serial_number, m, r, 't-manager', w, why, 'printed', now() FROM serials s, (VALUES ('queued', false, "
        "NULL, NULL), ('immediate', true, 'W007', '라벨 훼손 재발행')) AS v(m, r, w, why) WHERE s.serial_number = %s",
        (printer, serial),
    )
    return lot, serial, spring


@needs_pdftotext
def test_dhr_pdf_of_a_real_serial(
    line: Line, auth: RoleAuth, passed_serial: tuple[str, str, str], tmp_path: Path
) -> None:
    lot, serial, spring = passed_serial
    answer = httpx.get(f"{line.api_url}/api/v1/trace/serials/{serial}/dhr.pdf", auth=auth.viewer, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pdf" and answer.content.startswith(b"%PDF")
    text = pdf_text(answer.content, tmp_path)
    for expected in (serial, lot, "기기 이력 기록", "PASSED", "센서 검사", spring, "라벨 훼손 재발행", "W008"):
        assert expected in text, expected
    trace = httpx.get(f"{line.api_url}/api/v1/trace/serials/{serial}", auth=auth.viewer).json()["data"]
    assert [(label["reprint"], label["reason"]) for label in trace["labels"]] == [
        (False, None),
        (True, "라벨 훼손 재발행"),
    ]
    missing = httpx.get(f"{line.api_url}/api/v1/trace/serials/{lot}-9999/dhr.pdf", auth=auth.viewer)
    assert missing.status_code == 404 and missing.json()["error_code"] == "SERIAL_NOT_FOUND"
