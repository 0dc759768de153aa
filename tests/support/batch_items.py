"""Completion items for the batch tests: roles instead of real numbers, end states normalised, one by one or batched;
the mixed set of tests/test_batch_completion_equivalence.py (also replayed by tests/test_audit_ingest.py)."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from cloud_api.adapters.database import Database
from cloud_api.services import batch_completion as bc
from cloud_api.services.handlers import Answer, handle_completion
from cloud_api.services.process_complete import CompletionSource
from line_simulator.payloads import completion_record, other_lot_number, without_required_field
from tests.support.batch_lots import LANG, STATION, lot_at


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
