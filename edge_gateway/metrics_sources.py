"""What one scrape of a gateway's /metrics reads: the parts of the running gateway, and a snapshot of them.

Everything is read when Prometheus asks, not kept up to date per file: the outboxes' depths are the in-memory
mirrors, their oldest ages one indexed row each, error/ one directory listing. A part that cannot be read now
(its file closed while the gateway stops, a disk error) leaves its samples out of this scrape; the rest answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from edge_gateway.dispositions import ERROR_LOG_SUFFIX
from edge_gateway.measurement_outbox import MeasurementStore
from edge_gateway.measurements import MeasurementPipeline
from edge_gateway.mqtt_link import MqttLink
from edge_gateway.pipeline import FilePipeline
from edge_gateway.printing.queue import PrintQueue
from edge_gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)

T = TypeVar("T")
OUTBOXES = ("records", "measurements", "print")


@dataclass(frozen=True, slots=True)
class GatewayParts:
    """The objects of one running gateway that /metrics reads (built by the composition root)."""

    settings: GatewaySettings
    pipeline: FilePipeline
    measurements: MeasurementPipeline
    print_queue: PrintQueue
    link: MqttLink


@dataclass(frozen=True, slots=True)
class PrinterSample:
    printer_id: str
    state: str | None  # the last attempt's finding; None before the first attempt
    waiting: int  # jobs queued or printing


@dataclass(slots=True)
class Snapshot:
    """One scrape's readings; a None (or a missing key) is a value that could not be read this time."""

    depth: dict[str, int] = field(default_factory=dict)
    oldest_age_s: dict[str, float] = field(default_factory=dict)
    error_files: int | None = None
    error_files_today: int | None = None
    printers: list[PrinterSample] = field(default_factory=list)


def local_midnight(now: float | None = None) -> float:
    """Unix time of the last midnight in the station PC's own time zone (KST on the line's PCs)."""
    moment = datetime.fromtimestamp(time.time() if now is None else now).astimezone()
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def count_error_files(error_dir: Path, since: float) -> tuple[int, int]:
    """(files in error/, those that arrived since `since`), not counting `.error.log` companions or temp files.

    A file arrived when its inode changed (POSIX ctime: a rename updates it) or, on Windows where st_ctime is
    the creation time a move keeps, when the gateway wrote its `.error.log` beside it.
    """
    arrived: dict[str, float] = {}
    log_written: dict[str, float] = {}
    with os.scandir(error_dir) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue  # `.name.tmp` of a log being written, folders a person made
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone between the listing and the stat
            if name.endswith(ERROR_LOG_SUFFIX):
                log_written[name.removesuffix(ERROR_LOG_SUFFIX)] = info.st_mtime
            else:
                arrived[name] = info.st_ctime
    today = sum(1 for name, at in arrived.items() if max(at, log_written.get(name, 0.0)) >= since)
    return len(arrived), today


async def _quietly(what: str, read: Awaitable[T]) -> T | None:
    try:
        return await read
    except Exception as error:  # one unreadable part must not cost the scrape its other samples
        logger.debug("metrics: %s not readable now: %s", what, error)
        return None


def _age(created_at: float | None, now: float) -> float:
    return 0.0 if created_at is None else max(0.0, now - created_at)


async def read_snapshot(parts: GatewayParts) -> Snapshot:
    """Read the outboxes, the print queue and error/ concurrently (each on its own thread)."""
    pipeline, measurements, print_queue = parts.pipeline, parts.measurements, parts.print_queue
    snap = Snapshot(depth={"records": pipeline.outbox.depth, "measurements": measurements.outbox.depth})
    totals, measured_oldest, print_oldest, print_status, errors = await asyncio.gather(
        _quietly("outbox", pipeline.outbox.totals()),
        _quietly("measurement outbox", measurements.outbox.run(MeasurementStore.oldest_created_at)),
        _quietly("print queue", print_queue.oldest_unreported_at()),
        _quietly("print queue", print_queue.status()),
        _quietly("error/", asyncio.to_thread(count_error_files, parts.settings.error_dir, local_midnight())),
    )
    now = time.time()
    if totals is not None:
        snap.oldest_age_s["records"] = _age(totals.oldest_created_at, now)
    if measurements.outbox.depth == 0 or measured_oldest is not None:
        snap.oldest_age_s["measurements"] = _age(measured_oldest, now)
    if print_status is not None:
        snap.depth["print"] = int(print_status.get("unreported_results", 0))
        if snap.depth["print"] == 0 or print_oldest is not None:
            snap.oldest_age_s["print"] = _age(print_oldest, now)
        for printer_id, entry in sorted(print_status.get("printers", {}).items()):
            snap.printers.append(PrinterSample(printer_id, entry.get("state"), int(entry.get("waiting", 0))))
    if errors is not None:
        snap.error_files, snap.error_files_today = errors
    return snap
