"""Disk used by the scale databases: per table, compression ratios (TimescaleDB), disk per year of production.

    .venv/bin/python -m bench.disk_usage --db timescale=URL --db plain=URL

Sizes include indexes and TOAST (hypertables: all their chunks, via hypertable_detailed_size). "Per year" divides
by the years of production the database holds (working days in `lots` / 255). Compression: what
hypertable_compression_stats reports for the chunks compressed so far (`mes demo-data` compresses what the
policies of migration 0010 would: measurements older than 30 days, samples older than 7 days).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

RESULTS = Path(__file__).resolve().parent / "results"
WORKING_DAYS_PER_YEAR = 255
TABLES = (
    "measurements",
    "measurement_samples",
    "process_results",
    "component_lots",
    "serials",
    "serial_status_history",
    "label_print_jobs",
    "process_runs",
    "lots",
    "lot_status_history",
)
GB = 1024**3


def libpq_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def measure(url: str) -> dict[str, Any]:
    with psycopg.connect(libpq_url(url)) as conn:
        timescale = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')")
        ts = bool(timescale.fetchone()[0])  # type: ignore[index]
        hypertables = set()
        if ts:
            hypertables = {
                r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
            }
        days = conn.execute("SELECT count(DISTINCT production_date) FROM lots").fetchone()[0]  # type: ignore[index]
        years = days / WORKING_DAYS_PER_YEAR if days else 0.0
        tables: dict[str, Any] = {}
        for table in TABLES:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:  # type: ignore[index]
                continue
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            if table in hypertables:
                size = conn.execute(
                    "SELECT table_bytes, index_bytes, toast_bytes, total_bytes FROM hypertable_detailed_size(%s)",
                    (table,),
                ).fetchone()
            else:
                size = conn.execute(
                    "SELECT pg_table_size(%s::regclass) - COALESCE(pg_total_relation_size(reltoastrelid), 0), "
                    "pg_indexes_size(%s::regclass), COALESCE(pg_total_relation_size(reltoastrelid), 0), "
                    "pg_total_relation_size(%s::regclass) FROM pg_class WHERE oid = %s::regclass",
                    (table, table, table, table),
                ).fetchone()
            assert size is not None
            entry: dict[str, Any] = {
                "rows": rows,
                "table_bytes": size[0],
                "index_bytes": size[1],
                "toast_bytes": size[2],
                "total_bytes": size[3],
                "bytes_per_row": round(size[3] / rows, 1) if rows else None,
            }
            if table in hypertables:
                stats = conn.execute(
                    "SELECT total_chunks, number_compressed_chunks, before_compression_total_bytes, "
                    "after_compression_total_bytes FROM hypertable_compression_stats(%s)",
                    (table,),
                ).fetchone()
                if stats and stats[2]:
                    entry["compression"] = {
                        "chunks": stats[0],
                        "compressed_chunks": stats[1],
                        "before_bytes": stats[2],
                        "after_bytes": stats[3],
                        "ratio": round(stats[2] / stats[3], 1) if stats[3] else None,
                    }
            tables[table] = entry
        database = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
    return {
        "timescale": ts,
        "working_days": days,
        "years": round(years, 2),
        "database_bytes": database,
        "per_year_bytes": round(database / years) if years else None,
        "tables": tables,
    }


def report(results: dict[str, dict[str, Any]]) -> str:
    flavours = list(results)
    lines = ["| table | " + " | ".join(f"{f}: rows · GB · bytes/row" for f in flavours) + " |"]
    lines.append("|---|" + "---|" * len(flavours))
    for table in TABLES:
        cells = []
        for flavour in flavours:
            entry = results[flavour]["tables"].get(table)
            if entry is None:
                cells.append("–")
                continue
            cell = f"{entry['rows']:,} · {entry['total_bytes'] / GB:.2f} · {entry['bytes_per_row']}"
            if "compression" in entry:
                c = entry["compression"]
                cell += f" (compressed {c['compressed_chunks']}/{c['chunks']} chunks, ×{c['ratio']})"
            cells.append(cell)
        lines.append(f"| {table} | " + " | ".join(cells) + " |")
    lines.append(
        "| **database** | "
        + " | ".join(
            f"{r['database_bytes'] / GB:.2f} GB for {r['years']} years → "
            f"**{(r['per_year_bytes'] or 0) / GB:.2f} GB/year**"
            for r in results.values()
        )
        + " |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", action="append", required=True, help="flavour=URL")
    args = parser.parse_args(argv)
    results = {}
    for item in args.db:
        flavour, _, url = item.partition("=")
        results[flavour] = measure(url)
    print(report(results))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"disk_usage-{stamp}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
