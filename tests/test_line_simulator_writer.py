"""Line simulator writer: vendor-style file drops (direct, atomic, slow) and following a file to its folder."""

from __future__ import annotations

import asyncio
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from line_simulator.clock import KST
from line_simulator.payloads import completion_record, render
from line_simulator.writer import (
    WriteMode,
    await_disposition,
    check_disposition,
    error_codes,
    plan_chunks,
    record_file_name,
    snapshot,
    wait_for_disposition,
    write_completion_file,
    write_completion_file_async,
    write_file_async,
)
from mes_contracts.completion import completion_file_name, parse_completion_file_name

LOT = "WF-KR-251110D-001"
START = datetime(2025, 1, 10, 9, 0, 0, tzinfo=KST)


def make_record(process_id: str = "PROC-006") -> dict:
    return completion_record(process_id, LOT, "W006", START, START + timedelta(minutes=2), random.Random(3))


@pytest.mark.parametrize("mode", list(WriteMode))
def test_each_mode_leaves_exactly_the_rendered_bytes(tmp_path: Path, mode: WriteMode) -> None:
    record = make_record()
    path = write_completion_file(tmp_path, record, mode, slow_seconds=0.05, rng=random.Random(1))
    assert path == tmp_path / "pending" / completion_file_name(LOT, "PROC-006", START + timedelta(minutes=2))
    assert path.read_bytes() == render(record)
    assert sorted(p.name for p in (tmp_path / "pending").iterdir()) == [path.name]
    assert parse_completion_file_name(path.name) is not None


@pytest.mark.parametrize("mode", list(WriteMode))
async def test_async_modes_match_the_sync_ones(tmp_path: Path, mode: WriteMode) -> None:
    record = make_record("PROC-003")
    path = await write_completion_file_async(tmp_path, record, mode, slow_seconds=0.05)
    assert path.read_bytes() == render(record)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize("mode", list(WriteMode))
@pytest.mark.parametrize("size", [0, 1, 100, 1024, 1025, 5000])
def test_chunks_join_to_the_data(mode: WriteMode, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    plan = plan_chunks(data, mode, slow_seconds=1.0, rng=random.Random(0))
    assert b"".join(chunk for chunk, _ in plan) == data
    assert all(len(chunk) <= 1024 for chunk, _ in plan) or mode is not WriteMode.SLOW
    if mode is WriteMode.SLOW:
        assert sum(pause for _, pause in plan) == pytest.approx(1.0)
        if size >= 3:
            assert len(plan) >= 3
    else:
        assert all(pause < 0.05 for _, pause in plan)


async def test_slow_write_is_visible_while_incomplete(tmp_path: Path) -> None:
    data = render(make_record())
    task = asyncio.create_task(write_file_async(tmp_path, "x.json", data, WriteMode.SLOW, slow_seconds=0.6))
    await asyncio.sleep(0.1)
    partial = (tmp_path / "pending" / "x.json").read_bytes()
    assert 0 < len(partial) < len(data)
    await task
    assert (tmp_path / "pending" / "x.json").read_bytes() == data


async def test_atomic_write_never_shows_a_partial_final_file(tmp_path: Path) -> None:
    data = render(make_record())
    task = asyncio.create_task(write_file_async(tmp_path, "x.json", data, WriteMode.ATOMIC))
    final = tmp_path / "pending" / "x.json"
    while not task.done():
        if final.exists():
            assert final.read_bytes() == data
        await asyncio.sleep(0)
    await task
    assert final.read_bytes() == data


@pytest.mark.parametrize("mode", list(WriteMode))
async def test_cancelled_write_leaves_nothing_behind(tmp_path: Path, mode: WriteMode) -> None:
    task = asyncio.create_task(write_file_async(tmp_path, "x.json", b"x" * 4000, mode, slow_seconds=2.0))
    await asyncio.sleep(0)  # the writer has written its first chunk and is pausing
    assert len(list((tmp_path / "pending").iterdir())) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list((tmp_path / "pending").iterdir()) == []


def test_record_file_name_uses_the_completion_time_in_korea() -> None:
    record = make_record("PROC-001")
    assert record_file_name(record) == f"{LOT}_PROC-001_20250110090200.json"
    utc = datetime(2025, 1, 10, 0, 0, 0, tzinfo=UTC)
    assert record_file_name(record, utc) == f"{LOT}_PROC-001_20250110090000.json"


def _move(work_dir: Path, name: str, folder: str, new_name: str | None = None) -> None:
    (work_dir / folder).mkdir(exist_ok=True)
    shutil.move(work_dir / "pending" / name, work_dir / folder / (new_name or name))


@pytest.mark.parametrize("folder", ["completed", "error"])
def test_disposition_follows_the_move(tmp_path: Path, folder: str) -> None:
    path = write_completion_file(tmp_path, make_record())
    assert check_disposition(tmp_path, path.name) is None
    assert wait_for_disposition(tmp_path, path.name, timeout=0.1) is None
    _move(tmp_path, path.name, folder)
    assert wait_for_disposition(tmp_path, path.name, timeout=1.0) == folder


async def test_async_disposition_while_the_gateway_moves_later(tmp_path: Path) -> None:
    path = write_completion_file(tmp_path, make_record())

    async def gateway() -> None:
        await asyncio.sleep(0.2)
        _move(tmp_path, path.name, "completed")

    mover = asyncio.create_task(gateway())
    assert await await_disposition(tmp_path, path.name, timeout=3.0) == "completed"
    await mover


def test_baseline_ignores_an_older_file_of_the_same_name(tmp_path: Path) -> None:
    (tmp_path / "error").mkdir()
    (tmp_path / "error" / "result_final.json").write_text("old")
    (tmp_path / "error" / "result_final.json.error.log").write_text("INVALID_FILE_NAME")
    (tmp_path / "pending").mkdir()
    baseline = snapshot(tmp_path, "result_final.json")
    assert check_disposition(tmp_path, "result_final.json", baseline) is None  # nothing new has landed yet
    (tmp_path / "pending" / "result_final.json").write_text("new")
    assert check_disposition(tmp_path, "result_final.json", baseline) is None
    _move(tmp_path, "result_final.json", "error", "result_final_1.json")  # renamed on a clash
    assert check_disposition(tmp_path, "result_final.json", baseline) == "error"
    assert error_codes(tmp_path, "result_final.json") == ["INVALID_FILE_NAME"]


def test_error_codes_read_whole_words_only(tmp_path: Path) -> None:
    (tmp_path / "error").mkdir()
    (tmp_path / "error" / "a.json.log").write_text('{"error_code": "LOT_NOT_FOUND"}')
    (tmp_path / "error" / "b.json").write_text('{"error_code": "INVALID_JSON"}')  # the moved file, not a log
    assert error_codes(tmp_path, "a.json") == ["LOT_NOT_FOUND"]
    assert error_codes(tmp_path, "b.json") == []
    assert error_codes(tmp_path / "missing", "a.json") == []
