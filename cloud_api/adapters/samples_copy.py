"""The one writer of `measurement_samples`: a COPY of a batch's samples, and the id lookup it needs.

COPY (psycopg `cursor.copy`, binary format) runs on the transaction's own connection, so the samples commit or
roll back together with the message id claimed in processed_messages. The rows are sent in the binary COPY format;
the eight columns that are constant per series are encoded once, so each sample costs one `struct.pack`, which
keeps Python's share of the work below the server's (bench/sample_ingest.py).
"""

from __future__ import annotations

import struct
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
COPY_SQL = f"COPY measurement_samples ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # binary timestamptz: microseconds since this instant
_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_FIELDS = struct.Struct(">h")
_LEN = struct.Struct(">i")
_INT8 = struct.Struct(">iq")
_ROW = struct.Struct(">iqidii")  # time (len 8, int64), value (len 8, float8), seq (len 4, int4)
_NULL_FIELD = _LEN.pack(-1)
_UUID_LEN = _LEN.pack(16)
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


def copy_blocks(target: SampleTarget, batch: MeasurementBatch) -> Iterator[bytes]:
    """The batch as COPY BINARY data, in blocks of about _WRITE_BYTES: header, rows, trailer.

    Per row only time, value and seq vary: the other eight fields are encoded once per series. Binary keeps the
    value's exact bits (no float → text → float) and spares the server parsing timestamps.
    """
    t0 = (batch.t0 - _PG_EPOCH) // timedelta(microseconds=1)
    blocks: list[bytes] = [_HEADER]
    size = len(_HEADER)
    seq = 0
    pack = _ROW.pack
    for series in batch.series:
        prefix = _FIELDS.pack(11) + b"".join(
            (
                _int8(target.lot_id),
                _int8(target.serial_id),
                _text(target.process_id),
                _text(target.station),
                _text(series.test_point_id),
                _text(series.channel),
                _text(series.unit),
                _UUID_LEN + target.message_id.bytes,
            )
        )
        for offset, value in zip(series.offsets_us, series.values, strict=True):
            row = prefix + pack(8, t0 + offset, 8, value, 4, seq)
            blocks.append(row)
            size += len(row)
            seq += 1
            if size >= _WRITE_BYTES:
                yield b"".join(blocks)
                blocks, size = [], 0
    blocks.append(_TRAILER)
    yield b"".join(blocks)


def _int8(value: int | None) -> bytes:
    return _NULL_FIELD if value is None else _INT8.pack(8, value)


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL_FIELD
    data = value.encode()
    return _LEN.pack(len(data)) + data
