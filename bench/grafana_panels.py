"""Every Grafana panel query at scale (issue 16): expanded as Grafana expands it, run as `mes_grafana` on the
bench's scale databases (bench/scale/cluster.py, filled by `mes demo-data`), median and max of N runs per query.

    .venv/bin/python -m bench.grafana_panels [--flavour timescale,plain] [--runs 5]

Migrates the cluster to head first (0013 adds the reporting views) and gives `mes_grafana` a login (as
`mes grafana grant-db` does). Time ranges are each dashboard's default (production: the running production day;
quality: 7 days; stations: 14 days; LOT: the newest LOT) plus the quality dashboard over 90 days.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from bench.scale.cluster import server
from db.migrate import downgrade, upgrade
from grafana import build
from grafana import panels as p
from tests.support.grafana_macros import ALL, Expansion

ZONE = ZoneInfo("Asia/Seoul")
LIMIT_MS = 500.0


def _grant(pg: Any) -> str:
    password = secrets.token_hex(12)
    with psycopg.connect(pg.superuser_dsn.rsplit("/", 1)[0] + "/" + pg.database, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'mes_grafana'").fetchone()
        conn.execute(f"{'ALTER' if exists else 'CREATE'} ROLE mes_grafana LOGIN PASSWORD '{password}'")
        conn.execute("ALTER ROLE mes_grafana SET default_transaction_read_only = on")
        conn.execute("SELECT grant_reporting_reader('mes_grafana')")
    return str(pg._uri("mes_grafana", password, pg.database))


def _history_end(dsn: str) -> datetime:
    """The end of the loaded history before today's production (a partial load ends years ago): the quality and
    station windows end there, so they read full days of data, not only today's."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT max(time) FROM reporting.measurements WHERE time < now() - interval '1 day'"
        ).fetchone()
    return (row[0] if row and row[0] else datetime.now(ZONE)).astimezone(ZONE)


def _span(uid: str, timescaledb: bool, quality_days: int = 7, history_end: datetime | None = None) -> Expansion:
    now = datetime.now(ZONE)
    if uid != "mes-production" and history_end is not None:
        now = history_end
    if uid == "mes-production":
        start = now.replace(hour=8, minute=0, second=0, microsecond=0)
        start = start if now >= start else start - timedelta(days=1)
        return Expansion(start, start + timedelta(days=1), "5m", timescaledb)
    days = {"mes-quality": quality_days, "mes-stations": 14, "mes-lot": 30}.get(uid, 1)
    interval = "1h" if days <= 7 else "6h"
    return Expansion(now - timedelta(days=days), now, interval, timescaledb)


def _timed(dsn: str, sql: str, runs: int) -> tuple[float, float, int]:
    with psycopg.connect(dsn) as conn:
        rows = len(conn.execute(sql).fetchall())  # warm-up (and the row count)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            conn.execute(sql).fetchall()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times), rows


def _selection(board: dict[str, Any], dsn: str, span: Expansion) -> tuple[dict[str, Any], dict[str, list[str]]]:
    values: dict[str, Any] = {}
    options: dict[str, list[str]] = {}
    for var in board["templating"]["list"]:
        name = var["name"]
        if var["type"] in ("constant", "textbox"):
            values[name] = var["query"]
            continue
        if var["type"] == "custom":
            options[name] = var["query"].split(",")
        else:
            with psycopg.connect(dsn) as conn:
                options[name] = [str(r[0]) for r in conn.execute(span.expand(var["query"], values, options))]
        if var["includeAll"]:
            values[name] = ALL
        elif name == "process":
            values[name] = "PROC-006"
        else:
            values[name] = options[name][0] if options[name] else ""
    return values, options


def _queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(v["name"] + " (variable)", v["query"]) for v in board["templating"]["list"] if v["type"] == "query"]
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            if "rawSql" in target:
                found.append((panel["title"], target["rawSql"]))
    for annotation in board["annotations"]["list"]:
        if "target" in annotation:
            found.append(("annotation: " + annotation["name"], annotation["target"]["rawSql"]))
    return found


def bench(flavour: str, runs: int) -> list[str]:
    pg = server(flavour)
    if "--redo-0013" in sys.argv:  # a cluster migrated by an earlier 0013: take it back first
        downgrade(pg.owner_url, "0012", app_role=pg.user)
    upgrade(pg.owner_url, app_role=pg.user)
    dsn = _grant(pg)
    with psycopg.connect(dsn) as conn:
        timescaledb = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
        ).fetchone() == (True,)
    lines = []
    end = _history_end(dsn)
    lines.append(f"<!-- {flavour}: history ends {end.isoformat()} -->")
    boards = [(spec.uid, build.dashboard(spec), 7) for spec in p.DASHBOARDS if spec.uid != "mes-system"]
    boards.append(("mes-quality", build.dashboard(p.QUALITY), 90))
    for uid, board, days in boards:
        span = _span(uid, timescaledb, days, end)
        values, options = _selection(board, dsn, span)
        for title, sql in _queries(board):
            median, worst, rows = _timed(dsn, span.expand(sql, values, options), runs)
            flag = "" if worst <= LIMIT_MS else " **over**"
            label = f"{uid} ({days} d)" if uid == "mes-quality" else uid
            lines.append(f"| {flavour} | {label} | {title} | {rows} | {median:.1f} | {worst:.1f}{flag} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flavour", default="timescale,plain")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--redo-0013", action="store_true", help="downgrade to 0012 first (0013 changed)")
    args = parser.parse_args(argv)
    print("| database | dashboard | panel | rows | median ms | max ms |")
    print("|---|---|---|---|---|---|")
    for flavour in args.flavour.split(","):
        for line in bench(flavour, args.runs):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
