"""Ingestor crashes around the commit (MES_FAULT_INJECT), a broken-ingestor control, and a long ingestor outage."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from datetime import datetime
from typing import Any

import psycopg
import pytest

from deploy.localstack.children import ChildProcess
from tests.support.faults import (
    Central,
    Gateway,
    Rig,
    broker_stat,
    completed_count,
    completion_files,
    drop,
    fault_rng,
    grep_log,
    outcomes,
    produced,
    run_start_time,
    sized,
    wait_disposed,
    wait_for,
)
from tests.support.line import SEOUL
from tests.support.verifier import assert_clean, verify

CRASH_FILES = sized(300, 1500)
QUEUED_FILES = sized(1500, 5000)
QUEUE_GATEWAYS = 2
RETAINED_SLACK = 100  # retained state messages and the like in the broker's store count
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _crashed(child: ChildProcess, timeout: float) -> int:
    """Wait for the injected crash; the exit code (137 = os._exit(137) from the fault hook)."""
    assert wait_for(lambda: not child.running, timeout, 0.05), f"no crash within {timeout} s:\n{child.log_tail()}"
    assert child.process is not None
    return int(child.process.wait())


def _crash_message_id(child: ChildProcess) -> uuid.UUID:
    lines = grep_log(child.log_path, "fault injection")
    assert lines, f"the ingestor died without the fault hook:\n{child.log_tail()}"
    found = UUID_RE.findall(lines[-1])
    assert found, lines[-1]
    return uuid.UUID(found[-1])


def _stored(db: psycopg.Connection[Any], message_id: uuid.UUID) -> tuple[Any, ...] | None:
    return db.execute("SELECT outcome FROM processed_messages WHERE message_id = %s", (message_id,)).fetchone()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["crash_before_commit", "crash_after_commit"])
def test_ingestor_killed_around_the_commit(central: Central, rig: Rig, db: psycopg.Connection[Any], mode: str) -> None:
    rng = fault_rng(mode)
    begin = datetime.now(SEOUL)
    started = run_start_time()
    files = completion_files(central.create_started_lots(50, started), CRASH_FILES, started, seed=2)
    nth = rng.randint(CRASH_FILES // 8, CRASH_FILES // 3)
    crashing = rig.start_ingestor(fault=f"{mode}:{nth}")
    gateway = rig.gateway("st01")
    items = produced(gateway.work_dir, files)
    drop(gateway.pending, files)

    assert _crashed(crashing, 120) == 137
    message_id = _crash_message_id(crashing)
    at_crash = _stored(db, message_id)
    if mode == "crash_before_commit":
        assert at_crash is None, "the crashed transaction must have been rolled back"
    else:
        assert at_crash == ("accepted",), "the commit must have happened before the crash"
    time.sleep(rng.uniform(0.5, 2.0))  # the station keeps retrying into a broker with no ingestor
    rig.start_ingestor()  # same client id, no fault: picks up the persistent session
    elapsed = wait_disposed(items, 180)
    final = _stored(db, message_id)
    print(
        f"{mode}:{nth}: crashed on message {message_id} (at crash: {at_crash}, after restart: {final}); "
        f"drained {elapsed:.1f} s after restart; processed_messages {outcomes(db, begin)}"
    )
    assert final == ("accepted",)
    assert_clean(verify(items, db))


@pytest.mark.timeout(300)
def test_control_ack_before_commit_is_caught_by_the_verifier(
    central: Central, rig: Rig, db: psycopg.Connection[Any]
) -> None:
    """A broken ingestor that answers "accepted" before its commit loses a record; the verifier must say so."""
    rng = fault_rng("ack_before_commit")
    started = run_start_time()
    files = completion_files(central.create_started_lots(20, started), 120, started, seed=3)
    nth = rng.randint(10, 60)
    broken = rig.start_ingestor(fault=f"ack_before_commit:{nth}")
    gateway = rig.gateway("st01")
    items = produced(gateway.work_dir, files)
    drop(gateway.pending, files)

    assert _crashed(broken, 120) == 137
    message_id = _crash_message_id(broken)
    assert _stored(db, message_id) is None
    rig.start_ingestor()
    wait_disposed(items, 120)
    report = verify(items, db)
    print(f"ack_before_commit:{nth} on {message_id}: {report.summary()}")
    assert len(report.lost) == 1, report.summary()
    assert (gateway.completed / report.lost[0]).exists(), "the station was told 'accepted' and moved it"
    assert report.duplicates == 0 and not report.pending and not report.missing and not report.repeated
    with pytest.raises(AssertionError, match=r"lost 1 "):
        assert_clean(report)


def _held(rig: Rig, gateways: list[Gateway]) -> tuple[int, int]:
    """(messages stored by the broker, records in the stations' outboxes) while no ingestor consumes."""
    stored = broker_stat(rig.broker.port, "$SYS/broker/store/messages/count") or 0
    outboxes = 0
    for gateway in gateways:
        outbox = gateway.status().get("outbox") or {}
        outboxes += int(outbox.get("depth") or 0)
    return stored, outboxes


@pytest.mark.timeout(900)
@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_ingestor_away_while_records_queue_up(
    central: Central, rig: Rig, db: psycopg.Connection[Any], how: str
) -> None:
    """More records than Mosquitto's default per-client queue (1,000) wait while the ingestor is away.

    `stopped`: `mes ingest` ends cleanly (Ctrl-C) and says offline; the records wait wherever the design keeps
    them (the broker session or the stations' outboxes), then it is started again.
    `frozen`: the ingestor process is suspended (SIGSTOP) under its open connection, so the broker and the
    stations still take it for online: the records are published and queue in the broker for its session, far
    beyond 1,000 (the local config sets the site's `max_queued_messages 1000000`), then it is resumed (SIGCONT).
    """
    begin = datetime.now(SEOUL)
    started = run_start_time()
    lots = central.create_started_lots(50, started)
    files = completion_files(lots, QUEUED_FILES, started, seed=4)
    per_gateway = -(-QUEUED_FILES // QUEUE_GATEWAYS)
    ingestor = rig.start_ingestor()  # creates the persistent session and its shared subscriptions
    assert ingestor.process is not None
    if how == "stopped":
        ingestor.stop()
    else:
        os.killpg(ingestor.process.pid, signal.SIGSTOP)
    # Room for every record in flight at once (the gateway tops its window up only in steps of a quarter),
    # and nobody gives up on its reply while we wait.
    window = min(4096, per_gateway * 3 // 2 + 64)
    # Frozen: one record per message (v1, MES_GW_BATCH_MAX_RECORDS=1), so the broker's queue for the session goes
    # past Mosquitto's 1,000-message default; v2 batches would fit the same records in a few dozen messages.
    env = {"MES_GW_MAX_IN_FLIGHT": str(window), "MES_GW_REPLY_TIMEOUT_S": "240"}
    if how == "frozen":
        env["MES_GW_BATCH_MAX_RECORDS"] = "1"
    gateways = [rig.gateway(f"st{n:02d}", True, **env) for n in range(1, QUEUE_GATEWAYS + 1)]
    frozen_at = time.monotonic()
    items = []
    try:
        for index, gateway in enumerate(gateways):
            batch = files[index * per_gateway : (index + 1) * per_gateway]
            items += produced(gateway.work_dir, batch)
            drop(gateway.pending, batch)
        history = [_held(rig, gateways)]
        deadline = time.monotonic() + 60  # a frozen ingestor must stay under 1.5 × its 60 s MQTT keepalive
        while time.monotonic() < deadline:
            time.sleep(0.5)
            history.append(_held(rig, gateways))
            settled = len(history) >= 4 and len({h[0] for h in history[-4:]}) == 1  # broker count steady 1.5 s
            if sum(history[-1]) >= QUEUED_FILES and (history[-1][0] >= QUEUED_FILES or settled):
                break
        held = history[-1]
        print(
            f"\n{how}: {QUEUED_FILES} records waiting after {time.monotonic() - frozen_at:.1f} s: broker store "
            f"{held[0]} messages, station outboxes {held[1]} records; completed/ {completed_count(gateways)}"
        )
        assert completed_count(gateways) == 0, "nothing can be completed while the ingestor is away"
        assert held[1] >= QUEUED_FILES or held[0] >= QUEUED_FILES, "not every record was queued while away"
        if how == "frozen":
            assert held[0] > 1000 + RETAINED_SLACK, "the broker did not queue over 1,000 messages for the session"
    finally:
        if how == "frozen" and ingestor.running:
            os.killpg(ingestor.process.pid, signal.SIGCONT)
    back = time.monotonic()
    if how == "stopped":
        rig.start_ingestor()
    elapsed = wait_disposed(items, 600)
    print(
        f"{how}: {QUEUED_FILES} records disposed {elapsed:.1f} s after the wait ended "
        f"({QUEUED_FILES / max(elapsed, 0.001):.0f}/s, {time.monotonic() - back:.1f} s incl. restart); "
        f"processed_messages {outcomes(db, begin)}"
    )
    assert_clean(verify(items, db))
