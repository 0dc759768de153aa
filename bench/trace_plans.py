"""EXPLAIN ANALYZE of the trace, recall and defect statements (issue 13 point 2), on a filled database.

Runs the exact statements the API runs (cloud_api/adapters/trace_sql.*_sql()) with inputs drawn from the data:
a serial with unit-level results, its LOT, the spring lot used by the most LOTs, and the last 7 days of
defects. Prints each plan (EXPLAIN (ANALYZE, BUFFERS)) and the statement's latency over `--runs` executions
(P50/P95, ms, server time as measured by the client, psycopg, no HTTP):

    .venv/bin/python -m bench.trace_plans --database-url postgresql://…/mes [--runs 50] [--out plans.txt]

Fill a database first with `mes demo-data --days N` (or `--years 3`, bench/README "Scale data").
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import TextClause
from sqlalchemy.dialects import postgresql

from cloud_api.adapters import trace_sql


@dataclass
class Statement:
    name: str
    sql: str
    params: dict[str, Any]


def to_psycopg(clause: TextClause) -> str:
    """The statement with psycopg's %(name)s placeholders (what SQLAlchemy sends over the psycopg driver)."""
    compiled = clause.compile(dialect=postgresql.psycopg.dialect())
    return str(compiled)


def pick(conn: psycopg.Connection) -> list[Statement]:
    serial = (
        conn.execute(
            "SELECT s.serial_number, l.lot_number FROM serials s JOIN lots l ON l.id = s.lot_id "
            "WHERE EXISTS (SELECT 1 FROM process_results r WHERE r.serial_id = s.id) "
            "ORDER BY s.id DESC LIMIT 1 OFFSET 500"
        ).fetchone()
        or conn.execute(
            "SELECT s.serial_number, l.lot_number FROM serials s JOIN lots l ON l.id = s.lot_id "
            "ORDER BY s.id DESC LIMIT 1"
        ).fetchone()
    )
    assert serial is not None, "no serials: fill the database first (mes demo-data)"
    spring = conn.execute(
        "SELECT component_lot, count(DISTINCT lot_id) FROM component_lots WHERE component_kind = 'sma_spring' "
        "GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
    ).fetchone()
    assert spring is not None
    last = conn.execute("SELECT max(complete_time) FROM process_results").fetchone()
    end: datetime = last[0] if last and last[0] else datetime.now().astimezone()
    print(f"inputs: serial {serial[0]}, LOT {serial[1]}, spring lot {spring[0]} ({spring[1]} LOTs), defects to {end}")
    span = conn.execute(to_psycopg(trace_sql.LOT_SPAN), {"lot": serial[1]}).fetchone()
    window = {"m_from": span[0], "m_to": span[1]} if span else {}
    return [
        Statement(
            "serial trace", to_psycopg(trace_sql.serial_trace_sql()), {"serial": serial[0], "lang": "ko", **window}
        ),
        Statement("LOT trace", to_psycopg(trace_sql.lot_trace_sql()), {"lot": serial[1], "lang": "ko", **window}),
        Statement(
            "recall (spring lot)",
            to_psycopg(trace_sql.recall_sql()),
            {"lot": spring[0], "kind": "sma_spring", "lang": "ko"},
        ),
        Statement(
            "defects (7 days)",
            to_psycopg(trace_sql.defects_sql()),
            {"from": end - timedelta(days=7), "to": end + timedelta(seconds=1), "process": None, "limit": 200,
             "lang": "ko", "m_from": end - timedelta(days=9), "m_to": end + timedelta(days=1)},
        ),
    ]  # fmt: skip


def measure(conn: psycopg.Connection, statement: Statement, runs: int) -> tuple[list[float], str, int]:
    conn.execute(statement.sql, statement.params).fetchone()  # warm up
    timings = []
    size = 0
    for _ in range(runs):
        started = time.perf_counter()
        row = conn.execute(statement.sql, statement.params).fetchone()
        timings.append((time.perf_counter() - started) * 1000)
        size = len(str(row[0])) if row else 0
    plan = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement.sql}", statement.params).fetchall()
    return timings, "\n".join(r[0] for r in plan), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="also write the plans to this file")
    args = parser.parse_args()
    lines: list[str] = []
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute("SET jit = off")  # as the API runs them (adapters/trace_sql.NO_JIT)
        timescale = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM lots), (SELECT count(*) FROM serials), "
            "(SELECT count(*) FROM process_results), (SELECT count(*) FROM measurements)"
        ).fetchone()
        lines.append(f"database: {'TimescaleDB' if timescale and timescale[0] else 'plain PostgreSQL'}; rows {counts}")
        for statement in pick(conn):
            timings, plan, size = measure(conn, statement, args.runs)
            p95 = statistics.quantiles(timings, n=20)[18] if len(timings) >= 20 else max(timings)
            lines.append(
                f"\n## {statement.name}: P50 {statistics.median(timings):.1f} ms, P95 {p95:.1f} ms "
                f"({args.runs} runs), answer {size:,} characters\n{plan}"
            )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
