"""Broker restarted and SIGKILLed during bursts, and a station cut off from the broker while files keep coming."""

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
    latency_stats,
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

BURST_FILES = sized(400, 2000)
OFFLINE_FILES = sized(500, 3000)
OFFLINE_S = sized(10, 45)
ARRIVAL_PER_S = sized(25, 40)


def _burst(rig: Rig, central: Central, files_total: int, seed: int) -> tuple[list[Any], Any]:
    started = run_start_time()
    files = completion_files(central.create_started_lots(50, started), files_total, started, seed=seed)
    rig.start_ingestor()
    gateway = rig.gateway("st01")
    items = produced(gateway.work_dir, files)
    drop(gateway.pending, files)
    return items, gateway


@pytest.mark.timeout(600)
def test_broker_restarted_three_times_during_a_burst(central: Central, rig: Rig, db: psycopg.Connection[Any]) -> None:
    rng = fault_rng("broker-restart")
    begin = datetime.now(SEOUL)
    items, gateway = _burst(rig, central, BURST_FILES, seed=5)
    restarts = []
    for target in progress_points(rng, BURST_FILES, 3, 0.05, 0.8):
        assert wait_for(lambda: completed_count([gateway]) >= target, 120), rig.tails()  # noqa: B023
        time.sleep(rng.uniform(0, 0.2))
        restarts.append(completed_count([gateway]))
        rig.broker.restart()  # graceful: the broker saves its persistent sessions and queues
    elapsed = wait_disposed(items, 180)
    print(
        f"{BURST_FILES} files, broker restarted at {restarts} completed files; drained {elapsed:.1f} s after "
        f"the last restart; processed_messages {outcomes(db, begin)}"
    )
    assert_clean(verify(items, db))


@pytest.mark.timeout(600)
def test_broker_sigkilled_once_during_a_burst(central: Central, rig: Rig, db: psycopg.Connection[Any]) -> None:
    rng = fault_rng("broker-sigkill")
    begin = datetime.now(SEOUL)
    items, gateway = _burst(rig, central, BURST_FILES, seed=6)
    target = rng.randint(BURST_FILES // 10, BURST_FILES // 2)
    assert wait_for(lambda: completed_count([gateway]) >= target, 120), rig.tails()
    at_kill = completed_count([gateway])
    rig.broker.kill()  # no chance to save sessions or queued messages
    time.sleep(rng.uniform(0.5, 3.0))
    rig.broker.start()
    elapsed = wait_disposed(items, 180)
    print(
        f"{BURST_FILES} files, broker SIGKILLed at {at_kill} completed files; drained {elapsed:.1f} s after "
        f"the restart; processed_messages {outcomes(db, begin)}"
    )
    assert_clean(verify(items, db))


@pytest.mark.timeout(900)
def test_station_offline_from_the_broker_then_drains(central: Central, rig: Rig, db: psycopg.Connection[Any]) -> None:
    """The broker is stopped while the vendor app keeps writing; when it is back, everything drains."""
    begin = datetime.now(SEOUL)
    started = run_start_time()
    files = completion_files(central.create_started_lots(50, started), OFFLINE_FILES, started, seed=7)
    rig.start_ingestor()
    gateway = rig.gateway("st01")
    items = produced(gateway.work_dir, files)
    written_at: dict[str, float] = {}
    rss: list[int] = []
    sampling = threading.Event()
    begin_wall = time.time()

    def vendor_app() -> None:  # a steady stream of result files, whatever the network does
        for index, item in enumerate(files):
            time.sleep(max(0.0, begin_wall + index / ARRIVAL_PER_S - time.time()))
            written_at[item.name] = time.time()
            drop(gateway.pending, [item])

    def sample_rss() -> None:
        while not sampling.wait(0.5):
            value = gateway.rss_kb()
            if value:
                rss.append(value)

    rss_start = gateway.rss_kb() or 0
    writer = threading.Thread(target=vendor_app, name="vendor-app")
    sampler = threading.Thread(target=sample_rss, name="rss", daemon=True)
    writer.start()
    sampler.start()
    time.sleep(2.0)
    rig.broker.stop()
    down_at = time.time()
    time.sleep(OFFLINE_S)
    assert not gateway.connected()
    offline_names = {name for name, at in list(written_at.items()) if at >= down_at}
    rig.broker.start()
    up_at = time.time()
    writer.join()
    elapsed = wait_disposed(items, 300)
    drained_at = time.time()
    sampling.set()
    all_latency = latency_stats(items, written_at)
    offline_latency = latency_stats([i for i in items if i.name in offline_names], written_at)
    print(
        f"\n{len(files)} files at {ARRIVAL_PER_S}/s; broker down {up_at - down_at:.1f} s, {len(offline_names)} "
        f"files written meanwhile; all disposed {drained_at - up_at:.1f} s after the broker came back "
        f"(last file disposed {elapsed:.1f} s after the last write)"
    )
    print(f"latency write -> completed/ (s): all {all_latency}; written while offline {offline_latency}")
    print(
        f"gateway RSS (KiB): start {rss_start}, peak {max(rss, default=0)}, end {gateway.rss_kb()}; "
        f"processed_messages {outcomes(db, begin)}"
    )
    assert offline_names, "no file arrived while the broker was down"
    assert_clean(verify(items, db))
