"""Edge gateway: the durable outbox — commit before publish, replays, the size bound, the window, locked moves."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from edge_gateway import dispositions
from edge_gateway.batching import OutgoingBatch
from edge_gateway.outbox_store import NewRecord, OutboxStore
from edge_gateway.pipeline import FilePipeline
from edge_gateway.ports import ReplyTimeout
from edge_gateway.settings import GatewaySettings
from mes_contracts.envelope import Envelope, MessageType, ReplyPayload, Source, make_envelope
from tests.support.gateway_settings import fast_settings
from tests.test_edge_gateway_pickup import FakeLink, accept, name_for, record

NAME = name_for(1)


@pytest.fixture
def settings(tmp_path: Path) -> GatewaySettings:
    return fast_settings(tmp_path)


def content(n: int = 1) -> bytes:
    return json.dumps(record(f"WF-KR-251110D-{n:03d}"), ensure_ascii=False).encode()


def drop(settings: GatewaySettings, name: str, data: bytes) -> None:
    temp = settings.pending_dir / f".{name}.tmp"
    temp.write_bytes(data)
    temp.replace(settings.pending_dir / name)


def rows(settings: GatewaySettings) -> list[tuple[str, str, str]]:
    """(file_name, message_id, state) as committed — read through a connection of our own."""
    with sqlite3.connect(settings.outbox_path) as conn:
        return [tuple(r) for r in conn.execute("SELECT file_name, message_id, state FROM outbox ORDER BY id")]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running(settings: GatewaySettings, link: FakeLink) -> AsyncIterator[FilePipeline]:
    pipeline = FilePipeline(settings, link)
    task = asyncio.create_task(pipeline.run())
    await pipeline.open()
    try:
        yield pipeline
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def new_record(settings: GatewaySettings, name: str, data: bytes) -> NewRecord:
    """What the pickup commits for a file (for tests that prepare an outbox without a pipeline)."""
    source = Source.of(settings.address, settings.gateway_id)
    sha = hashlib.sha256(data).hexdigest()
    envelope = make_envelope(
        MessageType.PROCESS_COMPLETED, source, 0, {"record": json.loads(data), "file_name": name, "sha256": sha}
    )
    return NewRecord(str(envelope.message_id), name, sha, data, envelope.model_dump_json(), time.time())


def test_the_outbox_file_is_wal_with_full_sync(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path / "outbox.sqlite3", 10, 1 << 20)
    try:
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()


async def test_the_record_is_committed_before_it_is_published(settings: GatewaySettings) -> None:
    seen: list[tuple[str, list[tuple[str, str, str]], bool]] = []

    def check(envelope: Envelope) -> ReplyPayload:
        seen.append((str(envelope.message_id), rows(settings), (settings.pending_dir / NAME).exists()))
        return accept(envelope)

    async with running(settings, FakeLink(check)) as pipeline:
        drop(settings, NAME, content())
        await until(lambda: (settings.completed_dir / NAME).exists() and pipeline.outbox.depth == 0)
    ((message_id, committed, in_pending),) = seen
    assert committed == [(NAME, message_id, "queued")]  # on disk, with this id, before the publish
    assert in_pending  # the file moves only after the answer
    assert rows(settings) == []  # answered and moved: the row is gone


async def test_a_retry_is_the_same_envelope_marked_replay(settings: GatewaySettings) -> None:
    failures: list[Exception] = [ReplyTimeout("x", 1)]
    link = FakeLink(lambda e: failures.pop() if failures else accept(e))
    async with running(settings, link) as pipeline:
        drop(settings, NAME, content())
        await until(lambda: (settings.completed_dir / NAME).exists() and pipeline.outbox.depth == 0)
    first, second = (envelope for _, envelope in link.sent)
    assert (first.replay, second.replay) == (False, True)
    assert first.model_copy(update={"replay": True}) == second  # same id, seq, occurred_at and payload


async def test_a_full_outbox_leaves_new_files_in_pending_and_raises_the_alarm(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, outbox_max_records=2)
    link = FakeLink()
    link.connected = False
    async with running(settings, link) as pipeline:
        for n in range(1, 5):
            drop(settings, name_for(n), content(n))
        await until(lambda: pipeline.outbox.full)
        await asyncio.sleep(0.3)  # several rescans: nothing more is taken, nothing is lost
        assert len(rows(settings)) == 2 and pipeline.outbox.depth == 2
        assert names(settings.pending_dir) == [name_for(n) for n in range(1, 5)]
        assert pipeline.health.last_error is not None and pipeline.health.last_error.code == "OUTBOX_FULL"
        link.connected = True
        pipeline.dispatcher.wake()
        await until(lambda: len(names(settings.completed_dir)) == 4)
        await until(lambda: not pipeline.outbox.full and pipeline.outbox.depth == 0)
    assert len({e.message_id for _, e in link.sent}) == 4 and names(settings.pending_dir) == []


async def test_at_most_max_in_flight_records_are_unanswered(settings: GatewaySettings) -> None:
    gate = asyncio.Event()
    active: list[int] = [0, 0]  # now, peak

    class SlowLink(FakeLink):
        async def request(self, topic: str, envelope: Envelope, timeout: float) -> ReplyPayload:
            active[0] += 1
            active[1] = max(active[1], active[0])
            try:
                await gate.wait()
                return await super().request(topic, envelope, timeout)
            finally:
                active[0] -= 1

        async def request_batch(
            self, topic: str, batch: OutgoingBatch, timeout: float
        ) -> list[ReplyPayload | None]:  # in-flight accounting stays per record
            active[0] += len(batch.record_ids)
            active[1] = max(active[1], active[0])
            try:
                await gate.wait()
                return await super().request_batch(topic, batch, timeout)
            finally:
                active[0] -= len(batch.record_ids)

    link = SlowLink()
    async with running(settings, link) as pipeline:
        for n in range(1, 13):
            drop(settings, name_for(n), content(n))
        await until(lambda: pipeline.outbox.depth == 12)
        await asyncio.sleep(0.1)
        assert active == [4, 4]
        gate.set()
        await until(lambda: len(names(settings.completed_dir)) == 12)
    assert active[1] == 4 and len(link.sent) == 12


async def test_a_move_refused_by_a_lock_is_retried_without_republishing(
    settings: GatewaySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusals = [PermissionError("in use"), PermissionError("in use")]  # Windows: the vendor app still has it open
    real_move = dispositions.move_without_overwrite

    def locked_move(source: Path, directory: Path, companions: tuple[str, ...] = ()) -> Path:
        if refusals:
            raise refusals.pop()
        return real_move(source, directory, companions)

    monkeypatch.setattr(dispositions, "move_without_overwrite", locked_move)
    link = FakeLink()
    async with running(settings, link) as pipeline:
        drop(settings, NAME, content())
        await until(lambda: (settings.completed_dir / NAME).exists() and pipeline.outbox.depth == 0)
        assert pipeline.health.last_error is not None and pipeline.health.last_error.code == "MOVE_FAILED"
    assert len(link.sent) == 1 and refusals == []


def test_outbox_and_state_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in {
        "MES_GW_STATION": "st05",
        "MES_GW_WORK_DIR": str(tmp_path),
        "MES_GW_OUTBOX_MAX_RECORDS": "500",
        "MES_GW_OUTBOX_MAX_BYTES": str(8 << 20),
        "MES_GW_STATE_INTERVAL_S": "30",
        "MES_GW_RETRY_MAX_S": "60",
        "MES_GW_MALFORMED_GRACE_S": "12",
    }.items():
        monkeypatch.setenv(key, value)
    settings = GatewaySettings()  # type: ignore[call-arg]
    assert (settings.outbox_max_records, settings.outbox_max_bytes) == (500, 8 << 20)
    assert (settings.state_interval_s, settings.retry_max_s, settings.malformed_grace_s) == (30, 60, 12)
    assert settings.outbox_path == tmp_path / "outbox.sqlite3"
    defaults = GatewaySettings(station="st05", work_dir=tmp_path, _env_prefix="MES_GW_UNSET_")  # type: ignore[call-arg]
    assert (defaults.outbox_max_records, defaults.state_interval_s) == (100_000, 15.0)
