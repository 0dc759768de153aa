"""Thousands of completion files dropped into pending/ at once: every one processed, none missed."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

import psycopg
import pytest

from tests.support.faults import (
    Central,
    Rig,
    completion_files,
    outcomes,
    produced,
    run_start_time,
    sized,
    wait_disposed,
)
from tests.support.line import SEOUL
from tests.support.verifier import assert_clean, verify

FILES = sized(3000, 20000)
LOTS = sized(50, 100)


@pytest.mark.timeout(1200)
def test_files_dropped_at_once_are_all_processed(central: Central, rig: Rig, db: psycopg.Connection[Any]) -> None:
    begin = datetime.now(SEOUL)
    started = run_start_time()
    files = completion_files(central.create_started_lots(LOTS, started), FILES, started, seed=11)
    rig.start_ingestor()
    gateway = rig.gateway("st01")
    items = produced(gateway.work_dir, files)
    staging = rig.root / "staging"  # same filesystem as pending/: the drop itself is one rename per file
    staging.mkdir()
    for item in files:
        (staging / item.name).write_bytes(item.content)
    dropped = time.monotonic()
    for item in files:
        os.replace(staging / item.name, gateway.pending / item.name)
    drop_s = time.monotonic() - dropped
    elapsed = wait_disposed(items, sized(240, 900), poll=1.0)
    print(
        f"\n{FILES} files over {LOTS} LOTs dropped in {drop_s:.2f} s; all disposed after {elapsed:.1f} s "
        f"({FILES / max(elapsed, 0.001):.0f} files/s); gateway RSS {gateway.rss_kb()} KiB; "
        f"processed_messages {outcomes(db, begin)}"
    )
    assert_clean(verify(items, db))
    # Replying to whole batches is normal operation: the ingestor's log must not fill with aiomqtt's warnings.
    noise = [
        line
        for path in rig.logs.glob("ingestor-*.log")
        for line in path.read_text(errors="replace").splitlines()
        if "pending publish calls" in line
    ]
    assert not noise, f"{len(noise)} 'pending publish calls' warnings, e.g. {noise[0]}"
