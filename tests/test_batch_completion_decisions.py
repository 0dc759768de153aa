"""Batched completions: the pure decisions (no database)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cloud_api.adapters import completion_store
from cloud_api.domain.lots import LotStatus
from cloud_api.services import batch_completion as bc
from cloud_api.services.handlers import Answer
from cloud_api.services.idempotency import StoredReply
from line_simulator.clock import KST
from mes_contracts.envelope import Outcome
from tests.support.batch_items import Names, Spec, build
from tests.support.batch_lots import LANG

pytestmark = pytest.mark.plain_pg  # issue 14: also run on plain PostgreSQL (test.sh's second pass)


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
