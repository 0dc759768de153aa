"""The SPC value query column-wise (adapters/spc_sql.value_columns) against real PostgreSQL: points named by serial
or LOT (including a serial of another LOT and a value without a serial), order, NaN/NULL left out, the newest spec
limits, the limit; the JSON body equals `json.dumps(result_dict)`; on plain PostgreSQL the query is an index-only
scan of migration 0014's covering index."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters import spc_sql
from cloud_api.http.spc_format import result_dict, result_json
from cloud_api.services import spc
from deploy.localstack.postgres import PostgresServer

pytestmark = pytest.mark.plain_pg

T0 = datetime(2026, 10, 5, 1, 0, tzinfo=UTC)
PROCESS = "PROC-006"


def _lot(db: psycopg.Connection[Any], number: str) -> int:
    row = db.execute(
        "INSERT INTO lots (lot_number, product_model_id, target_quantity, shift, production_date, sequence, status, "
        "created_by) VALUES (%s, 1, 100, 'D', %s, 1, 'COMPLETED', 'test') RETURNING id",
        (number, date(2026, 10, 5)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _serial(db: psycopg.Connection[Any], number: str, lot_id: int, sequence: int) -> int:
    row = db.execute(
        "INSERT INTO serials (serial_number, lot_id, sequence) VALUES (%s, %s, %s) RETURNING id",
        (number, lot_id, sequence),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def seeded(db: psycopg.Connection[Any]) -> dict[str, Any]:
    """Two LOTs: values by serial, one without a serial (LOT-level), one whose serial belongs to the other LOT,
    a NaN and a NULL value (never charted), and the spec limits changing midway (upper first, then lower)."""
    tag = uuid.uuid4().hex[:6].upper()
    characteristic = f"col_{tag.lower()}"
    lot_a, lot_b = _lot(db, f"T-{tag}-A"), _lot(db, f"T-{tag}-B")
    serials = [_serial(db, f"T-{tag}-A-{i:04d}", lot_a, i) for i in range(1, 4)]
    other = _serial(db, f"T-{tag}-B-0001", lot_b, 1)
    rows: list[tuple[int, int | None, float | None, float | None, float | None]] = [
        (lot_a, serials[0], 20.1, 19.5, 20.5),
        (lot_a, serials[1], 20.3, 19.5, 20.5),
        (lot_a, None, 20.2, 19.5, None),  # LOT-level: named by its LOT; no upper limit on this row
        (lot_a, serials[2], float("nan"), 19.5, 20.5),  # NaN: never charted
        (lot_a, serials[2], None, 19.5, 20.5),  # NULL: never charted
        (lot_a, other, 19.9, 19.4, 20.6),  # a serial of LOT B measured under LOT A: still named by the serial
        (lot_b, other, 20.0, None, 20.7),  # the newest: upper 20.7; its lower is missing, so 19.4 stays
    ]
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO measurements (time, lot_id, serial_id, process_id, result_id, test_point_id, characteristic, "
            "value, unit, lower_limit, upper_limit) VALUES (%s, %s, %s, %s, %s, 'TP1', %s, %s, 'kgf', %s, %s)",
            [
                (T0 + timedelta(minutes=i), lot, serial, PROCESS, 900_000 + i, characteristic, value, lower, upper)
                for i, (lot, serial, value, lower, upper) in enumerate(rows)
            ],
        )
    return {"characteristic": characteristic, "tag": tag, "lots": (lot_a, lot_b)}


def _columns(postgres: PostgresServer, characteristic: str, limit: int, serials: bool) -> spc_sql.ValueColumns:
    async def read() -> spc_sql.ValueColumns:
        engine = create_async_engine(postgres.url)
        try:
            async with engine.connect() as conn:
                return await spc_sql.value_columns(
                    conn, PROCESS, characteristic, "TP1", T0, T0 + timedelta(hours=1), limit, serials
                )
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_values_are_named_ordered_and_limited(postgres: PostgresServer, seeded: dict[str, Any]) -> None:
    tag, (lot_a, lot_b) = seeded["tag"], seeded["lots"]
    got = _columns(postgres, seeded["characteristic"], 100, serials=True)
    assert got.values.tolist() == [20.1, 20.3, 20.2, 19.9, 20.0]
    assert got.keys == [f"T-{tag}-A-0001", f"T-{tag}-A-0002", f"T-{tag}-A", f"T-{tag}-B-0001", f"T-{tag}-B-0001"]
    assert got.lot_ids.tolist() == [lot_a, lot_a, lot_a, lot_a, lot_b]
    minutes = [0, 1, 2, 5, 6]
    assert got.micros.tolist() == [int((T0 + timedelta(minutes=m)).timestamp()) * 1_000_000 for m in minutes]
    assert (got.lower_limit, got.upper_limit) == (19.4, 20.7)
    by_lot = _columns(postgres, seeded["characteristic"], 100, serials=False)
    assert by_lot.keys == [f"T-{tag}-A"] * 4 + [f"T-{tag}-B"]
    first = _columns(postgres, seeded["characteristic"], 2, serials=True)
    assert first.values.tolist() == [20.1, 20.3] and (first.lower_limit, first.upper_limit) == (19.5, 20.5)
    none = _columns(postgres, "no_such_characteristic", 100, serials=True)
    assert len(none) == 0 and none.keys == [] and none.lower_limit is None


def test_a_name_holding_a_newline_is_read_again_as_rows(postgres: PostgresServer, db: psycopg.Connection[Any]) -> None:
    """Names come joined by newlines; one holding a newline (nothing forbids it) falls back to plain rows."""
    tag = uuid.uuid4().hex[:6].upper()
    lot = _lot(db, f"T-{tag}\nL")
    serial = _serial(db, f"T-{tag}\nS", lot, 1)
    characteristic = f"nl_{tag.lower()}"
    db.execute(
        "INSERT INTO measurements (time, lot_id, serial_id, process_id, result_id, test_point_id, characteristic, "
        "value, unit) VALUES (%s, %s, %s, %s, 1, 'TP1', %s, 1.5, 'kgf'), (%s, %s, NULL, %s, 2, 'TP1', %s, 2.5, 'kgf')",
        (T0, lot, serial, PROCESS, characteristic, T0 + timedelta(seconds=1), lot, PROCESS, characteristic),
    )
    assert _columns(postgres, characteristic, 10, serials=True).keys == [f"T-{tag}\nS", f"T-{tag}\nL"]


def test_the_body_is_the_json_of_result_dict(postgres: PostgresServer, seeded: dict[str, Any]) -> None:
    """orjson from the columns writes what json.dumps of the list-based dict writes (NaN MR as null, UTC times)."""
    got = _columns(postgres, seeded["characteristic"], 100, serials=True)
    series = spc.Series(PROCESS, seeded["characteristic"], "TP1")
    for chart, subgroup in (("imr", None), ("xbar_s", "lot"), ("xbar_r", "2")):
        result = spc.evaluate(series, spc.chart_spec(chart, subgroup), T0, T0, got, None, 0.95)
        body = json.loads(result_json(result))
        assert body == json.loads(json.dumps({"status": "success", "data": result_dict(result)}))
    imr = json.loads(result_json(spc.evaluate(series, spc.chart_spec("imr", None), T0, T0, got, None, 0.95)))
    points = imr["data"]["points"]
    assert points["spread"][0] is None and math.isclose(points["spread"][1], 0.2)
    assert points["time"][0] == T0.isoformat()


def test_plain_postgres_reads_the_covering_index_only(
    postgres: PostgresServer, db: psycopg.Connection[Any], timescaledb: bool, seeded: dict[str, Any]
) -> None:
    indexes = {r[0] for r in db.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'measurements'").fetchall()}
    if timescaledb:  # 0014 leaves TimescaleDB's indexes alone (compressed chunks are read by segment)
        assert "measurements_characteristic_idx" in indexes and "measurements_spc_idx" not in indexes
        return
    assert "measurements_spc_idx" in indexes and "measurements_characteristic_idx" not in indexes
    db.execute("VACUUM measurements")  # index-only scans need the visibility map (autovacuum sets it in production)
    sql = str(spc_sql.COLUMNS_SQL[True, True])
    for name in ("process_id", "characteristic", "test_point", "start", "end", "limit"):
        sql = sql.replace(f":{name}", f"%({name})s")
    params = {
        "process_id": PROCESS,
        "characteristic": seeded["characteristic"],
        "test_point": "TP1",
        "start": T0,
        "end": T0 + timedelta(hours=1),
        "limit": 100,
    }
    with db.transaction():
        db.execute("SET LOCAL enable_seqscan = off")  # a test table is small: make the planner show its index path
        db.execute("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in db.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", params).fetchall())
    assert "Index Only Scan using measurements_spc_idx" in plan, plan
    assert "Sort" not in plan, plan  # read in the chart's order (time, result_id): nothing to sort
