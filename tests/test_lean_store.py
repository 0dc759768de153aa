"""Migration 0016 (the lean completion store, issue 18.3): one composite foreign key per process result; the audit
chain (0004's trigger, unchanged) still verifies under concurrent writers and a batch's rolled-back poison record."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cloud_api.adapters import batch_sql
from cloud_api.adapters.database import Database
from cloud_api.audit.chain import verify_chain
from cloud_api.services import batch_completion as bc
from cloud_api.services.process_complete import CompletionSource
from db.migrate import downgrade, upgrade
from deploy.localstack.services import PostgresServer
from line_simulator.clock import KST
from line_simulator.payloads import completion_record
from mes_contracts.envelope import Outcome
from tests.support.batch_lots import LANG, STATION, database, lot_at
from tests.test_audit_chain import AuditDb, app_engine, audit_db

pytestmark = pytest.mark.plain_pg
__all__ = ["app_engine", "audit_db", "database"]  # the fixtures, reused

INSERT = "INSERT INTO audit_log (actor, action, entity, entity_key) VALUES ('tester', 'lot.create', 'lot', %s)"


class Poison(Exception):
    pass


def append(conn: psycopg.Connection[Any], *keys: str) -> None:
    for key in keys:
        conn.execute(INSERT, (key,))


def chain(dsn: str) -> dict[str, tuple[int, str, str]]:
    """entity_key → (id, prev_hash, row_hash)."""
    with psycopg.connect(dsn) as conn:
        found = conn.execute("SELECT entity_key, id, prev_hash, row_hash FROM audit_log ORDER BY id").fetchall()
    return {key: (row_id, prev, row_hash) for key, row_id, prev, row_hash in found}


async def verified(engine: AsyncEngine, from_id: int = 1) -> int:
    async with engine.connect() as conn:
        result = await verify_chain(conn, from_id)
    assert result.ok, result.broken
    return result.checked


async def test_concurrent_transactions_keep_one_chain(audit_db: AuditDb, app_engine: AsyncEngine) -> None:
    async def writer(tag: str) -> None:
        for n in range(5):
            async with app_engine.begin() as conn:
                for m in range(4):
                    await conn.exec_driver_sql(INSERT.replace("%s", "%(k)s"), {"k": f"{tag}-{n}-{m}"})

    await asyncio.gather(*(writer(f"w{w}") for w in range(4)))
    assert await verified(app_engine) == 80


def _constraints(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'process_results'::regclass AND contype = 'f'"
        ).fetchall()
    return {name for (name,) in found}


async def test_the_migration_round_trip(audit_db: AuditDb, app_engine: AsyncEngine, postgres: PostgresServer) -> None:
    owner_url = audit_db.owner_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    lean = {"process_results_run_fkey", "process_results_serial_id_fkey"}
    old = {f"process_results_{c}_fkey" for c in ("run_id", "lot_id", "process_id", "serial_id")}
    assert _constraints(audit_db.app_dsn) == lean
    with psycopg.connect(audit_db.app_dsn) as conn:
        append(conn, "lean-1", "lean-2")
        conn.commit()
    downgrade(owner_url, "0015", app_role=postgres.user)
    assert _constraints(audit_db.app_dsn) == old
    with psycopg.connect(audit_db.app_dsn) as conn:
        append(conn, "0004-1", "0004-2")
        conn.commit()
    upgrade(owner_url, app_role=postgres.user)
    assert _constraints(audit_db.app_dsn) == lean
    with psycopg.connect(audit_db.app_dsn) as conn:
        append(conn, "lean-3")
        conn.commit()
    assert await verified(app_engine) == 5


async def test_a_result_must_name_its_runs_lot_and_process(database: Database, postgres: PostgresServer) -> None:
    at = datetime.now(KST).replace(microsecond=0) - timedelta(days=1)
    mine, other = await lot_at(database, "PROC-001", at), await lot_at(database, "PROC-001", at)
    insert = (
        "INSERT INTO process_results (run_id, lot_id, process_id, message_id, source_station, worker_id, start_time, "
        "complete_time, result, process_data) SELECT r.id, %s, %s, %s, 'st01', 'W001', now(), now(), 'PASS', '{}' "
        "FROM process_runs r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = %s AND r.process_id = 'PROC-001'"
    )
    with psycopg.connect(postgres.dsn) as conn:
        lot_ids: dict[str, int] = dict(
            conn.execute("SELECT lot_number, id FROM lots WHERE lot_number IN (%s, %s)", (mine, other))
        )
        for lot_id, process_id in ((lot_ids[other], "PROC-001"), (lot_ids[mine], "PROC-002")):
            with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
                conn.execute(insert, (lot_id, process_id, uuid.uuid4(), mine))
        conn.execute(insert, (lot_ids[mine], "PROC-001", uuid.uuid4(), mine))  # its own LOT and process: stored
        conn.rollback()


async def test_a_batch_with_a_poison_record_keeps_a_chain_that_verifies(
    database: Database, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = datetime.now(KST).replace(microsecond=0) - timedelta(days=1)
    lots = [await lot_at(database, "PROC-001", at) for _ in range(3)]
    with psycopg.connect(postgres.dsn) as conn:
        first_id = int(conn.execute("SELECT COALESCE(max(id), 0) + 1 FROM audit_log").fetchone()[0])  # type: ignore[index]
    rng = random.Random(18)
    items = [
        (
            completion_record("PROC-001", lots[n % 3], "W001", at, at + timedelta(seconds=n + 1), rng),
            CompletionSource(STATION, uuid.uuid4(), f"f{n}.json", uuid.uuid4().hex * 2),
        )
        for n in range(12)
    ]
    poison = items[5][1].message_id
    real = bc.handle_completion

    async def failing(db: Database, raw: Any, source: CompletionSource, *args: Any, **kw: Any) -> Any:
        if source.message_id == poison:  # fails alone, one by one (and is quarantined)
            raise RuntimeError("poison record")
        return await real(db, raw, source, *args, **kw)

    monkeypatch.setattr(bc, "handle_completion", failing)
    real_write = bc.completion_store.write

    async def write_then_fail(conn: Any, accepted: Any, *args: Any) -> Any:
        written = await real_write(conn, accepted, *args)
        if any(a.source.message_id == poison for a in accepted):
            raise RuntimeError("poison batch")  # the batch's audit rows were written: all rolled back
        return written

    monkeypatch.setattr(bc.completion_store, "write", write_then_fail)
    answers = await bc.handle_completions_batch(database, items, LANG)
    outcomes = [a.outcome for a in answers]
    assert outcomes.count(Outcome.ACCEPTED) == 11 and outcomes[5] is not Outcome.ACCEPTED
    engine = create_async_engine(postgres.url)
    try:
        assert await verified(engine, first_id) >= 11
    finally:
        await engine.dispose()


async def test_the_claim_reads_stored_answers_only_for_ids_it_could_not_claim(
    database: Database, postgres: PostgresServer
) -> None:
    stored_id, new_ids = uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()]
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO processed_messages (message_id, message_type, source_station, outcome, http_status, "
            "response) VALUES (%s, 'process.completed', 'st01', 'accepted', 200, '{\"a\": 1}')",
            (stored_id,),
        )
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with database.transaction() as tx:
            fresh = await batch_sql.claim(tx, new_ids, ["st01", "st01"], "process.completed")
            assert (fresh.claimed, fresh.stored, len(statements)) == (frozenset(new_ids), {}, 1)
            await tx.rollback()
        async with database.transaction() as tx:
            mixed = await batch_sql.claim(tx, [stored_id, *new_ids], ["st01"] * 3, "process.completed")
            await tx.rollback()
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    assert mixed.claimed == frozenset(new_ids) and len(statements) == 3
    assert mixed.stored == {stored_id: ("accepted", 200, {"a": 1})}
