"""Queued label jobs (LOT labels, serial labels) → the printer's station, in order; runs inside the ingestor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

import aiomqtt
import psycopg
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cloud_api.adapters.database import Database, libpq_dsn
from cloud_api.domain.errors import DomainError
from cloud_api.labels import rendering
from cloud_api.labels.domain import Printer
from cloud_api.settings import CentralSettings
from mes_contracts.envelope import MessageType, Source, make_envelope
from mes_contracts.labels import LabelType, PrintJob, PrintMode
from mes_contracts.topics import Name, service_address

log = logging.getLogger(__name__)

BATCH = 200
PUBLISH_WINDOW = 8
CHANNEL = "mes_label_jobs"  # NOTIFY'd by the label_print_jobs insert trigger (migration 0005)
# One dispatcher at a time across ingestor instances, so jobs leave in queue order.
DISPATCH_LOCK = 5567948053836354387  # int.from_bytes(b"MESLABEL", "big")

PENDING_SQL = text(
    "SELECT j.job_id, j.label_type, j.label_key, j.program, j.reprint, j.created_at AS job_created_at, "
    "l.lot_number, l.target_quantity, l.production_date, pm.model_name, s.serial_number, "
    "s.created_at AS serial_created_at, p.printer_id, p.site, p.line, p.station, p.transport, p.host, p.port, "
    "p.serial_port, p.baud, p.language, p.dpi, p.width_mm, p.height_mm, p.purposes, p.active, p.description "
    "FROM label_print_jobs j JOIN printers p ON p.printer_id = j.printer_id AND p.active "
    "JOIN lots l ON l.id = j.lot_id JOIN product_models pm ON pm.id = l.product_model_id "
    "LEFT JOIN serials s ON s.id = j.serial_id "
    "WHERE j.mode = 'queued' AND (j.status = 'queued' OR (CAST(:redispatch AS double precision) > 0 "
    "AND j.status = 'dispatched' AND j.dispatched_at < now() - make_interval(secs => :redispatch))) "
    "ORDER BY j.queue_seq LIMIT :limit FOR UPDATE OF j"
)
MARK_SQL = text(
    "UPDATE label_print_jobs j SET program = COALESCE(j.program, u.program), target = u.target, "
    "status = CASE WHEN j.status = 'queued' THEN 'dispatched' ELSE j.status END, dispatched_at = now(), "
    "dispatch_count = j.dispatch_count + 1 "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:programs AS text[]), CAST(:targets AS text[])) AS u(job_id, program, "
    "target) WHERE j.job_id = u.job_id"
)
FAIL_SQL = text(
    "UPDATE label_print_jobs SET status = 'failed', error_code = 'INVALID_LABEL_DATA', detail = :detail, "
    "result_at = now() WHERE job_id = :job"
)


def central_source(service_id: str) -> Source:
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", service_id)[:64] or "central"
    return Source.of(service_address(safe), safe)


class LabelDispatcher:
    def __init__(self, db: Database, settings: CentralSettings, source: Source) -> None:
        self.db = db
        self.settings = settings
        self.source = source
        self._seq = time.time_ns() // 1_000_000
        self._wake = asyncio.Event()

    async def run(self, client: aiomqtt.Client) -> None:
        """Until cancelled or the broker link breaks (the ingestor then reconnects and starts a new one)."""
        listener = asyncio.create_task(self._listen(), name="label-jobs-listen")
        try:
            while True:
                self._wake.clear()
                try:
                    sent = await self.dispatch_once(client)
                except aiomqtt.MqttError as error:
                    log.warning("label dispatch stopped, broker link lost: %s", error)
                    return
                except (OSError, DBAPIError, PoolTimeout) as error:
                    log.warning("label dispatch: database unavailable (%s)", type(error).__name__)
                    sent = 0
                except Exception:  # a bug must not stop every later label: log it, try again at the next wake-up
                    log.exception("label dispatch failed")
                    sent = 0
                if sent >= BATCH:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.label_dispatch_poll_s)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self) -> None:
        """Wake the loop at each commit of new queued jobs; the poll covers the time this is down."""
        dsn = libpq_dsn(self.settings.database_url)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._wake.set()
                    async for _ in conn.notifies():
                        self._wake.set()
            except (psycopg.Error, OSError) as error:
                log.warning("label job listener down (%s); polling only for a while", type(error).__name__)
                await asyncio.sleep(5.0)

    async def dispatch_once(self, client: aiomqtt.Client) -> int:
        """Send the next batch of jobs in queue order; returns how many were taken."""
        async with self.db.transaction() as conn:
            locked = await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": DISPATCH_LOCK})
            if not locked.scalar():
                return 0
            rows = await conn.execute(PENDING_SQL, {"limit": BATCH, "redispatch": self.settings.label_redispatch_s})
            jobs = [dict(row) for row in rows.mappings()]
            if not jobs:
                return 0
            sends, broken = await asyncio.to_thread(self._prepare, jobs)
            for job_id, detail in broken:
                log.error("label job %s cannot be rendered: %s", job_id, detail)
                await conn.execute(FAIL_SQL, {"job": job_id, "detail": detail})
            # Published in queue order: paho sends in call order, and the broker keeps a client's QoS 1 order.
            # A few at a time: acknowledgements overlap, and aiomqtt does not warn about many pending calls.
            for start in range(0, len(sends), PUBLISH_WINDOW):
                await asyncio.gather(
                    *(self._publish(client, job, printer) for job, printer in sends[start : start + PUBLISH_WINDOW])
                )
            if sends:
                await conn.execute(
                    MARK_SQL,
                    {
                        "ids": [j.job_id for j, _ in sends],
                        "programs": [j.program for j, _ in sends],
                        "targets": [p.address.prefix for _, p in sends],
                    },
                )
        log.info("label jobs dispatched: %s of %s", len(sends), len(jobs))
        return len(jobs)

    def _prepare(self, jobs: list[dict[str, Any]]) -> tuple[list[tuple[PrintJob, Printer]], list[tuple[Any, str]]]:
        """(jobs ready to send in queue order, (job id, why) of jobs whose label cannot be rendered)."""
        ready: list[tuple[PrintJob, Printer]] = []
        broken: list[tuple[Any, str]] = []
        for row in jobs:
            printer = Printer.from_row(row)
            label_type = LabelType(row["label_type"])
            program = row["program"]
            if program is None:
                try:
                    program = rendering.program_for(self._content(row, label_type), printer)
                except DomainError as error:
                    broken.append((row["job_id"], error.detail or str(error)))
                    continue
            job = PrintJob(
                job_id=row["job_id"],
                printer=printer.config(),
                label_type=label_type,
                label_key=row["label_key"],
                program=program,
                mode=PrintMode.QUEUED,
                reprint=row["reprint"],
                created_at=row["job_created_at"],
            )
            ready.append((job, printer))
        return ready, broken

    def _content(self, row: dict[str, Any], label_type: LabelType) -> Any:
        if label_type is LabelType.SERIAL:
            return rendering.content(
                label_type,
                row["lot_number"],
                row["model_name"],
                self.db.local(row["serial_created_at"]).date(),
                row["serial_number"],
            )
        return rendering.content(
            label_type,
            row["lot_number"],
            row["model_name"],
            row["production_date"],
            target_quantity=row["target_quantity"],
        )

    async def _publish(self, client: aiomqtt.Client, job: PrintJob, printer: Printer) -> None:
        self._seq += 1
        envelope = make_envelope(MessageType.LABEL_PRINT_JOB, self.source, self._seq, job.model_dump(mode="json"))
        await client.publish(printer.address.command(Name.PRINT_LABEL), envelope.to_bytes(), qos=1)
