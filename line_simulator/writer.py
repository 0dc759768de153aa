"""Write completion files into a station's pending/ the way vendor apps do, and watch where they end up."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import re
import time
from collections.abc import Generator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from line_simulator.clock import to_kst
from line_simulator.payloads import render
from mes_contracts.completion import completion_file_name
from mes_contracts.curve_file import CURVE_MARK
from mes_contracts.errors import ErrorCode

logger = logging.getLogger(__name__)

PENDING, COMPLETED, ERROR = "pending", "completed", "error"
TEMP_SUFFIX = ".tmp"
SLOW_CHUNK = 1024
SLOW_MIN_CHUNKS = 3
DIRECT_CHUNKS = 3
DIRECT_PAUSE = (0.005, 0.02)
LOG_SUFFIXES = (".log", ".txt", ".err", ".error")
Disposition = Literal["completed", "error"]
Baseline = frozenset[tuple[str, str, int, int]]


class WriteMode(StrEnum):
    DIRECT = "direct"  # open, write a few chunks with tiny pauses, close
    ATOMIC = "atomic"  # write `name.tmp`, then os.replace to the final name
    SLOW = "slow"  # 1 KB chunks (at least three) spread over `slow_seconds`


def plan_chunks(
    data: bytes, mode: WriteMode, slow_seconds: float = 2.0, rng: random.Random | None = None
) -> list[tuple[bytes, float]]:
    """The chunks to write and the pause after each; joined they are exactly `data`."""
    rng = rng or random.Random()
    if mode is WriteMode.SLOW:
        size = max(1, min(SLOW_CHUNK, math.ceil(len(data) / SLOW_MIN_CHUNKS)))
        pieces = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        pause = max(0.0, slow_seconds) / len(pieces)
        return [(piece, pause) for piece in pieces]
    size = max(1, math.ceil(len(data) / DIRECT_CHUNKS))
    pieces = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    plan = [(piece, rng.uniform(*DIRECT_PAUSE)) for piece in pieces]
    plan[-1] = (plan[-1][0], 0.0)
    return plan


def _write_steps(
    work_dir: Path, file_name: str, data: bytes, mode: WriteMode, slow_seconds: float, rng: random.Random | None
) -> Generator[float, None, None]:
    """Does the writing, yielding each pause; closing it early (cancellation) removes the partial file."""
    pending = work_dir / PENDING
    pending.mkdir(parents=True, exist_ok=True)
    final = pending / file_name
    path = pending / (file_name + TEMP_SUFFIX) if mode is WriteMode.ATOMIC else final
    try:
        with open(path, "wb") as handle:
            for chunk, pause in plan_chunks(data, mode, slow_seconds, rng):
                handle.write(chunk)
                handle.flush()
                if pause > 0:
                    yield pause
        if mode is WriteMode.ATOMIC:
            os.replace(path, final)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    logger.debug("wrote %s (%s, %d bytes)", final, mode, len(data))


def write_file(
    work_dir: Path,
    file_name: str,
    data: bytes,
    mode: WriteMode = WriteMode.DIRECT,
    slow_seconds: float = 2.0,
    rng: random.Random | None = None,
) -> Path:
    """Write `data` as `work_dir/pending/file_name`, blocking through the pauses."""
    for pause in _write_steps(work_dir, file_name, data, WriteMode(mode), slow_seconds, rng):
        time.sleep(pause)
    return work_dir / PENDING / file_name


async def write_file_async(
    work_dir: Path,
    file_name: str,
    data: bytes,
    mode: WriteMode = WriteMode.DIRECT,
    slow_seconds: float = 2.0,
    rng: random.Random | None = None,
) -> Path:
    """Same as `write_file`, sleeping without blocking the loop; a cancelled write leaves no file behind."""
    steps = _write_steps(work_dir, file_name, data, WriteMode(mode), slow_seconds, rng)
    try:
        for pause in steps:
            await asyncio.sleep(pause)
    finally:
        steps.close()
    return work_dir / PENDING / file_name


def record_file_name(record: dict[str, Any], stamp: datetime | None = None) -> str:
    """`{LOT}_{PROC}_{YYYYMMDDHHMMSS}.json`, stamped with the record's completion time unless told."""
    moment = stamp if stamp is not None else datetime.fromisoformat(record["complete_time"])
    return completion_file_name(record["lot_number"], record["process_id"], to_kst(moment))


def write_completion_file(
    work_dir: Path,
    record: dict[str, Any],
    mode: WriteMode = WriteMode.DIRECT,
    stamp: datetime | None = None,
    slow_seconds: float = 2.0,
    rng: random.Random | None = None,
) -> Path:
    """Write a completion record (UTF-8 JSON, indented) into the station's pending/ folder."""
    return write_file(work_dir, record_file_name(record, stamp), render(record), mode, slow_seconds, rng)


async def write_completion_file_async(
    work_dir: Path,
    record: dict[str, Any],
    mode: WriteMode = WriteMode.DIRECT,
    stamp: datetime | None = None,
    slow_seconds: float = 2.0,
    rng: random.Random | None = None,
) -> Path:
    return await write_file_async(work_dir, record_file_name(record, stamp), render(record), mode, slow_seconds, rng)


def _is_log(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith(LOG_SUFFIXES) or ".error." in lowered or ".log." in lowered


def _matches(entry: str, file_name: str) -> bool:
    """The file itself, or the same file renamed on a name clash (`x_1.json`, `x.json.1`, …)."""
    stem = file_name.removesuffix(".json")
    if CURVE_MARK in entry.lower() and CURVE_MARK not in file_name.lower():
        return False  # a curve file beside the completion file is not the completion file renamed
    return entry == file_name or (entry.startswith(stem) and not _is_log(entry))


def _scan(work_dir: Path, file_name: str) -> set[tuple[str, str, int, int]]:
    found: set[tuple[str, str, int, int]] = set()
    for folder in (COMPLETED, ERROR):
        try:
            entries = list(os.scandir(work_dir / folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            if _matches(entry.name, file_name):
                try:
                    info = entry.stat()
                except FileNotFoundError:
                    continue
                found.add((folder, entry.name, info.st_mtime_ns, info.st_ino))
    return found


def snapshot(work_dir: Path, file_name: str) -> Baseline:
    """Files that already look like `file_name` in completed/ and error/, taken before writing a new one."""
    return frozenset(_scan(work_dir, file_name))


def check_disposition(work_dir: Path, file_name: str, baseline: Baseline = frozenset()) -> Disposition | None:
    """Where the file went, once it has left pending/ and shows up (new or changed) in completed/ or error/."""
    pending = work_dir / PENDING
    if (pending / file_name).exists() or (pending / (file_name + TEMP_SUFFIX)).exists():
        return None
    landed = _scan(work_dir, file_name) - baseline
    exact = [item for item in landed if item[1] == file_name]
    for folder, *_ in exact or sorted(landed):
        return "completed" if folder == COMPLETED else "error"
    return None


def wait_for_disposition(
    station_work_dir: Path, file_name: str, timeout: float, baseline: Baseline = frozenset(), poll: float = 0.05
) -> Disposition | None:
    """Poll until the file lands in completed/ or error/; None when it has not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check_disposition(station_work_dir, file_name, baseline)
        if result is not None or time.monotonic() >= deadline:
            return result
        time.sleep(poll)


async def await_disposition(
    station_work_dir: Path, file_name: str, timeout: float, baseline: Baseline = frozenset(), poll: float = 0.05
) -> Disposition | None:
    """Async `wait_for_disposition`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check_disposition(station_work_dir, file_name, baseline)
        if result is not None or time.monotonic() >= deadline:
            return result
        await asyncio.sleep(poll)


def error_codes(station_work_dir: Path, file_name: str) -> list[str]:
    """Error codes named in the error log(s) written beside a file moved to error/ (best effort)."""
    stem = file_name.removesuffix(".json")
    codes: list[str] = []
    try:
        entries = list(os.scandir(station_work_dir / ERROR))
    except FileNotFoundError:
        return codes
    for entry in entries:
        if not (entry.name.startswith(stem) and _is_log(entry.name)):
            continue
        try:
            text = Path(entry.path).read_text(encoding="utf-8", errors="replace")[:65536]
        except OSError:
            continue
        codes.extend(
            code.value for code in ErrorCode if code.value not in codes and re.search(rf"\b{code.value}\b", text)
        )
    return codes
