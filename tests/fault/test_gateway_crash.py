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
    run_start_time,
    sized,
    wait_disposed,
)
from tests.support.line import SEOUL
from tests.support.verifier import assert_clean, verify

FILES = sized(400, 2000)
ARRIVAL_S = float(sized(8, 20))  # the burst: files keep arriving this long, kills land inside it
KILLS = 5


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
    t0 = time.monotonic()

    def burst() -> None:  # the vendor app keeps dropping files while the gateway dies and comes back
        for index, item in enumerate(files):
            time.sleep(max(0.0, t0 + index * ARRIVAL_S / FILES - time.monotonic()))
            drop(gateway.pending, [item])

    writer = threading.Thread(target=burst, name="burst")
    writer.start()
    kills: list[tuple[float, int]] = []
    # Kill times leave room for the lives between kills (each at least 0.05-0.5 s), so even the last kill lands
    # while files still arrive: with batched messages the gateway keeps up with the burst, and a kill after the last
    # arrival would find nothing in flight.
    last_at = ARRIVAL_S - 0.3 - (KILLS - 1) * 0.5
    for at in sorted(rng.uniform(0.3, last_at) for _ in range(KILLS)):
        time.sleep(max(rng.uniform(0.05, 0.5), t0 + at - time.monotonic()))  # each life does a little work
        kills.append((round(time.monotonic() - t0, 2), completed_count([gateway])))
        gateway.kill()
        gateway.start()
    writer.join()
    elapsed = wait_disposed(items, 180)
    print(
        f"{FILES} files over {ARRIVAL_S:.0f} s; gateway SIGKILLed at (s, completed files) {kills}; drained "
        f"{elapsed:.1f} s after the last file arrived ({gateway.starts} starts); "
        f"processed_messages {outcomes(db, begin)}"
    )
    assert len(kills) == KILLS and all(done < FILES for _, done in kills), "every kill must hit the burst"
    assert_clean(verify(items, db))
