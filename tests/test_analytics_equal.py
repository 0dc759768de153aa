"""Issue 14 point 3: TimescaleDB and plain PostgreSQL give the SAME trend answers.

The suite's database (either flavour) and a second cluster of the other flavour get the same migrations and the
same measurements; every trend request (rollup widths, rollup merges, raw widths, filters, late rows into old
buckets, compressed chunks) must answer identically on both, and equal to statistics computed here in Python.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters.database import Database
from cloud_api.services import aggregate_refresh, measurement_reads
from cloud_api.services.measurement_reads import TrendQuery
from db.migrate import upgrade
from deploy.localstack import pg_timescale
from deploy.localstack.common import find_binary
from deploy.localstack.postgres import PostgresServer

pytestmark = [pytest.mark.processes, pytest.mark.plain_pg]  # starts a second PostgreSQL cluster of its own

SEOUL = ZoneInfo("Asia/Seoul")
START = datetime(2026, 3, 2, 0, 0, tzinfo=SEOUL)  # a Monday, local midnight
DAYS = 9
INSTALLED = pg_timescale.installed(Path(find_binary("postgres")).resolve().parent)
ROW_SQL = (
    "INSERT INTO measurements (time, lot_id, process_id, result_id, test_point_id, characteristic, value, unit, "
    "target, tolerance, lower_limit, upper_limit, result, station) "
    "VALUES (%s, 1, %s, 1, %s, %s, %s, 'kgf', 20.0, 0.5, 19.5, 20.5, 'PASS', %s)"
)


@dataclass(frozen=True)
class Row:
    time: datetime
    process_id: str
    test_point_id: str
    characteristic: str
    value: float
    station: str


def _rows(seed: int, count: int, start: datetime, span: timedelta) -> list[Row]:
    rnd = random.Random(seed)
    rows = []
    for _ in range(count):
        at = start + timedelta(seconds=rnd.uniform(0, span.total_seconds()))
        point = rnd.choice(["T52_P200", "T60_P300"])
        rows.append(
            Row(
                at.astimezone(UTC),
                "PROC-006",
                point,
                "force",
                round(rnd.gauss(20.0, 0.3), 3),
                rnd.choice(["st06", "st06b"]),
            )
        )
    return rows


def _insert(dsn: str, rows: list[Row]) -> None:
    with psycopg.connect(dsn) as conn:  # one transaction, pipelined
        conn.cursor().executemany(
            ROW_SQL, [(r.time, r.process_id, r.test_point_id, r.characteristic, r.value, r.station) for r in rows]
        )


def _refresh_timescale(owner_dsn: str) -> None:
    """What the refresh policy does, now; a policy run already refreshing is waited for, then done again."""
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        for view in ("measurement_hourly", "measurement_daily"):
            deadline = time.monotonic() + 60
            while True:
                try:
                    conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
                    break
                except psycopg.errors.LockNotAvailable:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)  # the policy's run holds the lock for a moment


@dataclass
class Flavour:
    name: str
    server: Any
    owner_dsn: str


@pytest.fixture(scope="module")
def flavours(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Flavour]]:
    if not INSTALLED:
        pytest.skip("TimescaleDB is not installed for this PostgreSQL: nothing to compare plain PostgreSQL with")
    with psycopg.connect(postgres.dsn) as conn:
        suite_is_timescale = pg_timescale.has_extension(conn)
    other = PostgresServer(
        tmp_path_factory.mktemp("pg-other"), owner="mes_owner", timescale="plain" if suite_is_timescale else "timescale"
    )
    other.start()
    try:
        upgrade(other.owner_url, app_role=other.user)
        # A database of its own on the suite's server: the other tests' measurements stay out of the comparison.
        suite = _own_database(postgres, "mes_analytics_equal")
        theirs = Flavour("other", other, _owner_dsn(other))
        yield {"timescale": suite, "plain": theirs} if suite_is_timescale else {"timescale": theirs, "plain": suite}
    finally:
        other.destroy()


def _owner_dsn(server: PostgresServer) -> str:
    return server.owner_url.replace("postgresql+psycopg://", "postgresql://")


def _own_database(postgres: PostgresServer, name: str) -> Flavour:
    """A fresh database owned by the schema owner on the suite's server, migrated like the suite's."""
    with psycopg.connect(_owner_dsn(postgres), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    view = _Renamed(postgres, name)
    with psycopg.connect(view.owner_dsn, autocommit=True) as conn:
        if postgres.timescale:
            conn.execute("SET client_min_messages = warning")
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    upgrade(view.owner_url, app_role=postgres.user)
    return Flavour("suite", view, view.owner_dsn)


class _Renamed:
    """The suite's server seen through another database name (same roles and passwords)."""

    def __init__(self, server: PostgresServer, database: str) -> None:
        self.url = server.url.rsplit("/", 1)[0] + f"/{database}"
        self.owner_url = server.owner_url.rsplit("/", 1)[0] + f"/{database}"
        self.dsn = self.url.replace("postgresql+psycopg://", "postgresql://")
        self.owner_dsn = self.owner_url.replace("postgresql+psycopg://", "postgresql://")


def _trend(url: str, queries: list[TrendQuery]) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        engine = create_async_engine(url)
        db = Database(engine, SEOUL)
        try:
            answers = []
            async with engine.connect() as conn:
                for q in queries:
                    answers.append(await measurement_reads.trend(db, conn, q))
            return answers
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _refresh_plain(url: str) -> aggregate_refresh.rollup_sql.Refreshed | None:
    async def run() -> aggregate_refresh.rollup_sql.Refreshed | None:
        engine = create_async_engine(url)
        try:
            return await aggregate_refresh.refresh_once(Database(engine, SEOUL))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _queries() -> list[TrendQuery]:
    end = START + timedelta(days=DAYS)
    q = [
        TrendQuery("PROC-006", "force", None, None, START, end, width)
        for width in ("hour", "day", "2h", "7d", "15m", "90m")
    ]
    q.append(TrendQuery("PROC-006", "force", "T52_P200", "st06", START + timedelta(hours=5), end, "hour"))
    q.append(TrendQuery("PROC-006", "force", "T60_P300", None, START, end, "day"))
    return q


def _expected_day(rows: list[Row], day: datetime) -> tuple[int, float, float]:
    values = [r.value for r in rows if day <= r.time < day + timedelta(days=1)]
    return len(values), round(statistics.fmean(values), 6), round(statistics.stdev(values), 6)


def test_trend_answers_equal_on_timescaledb_and_plain(flavours: dict[str, Flavour]) -> None:
    rows = _rows(14, 3000, START, timedelta(days=DAYS))
    for f in flavours.values():
        _insert(f.server.dsn, rows)
    ts, plain = flavours["timescale"], flavours["plain"]
    _refresh_timescale(ts.owner_dsn)
    queries = _queries()

    # Plain before any refresh: every hour is dirty and answered from the raw rows.
    before = _trend(plain.server.url, queries)
    on_timescale = _trend(ts.server.url, queries)
    assert on_timescale == before, _first_difference(on_timescale, before)
    assert [a["source"] for a in before] == ["hourly", "daily", "hourly", "daily", "raw", "raw", "hourly", "daily"]
    refreshed = _refresh_plain(plain.server.url)
    assert refreshed is not None and refreshed.hours == DAYS * 24
    after = _trend(plain.server.url, queries)
    assert after == before, _first_difference(after, before)

    # Independent check of one day: count, mean and sample stddev of the raw values.
    daily = before[1]["points"]
    assert len(daily) == DAYS
    second = daily[1]
    n, mean, stddev = _expected_day(rows, START + timedelta(days=1))
    assert (second["n"], second["mean"], second["stddev"]) == (n, mean, stddev)
    assert second["lsl"] == 19.5 and second["usl"] == 20.5 and before[1]["spec"]["usl"] == 20.5
    assert second["out_of_limit"] == sum(
        1
        for r in rows
        if START + timedelta(days=1) <= r.time < START + timedelta(days=2) and not 19.5 <= r.value <= 20.5
    )
    assert sum(p["n"] for p in before[0]["points"]) == len(rows)


def test_late_rows_and_compressed_chunks_keep_answers_equal(flavours: dict[str, Flavour]) -> None:
    ts, plain = flavours["timescale"], flavours["plain"]
    queries = _queries()
    # A station's outbox delivers rows of a day already rolled up (and refreshed on plain).
    late = _rows(15, 200, START + timedelta(days=2), timedelta(hours=6))
    earlier = _trend(plain.server.url, queries)
    for f in (ts, plain):
        _insert(f.server.dsn, late)
    exact = _trend(plain.server.url, queries)  # plain: exact at once (dirty hours from the raw rows)
    assert sum(p["n"] for p in exact[0]["points"]) == sum(p["n"] for p in earlier[0]["points"]) + len(late)
    assert exact[1]["points"][2] != earlier[1]["points"][2]  # the third day's statistics changed
    with psycopg.connect(plain.server.dsn) as conn:
        assert _scalar(conn, "SELECT count(*) FROM measurement_rollup_dirty") > 0
    _refresh_timescale(ts.owner_dsn)  # TimescaleDB: after its policy (here: the same call, at once)
    assert _trend(ts.server.url, queries) == exact
    _refresh_plain(plain.server.url)
    assert _trend(plain.server.url, queries) == exact
    with psycopg.connect(ts.owner_dsn, autocommit=True) as conn:
        compressed = _scalar(
            conn, "SELECT count(compress_chunk(c, if_not_compressed => true)) FROM show_chunks('measurements') c"
        )
        assert compressed >= 1
        policies = conn.execute(
            "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL "
            "ORDER BY 1, 2"
        ).fetchall()
    assert ("policy_compression", "measurements") in policies
    assert ("policy_compression", "measurement_samples") in policies
    assert sum(1 for p in policies if p[0] == "policy_refresh_continuous_aggregate") == 2
    assert _trend(ts.server.url, queries) == exact


def _scalar(conn: psycopg.Connection, query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def _first_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    for qa, qb in zip(a, b, strict=True):
        for pa, pb in zip(qa["points"], qb["points"], strict=False):
            if pa != pb:
                return f"{qa['bucket']}: {pa} != {pb}"
        if qa != qb:
            return f"{qa['bucket']}: {len(qa['points'])} vs {len(qb['points'])} points"
    return "equal"
