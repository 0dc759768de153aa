"""Vendor apps that write slowly, pause mid-file or rename a temp file: nothing is ingested half-written."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.faults import (
    Central,
    CompletionFile,
    Rig,
    completion_files,
    produced,
    run_start_time,
    wait_disposed,
)
from tests.support.verifier import assert_clean, verify

WINDOW_S = 0.5  # MES_GW_STABLE_WINDOW_S at its production default
CHUNK = 1024
CHUNK_PAUSE_S = 0.3  # below the window: a slow but steady writer
FILES_PER_WRITER = 3
PADDING = 6 * 1024  # ~8 KB files: 8 chunks, about 2.5 s per file

Writer = Callable[[Path, CompletionFile], None]


def _chunks(content: bytes) -> list[bytes]:
    return [content[i : i + CHUNK] for i in range(0, len(content), CHUNK)]


def slow_writer(pending: Path, item: CompletionFile) -> None:
    """1 KB chunks every 0.3 s into the final name, flushed each time, over a few seconds."""
    with open(pending / item.name, "wb") as handle:
        for chunk in _chunks(item.content):
            handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
            time.sleep(CHUNK_PAUSE_S)


def pausing_writer(pause_s: float) -> Writer:
    """Half the file, a pause of `pause_s` (the app busy elsewhere), then the rest, through one open handle."""

    def write(pending: Path, item: CompletionFile) -> None:
        half = len(item.content) // 2
        with open(pending / item.name, "wb") as handle:
            handle.write(item.content[:half])
            handle.flush()
            os.fsync(handle.fileno())
            time.sleep(pause_s)
            handle.write(item.content[half:])

    return write


def temp_then_rename_writer(pending: Path, item: CompletionFile) -> None:
    """Slowly into `name.tmp` (ignored), then one atomic rename to the final name."""
    temporary = pending / f"{item.name}.tmp"
    slow_writer(pending, CompletionFile(temporary.name, item.content))
    os.replace(temporary, pending / item.name)


WRITERS: dict[str, Writer] = {
    "slow_1kb_chunks": slow_writer,
    "pause_1.5x_window": pausing_writer(1.5 * WINDOW_S),
    "pause_4x_window": pausing_writer(4 * WINDOW_S),
    "temp_then_rename": temp_then_rename_writer,
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", list(WRITERS))
def test_nothing_is_ingested_half_written(central: Central, rig: Rig, db: psycopg.Connection[Any], kind: str) -> None:
    started = run_start_time()
    lots = central.create_started_lots(FILES_PER_WRITER, started)
    files = completion_files(lots, FILES_PER_WRITER, started, seed=10, padding=PADDING)
    rig.start_ingestor()
    gateway = rig.gateway("st01", MES_GW_STABLE_WINDOW_S=str(WINDOW_S), MES_GW_RESCAN_INTERVAL_S="2.0")
    items = produced(gateway.work_dir, files, keep_data=True)
    finished: dict[str, float] = {}

    def run(item: CompletionFile) -> None:
        WRITERS[kind](gateway.pending, item)
        finished[item.name] = time.time()

    threads = [threading.Thread(target=run, args=(item,), name=f"writer-{i}") for i, item in enumerate(files)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_disposed(items, 60)
    time.sleep(2 * WINDOW_S)  # a late second pick-up of a name would show now
    rows = db.execute(
        "SELECT source_file_name, source_sha256, extract(epoch FROM recorded_at) FROM process_results "
        "WHERE source_file_name = ANY(%s)",
        ([item.name for item in items],),
    ).fetchall()
    early = [name for name, _, recorded in rows if float(recorded) < finished[name] - 0.05]
    report = verify(items, db)
    sizes = sorted({len(item.content) for item in files})
    print(f"\n{kind}: {len(files)} files of {sizes} bytes; rows {len(rows)}; {report.summary()}")
    for name in report.errored:
        log = gateway.error / f"{name}.error.log"
        print(f"error/{name}.error.log:\n{log.read_text(encoding='utf-8') if log.exists() else '(none)'}")
    assert not early, f"stored before its writer had finished: {early}"
    assert not report.corrupt, f"ingested half-written: {report.corrupt}"
    assert_clean(report)
