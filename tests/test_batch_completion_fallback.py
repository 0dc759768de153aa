"""Batched completions falling back to one by one (a hash or an id taken meanwhile), and the fault hook per answer."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from cloud_api.adapters import batch_sql
from cloud_api.adapters.database import Database
from cloud_api.services import batch_completion as bc
from cloud_api.services.handlers import Answer
from deploy.localstack.services import PostgresServer
from line_simulator.clock import KST
from mes_contracts.envelope import Outcome
from tests.support.batch_items import Names, Spec, build, one_by_one
from tests.support.batch_lots import LANG, database, lot_at

pytestmark = pytest.mark.plain_pg  # issue 14: also run on plain PostgreSQL (test.sh's second pass)
__all__ = ["database"]  # the fixture, reused


# -- falling back to one by one -----------------------------------------------------------------------------------


async def test_sha_conflict_falls_back_to_one_by_one(
    database: Database, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hash stored by someone else after our read: the unique violation rolls back, items go one by one."""
    base = datetime.now(KST).replace(microsecond=0) - timedelta(hours=1)
    names = Names("conflict")
    names.lots["L1"] = await lot_at(database, "PROC-001", base)
    await one_by_one(database, [build(Spec("L1", "PROC-001", "first", "s1"), names, base)])
    real = batch_sql.load_context

    async def blind(conn: Any, lot_ids: list[int], workers: list[str], shas: list[str]) -> Any:
        runs, active, _ = await real(conn, lot_ids, workers, shas)
        return runs, active, frozenset()

    monkeypatch.setattr(batch_sql, "load_context", blind)
    items = [
        build(Spec("L1", "PROC-001", "second", "s1"), names, base),
        build(Spec("L1", "PROC-001", "third", "s3", seed=3), names, base),
    ]
    answers = await bc.handle_completions_batch(database, items, LANG)
    assert [a.outcome for a in answers] == [Outcome.DUPLICATE, Outcome.ACCEPTED]
    with psycopg.connect(postgres.dsn) as conn:
        pending = conn.execute(
            "SELECT count(*) FROM processed_messages WHERE message_id = ANY(%s) AND outcome = 'pending'",
            (list(names.ids.values()),),
        ).fetchone()
    assert pending == (0,)


async def test_id_held_by_a_concurrent_transaction(database: Database, postgres: PostgresServer) -> None:
    """An id another instance is answering: the batch waits, then goes one by one and gets its stored answer."""
    base = datetime.now(KST).replace(microsecond=0) - timedelta(hours=1)
    names = Names("held")
    names.lots["L1"] = await lot_at(database, "PROC-001", base)
    items = [build(Spec("L1", "PROC-001", "held", "s1"), names, base)]
    body = {"status": "success", "message": "elsewhere", "data": {}}
    async with await psycopg.AsyncConnection.connect(postgres.dsn) as other:
        await other.execute(
            "INSERT INTO processed_messages (message_id, message_type, source_station, outcome, http_status, "
            "response) VALUES (%s, 'process.completed', 'x', 'accepted', 200, %s)",
            (names.id("held"), json.dumps(body)),
        )
        task = asyncio.create_task(bc.handle_completions_batch(database, items, LANG))
        await asyncio.sleep(0.5)
        assert not task.done()
        await other.commit()
    answers = await task
    assert answers == [Answer(Outcome.DUPLICATE, 200, body)]


async def test_fault_hook_sees_each_stored_answer_before_commit(database: Database, postgres: PostgresServer) -> None:
    """As in `run_once`: the hook runs for every item whose work ran, inside the still-open transaction."""
    base = datetime.now(KST).replace(microsecond=0) - timedelta(hours=1)
    names = Names("hook")
    names.lots["L1"] = await lot_at(database, "PROC-001", base)
    seen: list[tuple[uuid.UUID | None, Outcome, int]] = []

    class Hooks:  # injected as the ingestor injects its crash hooks (services/ports.CommitHooks)
        async def before_commit(self, message_type: Any, message_id: uuid.UUID | None, answer: Answer) -> None:
            with psycopg.connect(postgres.dsn) as conn:
                visible = conn.execute(
                    "SELECT count(*) FROM processed_messages WHERE message_id = %s", (message_id,)
                ).fetchone()
            seen.append((message_id, answer.outcome, visible[0] if visible else -1))

    specs = [
        Spec("L1", "PROC-001", "ok", "s1"),
        Spec("L1", "PROC-001", "ok", "s1"),
        Spec("L1", "PROC-001", "dupfile", "s1"),
        Spec("L1", "PROC-001", "bad", "s2", worker="W999"),
    ]
    await bc.handle_completions_batch(database, [build(spec, names, base) for spec in specs], LANG, hooks=Hooks())
    assert seen == [(names.id("ok"), Outcome.ACCEPTED, 0), (names.id("dupfile"), Outcome.DUPLICATE, 0)]
