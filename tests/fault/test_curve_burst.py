"""A burst of PROC-006 curve files while the gateway and the ingestor are SIGKILLed and restarted: every curve
file ends in completed/, and every sample is stored exactly once (none lost, none twice)."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from mes_contracts.curve_file import curve_file_name, render_csv
from mes_contracts.measurement import Curve, Series
from tests.support.faults import Central, Rig, disposed_names, fault_rng, grep_log, sized, wait_for

pytestmark = pytest.mark.plain_pg

FILES = sized(24, 120)
SAMPLES = 3000  # per channel: 3 s at 1 kHz, two channels → 6,000 samples per file (one batch)
ARRIVAL_S = float(sized(6, 20))
KILLS = 2  # of each: gateway and ingestor


def _lots(central: Central, count: int) -> list[str]:
    with httpx.Client(base_url=central.api_url, timeout=30, auth=central.auth) as client:
        made = [client.post("/api/v1/lots", json={"shift": "N", "target_quantity": 100}) for _ in range(count)]
    assert all(r.status_code == 201 for r in made), made[0].text
    return [str(r.json()["data"]["lot_number"]) for r in made]


def _files(lots: list[str]) -> list[tuple[str, bytes]]:
    """Each file has its own second-aligned time window, so (lot, channel, time) names one sample."""
    base = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
    offsets = [i * 1000 for i in range(SAMPLES)]
    out = []
    for index in range(FILES):
        lot = lots[index % len(lots)]
        t0 = base + timedelta(seconds=10 * index)
        force = Series("force", "kgf", "T52_P200", offsets, [20 + (i % 97) / 10 for i in range(SAMPLES)])
        displacement = Series("displacement", "mm", "T52_P200", offsets, [i / 15 for i in range(SAMPLES)])
        curve = Curve(lot, None, "PROC-006", t0, (force, displacement))
        out.append((curve_file_name(lot, "PROC-006", t0, f"u{index:04d}"), render_csv(curve)))
    return out


@pytest.mark.timeout(300)
def test_curve_burst_with_gateway_and_ingestor_killed(central: Central, rig: Rig, db: psycopg.Connection[Any]) -> None:
    rng = fault_rng("curve-burst")
    lots = _lots(central, 4)
    files = _files(lots)
    rig.start_ingestor()
    gateway = rig.gateway("st06")
    t0 = time.monotonic()

    def burst() -> None:  # the test rig keeps writing curves (temporary name, then rename) through the kills
        for index, (name, content) in enumerate(files):
            time.sleep(max(0.0, t0 + index * ARRIVAL_S / FILES - time.monotonic()))
            temporary = gateway.pending / f".{name}.tmp"
            temporary.write_bytes(content)
            os.replace(temporary, gateway.pending / name)

    writer = threading.Thread(target=burst, name="curve-burst")
    writer.start()
    plan = sorted(
        [(rng.uniform(0.5, ARRIVAL_S - 0.5), "gateway") for _ in range(KILLS)]
        + [(rng.uniform(0.5, ARRIVAL_S - 0.5), "ingestor") for _ in range(KILLS)]
    )
    kills = []
    for at, what in plan:
        time.sleep(max(rng.uniform(0.05, 0.3), t0 + at - time.monotonic()))
        done = len(disposed_names(gateway.work_dir))
        kills.append((round(time.monotonic() - t0, 2), what, done))
        if what == "gateway":
            gateway.kill()
            gateway.start()
        else:
            rig.ingestors[-1].kill()
            rig.start_ingestor()  # same client id: its persistent session kept what arrived meanwhile
    writer.join()
    names = {name for name, _ in files}
    drained = wait_for(lambda: names <= set(os.listdir(gateway.completed)), 180, 0.25)
    counts = db.execute(
        "SELECT count(*), count(DISTINCT (s.lot_id, s.channel, s.time)), count(DISTINCT s.message_id) "
        "FROM measurement_samples s JOIN lots l ON l.id = s.lot_id WHERE l.lot_number = ANY(%s)",
        (lots,),
    ).fetchone()
    print(f"{FILES} curve files, kills (s, what, files done) {kills}; samples stored/distinct/messages {counts}")
    assert drained, f"not all curve files completed: {sorted(names - set(os.listdir(gateway.completed)))[:5]}"
    assert not [n for n in os.listdir(gateway.error)], "no curve file may end in error/"
    assert counts == (FILES * SAMPLES * 2, FILES * SAMPLES * 2, FILES)
    assert any(done < FILES for _, _, done in kills), "the kills must land inside the burst"


def _stored(db: psycopg.Connection[Any], lots: list[str]) -> tuple[Any, ...] | None:
    return db.execute(
        "SELECT count(*), count(DISTINCT (s.lot_id, s.channel, s.time)), count(DISTINCT s.message_id) "
        "FROM measurement_samples s JOIN lots l ON l.id = s.lot_id WHERE l.lot_number = ANY(%s)",
        (lots,),
    ).fetchone()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["crash_before_commit", "crash_after_commit"])
def test_ingestor_dies_around_the_commit_of_a_batch(
    central: Central, rig: Rig, db: psycopg.Connection[Any], mode: str
) -> None:
    """MES_FAULT_INJECT kills the ingestor inside the COPY's transaction (rolled back, nobody answered) or just
    after its commit (stored, the answer lost): either way the batch ends stored exactly once."""
    rng = fault_rng(f"curve-{mode}")
    lots = _lots(central, 2)
    files = _files(lots)[:8]
    nth = rng.randint(2, 6)
    crashing = rig.start_ingestor(fault=f"{mode}:{nth}")
    gateway = rig.gateway("st06")
    for name, content in files:
        (gateway.pending / f".{name}.tmp").write_bytes(content)
        os.replace(gateway.pending / f".{name}.tmp", gateway.pending / name)
    assert wait_for(lambda: not crashing.running, 120, 0.05), f"no crash:\n{crashing.log_tail()}"
    lines = grep_log(crashing.log_path, "fault injection")
    assert lines, crashing.log_tail()
    message_id = uuid.UUID(re.findall(r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}", lines[-1])[-1])
    answer = db.execute("SELECT outcome FROM processed_messages WHERE message_id = %s", (message_id,)).fetchone()
    rows = db.execute("SELECT count(*) FROM measurement_samples WHERE message_id = %s", (message_id,)).fetchone()
    if mode == "crash_before_commit":
        assert (answer, rows) == (None, (0,)), "the COPY must have been rolled back with its message id"
    else:
        assert (answer, rows) == (("accepted",), (SAMPLES * 2,)), "committed before the crash"
    rig.start_ingestor()
    names = {name for name, _ in files}
    assert wait_for(lambda: names <= set(os.listdir(gateway.completed)), 180, 0.25), rig.tails()
    assert _stored(db, lots) == (len(files) * SAMPLES * 2, len(files) * SAMPLES * 2, len(files))
    final = db.execute("SELECT outcome FROM processed_messages WHERE message_id = %s", (message_id,)).fetchone()
    assert final == ("accepted",)
