"""`mes demo-data` (bench/scale): a two-day run into a database of its own, checked against the real write path's
own rules: every stored result re-validates as a completion record, its failure reasons, verdict and measurement
rows are what the contracts and domain/measurements.py make of it, serial statuses follow their history, counters
and sequences continue after the demo data, and the application role can read it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime

import psycopg
import pytest

from bench.scale import values
from bench.scale.generator import Options, Report, run
from bench.scale.plan import KST, calendar, lots_of_day
from cloud_api.domain.measurements import extract_measurements
from db.migrate import upgrade
from deploy.localstack.postgres import PostgresServer
from mes_contracts.completion import CompletionRecord
from mes_contracts.numbering import LOT_RE, SERIAL_RE
from mes_contracts.route import get_step

UNTIL = datetime(2026, 3, 10, 15, 0, tzinfo=KST)  # a Tuesday afternoon: Monday done, Tuesday's day shift running
HZ, SECONDS = 50.0, 10.0


def _migrated_database(postgres: PostgresServer) -> tuple[str, str]:
    """(name, owner dsn) of a new database migrated to head."""
    name = f"mes_demo_{uuid.uuid4().hex[:8]}"
    owner = postgres.owner or postgres.user
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    upgrade(postgres.owner_url.rsplit("/", 1)[0] + f"/{name}", app_role=postgres.user)
    return name, postgres.owner_dsn.rsplit("/", 1)[0] + f"/{name}"


def _drop(postgres: PostgresServer, name: str) -> None:
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _options(days: int, resume: bool = False) -> Options:
    return Options(
        years=None, days=days, seed=7, curves_per_day=5, curve_hz=HZ, curve_seconds=SECONDS, until=UNTIL, resume=resume
    )


@pytest.fixture(scope="module")
def demo(postgres: PostgresServer) -> Iterator[tuple[str, str, Report]]:
    """(owner dsn, app dsn, report) of a database of its own filled with two working days."""
    name, owner_dsn = _migrated_database(postgres)
    report = run(owner_dsn, _options(2), say=lambda _line: None)
    yield owner_dsn, postgres.dsn.rsplit("/", 1)[0] + f"/{name}", report
    _drop(postgres, name)


def rows(dsn: str, query: str, params: tuple[object, ...] = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


# -- the plan (quick) -------------------------------------------------------------------------------------------


def test_three_years_are_about_750_working_days_of_five_lots() -> None:
    days = calendar(date(2026, 12, 4), 3.0, None)
    assert 740 <= len(days) <= 780
    assert all(d.weekday() < 5 for d in days)
    plans = lots_of_day(days[0], 0, 1, 0)
    assert [(p.shift, p.sequence) for p in plans] == [("D", 1), ("D", 2), ("D", 3), ("N", 4), ("N", 5)]
    # 27 test points × (force, displacement, temperature) + the sensor test's 2 rows: ≥ 30M rows in three years
    assert len(values.TEST_POINTS) * 3 + 2 == 83
    assert 83 * 500 * len(days) * 0.97 >= 30_000_000


def test_today_is_a_production_day_even_on_a_weekend() -> None:
    saturday = date(2026, 12, 5)
    assert calendar(saturday, None, 3)[-1] == saturday
    assert len(calendar(saturday, None, 3)) == 3


# -- the data -----------------------------------------------------------------------------------------------------


@pytest.mark.plain_pg
def test_counts_match_the_report_and_the_plan(demo: tuple[str, str, Report]) -> None:
    dsn, _, report = demo
    for table, count in report.rows.items():
        assert rows(dsn, f"SELECT count(*) FROM {table}")[0][0] == count, table
    lots = rows(dsn, "SELECT lot_number, status, production_date FROM lots ORDER BY lot_number")
    # Monday: 5 LOTs; Tuesday 15:00: the day shift's 3 (the night shift's are not created yet)
    assert len(lots) == 8
    assert all(LOT_RE.match(number) for number, _, _ in lots)
    assert [n for n, _, _ in lots][:3] == ["WF-KR-260309D-001", "WF-KR-260309D-002", "WF-KR-260309D-003"]
    statuses = {n: s for n, s, _ in lots}
    assert statuses["WF-KR-260309D-001"] == "COMPLETED" and statuses["WF-KR-260310D-001"] == "IN_PROGRESS"
    assert report.rows["measurement_samples"] == report.rows["measurement_samples"] // int(2 * HZ * SECONDS) * int(
        2 * HZ * SECONDS
    )
    # the counters continue after the demo data
    assert rows(dsn, "SELECT last_value FROM lot_number_sequences WHERE production_date = '2026-03-10'")[0][0] == 3
    assert rows(dsn, "SELECT nextval(pg_get_serial_sequence('lots', 'id')) > max(id) FROM lots")[0][0]
    assert rows(dsn, "SELECT nextval(pg_get_serial_sequence('process_results', 'id')) > max(id) FROM process_results")[
        0
    ][0]
    used = rows(
        dsn,
        "SELECT max(split_part(work_order_id, '-', 3)::int) FROM process_runs WHERE start_time::date = '2026-03-09'",
    )
    assert rows(dsn, "SELECT last_value FROM work_order_sequences WHERE work_day = '2026-03-09'")[0][0] == used[0][0]


@pytest.mark.plain_pg
def test_every_result_is_what_the_write_path_would_store(demo: tuple[str, str, Report]) -> None:
    """A sample of each process: the record re-validates; reasons, verdict and measurements match the domain's."""
    dsn, _, _ = demo
    sample = rows(
        dsn,
        "SELECT DISTINCT ON (pr.process_id, pr.result) pr.id, l.lot_number, pr.process_id, pr.worker_id, "
        "pr.start_time, pr.complete_time, pr.process_data, pr.failure_reasons, pr.result, s.serial_number "
        "FROM process_results pr JOIN lots l ON l.id = pr.lot_id LEFT JOIN serials s ON s.id = pr.serial_id "
        "ORDER BY pr.process_id, pr.result, pr.id",
    )
    assert {r[2] for r in sample} == {f"PROC-00{n}" for n in range(1, 9)}
    assert any(r[8] == "FAIL" for r in sample)
    for result_id, lot, process_id, worker, start, complete, data, reasons, verdict, serial in sample:
        record = CompletionRecord.model_validate(
            {
                "lot_number": lot,
                "process_id": process_id,
                "process_name": get_step(process_id).name_ko,
                "worker_id": worker,
                "start_time": start.isoformat(),
                "complete_time": complete.isoformat(),
                "process_data": data,
            }
        )
        typed = record.typed_data()
        assert typed.failure_reasons() == reasons, result_id
        assert typed.outcome() == verdict, result_id
        assert (serial is not None) == (process_id in ("PROC-007", "PROC-008"))
        expected = sorted(
            (
                m.time,
                m.characteristic,
                m.test_point_id,
                m.value,
                m.unit,
                m.target,
                m.lower_limit,
                m.upper_limit,
                m.result,
            )
            for m in extract_measurements(typed, record.complete_time)
        )
        stored = sorted(
            tuple(r)
            for r in rows(
                dsn,
                "SELECT time, characteristic, test_point_id, value, unit, target, lower_limit, upper_limit, result "
                "FROM measurements WHERE result_id = %s",
                (result_id,),
            )
        )
        assert stored == expected, result_id
        if process_id == "PROC-002":
            kinds = rows(
                dsn, "SELECT component_kind, component_lot FROM component_lots WHERE result_id = %s", (result_id,)
            )
            assert dict(kinds) == typed.component_lots()


@pytest.mark.plain_pg
def test_serials_follow_the_lot_and_their_history(demo: tuple[str, str, Report]) -> None:
    dsn, _, _ = demo
    # PROC-007 issues target − failed units (labels/repository.issue_serials); every serial has its label job
    per_lot = rows(
        dsn,
        "SELECT l.id, (SELECT count(*) FROM serials s WHERE s.lot_id = l.id), "
        "(SELECT count(*) FROM process_results r WHERE r.lot_id = l.id AND r.result = 'FAIL' "
        "AND r.process_id < 'PROC-007'), "
        "(SELECT count(*) FROM label_print_jobs j WHERE j.lot_id = l.id AND j.label_type = 'SERIAL' AND NOT j.reprint) "
        "FROM lots l JOIN process_runs r7 ON r7.lot_id = l.id AND r7.process_id = 'PROC-007'",
    )
    assert per_lot
    for _, serials, failed, labels in per_lot:
        assert serials == 100 - failed == labels
    assert all(SERIAL_RE.match(n) for (n,) in rows(dsn, "SELECT serial_number FROM serials"))
    mismatched = rows(
        dsn,
        "SELECT s.serial_number FROM serials s LEFT JOIN LATERAL (SELECT h.to_status FROM serial_status_history h "
        "WHERE h.serial_id = s.id ORDER BY h.changed_at DESC, h.id DESC LIMIT 1) last ON true "
        "WHERE COALESCE(last.to_status, 'CREATED') <> s.status",
    )
    assert mismatched == []
    passed_without_packing = rows(
        dsn,
        "SELECT s.id FROM serials s WHERE s.status = 'PASSED' AND NOT EXISTS (SELECT 1 FROM process_results r "
        "WHERE r.serial_id = s.id AND r.process_id = 'PROC-008' AND r.result = 'PASS')",
    )
    assert passed_without_packing == []
    assert rows(dsn, "SELECT count(*) FROM serials WHERE status = 'PASSED'")[0][0] > 300


@pytest.mark.plain_pg
def test_spring_lots_are_shared_and_curves_are_whole(demo: tuple[str, str, Report]) -> None:
    dsn, app_dsn, report = demo
    spring = rows(
        dsn,
        "SELECT component_lot, count(DISTINCT lot_id) FROM component_lots WHERE component_kind = 'sma_spring' "
        "GROUP BY 1",
    )
    assert len(spring) == 1 and spring[0][1] == 8  # one spring lot feeds up to 50 LOTs
    if "measurement_samples" in report.rows:
        per_curve = int(HZ * SECONDS)
        curves = rows(
            dsn,
            "SELECT message_id, count(*), min(seq), max(seq), max(value) FILTER (WHERE channel = 'force'), "
            "max(value) FILTER (WHERE channel = 'displacement'), count(DISTINCT serial_id) "
            "FROM measurement_samples GROUP BY message_id",
        )
        assert curves and all(c[1:4] == (2 * per_curve, 0, 2 * per_curve - 1) for c in curves)
        assert all(15.0 < c[4] < 17.0 and 199.0 < c[5] < 201.0 for c in curves)
    # the application role reads what the owner loaded
    assert rows(app_dsn, "SELECT count(*) FROM process_results")[0][0] == report.rows["process_results"]


@pytest.mark.plain_pg
def test_the_load_leaves_the_triggers_on_and_the_rollups_stored(demo: tuple[str, str, Report]) -> None:
    dsn, _, _ = demo
    # the NOTIFY triggers (and FK checks) paused inside each chunk's transaction are on again
    assert rows(dsn, "SELECT t.tgname FROM pg_trigger t WHERE t.tgenabled = 'D'") == []
    # measurements name their station as the completion writer does (0010 denormalises it from the result)
    assert rows(
        dsn,
        "SELECT count(*) FROM measurements m JOIN process_results r ON r.id = m.result_id "
        "WHERE m.station IS DISTINCT FROM r.source_station",
    ) == [(0,)]
    raw = rows(dsn, "SELECT count(value), sum(value::numeric) FROM measurements")[0]
    for view in ("measurement_hourly", "measurement_daily"):
        assert rows(dsn, f"SELECT sum(n), sum(sum_value) FROM {view}")[0] == raw, view
    if rows(dsn, "SELECT to_regclass('measurement_rollup_dirty')")[0][0] is not None:  # plain PostgreSQL
        assert rows(dsn, "SELECT count(*) FROM measurement_rollup_dirty") == [(0,)]
        stored = rows(dsn, "SELECT sum(n) FROM measurement_hourly_store")[0][0]
        assert stored == raw[0]


def test_the_command_needs_a_database_and_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from mes_cli.demo_data import demo_data_command
    from mes_cli.main import app

    assert "demo-data" in {c.name for c in app.registered_commands}
    for name in ("MES_DATABASE_URL", "MES_MIGRATION_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(typer.Exit) as exit_info:
        demo_data_command(database_url=None)
    assert exit_info.value.exit_code == 2


@pytest.mark.plain_pg
def test_a_stopped_load_resumes_without_doubling_a_day(postgres: PostgresServer) -> None:
    """--resume skips the working days that have LOTs and fills only the missing ones, numbered as a full run would."""
    name, dsn = _migrated_database(postgres)
    full_name, full_dsn = _migrated_database(postgres)
    try:
        run(dsn, _options(2), say=lambda _line: None)  # Monday and Tuesday: the part-way load
        resumed = run(dsn, _options(3, resume=True), say=lambda _line: None)  # Friday is missing
        assert (resumed.skipped_days, resumed.lots) == (2, 5)
        run(full_dsn, _options(3), say=lambda _line: None)  # the same three days in one go
        query = "SELECT lot_number, production_date, status FROM lots ORDER BY lot_number"
        assert rows(dsn, query) == rows(full_dsn, query)
        assert len(rows(dsn, query)) == 13
        # each day once: no serial twice, and every LOT of the resumed day (and of the others) has its units
        total, distinct = rows(dsn, "SELECT count(*), count(DISTINCT serial_number) FROM serials")[0]
        assert total == distinct > 0
        lots_without_units = (
            "SELECT count(*) FROM lots l WHERE NOT EXISTS (SELECT 1 FROM serials s WHERE s.lot_id = l.id)"
        )
        assert rows(dsn, lots_without_units) == rows(full_dsn, lots_without_units)
    finally:
        _drop(postgres, name)
        _drop(postgres, full_name)
