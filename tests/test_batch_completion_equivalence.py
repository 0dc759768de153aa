"""Batched completions answer and store exactly what `handle_completion` one by one would: a mixed batch and
randomised batches."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from cloud_api.adapters.database import Database
from cloud_api.services import batch_completion as bc
from deploy.localstack.services import PostgresServer
from line_simulator.clock import KST
from mes_contracts.envelope import Outcome
from tests.support.batch_items import (
    MIXED,
    TABLE_QUERIES,
    Names,
    Spec,
    batched,
    build,
    end_state,
    normalised_answers,
    one_by_one,
    prepare,
)
from tests.support.batch_lots import LANG, database, lot_at

pytestmark = pytest.mark.plain_pg  # issue 14: also run on plain PostgreSQL (test.sh's second pass)
__all__ = ["database"]  # the fixture, reused


async def test_mixed_batch_matches_one_by_one(database: Database, postgres: PostgresServer) -> None:
    base = datetime.now(KST).replace(microsecond=0) - timedelta(hours=2)
    batch_names, serial_names = Names("batch"), Names("serial")
    await prepare(database, batch_names, base)
    await prepare(database, serial_names, base)

    batch_answers = await bc.handle_completions_batch(
        database, [build(spec, batch_names, base) for spec in MIXED], LANG
    )
    serial_answers = await one_by_one(database, [build(spec, serial_names, base) for spec in MIXED])

    assert normalised_answers(batch_answers, batch_names) == normalised_answers(serial_answers, serial_names)
    assert [a.outcome.value for a in batch_answers] == [
        "accepted",
        "duplicate",
        "duplicate",
        "duplicate",
        "duplicate",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "accepted",
        "accepted",
        "accepted",
        "rejected",
        "rejected",
        "rejected",
        "accepted",
        "accepted",
        "duplicate",
        "accepted",
        "accepted",
        "accepted",
        "accepted",
    ]
    codes = [a.body.get("error_code") for a in batch_answers]
    assert codes[5:9] == ["INVALID_PROCESS_DATA", "LOT_NOT_FOUND", "PROCESS_NOT_STARTED", "WORKER_NOT_FOUND"]
    assert batch_answers[3].body["message"] == "이미 등록된 완공입니다"
    assert batch_answers[10].body["data"]["lot_status"] == "COMPLETED"
    batch_state = end_state(postgres.dsn, batch_names)
    assert batch_state == end_state(postgres.dsn, serial_names)
    runs = [row for row in batch_state["process_runs"] if '"<L1>", "PROC-001"' in row]
    assert len(runs) == 1 and '"PASS", 2' in runs[0] and '"W001"' in runs[0]
    completed = [row for row in batch_state["lot_status_history"] if '"COMPLETED"' in row]
    assert len(completed) == 1
    assert all(batch_state[table] for table in TABLE_QUERIES), "every table must have rows to compare"


# -- randomised property-style test ------------------------------------------------------------------------------


def random_specs(rng: random.Random, count: int, lot_roles: Sequence[str]) -> list[Spec]:
    specs: list[Spec] = []
    for n in range(count):
        kind = rng.random()
        if specs and kind < 0.15:
            specs.append(rng.choice(specs))  # a redelivery: same id, same file
            continue
        lot = rng.choice(lot_roles)
        process_id = RANDOM_LOTS.get(lot) or "PROC-001"
        spec = Spec(
            lot,
            process_id,
            f"m{n}",
            f"s{n}",
            worker=rng.choice(["W001", "W002", "W003", "W999"]),
            fail=rng.random() < 0.3,
            seed=n,
            minute=rng.randint(1, 60),
        )
        if specs and kind < 0.25:
            spec = Spec(**{**spec.__dict__, "sha": rng.choice(specs).sha})  # a re-picked file under a new id
        elif kind < 0.3:
            spec = Spec(**{**spec.__dict__, "broken": rng.choice(["missing", "empty"])})
        elif kind < 0.33:
            spec = Spec(**{**spec.__dict__, "lot": "UNKNOWN"})
        elif kind < 0.36:
            spec = Spec(**{**spec.__dict__, "sha": None})
        specs.append(spec)
    return specs


RANDOM_LOTS = {
    "A1": "PROC-001",
    "A2": "PROC-001",
    "B1": "PROC-002",
    "C1": "PROC-003",
    "F1": "PROC-006",
    "N1": None,
    "P1": "PROC-008",
    "P2": "PROC-008",
}


@pytest.mark.parametrize("seed", [20240611, 7, 99])
async def test_random_batches_match_one_by_one(database: Database, postgres: PostgresServer, seed: int) -> None:
    rng = random.Random(seed)
    base = datetime.now(KST).replace(microsecond=0) - timedelta(hours=3)
    batch_names, serial_names = Names("batch"), Names("serial")
    for names in (batch_names, serial_names):
        for role, process_id in RANDOM_LOTS.items():
            names.lots[role] = await lot_at(database, process_id, base)
    specs = random_specs(rng, 200, list(RANDOM_LOTS))
    pre, rest = specs[:20], specs[20:]
    for names in (batch_names, serial_names):
        await one_by_one(database, [build(spec, names, base) for spec in pre])
    sizes = [rng.randint(1, 60) for _ in range(6)]

    batch_answers = await batched(database, [build(spec, batch_names, base) for spec in rest], sizes)
    serial_answers = await one_by_one(database, [build(spec, serial_names, base) for spec in rest])

    assert normalised_answers(batch_answers, batch_names) == normalised_answers(serial_answers, serial_names)
    assert end_state(postgres.dsn, batch_names) == end_state(postgres.dsn, serial_names)
    outcomes = {a.outcome for a in batch_answers}
    assert outcomes == {Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.REJECTED}
    state = end_state(postgres.dsn, batch_names)
    assert all(state[table] for table in TABLE_QUERIES), "every table must have rows to compare"
