"""The label API tests' printer and station, set up once for this package (as once for the former single module):
a real emulated printer registered for a stand-in station, and a LOT with its serials issued. The tests run in
file order (print, then reprint) and share the printer's labels and the LOT's serials, as they did in one module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.localstack.children import ChildProcess
from deploy.localstack.services import MosquittoServer
from mes_contracts.labels import PrinterState
from tests.support.auth import RoleAuth
from tests.support.labels_api import PRINTER, SILENT_PRINTER, SILENT_STATION, STATION
from tests.support.line import start_body
from tests.support.printers import EmulatedPrinter, StandInStation, advance, create_lot, deactivate, register


@pytest.fixture(scope="package")
def http(api_url: str, auth: RoleAuth) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, auth=auth.admin, timeout=30) as client:
        yield client


@pytest.fixture(scope="package")
def printer(
    http: httpx.Client, ingestor: ChildProcess, tmp_path_factory: pytest.TempPathFactory, logs_dir: Path
) -> Iterator[EmulatedPrinter]:
    emulator = EmulatedPrinter("api", tmp_path_factory.mktemp("printer-api"), logs_dir).start()
    register(http, emulator.printer_body(PRINTER, STATION, ["LOT", "SERIAL"]))
    register(http, emulator.printer_body(SILENT_PRINTER, SILENT_STATION, ["SERIAL"]))
    yield emulator
    deactivate(http, PRINTER)
    deactivate(http, SILENT_PRINTER)
    emulator.stop()


@pytest.fixture(scope="package")
def station(broker: MosquittoServer, printer: EmulatedPrinter) -> Iterator[StandInStation]:
    stand_in = StandInStation(broker.port, STATION)
    yield stand_in
    stand_in.close()


@pytest.fixture
def ready(printer: EmulatedPrinter, station: StandInStation) -> Iterator[EmulatedPrinter]:
    printer.set_state(PrinterState.READY)
    yield printer
    printer.set_state(PrinterState.READY)


@pytest.fixture(scope="package")
def serial_lot(http: httpx.Client, printer: EmulatedPrinter, station: StandInStation) -> dict[str, Any]:
    """A LOT of 3 with its serials issued (PROC-007 started on the API printer)."""
    lot = create_lot(http, quantity=3, printer_id=PRINTER)
    advance(http, lot["lot_number"])
    body = {**start_body(lot["lot_number"], "PROC-007", "W007"), "printer_id": PRINTER}
    started = http.post("/api/v1/process/start", json=body)
    assert started.status_code == 200, started.text
    printer.wait_barcodes(started.json()["data"]["serial_numbers"])
    return {**lot, "serials": started.json()["data"]["serial_numbers"]}
