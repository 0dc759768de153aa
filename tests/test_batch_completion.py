"""Batched completions answer and store exactly what `handle_completion` one by one would."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters import batch_sql, completion_store
from cloud_api.adapters.database import Database
from cloud_api.domain.lots import LotStatus
from cloud_api.services import batch_completion as bc
from cloud_api.services.handlers import Answer, handle_completion, handle_start
from cloud_api.services.idempotency import StoredReply
from cloud_api.services.lots import CreateLot, create_lot
from cloud_api.services.process_complete import CompletionSource
from deploy.localstack.services import PostgresServer
from line_simulator.clock import KST
from line_simulator.payloads import completion_record, other_lot_number, start_request, without_required_field
from mes_contracts.envelope import Outcome
from mes_contracts.numbering import Shift
from mes_contracts.route import ROUTE

pytestmark = pytest.mark.plain_pg  # issue 14: also run on plain PostgreSQL (test.sh's second pass)

LANG = "ko"
STATION = "KR/L1/st01"


@pytest.fixture
async def database(postgres: PostgresServer) -> AsyncIterator[Database]:
    engine = create_async_engine(postgres.url, pool_size=4)
    yield Database(engine, ZoneInfo("Asia/Seoul"))
    await engine.dispose()


# -- building LOTs and items --------------------------------------------------------------------------------------


async def new_lot(db: Database) -> str:
    async with db.transaction() as conn:
        return str((await create_lot(db, conn, CreateLot(shift=Shift.DAY), "test"))["lot_number"])


async def start(db: Database, lot: str, process_id: str, at: datetime) -> None:
    answer = await handle_start(db, start_request(process_id, lot, "W001", at), STATION, uuid.uuid4(), LANG)
    assert answer.outcome is Outcome.ACCEPTED, answer


async def lot_at(db: Database, process_id: str | None, at: datetime) -> str:
    """A new LOT whose processes before `process_id` are completed and `process_id` is started (None: not started)."""
    lot = await new_lot(db)
    if process_id is None:
        return lot
    for step in ROUTE:
        await start(db, lot, step.process_id, at)
        if step.process_id == process_id:
            return lot
        record = completion_record(step.process_id, lot, "W001", at, at + timedelta(seconds=1), random.Random(0))
        source = CompletionSource(STATION, uuid.uuid4(), None, None)
        assert (await handle_completion(db, record, source, LANG)).outcome is Outcome.ACCEPTED
    raise AssertionError(process_id)


@dataclass
class Names:
    """Per LOT set: role → real LOT number, message id and sha; used to build items and to normalise rows."""

    tag: str
    lots: dict[str, str] = field(default_factory=dict)
    ids: dict[str, uuid.UUID] = field(default_factory=dict)
    shas: dict[str, str] = field(default_factory=dict)

    def id(self, role: str) -> uuid.UUID:
        return self.ids.setdefault(role, uuid.uuid4())

    def sha(self, role: str) -> str:
        return self.shas.setdefault(role, hashlib.sha256(f"{self.tag}|{role}|{uuid.uuid4()}".encode()).hexdigest())

    def normalise(self, value: Any) -> str:
        text = json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
        for table in (self.lots, self.ids, self.shas):
            for role, real in table.items():
                text = text.replace(str(real), f"<{role}>")
        return text


@dataclass(frozen=True)
class Spec:
    """One item, independent of the LOT set: roles instead of real numbers, ids and hashes."""

    lot: str
    process_id: str
    msg: str
    sha: str | None
    worker: str = "W001"
    fail: bool = False
    seed: int = 0
    minute: int = 1
    broken: str | None = None  # "missing" (required field dropped) or "empty" (record {})


def build(spec: Spec, names: Names, base: datetime) -> bc.BatchItem:
    lot = names.lots.get(spec.lot) or other_lot_number(next(iter(names.lots.values())))
    if spec.lot not in names.lots:
        names.lots[spec.lot] = lot
    begin, end = base + timedelta(minutes=spec.minute), base + timedelta(minutes=spec.minute, seconds=30)
    record = completion_record(spec.process_id, lot, spec.worker, begin, end, random.Random(spec.seed), fail=spec.fail)
    if spec.broken == "missing":
        record = without_required_field(record)
    elif spec.broken == "empty":
        record = {}
    sha = names.sha(spec.sha) if spec.sha else None
    file_name = f"{lot}_{spec.process_id}_{end:%Y%m%d%H%M%S}.json"
    source = CompletionSource(STATION, names.id(spec.msg), file_name, sha)
    return record, source


# -- comparing end states -----------------------------------------------------------------------------------------

TABLE_QUERIES = {
    "process_results": (
        "SELECT l.lot_number, r.process_id, r.message_id, r.source_station, r.source_file_name, r.source_sha256, "
        "r.worker_id, r.start_time, r.complete_time, r.result, r.failure_reasons, r.process_data, r.replay, "
        "r.serial_id, run.process_id AS run_process, run.lot_id = r.lot_id AS same_lot "
        "FROM process_results r JOIN lots l ON l.id = r.lot_id JOIN process_runs run ON run.id = r.run_id "
        "WHERE l.lot_number = ANY(%(lots)s) AND r.message_id = ANY(%(ids)s)"
    ),
    "measurements": (
        "SELECT l.lot_number, m.process_id, r.message_id, m.time, m.test_point_id, m.characteristic, m.value, "
        "m.unit, m.target, m.tolerance, m.lower_limit, m.upper_limit, m.result, m.serial_id "
        "FROM measurements m JOIN lots l ON l.id = m.lot_id JOIN process_results r ON r.id = m.result_id "
        "WHERE l.lot_number = ANY(%(lots)s) AND r.message_id = ANY(%(ids)s)"
    ),
    "component_lots": (
        "SELECT l.lot_number, c.process_id, r.message_id, c.component_kind, c.component_lot, c.serial_id "
        "FROM component_lots c JOIN lots l ON l.id = c.lot_id JOIN process_results r ON r.id = c.result_id "
        "WHERE l.lot_number = ANY(%(lots)s) AND r.message_id = ANY(%(ids)s)"
    ),
    "process_runs": (
        "SELECT l.lot_number, r.process_id, r.status, r.start_time, r.start_worker_id, r.complete_time, "
        "r.complete_worker_id, r.result, r.completion_count, r.completed_recorded_at IS NULL "
        "FROM process_runs r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = ANY(%(lots)s)"
    ),
    "lots": "SELECT lot_number, status FROM lots WHERE lot_number = ANY(%(lots)s)",
    "lot_status_history": (
        "SELECT l.lot_number, h.from_status, h.to_status, h.actor, h.reason, "
        "CASE WHEN h.message_id = ANY(%(ids)s) THEN h.message_id END "
        "FROM lot_status_history h JOIN lots l ON l.id = h.lot_id WHERE l.lot_number = ANY(%(lots)s)"
    ),
    "processed_messages": (
        "SELECT message_id, message_type, source_station, outcome, http_status, response "
        "FROM processed_messages WHERE message_id = ANY(%(ids)s)"
    ),
}


def end_state(dsn: str, names: Names) -> dict[str, list[str]]:
    params = {"lots": list(names.lots.values()), "ids": list(names.ids.values())}
    with psycopg.connect(dsn) as conn:
        return {
            table: sorted(names.normalise(list(row)) for row in conn.execute(sql, params).fetchall())
            for table, sql in TABLE_QUERIES.items()
        }


def normalised_answers(answers: Sequence[Answer], names: Names) -> list[str]:
    return [names.normalise([a.outcome.value, a.http_status, a.body]) for a in answers]


async def one_by_one(db: Database, items: Sequence[bc.BatchItem]) -> list[Answer]:
    return [await handle_completion(db, raw, source, LANG) for raw, source in items]


async def batched(db: Database, items: Sequence[bc.BatchItem], sizes: Sequence[int]) -> list[Answer]:
    answers: list[Answer] = []
    position = 0
    for size in sizes:
        answers += await bc.handle_completions_batch(db, list(items[position : position + size]), LANG)
        position += size
    answers += await bc.handle_completions_batch(db, list(items[position:]), LANG)
    return answers


# -- the equivalence test -----------------------------------------------------------------------------------------

LOT_PLAN = {
    "L1": "PROC-001",
    "L2": None,
    "L3": "PROC-008",
    "L4": "PROC-001",
    "L5": "PROC-002",
    "L6": "PROC-003",
    "L7": "PROC-006",
}
PRE = [  # handled one by one before the batch, identically in both sets
    Spec("L4", "PROC-001", "pre-accepted", "s-pre", seed=1),
    Spec("L1", "PROC-001", "pre-rejected", "s-pre-bad", worker="W999", seed=2),
]
MIXED = [
    Spec("L1", "PROC-001", "a1", "s1", fail=True, seed=3, minute=2),  # accepted FAIL
    Spec("L4", "PROC-001", "pre-accepted", "s-pre", seed=1),  # id stored before → duplicate
    Spec("L1", "PROC-001", "a1", "s1", fail=True, seed=3, minute=2),  # same id in batch → duplicate
    Spec("L1", "PROC-001", "a2", "s1", fail=True, seed=3, minute=2),  # same file in batch → dup file
    Spec("L4", "PROC-001", "a3", "s-pre", seed=1),  # file stored before → dup file
    Spec("L1", "PROC-001", "bad1", "s-bad1", broken="missing", seed=4),  # INVALID_PROCESS_DATA
    Spec("L9", "PROC-001", "nolot", "s-nolot", seed=5),  # LOT_NOT_FOUND
    Spec("L2", "PROC-001", "notstarted", "s-ns", seed=6),  # PROCESS_NOT_STARTED
    Spec("L4", "PROC-001", "inactive", "s-inactive", worker="W999", seed=7),  # WORKER_NOT_FOUND
    Spec("L1", "PROC-001", "retest", "s-retest", worker="W002", seed=8, minute=5),  # 2nd result, same run: PASS
    Spec("L3", "PROC-008", "pack1", "s-pack1", worker="W003", seed=9, minute=6),  # completes the LOT
    Spec("L3", "PROC-008", "pack2", "s-pack2", worker="W004", fail=True, seed=10, minute=7),  # LOT already done
    Spec("L1", "PROC-001", "bad1", "s-bad1", broken="missing", seed=4),  # repeat of a rejection
    Spec("L1", "PROC-001", "pre-rejected", "s-pre-bad", worker="W999", seed=2),  # rejection stored before
    Spec("L1", "PROC-001", "empty", None, broken="empty"),  # record {}
    Spec("L4", "PROC-001", "reuse-rejected-file", "s-inactive", seed=7),  # a rejected file's hash is free
    Spec("L4", "PROC-001", "nosha", None, worker="W005", seed=11, minute=9),  # no hash at all
    Spec("L1", "PROC-001", "retest", "s-retest", worker="W002", seed=8, minute=5),  # repeat of an accepted one
    Spec("L5", "PROC-002", "lma", "s-lma", seed=12),  # component LOTs
    Spec("L6", "PROC-003", "sensor1", "s-sensor1", fail=True, seed=13),  # measurements
    Spec("L6", "PROC-003", "sensor2", "s-sensor2", seed=14, minute=3),  # re-test with measurements
    Spec("L7", "PROC-006", "perf", "s-perf", seed=15),  # performance measurements
]


async def prepare(db: Database, names: Names, base: datetime) -> None:
    for role, process_id in LOT_PLAN.items():
        names.lots[role] = await lot_at(db, process_id, base)
    await one_by_one(db, [build(spec, names, base) for spec in PRE])


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


# -- pure decisions (no database) ---------------------------------------------------------------------------------


def test_run_updates_keep_first_time_and_worker_and_latest_verdict() -> None:
    base = datetime(2026, 1, 5, 9, tzinfo=KST)
    items = [
        build(
            Spec("L1", "PROC-001", f"m{n}", f"s{n}", worker=f"W00{n + 1}", fail=n == 2, seed=n, minute=n),
            _pure_names(),
            base,
        )
        for n in range(3)
    ]
    ctx = bc.Context(
        {},
        {"WF-KR-260105D-001": (7, LotStatus.IN_PROGRESS)},
        {(7, "PROC-001"): 70},
        frozenset({"W001", "W002", "W003"}),
        frozenset(),
    )
    decisions = bc.decide(bc.parse_items(items), ctx, LANG)
    updates = completion_store.run_updates(bc.accepted_of(decisions))
    assert len(updates) == 1
    update = updates[0]
    assert (update.run_id, update.first_worker_id, update.last_verdict, update.count) == (70, "W001", "FAIL", 3)
    assert update.first_complete_time == (base + timedelta(seconds=30)).isoformat()


def test_decide_repeats_hashes_and_last_process() -> None:
    base = datetime(2026, 1, 5, 9, tzinfo=KST)
    names = _pure_names()
    specs = [
        Spec("L1", "PROC-008", "a", "s1"),
        Spec("L1", "PROC-008", "a", "s1"),
        Spec("L1", "PROC-008", "b", "s1"),
        Spec("L1", "PROC-008", "c", "s2"),
        Spec("L1", "PROC-008", "old", "s3"),
        Spec("L1", "PROC-008", "d", "s9"),
    ]
    items = [build(spec, names, base) for spec in specs]
    stored = {names.id("old"): StoredReply(Outcome.ACCEPTED, 200, {"x": 1})}
    ctx = bc.Context(
        stored,
        {"WF-KR-260105D-001": (7, LotStatus.IN_PROGRESS)},
        {(7, "PROC-008"): 80},
        frozenset({"W001"}),
        frozenset({names.sha("s9")}),
    )
    decisions = bc.decide(bc.parse_items(items), ctx, LANG)
    kinds = [type(d).__name__ for d in decisions]
    assert kinds == ["Done", "Repeat", "Done", "Done", "Stored", "Done"]
    accepted = bc.accepted_of(decisions)
    assert [a.source.message_id for a in accepted] == [names.id("a"), names.id("c")]
    assert [a.transition for a in accepted] == [(LotStatus.IN_PROGRESS, LotStatus.COMPLETED), None]
    assert len(completion_store.lot_rows(accepted)) == 1
    answers = bc.final_answers(decisions, {names.id("a"): {"stored": True}}, [s.message_id for _, s in items])
    assert answers[1] == Answer(Outcome.DUPLICATE, 200, {"stored": True})
    assert answers[2].outcome is Outcome.DUPLICATE and answers[2].body["data"]["result"] == "duplicate"
    assert answers[3].body["data"]["lot_status"] == "COMPLETED"
    assert answers[4] == Answer(Outcome.DUPLICATE, 200, {"x": 1})
    assert answers[5].outcome is Outcome.DUPLICATE


def _pure_names() -> Names:
    names = Names("pure")
    names.lots["L1"] = "WF-KR-260105D-001"
    return names


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
