"""SPC for one characteristic over 90 days at the 3-year scale (issue 14 point 6): TimescaleDB and plain PostgreSQL
side by side in one run.

    .venv/bin/python -m bench.spc_query [--rows 30000000] [--runs 30] [--flavours timescale,plain] [--keep]

For each flavour it starts its own PostgreSQL (under /var/tmp), migrates it and loads three years of production
at the spec's design volume: 500 units a day (five LOTs of 100), each unit with its serial and one PROC-006 force
value at T52_P200 (the charted characteristic: 547,500 values, ~45,000 per 90 days), plus filler rows of other
characteristics up to `--rows` measurement rows in total. TimescaleDB then compresses chunks older than 30 days,
as the migration's policy would. Then the API's use case (services/spc.spc_chart: the SQL, the chart, the Nelson
rules, capability) and the response body (http/spc_format.result_json, what the route sends) are timed over
random 90-day windows for I-MR (every unit a point), X̄-S with LOT subgroups (n = 100) and X̄-R with subgroups of 5.
Writes bench/results/spc_query-<time>.json and prints the figures for bench/README.md.
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
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.http.spc_format import result_json
from cloud_api.services import spc
from db.migrate import upgrade
from deploy.localstack.postgres import PostgresServer

RESULTS = Path(__file__).resolve().parent / "results"
SEOUL = ZoneInfo("Asia/Seoul")
END = datetime(2026, 12, 1, tzinfo=SEOUL)
DAYS = 3 * 365
START = END - timedelta(days=DAYS)
UNITS_PER_DAY = 500
SERIES = spc.Series("PROC-006", "force", "T52_P200")
CASES = (
    ("I-MR, every unit", "imr", None),
    ("X̄-S, LOT subgroups (n=100)", "xbar_s", "lot"),
    ("X̄-R, n=5", "xbar_r", "5"),
)

LOTS = """
INSERT INTO lots (lot_number, product_model_id, target_quantity, shift, production_date, sequence, status, created_by)
SELECT 'WF-KR-' || to_char(%(start)s::date + d, 'YYMMDD') || 'D-' || lpad(k::text, 3, '0'), 1, 100, 'D',
    %(start)s::date + d, k, 'COMPLETED', 'bench'
FROM generate_series(0, %(days)s - 1) AS d, generate_series(1, 5) AS k
"""
SERIALS = """
INSERT INTO serials (serial_number, lot_id, sequence, status)
SELECT l.lot_number || '-' || lpad(u::text, 4, '0'), l.id, u, 'PASSED' FROM lots l, generate_series(1, 100) AS u
"""
# One value per unit, spread over the day; a slow drift and noise around the 20 kgf target (tolerance 0.5).
VALUES = """
INSERT INTO measurements (time, lot_id, serial_id, process_id, result_id, test_point_id, characteristic, value, unit,
    target, tolerance, lower_limit, upper_limit, result, station)
SELECT l.production_date + interval '8 hours' + ((l.sequence - 1) * 100 + s.sequence) * interval '172 seconds',
    l.id, s.id, 'PROC-006', s.id, 'T52_P200', 'force',
    round((20 + 0.1 * sin(s.id / 20000.0) + 0.12 * (random() + random() + random() - 1.5))::numeric, 3)::float8,
    'kgf', 20, 0.5, 19.5, 20.5, 'PASS', 'st06'
FROM serials s JOIN lots l ON l.id = s.lot_id
"""
FILLER = """
INSERT INTO measurements (time, lot_id, serial_id, process_id, result_id, test_point_id, characteristic, value, unit,
    target, tolerance, lower_limit, upper_limit, result, station)
SELECT m.time + f * interval '1 second', m.lot_id, m.serial_id, 'PROC-006', m.result_id, 'TP_' || (f %% 8),
    'filler_' || (f / 8), m.value + f, 'kgf', 20 + f, 0.5, 19.5 + f, 20.5 + f, 'PASS', 'st06'
FROM measurements m, generate_series(1, %(per_unit)s) AS f
WHERE m.characteristic = 'force' AND m.time >= %(start)s AND m.time < %(end)s
"""


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def load(server: PostgresServer, rows: int, timescale: bool, say: Any) -> dict[str, Any]:
    started = time.perf_counter()
    per_unit = max(0, rows // (UNITS_PER_DAY * DAYS) - 1)
    with psycopg.connect(libpq(server.owner_url), autocommit=True) as conn:
        conn.execute(LOTS, {"start": START.date(), "days": DAYS})
        conn.execute(SERIALS)
        conn.execute(VALUES)
        at = START
        while at < END:  # month by month: bounded statements
            until = min(at + timedelta(days=30), END)
            conn.execute(FILLER, {"per_unit": per_unit, "start": at, "end": until})
            at = until
        count = conn.execute("SELECT count(*) FROM measurements").fetchone()[0]  # type: ignore[index]
        if timescale:
            conn.execute(
                "SELECT count(compress_chunk(c, if_not_compressed => true)) "
                "FROM show_chunks('measurements', older_than => INTERVAL '30 days') c"
            )
        conn.execute("VACUUM ANALYZE measurements")
        conn.execute("VACUUM ANALYZE serials")
    seconds = time.perf_counter() - started
    say(f"  {count:,} measurement rows ({UNITS_PER_DAY * DAYS:,} charted values) in {seconds:.0f} s")
    return {"rows": count, "charted_values": UNITS_PER_DAY * DAYS, "load_s": round(seconds, 1)}


def percentile(sorted_ms: list[float], share: float) -> float:
    return round(sorted_ms[int(share * (len(sorted_ms) - 1))], 1)


async def time_case(url: str, chart: str, subgroup: str | None, runs: int, seed: int) -> dict[str, Any]:
    engine = create_async_engine(url, pool_size=2)
    spec = spc.chart_spec(chart, subgroup)
    rnd = random.Random(seed)
    totals, queries, bodies, cpu = [], [], [], []
    points = values = 0
    load_before = os.getloadavg()[0]
    try:
        for i in range(runs + 3):  # 3 warm-up runs
            start = START + timedelta(days=rnd.randint(0, DAYS - 91))
            began, began_cpu = time.perf_counter(), time.process_time()
            async with engine.connect() as conn:
                result = await spc.spc_chart(conn, SERIES, spec, start, start + timedelta(days=90), 0.95, 200_000)
            computed = time.perf_counter()
            body = result_json(result)  # the route's body
            done = time.perf_counter()
            if i >= 3:
                cpu.append((time.process_time() - began_cpu) * 1000)
                totals.append((done - began) * 1000)
                queries.append((computed - began) * 1000)
                bodies.append((done - computed) * 1000)
            points, values = len(result.pair.location), result.values_count
    finally:
        await engine.dispose()
    totals.sort()
    return {
        "points": points,
        "values": values,
        "body_bytes": len(body),
        "p50_ms": round(statistics.median(totals), 1),
        "p95_ms": percentile(totals, 0.95),
        "max_ms": round(totals[-1], 1),
        "use_case_p50_ms": round(statistics.median(queries), 1),
        "json_p50_ms": round(statistics.median(bodies), 1),
        "client_cpu_p50_ms": round(statistics.median(cpu), 1),  # this process's CPU: the latency on an idle core
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }


def one_flavour(mode: str, base: Path, args: argparse.Namespace, say: Any) -> dict[str, Any]:
    say(f"{mode}:")
    server = PostgresServer(base / mode, owner="mes_owner", timescale=mode)  # type: ignore[arg-type]
    server.start()
    try:
        upgrade(server.owner_url, app_role=server.user)
        with psycopg.connect(libpq(server.owner_url)) as conn:  # --dir with a loaded cluster: time it again
            loaded = conn.execute("SELECT EXISTS (SELECT 1 FROM measurements)").fetchone()[0]  # type: ignore[index]
        figures_load = {"reused": True} if loaded else load(server, args.rows, mode == "timescale", say)
        result: dict[str, Any] = {"flavour": server.flavour, "load": figures_load, "cases": {}}
        if args.load_only:
            return result
        for name, chart, subgroup in CASES:
            figures = asyncio.run(time_case(server.url, chart, subgroup, args.runs, args.seed))
            result["cases"][name] = figures
            say(
                f"  {name}: {figures['points']:,} points from {figures['values']:,} values, P50 {figures['p50_ms']} ms "
                f"(use case {figures['use_case_p50_ms']}, JSON {figures['json_p50_ms']}), P95 {figures['p95_ms']} ms, "
                f"{figures['body_bytes'] / 1e6:.1f} MB, client CPU P50 {figures['client_cpu_p50_ms']} ms, "
                f"load {figures['load_average']}"
            )
        return result
    finally:
        if args.keep:
            server.stop()
        else:
            server.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=30_000_000, help="measurement rows in all (charted + filler)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--flavours", default="timescale,plain")
    parser.add_argument("--keep", action="store_true", help="leave the clusters (under --dir) for a look")
    parser.add_argument("--load-only", action="store_true", help="load (with --keep --dir: for later runs), no timing")
    parser.add_argument("--dir", type=Path, default=None, help="where the clusters go (default: a temp dir)")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="mes-spc-", dir="/var/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o777)  # the postgres account writes its cluster here
    results: dict[str, Any] = {"meta": {"rows": args.rows, "runs": args.runs, "started": datetime.now(UTC).isoformat()}}
    try:
        for mode in args.flavours.split(","):
            results[mode] = one_flavour(mode, base, args, lambda line: print(line, flush=True))
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"spc_query-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"written {out}")


if __name__ == "__main__":
    main()
