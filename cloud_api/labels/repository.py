"""SQL of the label service; every function runs inside the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.labels.domain import JobStatus, Printer, PrinterIn, ResultUpdate
from cloud_api.labels.rows import InsertedJob, JobAfterResult, QueuedJob
from mes_contracts.labels import LabelType, PrintMode
from mes_contracts.topics import StationAddress

PRINTER_COLUMNS = (
    "site",
    "line",
    "station",
    "transport",
    "host",
    "port",
    "serial_port",
    "baud",
    "language",
    "dpi",
    "width_mm",
    "height_mm",
    "purposes",
    "active",
    "description",
)


_JOB_COLUMNS = "job_id, printer_id, label_type, label_key, status, target"


def _printer_values(printer: PrinterIn) -> dict[str, Any]:
    values = printer.model_dump(mode="json")
    values["purposes"] = [str(p) for p in printer.purposes]
    return values


async def insert_printer(conn: AsyncConnection, printer: PrinterIn) -> Printer | None:
    """The new printer, or None when the id is taken."""
    columns = ", ".join(("printer_id", *PRINTER_COLUMNS))
    values = ", ".join(f":{c}" for c in ("printer_id", *PRINTER_COLUMNS))
    row = await conn.execute(
        text(f"INSERT INTO printers ({columns}) VALUES ({values}) ON CONFLICT (printer_id) DO NOTHING RETURNING *"),
        _printer_values(printer),
    )
    found = row.mappings().first()
    return Printer.from_row(dict(found)) if found else None


async def lock_printer(conn: AsyncConnection, printer_id: str) -> Printer | None:
    row = await conn.execute(text("SELECT * FROM printers WHERE printer_id = :p FOR UPDATE"), {"p": printer_id})
    found = row.mappings().first()
    return Printer.from_row(dict(found)) if found else None


async def update_printer(conn: AsyncConnection, printer_id: str, changes: dict[str, Any]) -> Printer:
    assert changes and set(changes) <= set(PRINTER_COLUMNS)
    assignments = ", ".join(f"{column} = :{column}" for column in changes)
    row = await conn.execute(
        text(f"UPDATE printers SET {assignments}, updated_at = now() WHERE printer_id = :printer_id RETURNING *"),
        {**changes, "printer_id": printer_id},
    )
    return Printer.from_row(dict(row.mappings().one()))


async def find_printer(conn: AsyncConnection, printer_id: str) -> Printer | None:
    row = await conn.execute(text("SELECT * FROM printers WHERE printer_id = :p"), {"p": printer_id})
    found = row.mappings().first()
    return Printer.from_row(dict(found)) if found else None


async def list_printers(
    conn: AsyncConnection, station: str | None = None, purpose: str | None = None, active: bool | None = None
) -> list[Printer]:
    rows = await conn.execute(
        text(
            "SELECT * FROM printers WHERE (CAST(:station AS text) IS NULL OR station = :station) "
            "AND (CAST(:purpose AS text) IS NULL OR CAST(:purpose AS text) = ANY(purposes)) "
            "AND (CAST(:active AS boolean) IS NULL OR active = :active) ORDER BY created_at, id"
        ),
        {"station": station, "purpose": purpose, "active": active},
    )
    return [Printer.from_row(dict(r)) for r in rows.mappings()]


# The printer a label goes to when none is named: an active printer of that purpose, the one attached to the
# asking station first, else the earliest registered (a new printer never silently becomes the default).
_CHOOSE = (
    "SELECT printer_id FROM printers WHERE active AND (CAST(:pid AS text) IS NULL AND :purpose = ANY(purposes) "
    "OR printer_id = :pid) ORDER BY (site, line, station) IS NOT DISTINCT FROM "
    "(CAST(:site AS text), CAST(:line AS text), CAST(:station AS text)) DESC, created_at, id LIMIT 1"
)


def choice_params(purpose: LabelType, printer_id: str | None, station: StationAddress | None) -> dict[str, Any]:
    return {
        "pid": printer_id,
        "purpose": purpose.value,
        "site": station.site if station else None,
        "line": station.line if station else None,
        "station": station.station if station else None,
    }


async def choose_printer(
    conn: AsyncConnection, purpose: LabelType, printer_id: str | None = None, station: StationAddress | None = None
) -> Printer | None:
    """The named printer if it is active, else the default printer of `purpose` (see _CHOOSE)."""
    row = await conn.execute(
        text(f"SELECT * FROM printers WHERE printer_id = ({_CHOOSE})"), choice_params(purpose, printer_id, station)
    )
    found = row.mappings().first()
    return Printer.from_row(dict(found)) if found else None


async def issue_serials(
    conn: AsyncConnection,
    lot_id: int,
    count: int | None,
    worker_id: str,
    printer_id: str | None,
    station: StationAddress | None,
) -> tuple[list[str], str | None, bool]:
    """Insert the LOT's serials 0001… and one QUEUED label job per serial, in one round trip.

    Returns (serial numbers, printer id or None, whether a named printer was missing). A second issue for the
    same LOT fails on serials' UNIQUE (lot_id, sequence) / (serial_number).
    """
    row = await conn.execute(
        text(
            "WITH lot AS (SELECT l.id, l.lot_number, l.target_quantity, "
            "(SELECT count(*) FROM process_results pr WHERE pr.lot_id = l.id AND pr.result = 'FAIL') AS failed "
            "FROM lots l WHERE l.id = :lot), "
            f"printer AS ({_CHOOSE}), "
            "s AS (INSERT INTO serials (serial_number, lot_id, sequence, status) "
            "SELECT lot.lot_number || '-' || lpad(g::text, 4, '0'), lot.id, g, 'CREATED' FROM lot, "
            "generate_series(1, LEAST(9999, GREATEST(0, COALESCE(CAST(:count AS integer), "
            "lot.target_quantity - lot.failed)))) AS g RETURNING id, serial_number, sequence), "
            "j AS (INSERT INTO label_print_jobs (job_id, printer_id, label_type, lot_id, serial_id, label_key, mode, "
            "requested_by, worker_id, status) SELECT gen_random_uuid(), printer.printer_id, 'SERIAL', :lot, s.id, "
            "s.serial_number, 'queued', :worker, :worker, 'queued' FROM s CROSS JOIN printer ORDER BY s.sequence "
            "RETURNING 1) "
            "SELECT COALESCE((SELECT array_agg(serial_number ORDER BY sequence) FROM s), '{}') AS serials, "
            "(SELECT printer_id FROM printer) AS printer_id, (SELECT count(*) FROM j) AS jobs"
        ),
        {"lot": lot_id, "count": count, "worker": worker_id, **choice_params(LabelType.SERIAL, printer_id, station)},
    )
    found = row.one()
    missing = printer_id is not None and found.printer_id is None
    return list(found.serials), found.printer_id, missing


async def insert_job(conn: AsyncConnection, values: dict[str, Any]) -> InsertedJob:
    """One label job; `values` has the columns below (program may be None: rendered at dispatch)."""
    row = await conn.execute(
        text(
            "INSERT INTO label_print_jobs (job_id, printer_id, label_type, lot_id, serial_id, label_key, program, "
            "mode, reprint, requested_by, worker_id, reason, status, target, dispatched_at, dispatch_count) "
            "VALUES (:job_id, :printer_id, :label_type, :lot_id, :serial_id, :label_key, :program, :mode, "
            ":reprint, :requested_by, :worker_id, :reason, :status, :target, "
            "CASE WHEN CAST(:status AS varchar) = 'dispatched' THEN now() END, "
            "CASE WHEN CAST(:status AS varchar) = 'dispatched' THEN 1 ELSE 0 END) "
            "RETURNING job_id, created_at"
        ),
        values,
    )
    return InsertedJob(*row.one())


def job_values(
    printer_id: str,
    label_type: LabelType,
    lot_id: int,
    serial_id: int | None,
    label_key: str,
    mode: PrintMode,
    requested_by: str,
    *,
    program: str | None = None,
    reprint: bool = False,
    worker_id: str | None = None,
    reason: str | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    immediate = mode is PrintMode.IMMEDIATE
    return {
        "job_id": uuid.uuid4(),
        "printer_id": printer_id,
        "label_type": label_type.value,
        "lot_id": lot_id,
        "serial_id": serial_id,
        "label_key": label_key,
        "program": program,
        "mode": mode.value,
        "reprint": reprint,
        "requested_by": requested_by,
        "worker_id": worker_id,
        "reason": reason,
        # An IMMEDIATE job is published by the API itself right after its commit, never by the dispatcher.
        "status": (JobStatus.DISPATCHED if immediate else JobStatus.QUEUED).value,
        "target": target,
    }


async def apply_result(
    conn: AsyncConnection,
    job_id: uuid.UUID,
    update: ResultUpdate,
    result_message_id: uuid.UUID,
    print_time: datetime | None,
    station: str,
) -> JobAfterResult | None:
    """Record a print result once per result message, only from the station the job was sent to (`target`).

    A printed job stays printed; a waiting note never overrides a failure. Returns the job row as it is
    afterwards (None: unknown job); the caller compares its target with `station`.
    """
    row = await conn.execute(
        text(
            "WITH upd AS (UPDATE label_print_jobs SET status = :status, printer_state = :state, error_code = :code, "
            "detail = :detail, result_message_id = :mid, result_at = now(), "
            "printed_at = CASE WHEN CAST(:status AS varchar) = 'printed' "
            "THEN COALESCE(CAST(:ptime AS timestamptz), now()) ELSE printed_at END "
            "WHERE job_id = :job AND target = :station AND result_message_id IS DISTINCT FROM :mid "
            "AND status <> 'printed' "
            f"AND NOT (CAST(:status AS varchar) = 'waiting' AND status = 'failed') RETURNING {_JOB_COLUMNS}) "
            f"SELECT {_JOB_COLUMNS} FROM upd UNION ALL SELECT {_JOB_COLUMNS} FROM label_print_jobs "
            "WHERE job_id = :job "
            "AND NOT EXISTS (SELECT 1 FROM upd)"
        ),
        {
            "status": update.status.value,
            "state": update.printer_state,
            "code": update.error_code,
            "detail": update.detail,
            "mid": result_message_id,
            "ptime": print_time,
            "job": job_id,
            "station": station,
        },
    )
    found = row.first()
    return JobAfterResult(*found) if found else None


async def fail_job(conn: AsyncConnection, job_id: uuid.UUID, code: str, state: str, detail: str) -> None:
    """An IMMEDIATE job nobody answered in time (a late PRINTED result still wins: apply_result)."""
    await conn.execute(
        text(
            "UPDATE label_print_jobs SET status = 'failed', error_code = :code, printer_state = :state, "
            "detail = :detail, result_at = now() WHERE job_id = :job AND status IN ('dispatched', 'queued')"
        ),
        {"job": job_id, "code": code, "state": state, "detail": detail},
    )


async def queue_lot_label(
    conn: AsyncConnection, lot_id: int, lot_number: str, printer_id: str | None, actor: str
) -> QueuedJob | None:
    """One QUEUED LOT label job on the named (active) printer, else the default LOT printer; None: no printer."""
    row = await conn.execute(
        text(
            "INSERT INTO label_print_jobs (job_id, printer_id, label_type, lot_id, label_key, mode, requested_by, "
            f"status) SELECT gen_random_uuid(), p.printer_id, 'LOT', :lot, :key, 'queued', :actor, 'queued' "
            f"FROM ({_CHOOSE}) AS p RETURNING job_id, printer_id, status"
        ),
        {"lot": lot_id, "key": lot_number, "actor": actor, **choice_params(LabelType.LOT, printer_id, None)},
    )
    found = row.first()
    return QueuedJob(*found) if found else None
