"""SQL of SPC: the values of one characteristic (from `measurements`) and the versioned `spc_baselines`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

# The test point is compared with `=` or IS NULL: both reach the (process_id, characteristic, test_point_id, time)
# indexes and TimescaleDB's segment filter, where IS NOT DISTINCT FROM would reach neither.
_TEST_POINT = {True: "m.test_point_id = :test_point", False: "m.test_point_id IS NULL"}
# The same values as one row (a 90-day I chart reads ~45,000: one row instead of 45,000 Python rows, datetimes and
# numbers). The measurements alone are read in the chart's order (time, result_id: on plain PostgreSQL an index-only
# scan of 0014's covering index) and aggregated in that order (a plain aggregate over an ordered, limited subquery
# keeps it). Numbers come as packed big-endian binary (int8send/float8send: numpy reads them in one step, twice as
# fast as array text), the time as PostgreSQL sends it in binary: microseconds since 2000-01-01 (exact, and 12 ms
# cheaper than extract(epoch), a numeric, for 45,000 values). What names the points comes as two small maps,
# LOT id -> number and serial id -> number for the serials of those LOTs (one index range per LOT on serials
# (lot_id, sequence)) instead of 45,000 serial look-ups by id, the names joined by newlines (split in one step;
# checked against the number of ids). Spec limits: those of the newest value that has them.
_PACK = "string_agg({}({}), ''::bytea)"
_COLUMNS = (
    "SELECT a.count, a.micros, a.values, a.lots, a.serials, a.lsl, a.usl, l.*, s.* FROM (SELECT count(*), "
    + _PACK.format("timestamptz_send", "time")
    + " AS micros, "
    + _PACK.format("float8send", "value")
    + " AS values, "
    + _PACK.format("int8send", "lot_id")
    + " AS lots, "
    + _PACK.format("int8send", "COALESCE(serial_id, -1)")
    + " AS serials, array_agg(DISTINCT lot_id) AS lot_ids, "
    "(array_agg(lower_limit) FILTER (WHERE lower_limit IS NOT NULL))[count(lower_limit)] AS lsl, "
    "(array_agg(upper_limit) FILTER (WHERE upper_limit IS NOT NULL))[count(upper_limit)] AS usl FROM ("
    "SELECT m.time, m.result_id, m.value, m.lot_id, m.serial_id, m.lower_limit, m.upper_limit FROM measurements m "
    "WHERE m.process_id = :process_id AND m.characteristic = :characteristic AND {test_point} "
    "AND m.time >= :start AND m.time < :end AND m.value IS NOT NULL AND m.value <> 'NaN' "
    "ORDER BY m.time, m.result_id LIMIT :limit) v) a "
    "CROSS JOIN LATERAL (SELECT "
    + _PACK.format("int8send", "id")
    + ", string_agg(lot_number, E'\\n') FROM lots WHERE id = ANY(a.lot_ids)) l "
    "CROSS JOIN LATERAL ({serials}) s"
)
_SERIALS = {
    True: "SELECT "
    + _PACK.format("int8send", "id")
    + ", string_agg(serial_number, E'\\n') FROM serials WHERE lot_id = ANY(a.lot_ids)",
    False: "SELECT NULL::bytea, NULL::text",
}
COLUMNS_SQL = {
    (serials, has_point): text(_COLUMNS.format(serials=_SERIALS[serials], test_point=_TEST_POINT[has_point]))
    for serials in (True, False)
    for has_point in (True, False)
}
SERIAL_NUMBERS_SQL = text("SELECT id, serial_number FROM serials WHERE id = ANY(:ids)")
LOT_NUMBERS_SQL = text("SELECT id, lot_number FROM lots WHERE id = ANY(:ids)")

# The newest `count` values up to a moment (the alert watch's window), returned oldest first: an index scan
# backwards from `until` (the test point compared with `=` or IS NULL, so the index order is the time order).
_RECENT = (
    "SELECT * FROM (SELECT m.time, m.value, m.result_id, m.lot_id, l.lot_number, s.serial_number, m.lower_limit, "
    "m.upper_limit FROM measurements m JOIN lots l ON l.id = m.lot_id LEFT JOIN serials s ON s.id = m.serial_id "
    "WHERE m.process_id = :process_id AND m.characteristic = :characteristic AND {test_point} "
    "AND m.time <= :until AND m.value IS NOT NULL AND m.value <> 'NaN' ORDER BY m.time DESC, m.result_id DESC "
    "LIMIT :count) recent ORDER BY time, result_id"
)
RECENT_SQL = {has_point: text(_RECENT.format(test_point=_TEST_POINT[has_point])) for has_point in (True, False)}
BASELINE_COLUMNS = (
    "id, process_id, characteristic, test_point_id, chart, subgroup, version, period_from, period_to, mu, sigma, "
    "points, values_count, reason, created_by, created_at"
)
LIST_BASELINES_SQL = text(
    f"SELECT {BASELINE_COLUMNS} FROM spc_baselines WHERE process_id = :process_id AND characteristic = "
    ":characteristic AND test_point_id = :test_point AND (CAST(:chart AS text) IS NULL OR chart = :chart) "
    "ORDER BY chart, subgroup, version DESC"
)
CURRENT_BASELINE_SQL = text(
    f"SELECT {BASELINE_COLUMNS} FROM spc_baselines WHERE process_id = :process_id AND characteristic = "
    ":characteristic AND test_point_id = :test_point AND chart = :chart AND subgroup = :subgroup "
    "ORDER BY version DESC LIMIT 1"
)
# Versions are numbered per chart: the transaction-scoped advisory lock serialises two managers setting one at once.
LOCK_SQL = text("SELECT pg_advisory_xact_lock(hashtext(:key))")
NEXT_VERSION_SQL = text(
    "SELECT COALESCE(MAX(version), 0) + 1 FROM spc_baselines WHERE process_id = :process_id AND characteristic = "
    ":characteristic AND test_point_id = :test_point AND chart = :chart AND subgroup = :subgroup"
)
INSERT_BASELINE_SQL = text(
    "INSERT INTO spc_baselines (process_id, characteristic, test_point_id, chart, subgroup, version, period_from, "
    "period_to, mu, sigma, points, values_count, reason, created_by) VALUES (:process_id, :characteristic, "
    ":test_point, :chart, :subgroup, :version, :period_from, :period_to, :mu, :sigma, :points, :values_count, "
    f":reason, :created_by) RETURNING {BASELINE_COLUMNS}"
)
PROCESS_EXISTS_SQL = text("SELECT EXISTS (SELECT 1 FROM process_steps WHERE process_id = :process_id)")


class ValueRow(NamedTuple):
    """One measured value of a characteristic, with what names its point (a named tuple: tens of thousands of
    them per 90-day chart, built several times faster than a frozen dataclass)."""

    time: datetime
    value: float
    result_id: int
    lot_id: int
    lot_number: str
    serial_number: str | None
    lower_limit: float | None
    upper_limit: float | None


@dataclass(frozen=True, slots=True)
class ValueColumns:
    """Values of a characteristic column-wise, oldest first: time in microseconds since the epoch (UTC), the
    key naming each value's point (serial number, else LOT number; the LOT number for LOT subgroups)."""

    micros: np.ndarray[tuple[int], np.dtype[np.int64]]
    values: np.ndarray[tuple[int], np.dtype[np.float64]]
    lot_ids: np.ndarray[tuple[int], np.dtype[np.int64]]
    keys: list[str]
    lower_limit: float | None  # of the newest value that has one
    upper_limit: float | None

    def __len__(self) -> int:
        return len(self.values)

    def head(self, count: int) -> ValueColumns:
        """The oldest `count` values (the spec limits stay those read: the caller asked for them)."""
        if count >= len(self):
            return self
        return ValueColumns(
            self.micros[:count], self.values[:count], self.lot_ids[:count], self.keys[:count], self.lower_limit,
            self.upper_limit,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class BaselineRow:
    id: int
    process_id: str
    characteristic: str
    test_point_id: str  # '' for none (part of the version key)
    chart: str
    subgroup: str
    version: int
    period_from: datetime
    period_to: datetime
    mu: float
    sigma: float
    points: int
    values_count: int
    reason: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewBaseline:
    process_id: str
    characteristic: str
    test_point_id: str
    chart: str
    subgroup: str
    period_from: datetime
    period_to: datetime
    mu: float
    sigma: float
    points: int
    values_count: int
    reason: str
    created_by: str


async def value_columns(
    conn: AsyncConnection,
    process_id: str,
    characteristic: str,
    test_point: str | None,
    start: datetime,
    end: datetime,
    limit: int,
    serials: bool = True,
) -> ValueColumns:
    """`values` column-wise; `serials=False` names every value by its LOT (LOT subgroups: no serial look-ups)."""
    params = {
        "process_id": process_id,
        "characteristic": characteristic,
        "test_point": test_point,
        "start": start,
        "end": end,
        "limit": limit,
    }
    row = (await conn.execute(COLUMNS_SQL[serials, test_point is not None], params)).one()
    count, micros, values, lots, serial_ids, lsl, usl, lot_ids, lot_numbers, known_ids, known_numbers = row
    if not count:
        return ValueColumns(_INTS[:0], _FLOATS[:0], _INTS[:0], [], None, None)
    lots_array = _unpack(lots, ">i8")
    lot_map = await _name_map(conn, LOT_NUMBERS_SQL, lot_ids, lot_numbers)
    keys = _names(*lot_map, lots_array)
    if serials:
        ids = _unpack(serial_ids, ">i8")  # -1: no serial
        known, numbers = await _name_map(conn, SERIAL_NUMBERS_SQL, known_ids, known_numbers)
        serial_keys = _names(known, numbers, ids)
        missing = np.unique(ids[(ids >= 0) & (serial_keys == None)])  # noqa: E711 (element-wise)
        if len(missing):  # a serial of another LOT than its measurement's (not expected): look it up by id
            extra = (await conn.execute(SERIAL_NUMBERS_SQL, {"ids": missing.tolist()})).all()
            known = np.concatenate((known, np.array([r[0] for r in extra], dtype=np.int64)))
            serial_keys = _names(known, numbers + [r[1] for r in extra], ids)
        keys = np.where(serial_keys == None, keys, serial_keys)  # noqa: E711 (element-wise on an object array)
    times = _unpack(micros, ">i8") + _PG_EPOCH_MICROS
    return ValueColumns(times, _unpack(values, ">f8"), lots_array, keys.tolist(), lsl, usl)


def _unpack(packed: bytes | None, dtype: str) -> np.ndarray[tuple[int], np.dtype[Any]]:
    """Big-endian packed numbers (int8send/float8send) as a native numpy array."""
    if packed is None:
        return np.zeros(0, dtype=dtype).astype(dtype[1:])
    return np.frombuffer(packed, dtype=dtype).astype(dtype[1:])


async def _name_map(
    conn: AsyncConnection, by_id: TextClause, packed_ids: bytes | None, joined: str | None
) -> tuple[np.ndarray[tuple[int], np.dtype[np.int64]], list[str]]:
    """An id -> name map read as packed ids and newline-joined names; read again as rows in the (never seen)
    case of a name holding a newline."""
    ids = _unpack(packed_ids, ">i8")
    names = joined.split("\n") if joined is not None else []
    if len(names) != len(ids):
        rows = (await conn.execute(by_id, {"ids": ids.tolist()})).all()
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]
    return ids, names


_INTS = np.zeros(0, dtype=np.int64)
_PG_EPOCH_MICROS = 946_684_800_000_000  # 2000-01-01 UTC in microseconds since 1970-01-01
_FLOATS = np.zeros(0, dtype=np.float64)
Names = np.ndarray[tuple[int], np.dtype[np.object_]]


def _names(
    ids: np.ndarray[tuple[int], np.dtype[np.int64]],
    names: list[str],
    wanted: np.ndarray[tuple[int], np.dtype[np.int64]],
) -> Names:
    """The name of each wanted id from the map ids -> names, as an object array (None where not in the map)."""
    out: Names = np.full(len(wanted), None, dtype=object)
    if not len(ids):
        return out
    order = np.argsort(ids)
    at = np.clip(np.searchsorted(ids, wanted, sorter=order), 0, len(ids) - 1)
    found = ids[order[at]] == wanted
    table = np.array(names, dtype=object)[order]
    out[found] = table[at[found]]
    return out


async def recent_values(
    conn: AsyncConnection, process_id: str, characteristic: str, test_point: str | None, until: datetime, count: int
) -> list[ValueRow]:
    params = {
        "process_id": process_id,
        "characteristic": characteristic,
        "test_point": test_point,
        "until": until,
        "count": count,
    }
    result = await conn.execute(RECENT_SQL[test_point is not None], params)
    return [ValueRow(*row) for row in result.all()]


async def process_exists(conn: AsyncConnection, process_id: str) -> bool:
    return bool((await conn.execute(PROCESS_EXISTS_SQL, {"process_id": process_id})).scalar_one())


async def list_baselines(
    conn: AsyncConnection, process_id: str, characteristic: str, test_point: str, chart: str | None
) -> list[BaselineRow]:
    params = {"process_id": process_id, "characteristic": characteristic, "test_point": test_point, "chart": chart}
    result = await conn.execute(LIST_BASELINES_SQL, params)
    return [BaselineRow(*row) for row in result.all()]


async def current_baseline(
    conn: AsyncConnection, process_id: str, characteristic: str, test_point: str, chart: str, subgroup: str
) -> BaselineRow | None:
    params = {
        "process_id": process_id,
        "characteristic": characteristic,
        "test_point": test_point,
        "chart": chart,
        "subgroup": subgroup,
    }
    row = (await conn.execute(CURRENT_BASELINE_SQL, params)).first()
    return BaselineRow(*row) if row else None


async def insert_baseline(conn: AsyncConnection, new: NewBaseline) -> BaselineRow:
    key = f"spc:{new.process_id}:{new.characteristic}:{new.test_point_id}:{new.chart}:{new.subgroup}"
    await conn.execute(LOCK_SQL, {"key": key})
    which = {
        "process_id": new.process_id,
        "characteristic": new.characteristic,
        "test_point": new.test_point_id,
        "chart": new.chart,
        "subgroup": new.subgroup,
    }
    version = int((await conn.execute(NEXT_VERSION_SQL, which)).scalar_one())
    params = {
        **which,
        "version": version,
        "period_from": new.period_from,
        "period_to": new.period_to,
        "mu": new.mu,
        "sigma": new.sigma,
        "points": new.points,
        "values_count": new.values_count,
        "reason": new.reason,
        "created_by": new.created_by,
    }
    row = (await conn.execute(INSERT_BASELINE_SQL, params)).one()
    return BaselineRow(*row)
