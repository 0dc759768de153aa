"""Completion files for the fault tests: valid PROC-001 files, dropped as a vendor app does, and their disposal."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from line_simulator.payloads import completion_record, render
from mes_contracts.completion import completion_file_name
from tests.support.fault_central import PROCESS, WORKERS
from tests.support.line import SEOUL
from tests.support.verifier import Produced


@dataclass(frozen=True, slots=True)
class CompletionFile:
    name: str
    content: bytes


def run_start_time() -> datetime:
    """Start time of the test runs: far enough back that every completion stamp stays in the past."""
    return (datetime.now(SEOUL) - timedelta(hours=8)).replace(microsecond=0)


def completion_files(
    lots: list[str], count: int, started: datetime, seed: int = 0, padding: int = 0
) -> list[CompletionFile]:
    """`count` distinct valid PROC-001 files, round robin over `lots` (re-tests: distinct stamps and bytes).

    The k-th file of a LOT is stamped `started + 60 s + k s`; `padding` adds that many bytes of extra data.
    """
    rng = random.Random(seed)
    files = []
    for index in range(count):
        lot, k = lots[index % len(lots)], index // len(lots)
        complete = started + timedelta(seconds=60 + k)
        overrides: dict[str, Any] = {"process_data": {"trace": "x" * padding}} if padding else {}
        record = completion_record(PROCESS, lot, WORKERS[k % len(WORKERS)][0], started, complete, rng, **overrides)
        files.append(CompletionFile(completion_file_name(lot, PROCESS, complete), render(record)))
    return files


def drop(pending: Path, files: Iterable[CompletionFile]) -> None:
    """Write each file as a vendor app should: a temporary name, then an atomic rename into pending/."""
    for item in files:
        temporary = pending / f".{item.name}.tmp"
        temporary.write_bytes(item.content)
        os.replace(temporary, pending / item.name)


def produced(work_dir: Path, files: Iterable[CompletionFile], keep_data: bool = False) -> list[Produced]:
    return [Produced.of(work_dir, item.name, item.content, keep_data) for item in files]


def disposed_names(work_dir: Path) -> set[str]:
    names: set[str] = set()
    for folder in ("completed", "error"):
        with os.scandir(work_dir / folder) as entries:
            names.update(entry.name for entry in entries)
    return names


def wait_disposed(
    items: list[Produced], timeout: float, poll: float = 0.25, alive: Callable[[], None] | None = None
) -> float:
    """Seconds until every produced file is in completed/ or error/ (under its own name); never raises on time."""
    begin = time.monotonic()
    by_dir: dict[Path, set[str]] = {}
    for item in items:
        by_dir.setdefault(item.work_dir, set()).add(item.name)
    while time.monotonic() - begin < timeout:
        if alive is not None:
            alive()
        if all(names <= disposed_names(work_dir) for work_dir, names in by_dir.items()):
            return time.monotonic() - begin
        time.sleep(poll)
    return time.monotonic() - begin
