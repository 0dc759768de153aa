"""The one writer of `measurement_samples`: a COPY of a batch's samples, and the id lookup it needs.

COPY (psycopg `cursor.copy`, text format) runs on the transaction's own connection, so the samples commit or
roll back together with the message id claimed in processed_messages. The rows are built as one text block:
the columns that are constant per series are formatted once, and a timestamp string is made once per second
of the curve (a 1 kHz curve shares each one between 1,000 samples), which keeps Python's share of the work below
the server's (bench/sample_ingest.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.domain.samples import KnownIds
from mes_contracts.measurement import MeasurementBatch

COLUMNS = "lot_id, serial_id, process_id, station, test_point_id, channel, unit, message_id, time, value, seq"
COPY_SQL = f"COPY measurement_samples ({COLUMNS}) FROM STDIN"
_NULL = "\\N"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WRITE_BYTES = 1 << 20  # hand the driver ~1 MiB at a time

_IDS = text(
    "SELECT l.id AS lot_id, s.id AS serial_id, s.lot_id AS serial_lot_id "
    "FROM lots l LEFT JOIN serials s ON s.serial_number = :serial WHERE l.lot_number = :lot"
)


@dataclass(frozen=True, slots=True)
class SampleTarget:
    """Where a batch's samples go: the constant columns of its rows."""

    lot_id: int
    serial_id: int | None
    process_id: str
    station: str
    message_id: uuid.UUID


async def known_ids(conn: AsyncConnection, lot_number: str, serial_number: str | None) -> KnownIds:
    """The LOT's id and, when the serial number exists, the serial's id and its own LOT's id."""
    row = (await conn.execute(_IDS, {"lot": lot_number, "serial": serial_number})).first()
    if row is None:
        return KnownIds(None, None, None)
    return KnownIds(int(row.lot_id), row.serial_id, row.serial_lot_id)


async def copy_samples(conn: AsyncConnection, target: SampleTarget, batch: MeasurementBatch) -> int:
    """COPY every sample of `batch` in its fixed order (seq = position); returns how many."""
    raw = await conn.get_raw_connection()
    driver = cast(psycopg.AsyncConnection[Any], raw.driver_connection)
    async with driver.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
        for block in copy_blocks(target, batch):
            await copy.write(block)
    return batch.sample_count


def copy_blocks(target: SampleTarget, batch: MeasurementBatch) -> Iterator[str]:
    """The COPY text of the batch, in blocks of about _WRITE_BYTES."""
    t0_us = (batch.t0 - _EPOCH) // timedelta(microseconds=1)
    seconds: dict[int, str] = {}
    lines: list[str] = []
    size = 0
    seq = 0
    for series in batch.series:
        prefix = "\t".join(
            (
                str(target.lot_id),
                _nullable(target.serial_id),
                _escape(target.process_id),
                _escape(target.station),
                _nullable(series.test_point_id),
                _escape(series.channel),
                _nullable(series.unit),
                str(target.message_id),
                "",
            )
        )
        for offset, value in zip(series.offsets_us, series.values, strict=True):
            second, micro = divmod(t0_us + offset, 1_000_000)
            stamp = seconds.get(second)
            if stamp is None:
                stamp = seconds[second] = (_EPOCH + timedelta(seconds=second)).strftime("%Y-%m-%d %H:%M:%S")
            line = f"{prefix}{stamp}.{micro:06d}+00\t{value!r}\t{seq}\n"
            lines.append(line)
            size += len(line)
            seq += 1
            if size >= _WRITE_BYTES:
                yield "".join(lines)
                lines, size = [], 0
    if lines:
        yield "".join(lines)


def _escape(value: str) -> str:
    # Identifiers carry no control characters (mes_contracts/text_rules); a backslash is COPY's escape.
    return value.replace("\\", "\\\\")


def _nullable(value: object) -> str:
    return _NULL if value is None else _escape(str(value))
