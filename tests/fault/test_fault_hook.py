"""The MES_FAULT_INJECT hook itself, in process: off by default, strict parsing, counts only stored completions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cloud_api.ingestor import faults
from cloud_api.services.handlers import Answer
from mes_contracts.envelope import MessageType, Outcome

ACCEPTED = Answer(Outcome.ACCEPTED, 200, {})
DUPLICATE = Answer(Outcome.DUPLICATE, 200, {})


@pytest.fixture
def crashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    seen: list[str] = []
    monkeypatch.setattr(faults, "crash", seen.append)
    before = faults.active_plan()
    yield seen
    faults.set_plan(before)


def test_unset_means_no_fault() -> None:
    assert faults.parse_plan(None) is None and faults.parse_plan("") is None and faults.parse_plan("  ") is None
    assert faults.active_plan() is None  # the test process itself never runs with MES_FAULT_INJECT


@pytest.mark.parametrize("value", ["crash", "crash_before_commit:0", "crash_after_commit:x", "ack_before_commit:-1"])
def test_a_typo_fails_the_start(value: str) -> None:
    with pytest.raises(ValueError, match="MES_FAULT_INJECT"):
        faults.parse_plan(value)


def test_modes_and_default_count() -> None:
    assert faults.parse_plan("crash_after_commit") == faults.FaultPlan("crash_after_commit", 1)
    assert faults.parse_plan("ack_before_commit:7") == faults.FaultPlan("ack_before_commit", 7)


async def test_before_commit_counts_only_new_completions(crashes: list[str]) -> None:
    faults.set_plan(faults.parse_plan("crash_before_commit:2"))
    message_id = uuid.uuid4()
    await faults.before_commit(MessageType.PROCESS_START_REQUEST, message_id, ACCEPTED)
    await faults.before_commit(MessageType.PROCESS_COMPLETED, message_id, DUPLICATE)
    await faults.before_commit(MessageType.PROCESS_COMPLETED, message_id, ACCEPTED)
    assert crashes == []
    faults.after_commit(MessageType.PROCESS_COMPLETED, message_id, Outcome.ACCEPTED)  # other mode: ignored
    await faults.before_commit(MessageType.PROCESS_COMPLETED, message_id, ACCEPTED)
    assert len(crashes) == 1 and str(message_id) in crashes[0]
    await faults.before_commit(MessageType.PROCESS_COMPLETED, message_id, ACCEPTED)
    assert len(crashes) == 1  # only the N-th


async def test_after_commit_mode(crashes: list[str]) -> None:
    faults.set_plan(faults.parse_plan("crash_after_commit:1"))
    message_id = uuid.uuid4()
    await faults.before_commit(MessageType.PROCESS_COMPLETED, message_id, ACCEPTED)
    assert crashes == []
    faults.after_commit(MessageType.PROCESS_COMPLETED, message_id, Outcome.ACCEPTED)
    assert len(crashes) == 1 and "after the commit" in crashes[0]
