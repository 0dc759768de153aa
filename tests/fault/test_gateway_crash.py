"""Gateway SIGKILLed five times at random points of a burst, restarted each time: nothing lost or doubled."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import psycopg
import pytest

from tests.support.faults import (
    Central,
    Rig,
    completed_count,
    completion_files,
    drop,
    fault_rng,
    outcomes,
    produced,
    progress_points,
    run_start_time,
    sized,
    wait_disposed,
    wait_for,
)
from tests.support.line import SEOUL
from tests.support.verifier import assert_clean, verify

FILES = sized(400, 2000)
KILLS = 5
WAVES = 8


@pytest.mark.timeout(600)
def test_gateway_sigkilled_five_times_during_a_burst(central: Central, rig: Rig, db: psycopg.Connection[Any]) -> None:
    rng = fault_rng("gateway-sigkill")
    begin = datetime.now(SEOUL)
    started = run_start_time()
    lots = central.create_started_lots(50, started)
    files = completion_files(lots, FILES, started, seed=1)
    rig.start_ingestor()
    gateway = rig.gateway("st01")
    items = produced(gateway.work_dir, files)
    chunk = -(-len(files) // WAVES)

    def burst() -> None:  # the vendor app keeps dropping files while the gateway dies and comes back
        for first in range(0, len(files), chunk):
            drop(gateway.pending, files[first:first + chunk])
            time.sleep(0.25)

    writer = threading.Thread(target=burst, name="burst")
    writer.start()
    kills: list[int] = []
    for planned in progress_points(rng, FILES, KILLS, 0.05, 0.8):
        # Each life of the gateway does some work first, so every kill lands in publish / reply wait / move.
        target = max(planned, (kills[-1] if kills else 0) + rng.randint(5, max(6, FILES // 25)))
        reached = wait_for(lambda: completed_count([gateway]) >= target, 120)  # noqa: B023 (used at once)
        assert reached, f"no progress to {target} files before kill {len(kills) + 1}:\n{rig.tails()}"
        time.sleep(rng.uniform(0, 0.15))  # somewhere in publish / wait for reply / move
        in_flight = completed_count([gateway])
        gateway.kill()
        kills.append(in_flight)
        gateway.start()
    writer.join()
    elapsed = wait_disposed(items, 180)
    print(f"\n{FILES} files, gateway SIGKILLed at {kills} completed files; drained {elapsed:.1f} s after the "
          f"last restart ({gateway.starts} starts); centre answers {outcomes(db, begin)}")
    assert len(kills) == KILLS
    assert_clean(verify(items, db))
