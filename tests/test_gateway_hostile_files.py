"""Issue 11 findings 2 and 4: no file stops a station gateway; stranded names are reported; duplicates are visible.

Most tests run the real pickup, outbox, dispatcher and mover on real folders against a fake link (fast); the last
ones run a real gateway process against a real broker, and the real line (gateway → broker → ingestor → DB).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from edge_gateway import file_open, pending_io, ready
from edge_gateway.settings import GatewaySettings
from edge_gateway.stability import FileStat, Observation
from edge_gateway.station_status import StationReporter
from line_simulator.payloads import completion_record
from mes_contracts.envelope import Envelope, Outcome, ReplyPayload
from tests.support.gateway_settings import fast_settings
from tests.support.line import Line, later
from tests.test_edge_gateway_pickup import NAME, FakeLink, Running, name_for, record

pytestmark = pytest.mark.processes  # a writer in another process

DEEP = b"[" * 1000 + b"]" * 1000


@pytest.fixture
def settings(tmp_path: Path) -> GatewaySettings:
    return fast_settings(
        tmp_path, retry_max_s=0.4, malformed_grace_s=0.3, max_file_bytes=4096, stale_pending_s=0.5, error_watch_s=30
    )


async def _start(run: Running) -> asyncio.Task[None]:
    task = asyncio.create_task(run.pickup.run())
    await run.pickup.open()
    return task


@pytest.fixture
async def running(settings: GatewaySettings) -> AsyncIterator[Running]:
    run = Running(settings, FakeLink())
    task = await _start(run)
    yield run
    assert not task.done(), "the pipeline stopped"  # no file may end it
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def valid(n: int) -> bytes:
    return json.dumps(record(f"WF-KR-251110D-{n:03d}"), ensure_ascii=False).encode()


def error_log(settings: GatewaySettings, name: str) -> str:
    return (settings.error_dir / f"{name}.error.log").read_text(encoding="utf-8")


async def _valid_files_flow(run: Running, first: int = 1, count: int = 3) -> None:
    for n in range(first, first + count):
        run.drop(name_for(n), valid(n))
    await run.until(
        lambda: all((run.settings.completed_dir / name_for(n)).exists() for n in range(first, first + count))
    )


# -- finding 2: one small file crashes or freezes a gateway ------------------------------------------------------


async def test_deeply_nested_json_is_invalid_json_and_the_rest_flows(running: Running) -> None:
    running.drop(NAME, DEEP)
    await _valid_files_flow(running, 2)
    await running.until((running.settings.error_dir / f"{NAME}.error.log").exists)
    log = error_log(running.settings, NAME)
    assert "error_code: INVALID_JSON" in log and "nested too deeply" in log
    assert [e.payload["file_name"] for _, e in running.link.sent] == [name_for(n) for n in (2, 3, 4)]


def test_one_bad_file_does_not_poison_a_probe_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_decode = pending_io.decode_json

    def decode(data: bytes) -> object:
        if data.startswith(b'{"boom'):
            raise MemoryError("boom")
        return real_decode(data)

    monkeypatch.setattr(pending_io, "decode_json", decode)
    batch = []
    for name, data in ((name_for(1), DEEP), (name_for(2), b'{"boom": 1}'), (name_for(3), b'{"a": 1}')):
        (tmp_path / name).write_bytes(data)
        stat = os.lstat(tmp_path / name)
        batch.append((name, Observation(FileStat(stat.st_size, stat.st_mtime_ns), 0, 0)))
    deep, boom, fine = pending_io.probe_many(tmp_path, batch, 10.0, lambda *_: True)
    assert not deep.parsed_ok and deep.parse_error == "nested too deeply" and deep.rejection is None
    assert boom.rejection is not None and boom.rejection.code == "INVALID_FILE"
    assert "MemoryError" in boom.rejection.details["reason"]
    assert fine.parsed_ok and fine.parsed == {"a": 1}


def test_reads_stop_one_byte_past_the_limit(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"x" * 100_000)
    data = pending_io.read_file(tmp_path / NAME, 1024)
    assert data is not None and len(data) == 1025


async def test_an_exception_while_checking_one_file_refuses_only_that_file(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_check = ready.check_completion

    def check(name: str, data: bytes, *args: object) -> object:
        if name == NAME:
            raise KeyError("a bug met by this file only")
        return real_check(name, data, *args)

    monkeypatch.setattr(ready, "check_completion", check)
    running.drop(NAME, valid(1))
    await _valid_files_flow(running, 2)
    await running.until((running.settings.error_dir / f"{NAME}.error.log").exists)
    log = error_log(running.settings, NAME)
    assert "error_code: INVALID_FILE" in log and "a bug met by this file only" in log


async def test_a_file_over_the_size_limit_is_refused_with_size_and_limit(running: Running) -> None:
    big = json.dumps({**record(), "padding": "x" * 5000}).encode()
    running.drop(NAME, big)
    await running.until((running.settings.error_dir / f"{NAME}.error.log").exists)
    log = error_log(running.settings, NAME)
    assert "error_code: INVALID_FILE" in log and f"{len(big)} > 4096" in log
    assert running.link.sent == []


async def test_symlink_fifo_and_directory_go_to_error_without_blocking(settings: GatewaySettings) -> None:
    pending = settings.pending_dir
    present = name_for(7)
    os.symlink("/dev/zero", pending / present)  # there before the gateway starts
    run = Running(settings, FakeLink())
    task = await _start(run)
    try:
        os.mkfifo(pending / name_for(8))  # nobody ever writes it: opening it to read would block
        os.symlink("/dev/zero", pending / name_for(9))
        (pending / name_for(10)).mkdir()
        await _valid_files_flow(run)
        for n, kind in ((7, "symlink"), (8, "fifo"), (9, "symlink"), (10, "directory")):
            await run.until((settings.error_dir / f"{name_for(n)}.error.log").exists)
            log = error_log(settings, name_for(n))
            assert "error_code: INVALID_FILE" in log and f"not a regular file ({kind})" in log, log
        assert (settings.error_dir / present).is_symlink()  # the entry moved, its target untouched
        assert run.names(pending) == []
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- finding 4: stranded names, long names, a pausing writer, duplicates ----------------------------------------


async def test_stale_temporary_names_are_reported_once(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_gateway")
    stranded = [f".{NAME}", f"~{NAME}", f"{NAME}.tmp", f"{NAME}.part"]
    for name in stranded:
        (running.settings.pending_dir / name).write_bytes(b"{}")
    watchlist = running.pickup.pickup.watchlist
    await running.until(lambda: len(watchlist) == 4)
    await asyncio.sleep(0.5)  # several more rescans
    for name in stranded:
        assert sum(name in r.getMessage() and "PENDING_STALE" in r.getMessage() for r in caplog.records) == 1
    state = StationReporter(running.settings, running.pickup).state(True, None)
    assert sorted(f.name for f in state.stuck_files) == sorted(stranded) and state.stuck_count == 4
    assert all(f.code == "PENDING_STALE" for f in state.stuck_files)
    assert "renamed" in state.stuck_files[0].message
    (running.settings.pending_dir / f"{NAME}.tmp").unlink()
    await running.until(lambda: len(watchlist) == 3)


async def test_a_name_too_long_to_move_as_is_is_stored_shorter(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge_gateway")
    long_name = "X" * 245 + ".json"
    running.drop(long_name, b"{}")
    await running.until(lambda: any(p.name.endswith(".error.log") for p in running.settings.error_dir.iterdir()))
    stored = [p.name for p in running.settings.error_dir.iterdir() if not p.name.endswith(".error.log")]
    assert len(stored) == 1 and stored[0] != long_name and len(stored[0]) < 240
    log = error_log(running.settings, stored[0])
    assert f"original_name: {long_name}" in log and "INVALID_FILE_NAME" in log
    assert any("stored as" in r.getMessage() for r in caplog.records)
    assert not any("cannot move" in r.getMessage() for r in caplog.records)


async def test_a_file_that_cannot_be_moved_is_reported_once(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_gateway")
    error_dir = running.settings.error_dir
    error_dir.rmdir()
    error_dir.write_bytes(b"")  # error/ is a file now: every move fails
    running.drop(NAME, b"{}")
    watchlist = running.pickup.pickup.watchlist
    await running.until(lambda: NAME in watchlist)
    await asyncio.sleep(1.0)  # several retries
    assert sum("cannot move" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING) == 1
    assert watchlist.files()[0].code == "MOVE_FAILED"
    assert running.pickup.health.last_error is not None and "MOVE_FAILED" in running.pickup.health.last_error.code
    error_dir.unlink()
    error_dir.mkdir()
    await running.until((error_dir / NAME).exists)
    await running.until(lambda: NAME not in watchlist)


async def test_a_writer_pausing_mid_file_is_not_an_error(running: Running) -> None:
    content = valid(1)
    with open(running.settings.pending_dir / name_for(1), "wb") as handle:
        handle.write(content[:20])
        handle.flush()
        await asyncio.sleep(1.0)  # well past the window and the malformed grace, file held open
        assert running.names(running.settings.error_dir) == []
        handle.write(content[20:])
    await running.until((running.settings.completed_dir / name_for(1)).exists)
    assert running.names(running.settings.error_dir) == []


async def test_a_file_changed_in_error_is_moved_back_and_looked_at_again(running: Running) -> None:
    content = valid(1)
    running.drop(name_for(1), content[:20])  # closed: nobody writing, so it is refused after the grace
    await running.until((running.settings.error_dir / f"{name_for(1)}.error.log").exists)
    with open(running.settings.error_dir / name_for(1), "ab") as handle:  # the writer's late rest
        handle.write(content[20:])
    await running.until((running.settings.completed_dir / name_for(1)).exists)
    assert running.names(running.settings.error_dir) == []
    assert running.pickup.counters()["reexamined"] == 1


async def test_a_duplicate_goes_to_completed_with_a_duplicate_log(running: Running) -> None:
    def duplicate(envelope: Envelope) -> ReplyPayload:
        return ReplyPayload(
            in_reply_to=envelope.message_id,
            outcome=Outcome.DUPLICATE,
            http_status=200,
            body={"status": "success", "message": "이미 등록된 완공입니다", "data": {"lot": 1}},
        )

    running.link.answer = duplicate
    running.drop(NAME, valid(1))
    log = running.settings.completed_dir / f"{NAME}.duplicate.log"
    await running.until(log.exists)
    ((_, envelope),) = running.link.sent
    text = log.read_text(encoding="utf-8")
    assert f"original_name: {NAME}" in text and f"message_id: {envelope.message_id}" in text
    assert "이미 등록된 완공입니다" in text
    assert running.pickup.counters()["duplicates"] == 1


# -- through the real line: gateway process → broker → ingestor → PostgreSQL -------------------------------------


def _wait_for(*paths: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, [str(p) for p in paths if not p.exists()]
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_hostile_files_at_a_real_station_do_not_stop_it(line: Line, db: psycopg.Connection) -> None:
    station = line.stations["PROC-001"]
    stamp = later(3600).strftime("%Y%m%d%H%M%S")
    hostile = {
        f"WF-KR-251110D-9{n:02d}_PROC-001_{stamp}.json": kind for n, kind in ((1, "deep"), (2, "fifo"), (3, "symlink"))
    }
    for name, kind in hostile.items():
        if kind == "deep":
            line.drop("PROC-001", name, DEEP)
        elif kind == "fifo":
            os.mkfifo(station.pending / name)
        else:
            os.symlink("/dev/zero", station.pending / name)
    lot = line.create_lot()
    assert line.start_via_gateway(lot, "PROC-001").status_code == 200
    end = later(0)
    record = completion_record("PROC-001", lot, "W001", end - timedelta(minutes=3), end, random.Random(11))
    good = line.drop_record(record)
    assert line.wait_disposition("PROC-001", good) == "completed"
    for name in hostile:
        assert line.wait_disposition("PROC-001", name) == "error"
    _wait_for(*(station.error / f"{n}.error.log" for n in hostile))
    assert "INVALID_JSON" in (station.error / f"{next(iter(hostile))}.error.log").read_text(encoding="utf-8")
    rows = db.execute("SELECT count(*) FROM process_results WHERE source_file_name = %s", (good,)).fetchone()
    assert rows == (1,)
    copy = good.replace(good.rsplit("_", 1)[1], later(7200).strftime("%Y%m%d%H%M%S") + ".json")
    line.drop("PROC-001", copy, (station.completed / good).read_bytes())  # byte-identical, another name
    assert line.wait_disposition("PROC-001", copy) == "completed"
    _wait_for(station.completed / f"{copy}.duplicate.log")  # written just after the move
    assert "original_name: " + copy in (station.completed / f"{copy}.duplicate.log").read_text(encoding="utf-8")
    rows = db.execute(
        "SELECT count(*) FROM process_results WHERE source_file_name IN (%s, %s)", (good, copy)
    ).fetchone()
    assert rows == (1,)  # stored once
    status = httpx.get(f"{station.gateway_url}/status", timeout=5).json()  # still the same, running gateway
    assert status["counters"]["errored"] >= 3 and status["counters"]["duplicates"] >= 1


@pytest.mark.skipif(not file_open.can_tell(), reason="needs /proc")
def test_a_writer_in_another_process_is_seen(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_bytes(b"{")
    code = f"import sys, time\nf = open({str(path)!r}, 'ab')\nprint('open', flush=True)\nsys.stdin.read()"
    writer = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"open\n"
        assert file_open.open_for_writing(path) is True
        with open(path, "rb"):  # a reader is not a writer
            assert writer.stdin is not None
            writer.stdin.close()
            writer.wait(10)
            assert file_open.open_for_writing(path) is False
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(10)
