"""The write use cases' decisions (domain/completion.py, domain/start.py, domain/workers.py) and the one
worker-id rule (mes_contracts/workers.py), without any I/O."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from cloud_api.domain.access import valid_username
from cloud_api.domain.completion import (
    Accepted,
    CompletionSource,
    DuplicateFile,
    LotForCompletion,
    decide_completion,
)
from cloud_api.domain.errors import DomainError
from cloud_api.domain.lots import LotStatus
from cloud_api.domain.start import LotForStart, RunRow, decide_start
from cloud_api.domain.workers import require_active_worker
from cloud_api.services.workers import WorkerIn
from line_simulator.payloads import completion_record, start_request
from mes_contracts.completion import CompletionRecord
from mes_contracts.errors import ErrorCode
from mes_contracts.start import StartRequest
from mes_contracts.workers import is_valid_worker_id

KST = ZoneInfo("Asia/Seoul")
T0 = datetime(2026, 1, 5, 9, tzinfo=KST)
LOT = "WF-KR-260105D-001"
SOURCE = CompletionSource("KR/L1/st01", uuid.UUID(int=1), "f.json", "ab" * 32)


def _record(process_id: str, fail: bool = False) -> CompletionRecord:
    raw = completion_record(process_id, LOT, "W001", T0, T0 + timedelta(seconds=30), random.Random(0), fail=fail)
    return CompletionRecord.model_validate(raw)


def _code(call: object) -> ErrorCode:
    with pytest.raises(DomainError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code


def test_completion_refusals_in_the_order_one_by_one_checks_them() -> None:
    record = _record("PROC-001")
    assert _code(lambda: decide_completion(record, SOURCE, None)) is ErrorCode.LOT_NOT_FOUND
    no_run = LotForCompletion(7, LotStatus.IN_PROGRESS, None, False, False)
    assert _code(lambda: decide_completion(record, SOURCE, no_run)) is ErrorCode.PROCESS_NOT_STARTED
    disabled = LotForCompletion(7, LotStatus.IN_PROGRESS, 70, False, False)
    assert _code(lambda: decide_completion(record, SOURCE, disabled)) is ErrorCode.WORKER_NOT_FOUND
    # A stored file is a duplicate even before the run and worker checks (it was accepted once).
    seen = LotForCompletion(7, LotStatus.IN_PROGRESS, None, False, True)
    duplicate = decide_completion(record, SOURCE, seen)
    assert isinstance(duplicate, DuplicateFile) and duplicate.summary["result"] == "duplicate"


def test_completion_accepted_with_verdict_and_lot_status() -> None:
    lot = LotForCompletion(7, LotStatus.IN_PROGRESS, 70, True, False)
    first = decide_completion(_record("PROC-001", fail=True), SOURCE, lot)
    assert isinstance(first, Accepted)
    assert (first.lot_id, first.run_id, first.verdict, first.transition) == (7, 70, "FAIL", None)
    assert first.summary()["lot_status"] == "IN_PROGRESS" and first.summary()["failure_reasons"]
    last = decide_completion(_record("PROC-008"), SOURCE, lot)
    assert isinstance(last, Accepted) and last.verdict == "PASS"
    assert last.transition == (LotStatus.IN_PROGRESS, LotStatus.COMPLETED)
    assert last.summary()["lot_status"] == "COMPLETED"


def _start(process_id: str, worker: str = "W001") -> StartRequest:
    return StartRequest.model_validate(start_request(process_id, LOT, worker, T0))


def _lot(status: LotStatus = LotStatus.IN_PROGRESS, active: bool = True, runs: tuple[RunRow, ...] = ()) -> LotForStart:
    return LotForStart(7, status, active, runs)


def test_start_decision_moves_a_new_lot_and_refuses_in_order() -> None:
    first = decide_start(_start("PROC-001"), _lot(LotStatus.CREATED), KST, "ko")
    assert (first.step.process_id, first.lot_status) == ("PROC-001", LotStatus.CREATED)
    assert first.transition == (LotStatus.CREATED, LotStatus.IN_PROGRESS, "PROC-001 start")
    assert _code(lambda: decide_start(_start("PROC-001"), None, KST, "ko")) is ErrorCode.LOT_NOT_FOUND
    assert _code(lambda: decide_start(_start("PROC-001"), _lot(active=False), KST, "ko")) is ErrorCode.WORKER_NOT_FOUND
    assert (
        _code(lambda: decide_start(_start("PROC-002"), _lot(), KST, "ko")) is ErrorCode.PREVIOUS_PROCESS_NOT_COMPLETED
    )


def test_start_duplicate_shows_the_run_in_the_plant_zone() -> None:
    run = RunRow("PROC-001", "STARTED", "WO-20260105-001", datetime(2026, 1, 5, 0, tzinfo=ZoneInfo("UTC")))
    with pytest.raises(DomainError) as caught:
        decide_start(_start("PROC-001"), _lot(runs=(run,)), KST, "ko")
    assert caught.value.code is ErrorCode.DUPLICATE_START
    assert caught.value.data is not None and caught.value.data["start_time"] == "2026-01-05T09:00:00+09:00"
    second = decide_start(_start("PROC-002"), _lot(runs=(RunRow("PROC-001", "COMPLETED", "WO-1", T0),)), KST, "ko")
    assert second.step.process_id == "PROC-002" and second.transition is None


@pytest.mark.parametrize("active", [None, False])
def test_inactive_or_unknown_worker_is_not_found(active: bool | None) -> None:
    assert _code(lambda: require_active_worker("W404", active)) is ErrorCode.WORKER_NOT_FOUND
    require_active_worker("W001", True)


@pytest.mark.parametrize("worker_id", ["W001", "w-01.a_b", "X" * 50])
def test_worker_id_rule_accepts_the_registry_set(worker_id: str) -> None:
    assert is_valid_worker_id(worker_id) and valid_username(worker_id)
    assert StartRequest.model_validate({**start_request("PROC-001", LOT, "W001", T0), "worker_id": worker_id})


@pytest.mark.parametrize("worker_id", ["", "X" * 51, "W 001", "작업자1", "W\u00001", "W/1"])
def test_worker_id_rule_is_the_same_for_start_completion_registry_and_users(worker_id: str) -> None:
    assert not is_valid_worker_id(worker_id) and not valid_username(worker_id)
    with pytest.raises(ValidationError):
        StartRequest.model_validate({**start_request("PROC-001", LOT, "W001", T0), "worker_id": worker_id})
    with pytest.raises(ValidationError):
        CompletionRecord.model_validate(
            {**completion_record("PROC-001", LOT, "W001", T0, T0, random.Random(0)), "worker_id": worker_id}
        )
    with pytest.raises(ValidationError):
        WorkerIn(worker_id=worker_id, name="x")
