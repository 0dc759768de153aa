"""Every Grafana panel query (issue 16), expanded as Grafana expands it, run as the read-only role `mes_grafana`
against a database of its own filled with two working days of demo production (bench/scale), on TimescaleDB and on
plain PostgreSQL (`MES_TEST_POSTGRES=plain`): the columns Grafana needs, rows where data exists, the same numbers
as the read API (live board counts and first-pass yield, defect Pareto), and what the role may not do."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import errors

from bench.scale.generator import Options, run
from bench.scale.plan import KST
from cloud_api.adapters.database import Database, make_engine
from cloud_api.services import dashboard, defects
from db.migrate import upgrade
from deploy.localstack.postgres import PostgresServer
from tests.support.grafana_macros import ALL, Expansion

pytestmark = pytest.mark.plain_pg

DASHBOARDS = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"
UNTIL = datetime(2026, 3, 10, 15, 0, tzinfo=KST)  # Tuesday afternoon: Monday done, Tuesday's LOTs in progress
MONDAY = date(2026, 3, 9)
GRAFANA_PASSWORD = "grafana-test-" + uuid.uuid4().hex[:8]
# Panels that may rightly be empty on the demo data (no print result carries a printer state there).
MAY_BE_EMPTY = {"프린터 (printers)"}


@pytest.fixture(scope="module")
def reporting(postgres: PostgresServer) -> Iterator[dict[str, str]]:
    """{owner, app, grafana} DSNs of a database of its own: demo data, an SPC baseline, alerts, station states."""
    name = f"mes_grafana_{uuid.uuid4().hex[:8]}"
    owner = postgres.owner or postgres.user
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
        # As a site administrator would (mes grafana grant-db): the role exists with a password before the
        # migration grants it the reporting schema.
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'mes_grafana'").fetchone() is None:
            conn.execute("CREATE ROLE mes_grafana")
        conn.execute(f"ALTER ROLE mes_grafana LOGIN PASSWORD '{GRAFANA_PASSWORD}'")
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    base = postgres.owner_dsn.rsplit("/", 1)[0]
    upgrade(postgres.owner_url.rsplit("/", 1)[0] + f"/{name}", app_role=postgres.user)
    owner_dsn = f"{base}/{name}"
    # No manual rollup refresh: it can collide with the policy job TimescaleDB starts on the new database; the
    # rollups answer from the raw rows past their watermark (real-time aggregates, plain: dirty hours) anyway.
    options = Options(years=None, days=2, seed=5, samples=False, until=UNTIL, compress=False, refresh=False)
    run(owner_dsn, options, say=lambda _line: None)
    _seed_quality_and_stations(owner_dsn)
    grafana = postgres._uri("mes_grafana", GRAFANA_PASSWORD, name)
    yield {"owner": owner_dsn, "app": postgres.dsn.rsplit("/", 1)[0] + f"/{name}", "grafana": grafana}
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _seed_quality_and_stations(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        point = conn.execute(
            "SELECT result_id, lot_id, process_id, characteristic, test_point_id, time, value "
            "FROM measurements WHERE process_id = 'PROC-006' AND value IS NOT NULL AND characteristic = "
            "(SELECT min(characteristic) FROM measurements WHERE process_id = 'PROC-006') ORDER BY time DESC LIMIT 1"
        ).fetchone()
        assert point is not None, "the demo data has PROC-006 measurements"
        result_id, lot_id, process_id, characteristic, test_point, at, value = point
        baseline = conn.execute(
            "INSERT INTO spc_baselines (process_id, characteristic, test_point_id, chart, subgroup, version, "
            "period_from, period_to, mu, sigma, points, values_count, reason, created_by) "
            "VALUES (%s, %s, %s, 'imr', '1', 1, %s - interval '1 day', %s, %s, 1.0, 30, 30, 'test', 'qa') RETURNING id",
            (process_id, characteristic, test_point or "", at, at, value),
        ).fetchone()
        assert baseline is not None
        conn.execute(
            "INSERT INTO alerts (dedupe_key, kind, rule, process_id, characteristic, test_point_id, result_id, lot_id, "
            "station, value, baseline_id, point_time) VALUES (%s, 'nelson', 1, %s, %s, %s, %s, %s, 'st06', %s, %s, %s)",
            ("test-alert", process_id, characteristic, test_point, result_id, lot_id, value, baseline[0], at),
        )
        conn.execute(
            "INSERT INTO station_states (site, line, station, gateway_id, online, software_version, outbox_depth, "
            "oldest_pending_age_s, outbox_full, stuck_count, errored_total, reported_at) "
            "VALUES ('KR', 'L1', 'st06', 'gw-06', true, '1.0', 3, 12.5, false, 0, 2, now())"
        )
        conn.execute(
            "INSERT INTO station_state_days (day, site, line, station, reports, offline_reports, max_outbox_depth, "
            "max_oldest_pending_age_s, files_errored, last_errored_total, first_reported_at, last_reported_at) "
            "VALUES ((now() AT TIME ZONE 'Asia/Seoul')::date, 'KR', 'L1', 'st06', 4, 0, 7, 30.0, 2, 2, now(), now())"
        )


def _dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))}


def _sql_queries(board: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(title, format, rawSql) of every SQL panel target and annotation."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            if "rawSql" in target:
                yield panel["title"], target["format"], target["rawSql"]
    for annotation in board["annotations"]["list"]:
        if "target" in annotation:
            yield "annotation " + annotation["name"], "table", annotation["target"]["rawSql"]


def _fetch(dsn: str, sql: str) -> tuple[list[str], list[tuple[Any, ...]], float]:
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        cursor = conn.execute(sql)  # expanded text, as Grafana sends it
        rows = cursor.fetchall()
        elapsed = time.perf_counter() - started
        return [c.name for c in cursor.description or []], rows, elapsed


def _selection(board: dict[str, Any], dsn: str, span: Expansion) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Variable values as a user picks them: each query variable runs (as Grafana would, in order); All where
    allowed, PROC-006 for the process, else the first option."""
    values: dict[str, Any] = {}
    options: dict[str, list[str]] = {}
    for var in board["templating"]["list"]:
        name = var["name"]
        if var["type"] == "custom":
            options[name] = var["query"].split(",")
        elif var["type"] in ("constant", "textbox"):
            values[name] = var["query"]
            continue
        else:
            _, rows, _ = _fetch(dsn, span.expand(var["query"], values, options))
            options[name] = [str(r[0]) for r in rows]
        assert options[name], f"variable {name} has no options"
        if var["includeAll"]:
            values[name] = ALL
        elif name == "process":
            assert "PROC-006" in options[name]
            values[name] = "PROC-006"
        else:
            values[name] = options[name][0]
    return values, options


def _span(uid: str, timescaledb: bool) -> Expansion:
    if uid == "mes-production":  # Monday's production day, as GET /api/v1/dashboard/today?date= has it
        zone = ZoneInfo("Asia/Seoul")
        return Expansion(datetime(2026, 3, 9, 8, tzinfo=zone), datetime(2026, 3, 10, 8, tzinfo=zone), "5m", timescaledb)
    return Expansion(datetime(2026, 3, 2, tzinfo=KST), UNTIL, "1h", timescaledb)


def test_every_panel_query_runs_as_mes_grafana(reporting: dict[str, str], timescaledb: bool) -> None:
    ran = 0
    for uid, board in _dashboards().items():
        span = _span(uid, timescaledb)
        values, options = _selection(board, reporting["grafana"], span)
        if uid == "mes-stations":  # station states are "now"; the range only bounds the per-day series
            span = Expansion(datetime.now(KST).replace(day=1, hour=0), datetime.now(KST), "1h", timescaledb)
        for title, fmt, sql in _sql_queries(board):
            columns, rows, _ = _fetch(reporting["grafana"], span.expand(sql, values, options))
            ran += 1
            if fmt == "time_series" or title.startswith("annotation"):
                assert columns[0] == "time", (uid, title, columns)
            if title not in MAY_BE_EMPTY:
                assert rows, f"{uid} / {title}: no rows"
    assert ran >= 18


def _panel_sql(uid: str, title_start: str) -> str:
    board = _dashboards()[uid]
    return next(sql for title, _, sql in _sql_queries(board) if title.startswith(title_start))


def test_production_panels_equal_the_live_board(reporting: dict[str, str], timescaledb: bool) -> None:
    board = _dashboards()["mes-production"]
    span = _span("mes-production", timescaledb)
    values, options = _selection(board, reporting["grafana"], span)
    _, rows, _ = _fetch(reporting["grafana"], span.expand(_panel_sql("mes-production", "공정별"), values, options))
    _, fpy, _ = _fetch(reporting["grafana"], span.expand(_panel_sql("mes-production", "1차"), values, options))
    _, units, _ = _fetch(reporting["grafana"], span.expand(_panel_sql("mes-production", "시간당"), values, options))

    async def api() -> dict[str, Any]:
        engine = make_engine(reporting["app"].replace("postgresql://", "postgresql+psycopg://", 1), pool_size=1)
        try:
            db = Database(engine, ZoneInfo("Asia/Seoul"), clock=lambda: UNTIL)
            return await dashboard.today(db, MONDAY, None)
        finally:
            await engine.dispose()

    board_answer = asyncio.run(api())
    assert board_answer["window"]["from"] == span.start.isoformat()
    expected = [
        (p["process_id"], p["started"], p["completed"], p["passed"], p["failed"], p["first_pass_yield"])
        for p in board_answer["processes"]
    ]
    got = [(r[0], r[2], r[3], r[4], r[5], None if r[6] is None else float(r[6])) for r in rows]
    assert got == expected
    assert sum(r[4] for r in rows) > 0  # the demo day has results
    assert float(fpy[0][0]) == pytest.approx(board_answer["first_pass_yield"], abs=1e-4)
    # units per hour over a finished day: the same units and the same 24 hours as the board
    assert board_answer["units"]["completed"] > 0
    assert float(units[0][0]) == pytest.approx(board_answer["units"]["per_hour"], abs=0.005)


def test_defect_pareto_equals_the_defects_api(reporting: dict[str, str], timescaledb: bool) -> None:
    board = _dashboards()["mes-quality"]
    span = _span("mes-quality", timescaledb)
    values, options = _selection(board, reporting["grafana"], span)
    _, rows, _ = _fetch(reporting["grafana"], span.expand(_panel_sql("mes-quality", "불량 파레토"), values, options))

    async def api() -> Any:
        engine = make_engine(reporting["app"].replace("postgresql://", "postgresql+psycopg://", 1), pool_size=1)
        try:
            db = Database(engine, ZoneInfo("Asia/Seoul"), clock=lambda: UNTIL)
            return await defects.list_defects(db, span.start, span.end, None, 1, "ko")
        finally:
            await engine.dispose()

    answer = asyncio.run(api())
    by_cause: dict[str, int] = {}
    for item in answer.by_cause:
        by_cause[item.cause] = by_cause.get(item.cause, 0) + item.count
    top = sorted(by_cause.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    assert [(r[0], r[1]) for r in rows] == top
    assert rows, "the demo days have failures"


def test_the_grafana_role_reads_only_the_reporting_views(reporting: dict[str, str]) -> None:
    with psycopg.connect(reporting["grafana"], autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM reporting.lots").fetchone()[0] > 0  # type: ignore[index]
        for statement, error in [
            ("SELECT * FROM users", errors.InsufficientPrivilege),
            ("SELECT * FROM refresh_tokens", errors.InsufficientPrivilege),
            ("SELECT * FROM audit_log", errors.InsufficientPrivilege),
            ("SELECT * FROM process_results", errors.InsufficientPrivilege),
            ("SELECT * FROM station_tokens", errors.InsufficientPrivilege),
            (
                "INSERT INTO reporting.station_states (site, line, station) VALUES ('a', 'b', 'c')",
                errors.InsufficientPrivilege,
            ),
            ("UPDATE reporting.lots SET status = 'CLOSED'", errors.Error),
            ("DELETE FROM reporting.alerts", errors.InsufficientPrivilege),
            ("CREATE TABLE reporting.x (a int)", errors.InsufficientPrivilege),
            ("CREATE TABLE public.x (a int)", errors.InsufficientPrivilege),
            ("SELECT grant_reporting_reader('mes_grafana')", errors.InsufficientPrivilege),
        ]:
            with pytest.raises(error):
                conn.execute(statement)
        # nothing secret is in the views, by name
        columns = conn.execute(
            "SELECT table_name || '.' || column_name FROM information_schema.columns WHERE table_schema = 'reporting'"
        ).fetchall()
        secret = [c[0] for c in columns if any(w in c[0] for w in ("password", "hash", "token", "secret", "sha"))]
        assert columns and not secret


def test_grant_db_gives_a_read_only_login(reporting: dict[str, str], postgres: PostgresServer) -> None:
    from typer.testing import CliRunner

    from mes_cli.main import app

    name = reporting["owner"].rsplit("/", 1)[1]
    admin = postgres.superuser_dsn.rsplit("/", 1)[0] + f"/{name}"
    done = CliRunner().invoke(app, ["grafana", "grant-db", "--database-url", admin, "--password", GRAFANA_PASSWORD])
    assert done.exit_code == 0, done.output
    with psycopg.connect(reporting["grafana"]) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert conn.execute("SELECT count(*) FROM reporting.process_steps").fetchone() == (8,)


def test_trend_panel_equals_the_trend_api(reporting: dict[str, str], timescaledb: bool) -> None:
    from cloud_api.services.measurement_reads import TrendQuery, trend

    board = _dashboards()["mes-quality"]
    start, end = datetime(2026, 3, 9, 8, tzinfo=KST), datetime(2026, 3, 10, 8, tzinfo=KST)
    span = Expansion(start, end - timedelta(microseconds=1), "1h", timescaledb)  # BETWEEN: keep [start, end)
    values, options = _selection(board, reporting["grafana"], span)
    test_point = options["test_point"][0]
    values["test_point"] = [test_point]
    _, rows, _ = _fetch(reporting["grafana"], span.expand(_panel_sql("mes-quality", "추이"), values, options))

    async def api() -> dict[str, Any]:
        engine = make_engine(reporting["app"].replace("postgresql://", "postgresql+psycopg://", 1), pool_size=1)
        try:
            db = Database(engine, ZoneInfo("Asia/Seoul"), clock=lambda: UNTIL)
            query = TrendQuery("PROC-006", values["characteristic"], test_point, None, start, end, "1h")
            async with engine.connect() as conn:
                return await trend(db, conn, query)
        finally:
            await engine.dispose()

    answer = asyncio.run(api())

    def moment(value: Any) -> datetime:
        return value if isinstance(value, datetime) else datetime.fromtimestamp(float(value), UTC)

    got = [(moment(r[0]), float(r[1]), r[2], r[3]) for r in rows]
    expected = [
        (datetime.fromisoformat(p["bucket"]), p["mean"], p["min"], p["max"]) for p in answer["points"] if p["n"]
    ]
    assert got and len(got) == len(expected)
    for (t1, mean1, lo1, hi1), (t2, mean2, lo2, hi2) in zip(got, expected, strict=True):
        assert t1 == t2 and (lo1, hi1) == (lo2, hi2)
        assert mean1 == pytest.approx(mean2, abs=1e-6)
