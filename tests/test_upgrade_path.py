"""Upgrades (issue 17 point 5): a database of the previous release (revision 0007, tests/fixtures/old_release/)
upgraded to head while that release's writer keeps writing, its data checked; a migration waiting for a lock
does not hold the writers up (lock_timeout + retries, db/migrate.py); every migration says what it locks."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters.database import Database
from cloud_api.services.handlers import handle_completion, handle_start
from cloud_api.services.process_complete import CompletionSource
from db.migrate import MIGRATIONS_DIR, LockPolicy, pending, upgrade
from db.online import LOCKS
from deploy.localstack.children import mes_command
from deploy.localstack.postgres import PostgresServer
from line_simulator.payloads import completion_record, start_request
from mes_contracts.envelope import Outcome
from tests.fixtures.old_release import writes_0007 as old

REPO = Path(__file__).resolve().parent.parent
FAST = LockPolicy(lock_timeout_ms=300, attempts=40, delay_s=0.05, max_delay_s=0.2)
# The tables of revision 0007 and the columns it had: they must read the same after the upgrade (serials.status is
# 0008's backfill, checked on its own).
SNAPSHOT = {
    "lots": "id, lot_number, status, production_date, sequence, created_at",
    "serials": "id, serial_number, lot_id, sequence, created_at",
    "process_runs": "id, lot_id, process_id, work_order_id, status, start_time, complete_time, result",
    "process_results": "id, run_id, lot_id, process_id, message_id, source_station, result, process_data",
    "measurements": "result_id, characteristic, test_point_id, value, lower_limit, upper_limit, time",
    "component_lots": "id, result_id, component_kind, component_lot",
    "lot_status_history": "id, lot_id, from_status, to_status",
    "processed_messages": "message_id, outcome, response",
    "label_print_jobs": "job_id, lot_id, status, printer_state",
    "dead_letters": "id, letter_key, payload, error_code",
    "audit_log": "id, prev_hash, row_hash",
    "station_processes": "site, line, station, process_id",
}
# docs/ops/upgrade.md: rows the previous release's ingestor writes after 0010 and before its restart have no
# station; this fills them in (run once after the restart).
UNTOUCHED = ("label_print_jobs", "dead_letters", "station_processes")  # the old writer does not write these
STATION_REPAIR = (
    "UPDATE measurements m SET station = r.source_station FROM process_results r "
    "WHERE r.id = m.result_id AND m.station IS NULL"
)


@dataclass
class Fresh:
    name: str
    owner_url: str
    owner_dsn: str
    app_dsn: str
    app_url: str


def _fresh(postgres: PostgresServer, revision: str) -> Fresh:
    name = f"mes_upgrade_{uuid.uuid4().hex[:8]}"
    owner = postgres.owner or postgres.user
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    base_owner, base_app = postgres.owner_dsn.rsplit("/", 1)[0], postgres.dsn.rsplit("/", 1)[0]
    made = Fresh(
        name,
        f"{base_owner}/{name}".replace("postgresql://", "postgresql+psycopg://", 1),
        f"{base_owner}/{name}",
        f"{base_app}/{name}",
        f"{base_app}/{name}".replace("postgresql://", "postgresql+psycopg://", 1),
    )
    upgrade(made.owner_url, revision, app_role=postgres.user)
    return made


def _drop(postgres: PostgresServer, name: str) -> None:
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(f"SELECT {c} FROM {t} ORDER BY {c}").fetchall() for t, c in SNAPSHOT.items()}


@dataclass
class OldWriter:
    """The previous release's ingestor, writing one LOT a transaction until stopped (on its own day)."""

    dsn: str
    written: list[old.WrittenLot] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    slowest_s: float = 0.0
    during: int = 0  # LOTs committed while the upgrade ran
    stop: threading.Event = field(default_factory=threading.Event)
    first: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set() and len(self.written) < 900:
                began = time.monotonic()
                try:
                    self.written.append(
                        old.write_lot(conn, date(2026, 12, 2), len(self.written) + 1, 3, "PASS", "IN_PROGRESS")
                    )
                except psycopg.Error as error:
                    self.errors.append(f"{type(error).__name__}: {error}")
                self.slowest_s = max(self.slowest_s, time.monotonic() - began)
                self.first.set()


@dataclass
class Upgraded:
    db: Fresh
    before: dict[str, list[tuple[Any, ...]]]
    lots: list[old.WrittenLot]
    writer: OldWriter
    retries: int
    pending_output: str
    seconds: float


def _mes(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mes_command(*args), env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def upgraded(postgres: PostgresServer) -> Iterator[Upgraded]:
    db = _fresh(postgres, old.REVISION)
    try:
        with psycopg.connect(db.app_dsn, autocommit=True) as conn:
            lots = old.populate(conn)
        env = {"MES_DATABASE_URL": db.app_url, "MES_MIGRATION_DATABASE_URL": db.owner_url, "PATH": "/usr/bin:/bin"}
        listed = _mes(env, "db", "pending")
        before = _snapshot(db.owner_dsn)
        writer = OldWriter(db.app_dsn)
        thread = threading.Thread(target=writer.run, daemon=True)
        thread.start()
        assert writer.first.wait(30), "the old writer wrote nothing"
        began, at_start = time.monotonic(), len(writer.written)
        retries = upgrade(db.owner_url, "head", app_role=postgres.user, policy=FAST)
        seconds = time.monotonic() - began
        count = len(writer.written)
        writer.during = count - at_start
        while len(writer.written) < count + 2 and thread.is_alive():  # and it goes on writing on the new schema
            time.sleep(0.01)
        writer.stop.set()
        thread.join(30)
        yield Upgraded(db, before, lots, writer, retries, listed.stdout + listed.stderr, seconds)
    finally:
        _drop(postgres, db.name)


def _frozen(row: tuple[Any, ...]) -> str:
    return json.dumps(row, default=str, sort_keys=True)


def _rows(dsn: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


@pytest.mark.plain_pg
def test_pending_lists_what_the_upgrade_runs_and_its_locks(upgraded: Upgraded) -> None:
    out = upgraded.pending_output
    listed = [line.split()[0] for line in out.splitlines() if line[:4].isdigit()]
    assert listed == [f"{n:04d}" for n in range(8, 17)], out
    assert "[offline]  Measurement analytics" in out and "not online: 0010" in out
    assert pending(upgraded.db.owner_url) == []


@pytest.mark.plain_pg
def test_previous_release_data_reads_the_same_after_the_upgrade(upgraded: Upgraded) -> None:
    dsn = upgraded.db.owner_dsn
    after = _snapshot(dsn)
    for table, rows in upgraded.before.items():
        if table == "audit_log":  # the writer kept appending: the old rows are a prefix, hashes unchanged
            assert after[table][: len(rows)] == rows
        elif table in UNTOUCHED:
            assert after[table] == rows, table
        else:  # the same rows, plus the old writer's during the upgrade
            assert Counter(map(_frozen, rows)) <= Counter(map(_frozen, after[table])), table
    written = upgraded.writer
    assert written.errors == [], written.errors[:3]
    # It really wrote while the migrations ran (~30 LOTs in 0.6 s here; slowest write 75 ms).
    assert written.during >= 1, f"{written.during} writes in {upgraded.seconds:.2f} s"
    assert written.slowest_s < 10
    lots = {n for (n,) in _rows(dsn, "SELECT lot_number FROM lots")}
    assert {w.lot_number for w in written.written} <= lots  # every write of the old release during it committed
    assert _rows(dsn, "SELECT version_num FROM alembic_version") == [("0016",)]


@pytest.mark.plain_pg
def test_later_migrations_backfilled_the_old_rows(upgraded: Upgraded) -> None:
    dsn = upgraded.db.owner_dsn
    statuses = dict(
        _rows(
            dsn,
            "SELECT l.lot_number, string_agg(DISTINCT s.status, ',') FROM serials s JOIN lots l ON l.id = s.lot_id "
            "WHERE l.production_date = %s GROUP BY l.lot_number",
            (old.DAY,),
        )
    )
    assert statuses == {
        "WF-KR-261201D-001": "PASSED",
        "WF-KR-261201D-002": "IN_PROGRESS",
        "WF-KR-261201D-003": "CREATED",
        "WF-KR-261201D-004": "IN_PROGRESS",
    }
    history = _rows(
        dsn,
        "SELECT l.lot_number, h.from_status, h.to_status, h.process_id, count(*) FROM serial_status_history h "
        "JOIN serials s ON s.id = h.serial_id JOIN lots l ON l.id = s.lot_id WHERE h.cause = 'migration 0008' "
        "AND l.production_date = %s GROUP BY 1, 2, 3, 4 ORDER BY 1",
        (old.DAY,),
    )
    assert history == [
        ("WF-KR-261201D-001", "CREATED", "PASSED", "PROC-008", old.SERIALS),
        ("WF-KR-261201D-002", "CREATED", "IN_PROGRESS", "PROC-007", old.SERIALS),
        ("WF-KR-261201D-004", "CREATED", "IN_PROGRESS", "PROC-007", old.SERIALS),
    ]
    # 0010: every old measurement names its station (from its result); the rollups count every value.
    assert sum(w.measurements for w in upgraded.lots) > 0
    mismatched = _rows(
        dsn,
        "SELECT count(*) FROM measurements m JOIN process_results r ON r.id = m.result_id "
        "WHERE r.complete_time < %s AND m.station IS DISTINCT FROM r.source_station",
        (datetime(2026, 12, 2, tzinfo=old.SEOUL),),
    )
    assert mismatched == [(0,)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(STATION_REPAIR)  # the old writer's rows after 0010 (docs/ops/upgrade.md)
    assert _rows(dsn, "SELECT count(*) FROM measurements WHERE station IS NULL") == [(0,)]
    # The old release's day, rolled up by 0010 (later rows reach TimescaleDB's materialised buckets at the next
    # policy refresh: not this test's subject).
    day_end = datetime(2026, 12, 2, tzinfo=old.SEOUL)
    raw = _rows(
        dsn, "SELECT process_id, count(value) FROM measurements WHERE time < %s GROUP BY 1 ORDER BY 1", (day_end,)
    )
    assert raw and all(n for _, n in raw)
    for view in ("measurement_hourly", "measurement_daily"):
        query = f"SELECT process_id, sum(n)::bigint FROM {view} WHERE bucket < %s GROUP BY 1 ORDER BY 1"
        assert _rows(dsn, query, (day_end,)) == raw, view
    # 0013: the printer's last state, read from the old label jobs; the LOTs through the reporting views.
    assert _rows(dsn, "SELECT printer_id, printer_state FROM reporting.printer_states") == [(old.PRINTER, "ready")]
    assert _rows(dsn, "SELECT count(*) FROM reporting.lots") == _rows(dsn, "SELECT count(*) FROM lots")


@pytest.mark.plain_pg
def test_the_new_write_path_works_on_the_upgraded_data_and_the_chain_verifies(
    upgraded: Upgraded, postgres: PostgresServer
) -> None:
    """LOT 3 of the old release (PROC-001..002 done) goes on through today's start and completion."""
    lot = "WF-KR-261201D-003"
    now = datetime.now(old.SEOUL).replace(microsecond=0)

    async def go() -> tuple[Any, Any]:
        engine = create_async_engine(upgraded.db.app_url, pool_size=2)
        try:
            db = Database(engine, old.SEOUL)
            station = "mes/v1/KR/L1/st03"
            started = await handle_start(
                db, start_request("PROC-003", lot, "W001", now - timedelta(minutes=2)), station, uuid.uuid4(), "en"
            )
            record = completion_record("PROC-003", lot, "W001", now - timedelta(minutes=2), now, random.Random(3))
            done = await handle_completion(db, record, CompletionSource(station, uuid.uuid4(), None, None, False), "en")
            return started, done
        finally:
            await engine.dispose()

    started, done = asyncio.run(go())
    assert started.outcome is Outcome.ACCEPTED, started.body
    assert done.outcome is Outcome.ACCEPTED, done.body
    dsn = upgraded.db.owner_dsn
    stations = _rows(
        dsn,
        "SELECT DISTINCT m.station FROM measurements m JOIN lots l ON l.id = m.lot_id "
        "WHERE l.lot_number = %s AND m.process_id = 'PROC-003'",
        (lot,),
    )
    assert stations == [("mes/v1/KR/L1/st03",)]  # today's writer fills 0010's column itself
    env = {"MES_DATABASE_URL": upgraded.db.app_url, "PATH": "/usr/bin:/bin"}
    verified = _mes(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    count = _rows(dsn, "SELECT count(*) FROM audit_log")[0][0]
    assert str(count) in verified.stdout, verified.stdout


def _waiting_for_lock(dsn: str, timeout: float = 20) -> None:
    """Until some session of the database waits for a lock (the migration behind the long transaction)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.02)
    raise AssertionError("no session ever waited for a lock")


def _insert_measurement(dsn: str) -> float:
    """A writer's insert into measurements (statement_timeout 3 s); seconds it took."""
    began = time.monotonic()
    with psycopg.connect(dsn, autocommit=True, options="-c statement_timeout=3000") as conn:
        conn.execute(
            "INSERT INTO measurements (time, lot_id, process_id, result_id, characteristic, value) "
            "VALUES (now(), 1, 'PROC-003', 1, 'temperature', 25.0)"
        )
    return time.monotonic() - began


def _behind_long_reader(fresh: Fresh, app_role: str, policy: LockPolicy, while_blocked: Callable[[], None]) -> int:
    """Upgrade `fresh` to head while a long transaction reads measurements (0010 needs ACCESS EXCLUSIVE on it);
    `while_blocked` runs once the migration waits; then the reader ends. Returns the upgrade's retries."""
    result: list[int | BaseException] = []

    def run() -> None:
        try:
            result.append(upgrade(fresh.owner_url, "head", app_role=app_role, policy=policy))
        except BaseException as error:
            result.append(error)

    with psycopg.connect(fresh.app_dsn) as reader:
        reader.execute("SELECT count(*) FROM measurements").fetchone()  # ACCESS SHARE until this transaction ends
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        _waiting_for_lock(fresh.owner_dsn)
        while_blocked()
        reader.rollback()
    thread.join(60)
    assert result and not isinstance(result[0], BaseException), result
    return int(result[0])


@pytest.mark.plain_pg
def test_a_migration_behind_a_long_transaction_does_not_hold_up_writers(postgres: PostgresServer) -> None:
    timed: list[float] = []
    fresh = _fresh(postgres, "0009")
    try:
        retries = _behind_long_reader(
            fresh, postgres.user, FAST, lambda: timed.append(_insert_measurement(fresh.app_dsn))
        )
        assert timed[0] < 2.0  # waited at most about one lock_timeout (0.3 s), not for the long transaction
        assert retries >= 1
        assert _rows(fresh.owner_dsn, "SELECT version_num FROM alembic_version") == [("0016",)]
    finally:
        _drop(postgres, fresh.name)
    # Without a lock timeout (PostgreSQL's default, and this command before issue 17) the writer queues behind.
    fresh = _fresh(postgres, "0009")
    try:
        failed: list[BaseException] = []

        def blocked_insert() -> None:
            try:
                _insert_measurement(fresh.app_dsn)
            except psycopg.errors.QueryCanceled as error:
                failed.append(error)

        _behind_long_reader(fresh, postgres.user, LockPolicy(lock_timeout_ms=None, attempts=1), blocked_insert)
        assert failed, "the insert should have waited behind the migration's lock request"
    finally:
        _drop(postgres, fresh.name)


def test_every_migration_says_what_it_locks() -> None:
    revisions = sorted(p.name[:4] for p in (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert revisions and sorted(LOCKS) == revisions
    assert all(note.online in ("online", "brief", "offline", "install") for note in LOCKS.values())
