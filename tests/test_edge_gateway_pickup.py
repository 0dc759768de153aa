"""Edge gateway: the file pipeline (pickup → outbox → dispatcher) on real folders against a fake broker link."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edge_gateway.batching import OutgoingBatch
from edge_gateway.pending_io import probe_one, scan_candidates
from edge_gateway.pipeline import FilePipeline
from edge_gateway.ports import NotConnected, ReplyTimeout
from edge_gateway.settings import GatewaySettings
from edge_gateway.stability import FileStat, Observation
from edge_gateway.watcher import PendingWatcher
from mes_contracts.batch import BatchEnvelope
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload
from tests.support.gateway_settings import fast_settings

NAME = "WF-KR-251110D-001_PROC-003_20250110090000.json"


def record(lot: str = "WF-KR-251110D-001") -> dict[str, Any]:
    return {
        "lot_number": lot,
        "process_id": "PROC-003",
        "process_name": "센서 검사",
        "worker_id": "W001",
        "start_time": "2025-01-10T09:00:00+09:00",
        "complete_time": "2025-01-10T09:05:00+09:00",
        "process_data": {
            "temp_sensor": {"measured_temp": 60.2, "target_temp": 60.0, "tolerance": 1.0, "result": "PASS"},
            "tof_sensor": {"i2c_communication": True, "result": "PASS"},
            "overall_result": "PASS",
        },
    }


def name_for(n: int) -> str:
    return f"WF-KR-251110D-{n:03d}_PROC-003_20250110090000.json"


Answer = Callable[[Envelope], ReplyPayload | Exception]


def accept(envelope: Envelope) -> ReplyPayload:
    return ReplyPayload(
        in_reply_to=envelope.message_id,
        outcome=Outcome.ACCEPTED,
        http_status=200,
        body={"status": "success", "message": "완공이 등록되었습니다", "data": {}},
    )


class FakeLink:
    def __init__(self, answer: Answer = accept) -> None:
        self.answer = answer
        self.connected = True
        self.sent: list[tuple[str, Envelope]] = []
        self.batches: list[int] = []  # records per v2 message
        self._seq = itertools.count()

    def next_seq(self) -> int:
        return next(self._seq)

    async def request(self, topic: str, envelope: Envelope, timeout: float) -> ReplyPayload:
        if not self.connected:
            raise NotConnected()
        self.sent.append((topic, envelope))
        await asyncio.sleep(0)
        result = self.answer(envelope)
        if isinstance(result, Exception):
            raise result
        return result

    speaks_v2 = True

    async def request_batch(self, topic: str, batch: OutgoingBatch, timeout: float) -> list[ReplyPayload | None]:
        """A v2 message read back record by record; one record's exception fails the whole message, as on MQTT."""
        if not self.connected:
            raise NotConnected()
        document = BatchEnvelope.from_bytes(batch.payload)
        envelopes = [document.read_record(i) for i in range(len(document.records))]
        self.sent.extend((topic, envelope) for envelope in envelopes)
        self.batches.append(len(envelopes))
        await asyncio.sleep(0)
        results = [self.answer(envelope) for envelope in envelopes]
        for result in results:
            if isinstance(result, Exception):
                raise result
        return [r for r in results if not isinstance(r, Exception)]


@pytest.fixture
def settings(tmp_path: Path) -> GatewaySettings:
    return fast_settings(tmp_path, malformed_grace_s=0.3)


class Running:
    def __init__(self, settings: GatewaySettings, link: FakeLink) -> None:
        self.settings = settings
        self.link = link
        self.pickup = FilePipeline(settings, link)

    def drop(self, name: str, content: bytes) -> None:
        temp = self.settings.pending_dir / f".{name}.tmp"
        temp.write_bytes(content)
        temp.replace(self.settings.pending_dir / name)

    async def until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, (
                f"timed out; pending={sorted(p.name for p in self.settings.pending_dir.iterdir())} "
                f"counters={self.pickup.counters()}"
            )
            await asyncio.sleep(0.02)

    def names(self, folder: Path) -> list[str]:
        return sorted(p.name for p in folder.iterdir())


@pytest.fixture
async def running(settings: GatewaySettings) -> AsyncIterator[Running]:
    run = Running(settings, FakeLink())
    task = asyncio.create_task(run.pickup.run())
    await run.pickup.open()
    yield run
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_accepted_file_is_sent_once_and_moved_to_completed(running: Running) -> None:
    content = json.dumps(record(), ensure_ascii=False).encode()
    running.drop(NAME, content)
    await running.until(lambda: (running.settings.completed_dir / NAME).exists())
    await running.until(lambda: running.pickup.counters()["outbox_depth"] == 0)  # the row goes after the move
    assert running.names(running.settings.pending_dir) == []
    assert running.names(running.settings.error_dir) == []
    ((topic, envelope),) = running.link.sent
    assert topic == "mes/v1/KR/L1/st03/evt/process-completed"
    assert envelope.type is MessageType.PROCESS_COMPLETED and not envelope.replay
    assert (envelope.source.station, envelope.source.gateway_id) == ("st03", "gw-st03")
    assert envelope.payload == {"record": record(), "file_name": NAME, "sha256": hashlib.sha256(content).hexdigest()}
    counters = running.pickup.counters()
    assert (counters["picked_up"], counters["completed"], counters["errored"]) == (1, 1, 0)
    assert (counters["in_flight"], counters["pending"]) == (0, 0)


async def test_invalid_file_goes_to_error_with_a_log_and_is_not_sent(running: Running) -> None:
    body = record()
    del body["worker_id"]
    running.drop(NAME, json.dumps(body).encode())
    log = running.settings.error_dir / f"{NAME}.error.log"
    await running.until(log.exists)
    assert "error_code: INVALID_PROCESS_DATA" in log.read_text(encoding="utf-8")
    assert running.names(running.settings.error_dir) == [NAME, f"{NAME}.error.log"]
    assert running.link.sent == []
    await running.until(lambda: running.pickup.counters()["errored"] == 1)  # counted just after the move


async def test_malformed_json_is_invalid_json_after_the_grace(running: Running) -> None:
    running.drop(NAME, b'{"lot_number": ')
    log = running.settings.error_dir / f"{NAME}.error.log"
    await running.until(log.exists)
    assert "INVALID_JSON" in log.read_text(encoding="utf-8")


async def test_temporary_names_are_left_alone(running: Running) -> None:
    for name in (f"{NAME}.tmp", f"~{NAME}", f"{NAME}.part", "notes.txt"):
        (running.settings.pending_dir / name).write_bytes(b"{}")
    running.drop(NAME, json.dumps(record()).encode())
    await running.until(lambda: running.pickup.counters()["completed"] == 1)
    await asyncio.sleep(0.3)  # a few rescans
    assert running.names(running.settings.pending_dir) == sorted(
        [f"{NAME}.tmp", f"~{NAME}", f"{NAME}.part", "notes.txt"]
    )


async def test_rejected_reply_goes_to_error_with_the_centres_message(running: Running) -> None:
    def reject(envelope: Envelope) -> ReplyPayload:
        return ReplyPayload(
            in_reply_to=envelope.message_id,
            outcome=Outcome.REJECTED,
            http_status=404,
            body={
                "status": "error",
                "message": "LOT 번호가 존재하지 않습니다",
                "error_code": "LOT_NOT_FOUND",
                "data": {"lot_number": "WF-KR-251110D-001"},
            },
        )

    running.link.answer = reject
    running.drop(NAME, json.dumps(record()).encode())
    log = running.settings.error_dir / f"{NAME}.error.log"
    await running.until(log.exists)
    text = log.read_text(encoding="utf-8")
    assert "error_code: LOT_NOT_FOUND" in text and "message: LOT 번호가 존재하지 않습니다" in text
    assert '"http_status": 404' in text


async def test_duplicate_reply_counts_as_completed(running: Running) -> None:
    def duplicate(envelope: Envelope) -> ReplyPayload:
        return ReplyPayload(
            in_reply_to=envelope.message_id,
            outcome=Outcome.DUPLICATE,
            http_status=200,
            body={"status": "success", "message": "이미 등록된 완공입니다", "data": {}},
        )

    running.link.answer = duplicate
    running.drop(NAME, json.dumps(record()).encode())
    await running.until(lambda: (running.settings.completed_dir / NAME).exists())


@pytest.mark.parametrize("failure", [ReplyTimeout("x", 1), NotConnected()])
async def test_transport_failures_keep_the_file_and_retry_with_the_same_id(
    running: Running, failure: Exception
) -> None:
    failures = [failure, failure]

    def flaky(envelope: Envelope) -> ReplyPayload | Exception:
        return failures.pop() if failures else accept(envelope)

    running.link.answer = flaky
    running.drop(NAME, json.dumps(record()).encode())
    await running.until(lambda: (running.settings.completed_dir / NAME).exists())
    await running.until(lambda: running.pickup.counters()["outbox_depth"] == 0)  # counted just after the move
    envelopes = [envelope for _, envelope in running.link.sent]
    assert len(envelopes) == 3
    assert len({e.message_id for e in envelopes}) == 1 and len({e.seq for e in envelopes}) == 1
    assert [e.replay for e in envelopes] == [False, True, True]
    counters = running.pickup.counters()
    assert (counters["picked_up"], counters["retried"], counters["completed"]) == (1, 2, 1)
    assert running.names(running.settings.error_dir) == []


async def test_nothing_is_lost_while_the_broker_is_down(running: Running) -> None:
    running.link.connected = False
    running.drop(NAME, json.dumps(record()).encode())
    await running.until(lambda: running.pickup.counters()["outbox_depth"] == 1)  # committed, not sent
    await asyncio.sleep(0.3)
    assert running.link.sent == []
    assert running.names(running.settings.pending_dir) == [NAME]
    assert running.names(running.settings.error_dir) == []
    running.link.connected = True
    running.pickup.dispatcher.wake()  # what the real link's health listener does on connect
    await running.until(lambda: (running.settings.completed_dir / NAME).exists())
    ((_, envelope),) = running.link.sent
    assert envelope.replay  # it waited out an outage in the outbox
    await running.until(lambda: running.pickup.counters()["outbox_depth"] == 0)


async def test_centre_failures_are_retried_with_the_same_id(running: Running) -> None:
    answers = iter([500, 503])

    def failing(envelope: Envelope) -> ReplyPayload:
        status = next(answers, 200)
        if status == 200:
            return accept(envelope)
        return ReplyPayload(
            in_reply_to=envelope.message_id,
            outcome=Outcome.REJECTED,
            http_status=status,
            body={"status": "error", "message": "내부 오류", "error_code": "INTERNAL_ERROR"},
        )

    running.link.answer = failing
    running.drop(NAME, json.dumps(record()).encode())
    await running.until(lambda: (running.settings.completed_dir / NAME).exists())
    envelopes = [envelope for _, envelope in running.link.sent]
    assert len({e.message_id for e in envelopes}) == 1  # the centre never stores a 5xx under the id
    assert [e.replay for e in envelopes] == [False, True, True]


async def test_many_files_each_once(running: Running) -> None:
    for n in range(1, 41):
        running.drop(name_for(n), json.dumps(record(f"WF-KR-251110D-{n:03d}")).encode())
    await running.until(lambda: running.pickup.counters()["completed"] == 40)
    assert len(running.names(running.settings.completed_dir)) == 40
    assert sorted(e.payload["file_name"] for _, e in running.link.sent) == [name_for(n) for n in range(1, 41)]


async def test_a_name_seen_again_after_completion_is_a_new_file(running: Running) -> None:
    content = json.dumps(record()).encode()
    running.drop(NAME, content)
    await running.until(lambda: (running.settings.completed_dir / NAME).exists())
    running.drop(NAME, content)
    second = NAME.replace(".json", ".1.json")
    await running.until(lambda: (running.settings.completed_dir / second).exists())
    first_id, second_id = (e.message_id for _, e in running.link.sent)
    assert first_id != second_id  # the centre recognises the content by its sha256


async def test_watcher_events_reach_the_pickup(settings: GatewaySettings) -> None:
    seen: list[set[str]] = []
    watcher = PendingWatcher(settings.pending_dir, seen.append)
    assert watcher.start()
    try:
        (settings.pending_dir / ".x.json.tmp").write_bytes(b"{}")
        (settings.pending_dir / ".x.json.tmp").replace(settings.pending_dir / NAME)
        (settings.completed_dir / "elsewhere.json").write_bytes(b"{}")
        deadline = asyncio.get_running_loop().time() + 5
        while not any(NAME in names for names in seen):
            assert asyncio.get_running_loop().time() < deadline, seen
            await asyncio.sleep(0.02)
    finally:
        await watcher.stop()
    assert all("elsewhere.json" not in names for names in seen)


def test_scan_and_probe(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b'{"a": 1}')
    (tmp_path / f"{NAME}.tmp").write_bytes(b"{}")
    (tmp_path / "sub.json").mkdir()
    assert scan_candidates(tmp_path) == {NAME, "sub.json"}  # named like a completion: looked at, then refused
    stat = (tmp_path / NAME).stat()
    known = FileStat(stat.st_size, stat.st_mtime_ns)

    def wants(observation: Observation, current: FileStat | None, now: float) -> bool:
        return current == observation.stat

    fresh = probe_one(tmp_path, NAME, Observation(None, 0, 0), 1.0, wants)
    assert (fresh.stat, fresh.data) == (known, None)
    stable = probe_one(tmp_path, NAME, Observation(known, 0, 0), 1.0, wants)
    assert (stable.data, stable.parsed_ok, stable.parsed) == (b'{"a": 1}', True, {"a": 1})
    (tmp_path / NAME).write_bytes(b'{"a": ')
    broken_stat = (tmp_path / NAME).stat()
    broken_known = FileStat(broken_stat.st_size, broken_stat.st_mtime_ns)
    broken = probe_one(tmp_path, NAME, Observation(broken_known, 0, 0), 1.0, wants)
    assert broken.data == b'{"a": ' and not broken.parsed_ok
    assert probe_one(tmp_path, "gone.json", Observation(known, 0, 0), 1.0, wants).stat is None
