"""Trend query at the 3-year scale (issue 14 point 6): the 30-day trend from the rollups of migration 0010,
TimescaleDB and plain PostgreSQL side by side in one run, plus the compression ratio of samples.

    .venv/bin/python -m bench.trend_query [--rows 30000000] [--samples 5000000] [--runs 40] [--keep DIR]

For each flavour it starts its own PostgreSQL (bench dirs under /var/tmp), migrates it, and fills
`measurements` with generate_series in 30-day statements: 20 series (PROC-006 force/displacement/temperature at
4 test points, PROC-003 temperature; 2 stations each for force) evenly over 3 years, values around their target
with noise and a slow drift. Then what the system does after such a load: TimescaleDB refreshes the continuous
aggregates (what the policies do) and compresses chunks older than 30 days; plain PostgreSQL runs the ingestor's
refresher (cloud_api/services/aggregate_refresh.py). Then the API's own use case (services/measurement_reads.trend,
in-process: SQL + merge, not HTTP) is timed over random 30-day windows: hourly and daily buckets of one
characteristic and test point (the target: ≤ 100 ms), the hourly trend of all test points and stations, and a
15-minute trend from the raw rows for contrast. Samples: `--samples` rows of 1 kHz curves into
`measurement_samples`, compressed like the 7-day policy would, sizes before/after.
Writes bench/results/trend_query-<time>.json and prints a table for bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters.database import Database
from cloud_api.services import aggregate_refresh, measurement_reads
from cloud_api.services.measurement_reads import TrendQuery
from db.migrate import upgrade
from deploy.localstack.postgres import PostgresServer

RESULTS = Path(__file__).resolve().parent / "results"
SEOUL = ZoneInfo("Asia/Seoul")
END = datetime(2026, 12, 1, tzinfo=SEOUL)
START = END - timedelta(days=3 * 365)
CHUNK = timedelta(days=30)
# (process, test point, characteristic, unit, target, tolerance, stations)
SERIES = [
    *[
        ("PROC-006", tp, "force", "kgf", target, 0.5, ("st06", "st06b"))
        for tp, target in (("T52_P200", 20.0), ("T56_P250", 22.0), ("T60_P300", 24.0), ("T64_P350", 26.0))
    ],
    *[
        ("PROC-006", tp, "displacement", "mm", 200.0 + 50 * i, 2.0, ("st06",))
        for i, tp in enumerate(("T52_P200", "T56_P250", "T60_P300", "T64_P350"))
    ],
    *[
        ("PROC-006", tp, "temperature", "°C", 52.0 + 4 * i, 1.0, ("st06",))
        for i, tp in enumerate(("T52_P200", "T56_P250", "T60_P300", "T64_P350"))
    ],
    ("PROC-003", "TEMP_SENSOR", "temperature", "°C", 60.0, 1.0, ("st03",)),
]
FILL = """
INSERT INTO measurements (time, lot_id, process_id, result_id, test_point_id, characteristic, value, unit, target,
    tolerance, lower_limit, upper_limit, result, station)
SELECT t, (extract(epoch FROM t)::bigint / 17280), s.process_id, (extract(epoch FROM t)::bigint / 60), s.tp, s.ch,
    round((s.target + s.tol * (0.25 * sin(extract(epoch FROM t) / 2592000.0) + 0.4 * (random() - 0.5) * 2))::numeric,
        3)::double precision,
    s.unit, s.target, s.tol, s.target - s.tol, s.target + s.tol, 'PASS', s.station
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 microsecond', %(step)s::interval) AS t,
    jsonb_to_recordset(%(series)s::jsonb) AS s(process_id text, tp text, ch text, unit text, target float8,
        tol float8, station text)
"""
SAMPLES = """
INSERT INTO measurement_samples (time, lot_id, serial_id, process_id, station, test_point_id, channel, value, unit,
    message_id, seq)
SELECT %(t0)s::timestamptz + c * interval '41 minutes' + i * interval '1 millisecond', 1000 + c / 20, 100000 + c,
    'PROC-006', 'st06', 'T52_P200', ch.name,
    round((ch.scale * (1 - exp(-i / 2000.0)) + random() * 0.05)::numeric, 3)::double precision, ch.unit,
    md5(c::text || ch.name)::uuid, i
FROM generate_series(0, %(curves)s - 1) AS c, generate_series(0, %(per_curve)s - 1) AS i,
    (VALUES ('force', 'kgf', 20.0), ('displacement', 'mm', 300.0)) AS ch(name, unit, scale)
"""


def series_json() -> str:
    rows = [
        {"process_id": p, "tp": tp, "ch": ch, "unit": unit, "target": target, "tol": tol, "station": st}
        for p, tp, ch, unit, target, tol, stations in SERIES
        for st in stations
    ]
    return json.dumps(rows)


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def fill(owner_url: str, rows: int, say: Any) -> dict[str, Any]:
    series = json.loads(series_json())
    step = (END - START) * len(series) / rows
    started = time.perf_counter()
    with psycopg.connect(libpq(owner_url), autocommit=True) as conn:
        at = START
        while at < END:
            until = min(at + CHUNK, END)
            conn.execute(FILL, {"start": at, "end": until, "step": step, "series": json.dumps(series)})
            at = until
        count = conn.execute("SELECT count(*) FROM measurements").fetchone()[0]  # type: ignore[index]
        conn.execute("ANALYZE measurements")
    seconds = time.perf_counter() - started
    say(f"  {count:,} measurement rows in {seconds:.0f} s")
    return {"rows": count, "load_s": round(seconds, 1)}


def refresh(server: PostgresServer, timescale: bool, say: Any) -> dict[str, Any]:
    started = time.perf_counter()
    if timescale:
        with psycopg.connect(libpq(server.owner_url), autocommit=True) as conn:
            for view in ("measurement_hourly", "measurement_daily"):
                while True:  # the refresh policy may be running (it started during the load): wait, then do it
                    try:
                        conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
                        break
                    except psycopg.errors.LockNotAvailable:
                        time.sleep(1)
            refreshed = time.perf_counter() - started
            conn.execute(
                "SELECT count(compress_chunk(c, if_not_compressed => true)) "
                "FROM show_chunks('measurements', older_than => INTERVAL '30 days') c"
            )
    else:

        async def run() -> None:
            engine = create_async_engine(server.url)
            try:
                await aggregate_refresh.refresh_once(Database(engine, SEOUL), max_rows=10_000_000)
            finally:
                await engine.dispose()

        asyncio.run(run())
        refreshed = time.perf_counter() - started
        with psycopg.connect(libpq(server.owner_url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE measurement_hourly_store")
            conn.execute("VACUUM ANALYZE measurement_daily_store")
    total = time.perf_counter() - started
    say(f"  rollups refreshed in {refreshed:.0f} s (with compression / vacuum: {total:.0f} s)")
    return {"refresh_s": round(refreshed, 1), "refresh_and_compress_s": round(total, 1)}


def cases() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("30 days, hourly, one test point", {"bucket": "hour", "test_point_id": "T52_P200"}),
        ("30 days, daily, one test point", {"bucket": "day", "test_point_id": "T52_P200"}),
        ("30 days, hourly, all test points and stations", {"bucket": "hour", "test_point_id": None}),
        ("30 days, 15 min from raw rows, one test point", {"bucket": "15m", "test_point_id": "T52_P200"}),
    ]


def backend_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a PostgreSQL backend has used so far (/proc; the bench runs as root)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_trends(url: str, runs: int, seed: int) -> list[dict[str, Any]]:
    """Wall time per request (P50/P95), and the CPU it cost: the client's (Python: SQLAlchemy, merge, JSON) and
    the database backend's, averaged over the runs. On a busy machine the wall time is mostly waiting for a core;
    client + backend CPU is what one request costs when it has a core to itself."""

    async def run() -> list[dict[str, Any]]:
        engine = create_async_engine(url, pool_size=1, max_overflow=0)  # one backend: its CPU is the request's
        db = Database(engine, SEOUL)
        out = []
        try:
            async with engine.connect() as conn:
                pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            for name, params in cases():
                rnd = random.Random(seed)
                timings, client_cpu, server_cpu = [], 0.0, 0.0
                answer: dict[str, Any] = {}
                for i in range(runs + 3):  # 3 warm-up runs
                    start = START + timedelta(days=rnd.randint(0, 3 * 365 - 31))
                    q = TrendQuery(
                        "PROC-006",
                        "force",
                        params["test_point_id"],
                        None,
                        start,
                        start + timedelta(days=30),
                        params["bucket"],
                    )
                    began, cpu, backend = time.perf_counter(), time.process_time(), backend_cpu_s(pid)
                    async with engine.connect() as conn:
                        answer = await measurement_reads.trend(db, conn, q)
                    json.dumps(answer)
                    if i >= 3:
                        timings.append((time.perf_counter() - began) * 1000)
                        client_cpu += time.process_time() - cpu
                        server_cpu += backend_cpu_s(pid) - backend
                timings.sort()
                out.append(
                    {
                        "case": name,
                        "source": answer["source"],
                        "points": len(answer["points"]),
                        "p50_ms": round(statistics.median(timings), 1),
                        "p95_ms": round(timings[int(0.95 * (len(timings) - 1))], 1),
                        "max_ms": round(timings[-1], 1),
                        "client_cpu_ms": round(client_cpu * 1000 / runs, 1),
                        "backend_cpu_ms": round(server_cpu * 1000 / runs, 1),
                        "load_average": os.getloadavg()[0],
                    }
                )
        finally:
            await engine.dispose()
        return out

    return asyncio.run(run())


def sample_compression(server: PostgresServer, timescale: bool, count: int, say: Any) -> dict[str, Any]:
    per_curve = 5000
    curves = max(count // (2 * per_curve), 1)
    t0 = END - timedelta(days=60)
    with psycopg.connect(libpq(server.owner_url), autocommit=True) as conn:
        began = time.perf_counter()
        conn.execute(SAMPLES, {"t0": t0, "curves": curves, "per_curve": per_curve})
        load = time.perf_counter() - began
        size = (
            "hypertable_size('measurement_samples')" if timescale else "pg_total_relation_size('measurement_samples')"
        )
        before = conn.execute(f"SELECT {size}").fetchone()[0]  # type: ignore[index]
        after = before
        if timescale:
            conn.execute(
                "SELECT count(compress_chunk(c, if_not_compressed => true)) FROM show_chunks('measurement_samples') c"
            )
            after = conn.execute(f"SELECT {size}").fetchone()[0]  # type: ignore[index]
    samples = curves * per_curve * 2
    say(f"  {samples:,} samples: {before / 2**20:.0f} MiB → {after / 2**20:.0f} MiB")
    return {
        "samples": samples,
        "load_s": round(load, 1),
        "bytes_before": before,
        "bytes_after": after,
        "bytes_per_sample_after": round(after / samples, 2),
        "ratio": round(before / after, 1) if after else None,
    }


def measurement_sizes(server: PostgresServer, timescale: bool) -> dict[str, Any]:
    with psycopg.connect(libpq(server.owner_url)) as conn:
        if timescale:
            row = conn.execute(
                "SELECT sum(before_compression_total_bytes), sum(after_compression_total_bytes), "
                "hypertable_size('measurements') FROM hypertable_compression_stats('measurements')"
            ).fetchone()
            assert row is not None
            return {"compressed_before": row[0], "compressed_after": row[1], "table_bytes": row[2]}
        row = conn.execute("SELECT pg_total_relation_size('measurements')").fetchone()
        assert row is not None
        return {"table_bytes": row[0]}


def one_flavour(mode: str, base: Path, args: argparse.Namespace, say: Any) -> dict[str, Any]:
    say(f"{mode}:")
    server = PostgresServer(base / mode, owner="mes_owner", timescale=mode)  # type: ignore[arg-type]
    server.start()
    try:
        upgrade(server.owner_url, app_role=server.user)
        result: dict[str, Any] = {"flavour": server.flavour}
        result["load"] = fill(server.owner_url, args.rows, say)
        result["refresh"] = refresh(server, mode == "timescale", say)
        result["measurements_disk"] = measurement_sizes(server, mode == "timescale")
        result["trend"] = time_trends(server.url, args.runs, args.seed)
        for case in result["trend"]:
            say(
                f"  {case['case']}: P50 {case['p50_ms']} ms, P95 {case['p95_ms']} ms ({case['source']}); CPU "
                f"{case['client_cpu_ms']} ms client + {case['backend_cpu_ms']} ms database"
            )
        result["samples"] = sample_compression(server, mode == "timescale", args.samples, say)
        return result
    finally:
        if not args.keep:
            server.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=30_000_000)
    parser.add_argument("--samples", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--flavours", default="timescale,plain")
    parser.add_argument("--keep", action="store_true", help="leave the clusters (under --dir) for a look")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where the clusters go (default: a temp dir in /var/tmp)"
    )
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="mes-trend-", dir="/var/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o777)  # the postgres account writes its cluster here
    results = {
        "meta": {
            "rows": args.rows,
            "samples": args.samples,
            "runs": args.runs,
            "started": datetime.now(UTC).isoformat(),
        }
    }
    try:
        for mode in args.flavours.split(","):
            results[mode] = one_flavour(mode, base, args, lambda line: print(line, flush=True))
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"trend_query-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"written {out}")


if __name__ == "__main__":
    main()
