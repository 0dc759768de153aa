"""The line simulator against the real line (gateways, broker, ingestor, API, PostgreSQL): a LOT that fails final
inspection (PROC-008) ends with the rejected unit's serial FAILED and the others PASSED, none left IN_PROGRESS."""

from __future__ import annotations

import asyncio
import json

import psycopg

from cloud_api.domain.access import Role
from line_simulator.config import LineConfig, StationConfig
from line_simulator.line import run_line
from tests.support.auth import ApiUser
from tests.support.line import Line


def test_a_lot_failing_final_inspection_leaves_one_serial_failed_and_the_rest_passed(
    line: Line, api_users: dict[Role, ApiUser], db: psycopg.Connection
) -> None:
    manager = api_users[Role.MANAGER]
    stations = [StationConfig(s.process_id, s.station_id, s.work_dir, s.gateway_url) for s in line.stations.values()]
    config = LineConfig(
        api_url=line.api_url,
        stations=stations,
        lots=1,
        speed=200,
        failure_rate=1.0,  # every process with a verdict fails, PROC-008 included
        bad_file_every=0,
        out_of_order_demo=False,
        target_quantity=10,  # each LOT-level FAIL before PROC-007 is a unit off the cart: 6 serials are issued
        seed=8,
        file_timeout=60,
        username=manager.username,
        password=manager.password,
    )
    report = asyncio.run(asyncio.wait_for(run_line(config), 120))
    assert report.ok and report.lots_completed == 1, report
    lot = report.lot_numbers[0]

    serials = db.execute(
        "SELECT s.serial_number, s.status FROM serials s JOIN lots l ON l.id = s.lot_id "
        "WHERE l.lot_number = %s ORDER BY s.sequence",
        (lot,),
    ).fetchall()
    assert len(serials) == 10 - 4  # PROC-001, 003, 004 and 006 failed LOT-level
    rejected = [
        json.loads(path.read_text())["serial_number"]
        for path in (line.stations["PROC-008"].work_dir / "completed").glob(f"{lot}_PROC-008_*.json")
        if "serial_number" in json.loads(path.read_text())
    ]
    assert len(rejected) == 1
    assert serials == [(number, "FAILED" if number == rejected[0] else "PASSED") for number, _ in serials]
    results = db.execute(
        "SELECT s.serial_number, r.result FROM process_results r LEFT JOIN serials s ON s.id = r.serial_id "
        "JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = %s AND r.process_id = 'PROC-008' ORDER BY r.id",
        (lot,),
    ).fetchall()
    assert results == [(rejected[0], "FAIL"), (None, "PASS")]
