"""The centre refuses a start or completion from a station not configured for the process (issue 11, finding 3).

Through the real gateways, broker and ingestor of the session line (stNN runs PROC-0NN, seeded by migration 0007).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from cloud_api.domain.stations import StationKey, StationPermissions
from line_simulator.payloads import completion_record
from mes_cli.stations import station_app
from mes_contracts.completion import completion_file_name
from mes_contracts.route import ROUTE
from tests.support.line import SEOUL, Line

ST02 = StationKey("KR", "L1", "st02")


def _times() -> tuple[datetime, datetime]:
    end = datetime.now(SEOUL).replace(microsecond=0)
    return end - timedelta(minutes=3), end


def _drop_at(line: Line, at_process: str, record: dict) -> str:
    """The record's file, named for its own process, in the folder of the station that runs `at_process`."""
    name = completion_file_name(record["lot_number"], record["process_id"], datetime.now(SEOUL))
    line.drop(at_process, name, json.dumps(record, ensure_ascii=False).encode())
    return name


def _error_log(line: Line, at_process: str, name: str) -> str:
    return (line.stations[at_process].error / f"{name}.error.log").read_text(encoding="utf-8")


def _stored(db: psycopg.Connection, name: str) -> int:
    row = db.execute("SELECT count(*) FROM process_results WHERE source_file_name = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def cli_env(central_env: dict[str, str]) -> Iterator[None]:
    saved = os.environ.get("MES_DATABASE_URL")
    os.environ["MES_DATABASE_URL"] = central_env["MES_DATABASE_URL"]
    yield
    if saved is None:
        os.environ.pop("MES_DATABASE_URL", None)
    else:
        os.environ["MES_DATABASE_URL"] = saved


def test_source_and_permissions_are_pure() -> None:
    assert StationKey.of_source("mes/v1/KR/L1/st02") == ST02
    assert StationKey.of_source("rest") is None and StationKey.of_source("mes/v1/KR/L1") is None
    permissions = StationPermissions.of([(ST02, "PROC-002")])
    assert permissions.allows(ST02, "PROC-002") and not permissions.allows(ST02, "PROC-005")
    assert not permissions.allows(StationKey("KR", "L2", "st02"), "PROC-002")  # keyed by the full address


def test_the_conventional_line_is_seeded(db: psycopg.Connection) -> None:
    rows = db.execute(
        "SELECT station, process_id FROM station_processes WHERE site = 'KR' AND line = 'L1' "
        "AND station ~ '^st0[1-8]$' ORDER BY station"
    ).fetchall()
    assert rows == [(f"st{step.sequence:02d}", step.process_id) for step in ROUTE]


def test_a_completion_of_another_stations_process_goes_to_error_and_is_not_stored(
    line: Line, db: psycopg.Connection
) -> None:
    rng = random.Random(11)
    lot = line.create_lot()
    assert line.start_via_gateway(lot, "PROC-001", "W001").status_code == 200
    start, end = _times()
    # st02 reports PROC-005 (the case) and PROC-001, which st01 started: valid data, wrong station.
    for process_id in ("PROC-005", "PROC-001"):
        name = _drop_at(line, "PROC-002", completion_record(process_id, lot, "W001", start, end, rng))
        assert line.wait_disposition("PROC-002", name) == "error"
        log = _error_log(line, "PROC-002", name)
        assert "STATION_NOT_ALLOWED" in log, log
        assert _stored(db, name) == 0
    audited = db.execute(
        "SELECT count(*) FROM audit_log WHERE action = 'station_not_allowed' AND entity_key = %s",
        ("KR/L1/st02:PROC-001",),
    ).fetchone()
    assert audited is not None and audited[0] >= 1
    # The same record from the station that runs PROC-001 is stored: only the station was wrong.
    name = _drop_at(line, "PROC-001", completion_record("PROC-001", lot, "W001", start, end, rng))
    assert line.wait_disposition("PROC-001", name) == "completed"
    assert _stored(db, name) == 1


def test_a_start_of_another_stations_process_is_refused(line: Line, db: psycopg.Connection) -> None:
    lot = line.create_lot()
    station = line.stations["PROC-002"]
    line.stations["PROC-001"], saved = station, line.stations["PROC-001"]  # send PROC-001 through st02's gateway
    try:
        refused = line.start_via_gateway(lot, "PROC-001", "W001")
    finally:
        line.stations["PROC-001"] = saved
    assert refused.status_code == 403 and refused.json()["error_code"] == "STATION_NOT_ALLOWED", refused.text
    assert line.lot(lot)["status"] == "CREATED"  # nothing started
    assert line.start_via_gateway(lot, "PROC-001", "W001").status_code == 200  # from st01: accepted


def test_cli_allows_lists_and_revokes(cli_env: None, db: psycopg.Connection) -> None:
    runner = CliRunner()
    allowed = runner.invoke(station_app, ["allow", "st42", "PROC-003", "PROC-004", "--line", "L7"])
    assert allowed.exit_code == 0, allowed.output
    assert "KR/L7/st42 PROC-003: allowed" in allowed.output
    assert "unchanged" in runner.invoke(station_app, ["allow", "st42", "PROC-003", "--line", "L7"]).output
    listed = runner.invoke(station_app, ["list"])
    assert listed.exit_code == 0 and "KR/L7/st42" in listed.output and "PROC-003 PROC-004" in listed.output
    unknown = runner.invoke(station_app, ["allow", "st42", "PROC-999", "--line", "L7"])
    assert unknown.exit_code != 0 and "PROC-999" in unknown.output
    revoked = runner.invoke(station_app, ["revoke", "st42", "PROC-003", "PROC-004", "--line", "L7"])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert db.execute("SELECT count(*) FROM station_processes WHERE station = 'st42'").fetchone() == (0,)
    actions = db.execute(
        "SELECT action FROM audit_log WHERE entity = 'station_process' AND entity_key = 'KR/L7/st42' ORDER BY id"
    ).fetchall()
    assert [a[0] for a in actions][-2:] == ["station_process_allow", "station_process_revoke"]
