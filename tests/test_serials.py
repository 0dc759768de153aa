"""Serial numbers at the PROC-007 start (FR-SN-001/002, TC-SN-001/002/003/005): format, count, never twice."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from deploy.localstack.children import ChildProcess
from deploy.localstack.services import MosquittoServer
from mes_contracts.envelope import MessageType, Outcome, Source, make_envelope
from mes_contracts.numbering import SERIAL_RE
from mes_contracts.topics import Name, StationAddress
from tests.support.auth import RoleAuth
from tests.support.line import start_body
from tests.support.mqtt import Requester
from tests.support.printers import (
    EmulatedPrinter,
    StandInStation,
    advance,
    create_lot,
    deactivate,
    register,
)
from tests.support.stations import allow_processes

pytestmark = pytest.mark.plain_pg  # issue 14: also run on plain PostgreSQL (test.sh's second pass)

STATION = "st93"  # no gateway of the `line` fixture answers here: the stand-in station does
OTHER_STATION = "st94"
PRINTER = "SN-ZT410"
OTHER_PRINTER = "SN-ZT230"


@pytest.fixture(scope="module")
def http(api_url: str, auth: RoleAuth) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, auth=auth.admin, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def printer(
    http: httpx.Client, ingestor: ChildProcess, tmp_path_factory: pytest.TempPathFactory, logs_dir: Path
) -> Iterator[EmulatedPrinter]:
    emulator = EmulatedPrinter("serials", tmp_path_factory.mktemp("printer-serials"), logs_dir).start()
    other = EmulatedPrinter("serials-other", tmp_path_factory.mktemp("printer-serials-other"), logs_dir).start()
    register(http, emulator.printer_body(PRINTER, STATION, ["SERIAL"]))
    register(http, other.printer_body(OTHER_PRINTER, OTHER_STATION, ["SERIAL"]))
    yield emulator
    deactivate(http, PRINTER)
    deactivate(http, OTHER_PRINTER)
    emulator.stop()
    other.stop()


@pytest.fixture(scope="module")
def station(broker: MosquittoServer, printer: EmulatedPrinter) -> Iterator[StandInStation]:
    stand_in = StandInStation(broker.port, STATION)
    yield stand_in
    stand_in.close()


def start_007(http: httpx.Client, lot: str, headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
    body = {**start_body(lot, "PROC-007", "W007"), **extra}
    return http.post("/api/v1/process/start", json=body, headers=headers or {})


def serial_rows(db: psycopg.Connection, lot: str) -> list[tuple[str, int, str]]:
    return db.execute(
        "SELECT s.serial_number, s.sequence, s.status FROM serials s JOIN lots l ON l.id = s.lot_id "
        "WHERE l.lot_number = %s ORDER BY s.sequence",
        (lot,),
    ).fetchall()


def label_jobs(db: psycopg.Connection, lot: str) -> list[tuple[str, str, str]]:
    return db.execute(
        "SELECT j.label_key, j.printer_id, j.mode FROM label_print_jobs j JOIN lots l "
        "ON l.id = j.lot_id WHERE l.lot_number = %s AND j.label_type = 'SERIAL' ORDER BY j.queue_seq",
        (lot,),
    ).fetchall()


def test_tc_sn_001_002_003_serials_issued_at_proc_007_start_and_labels_printed_in_order(
    http: httpx.Client, db: psycopg.Connection, printer: EmulatedPrinter, station: StandInStation
) -> None:
    lot = create_lot(http)["lot_number"]
    advance(http, lot)
    response = start_007(http, lot, printer_id=PRINTER)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    expected = [f"{lot}-{n:04d}" for n in range(1, 101)]
    assert data["serial_numbers"] == expected and data["printer_id"] == PRINTER
    rows = serial_rows(db, lot)
    assert [r[0] for r in rows] == expected and [r[1] for r in rows] == list(range(1, 101))
    assert all(SERIAL_RE.match(r[0]) and r[2] == "CREATED" for r in rows)
    assert label_jobs(db, lot) == [(s, PRINTER, "queued") for s in expected]
    # TC-SN-003: each label printed once, in serial order, on the real (emulated) printer.
    printer.wait_barcodes(expected, timeout=90)
    printed = [b for b in printer.barcodes() if b and b.startswith(lot)]
    assert printed == expected
    assert wait_job_states(db, lot) == [("printed", 100)]


def wait_job_states(db: psycopg.Connection, lot: str, timeout: float = 30) -> list[tuple[str, int]]:
    """The LOT's serial label jobs by status, once none is waiting for its result any more (its LOT label goes to
    whichever printer takes LOT labels, maybe another test's)."""
    deadline = time.monotonic() + timeout
    while True:
        states = db.execute(
            "SELECT j.status, count(*) FROM label_print_jobs j JOIN lots l ON l.id = j.lot_id "
            "WHERE l.lot_number = %s AND j.label_type = 'SERIAL' GROUP BY j.status ORDER BY j.status",
            (lot,),
        ).fetchall()
        if all(state not in ("queued", "dispatched") for state, _ in states) or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


def test_serial_count_is_target_minus_failed_units_unless_given(
    http: httpx.Client, db: psycopg.Connection, printer: EmulatedPrinter
) -> None:
    lot = create_lot(http, quantity=10)["lot_number"]
    advance(http, lot, failing=frozenset({"PROC-003", "PROC-006"}))
    fails = db.execute(
        "SELECT count(*) FROM process_results r JOIN lots l ON l.id = r.lot_id "
        "WHERE l.lot_number = %s AND r.result = 'FAIL'",
        (lot,),
    ).fetchone()
    assert fails == (2,)
    response = start_007(http, lot, printer_id=PRINTER)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["serial_numbers"] == [f"{lot}-{n:04d}" for n in range(1, 9)]

    other = create_lot(http, quantity=10)["lot_number"]
    advance(http, other, failing=frozenset({"PROC-003"}))
    response = start_007(http, other, printer_id=PRINTER, serial_count=12)
    assert response.status_code == 200, response.text
    assert [r[1] for r in serial_rows(db, other)] == list(range(1, 13))


def test_tc_sn_005_twenty_concurrent_starts_issue_one_set(
    http: httpx.Client, db: psycopg.Connection, printer: EmulatedPrinter
) -> None:
    lot = create_lot(http)["lot_number"]
    advance(http, lot)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: start_007(http, lot, printer_id=PRINTER), range(20)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 19, [a.text for a in answers if a.status_code not in (200, 409)]
    assert all(a.json()["error_code"] == "DUPLICATE_START" for a in answers if a.status_code == 409)
    rows = serial_rows(db, lot)
    assert [r[1] for r in rows] == list(range(1, 101))
    assert len(label_jobs(db, lot)) == 100


def test_a_retried_start_gets_the_first_answer_and_no_second_set(
    http: httpx.Client, db: psycopg.Connection, printer: EmulatedPrinter
) -> None:
    lot = create_lot(http, quantity=5)["lot_number"]
    advance(http, lot)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = start_007(http, lot, headers=key, printer_id=PRINTER)
    again = start_007(http, lot, headers=key, printer_id=PRINTER)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert len(serial_rows(db, lot)) == 5 and len(label_jobs(db, lot)) == 5


def test_the_unique_constraints_refuse_a_second_issue(
    http: httpx.Client, db: psycopg.Connection, printer: EmulatedPrinter
) -> None:
    lot = create_lot(http, quantity=3)["lot_number"]
    advance(http, lot)
    assert start_007(http, lot, printer_id=PRINTER).status_code == 200
    lot_id = db.execute("SELECT id FROM lots WHERE lot_number = %s", (lot,)).fetchone()
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "INSERT INTO serials (serial_number, lot_id, sequence) VALUES (%s, %s, 1)",
            (f"{lot}-9001", lot_id[0] if lot_id else None),
        )
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "INSERT INTO serials (serial_number, lot_id, sequence) VALUES (%s, %s, 4)",
            (f"{lot}-0001", lot_id[0] if lot_id else None),
        )
    assert len(serial_rows(db, lot)) == 3


def test_an_unknown_printer_refuses_the_start_and_leaves_nothing_behind(
    http: httpx.Client, db: psycopg.Connection, printer: EmulatedPrinter
) -> None:
    lot = create_lot(http, quantity=3)["lot_number"]
    advance(http, lot)
    refused = start_007(http, lot, printer_id="NO-SUCH-PRINTER")
    assert refused.status_code == 404 and refused.json()["error_code"] == "PRINTER_NOT_FOUND"
    assert serial_rows(db, lot) == []
    runs = db.execute(
        "SELECT count(*) FROM process_runs r JOIN lots l ON l.id = r.lot_id "
        "WHERE l.lot_number = %s AND r.process_id = 'PROC-007'",
        (lot,),
    ).fetchone()
    assert runs == (0,)
    assert start_007(http, lot, printer_id=PRINTER).status_code == 200


def test_a_start_from_a_station_queues_labels_on_that_stations_printer(
    http: httpx.Client, broker: MosquittoServer, db: psycopg.Connection, printer: EmulatedPrinter
) -> None:
    lot = create_lot(http, quantity=4)["lot_number"]
    advance(http, lot)
    allow_processes(db, OTHER_STATION, ["PROC-007"])  # a stand-in station (station_processes)
    address = StationAddress("KR", "L1", OTHER_STATION)
    requester = Requester(broker.port, address.reply(), f"serials-{uuid.uuid4()}")
    try:
        envelope = make_envelope(
            MessageType.PROCESS_START_REQUEST,
            Source.of(address, f"gw-{OTHER_STATION}"),
            1,
            start_body(lot, "PROC-007", "W007"),
        )
        requester.send(address.request(Name.PROCESS_START), envelope)
        reply = requester.reply(20)
    finally:
        requester.close()
    assert reply.outcome is Outcome.ACCEPTED, reply.body
    assert reply.body["data"]["printer_id"] == OTHER_PRINTER
    assert {job[1] for job in label_jobs(db, lot)} == {OTHER_PRINTER}
    assert len(reply.body["data"]["serial_numbers"]) == 4
