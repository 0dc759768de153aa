"""Labels end to end through real station gateways and emulated printers: TC-LOT-003, TC-SN-001/002/003, §4.3."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import zxingcpp
from PIL import Image

from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.common import find_free_port
from deploy.localstack.services import MosquittoServer
from mes_contracts.labels import PrinterState
from tests.support.auth import RoleAuth
from tests.support.line import Line
from tests.support.printers import EmulatedPrinter, advance, create_lot, deactivate, register

LOT_PRINTER = "E2E-PRINTER-01"  # at st01, LOT labels
SERIAL_PRINTER = "E2E-PRINTER-07"  # at st07, serial labels
LONE_STATION = "st96"  # a gateway of its own, stopped in the timeout test
LONE_PRINTER = "E2E-PRINTER-96"


@pytest.fixture(scope="module")
def http(line: Line, auth: RoleAuth) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=line.api_url, auth=auth.admin, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def printers(
    http: httpx.Client, tmp_path_factory: pytest.TempPathFactory, logs_dir: Path
) -> Iterator[dict[str, EmulatedPrinter]]:
    lot = EmulatedPrinter("e2e-01", tmp_path_factory.mktemp("printer-e2e-01"), logs_dir).start()
    serial = EmulatedPrinter("e2e-07", tmp_path_factory.mktemp("printer-e2e-07"), logs_dir).start()
    register(http, lot.printer_body(LOT_PRINTER, "st01", ["LOT"]))
    register(http, serial.printer_body(SERIAL_PRINTER, "st07", ["SERIAL"]))
    yield {"lot": lot, "serial": serial}
    for printer_id in (LOT_PRINTER, SERIAL_PRINTER, LONE_PRINTER):
        deactivate(http, printer_id)
    lot.stop()
    serial.stop()


def decode(png: bytes) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def test_tc_lot_003_lot_label_printed_at_creation_and_its_barcode_scans(
    line: Line, http: httpx.Client, printers: dict[str, EmulatedPrinter], db: psycopg.Connection
) -> None:
    lot = create_lot(http, quantity=100, printer_id=LOT_PRINTER)
    assert lot["label"]["printer_id"] == LOT_PRINTER and lot["label"]["status"] == "queued"
    [label] = printers["lot"].wait_barcodes([lot["lot_number"]], timeout=60)
    assert label["png"], label
    assert decode(printers["lot"].file(label["png"])) == [lot["lot_number"]]
    zpl = printers["lot"].file(label["file"]).decode()
    assert "Withforce" in zpl and "QTY 100" in zpl and lot["created_date"] in zpl


def test_tc_sn_001_002_003_start_at_st07_prints_100_serial_labels_in_order(
    line: Line, http: httpx.Client, printers: dict[str, EmulatedPrinter], db: psycopg.Connection
) -> None:
    lot = create_lot(http, printer_id=LOT_PRINTER)["lot_number"]
    advance(http, lot)
    started = line.start_via_gateway(lot, "PROC-007", "W007")
    assert started.status_code == 200, started.text
    data = started.json()["data"]
    expected = [f"{lot}-{n:04d}" for n in range(1, 101)]
    assert data["serial_numbers"] == expected
    assert data["printer_id"] == SERIAL_PRINTER  # the serial printer attached to the starting station
    serial = printers["serial"]
    labels = serial.wait_barcodes(expected, timeout=120)
    assert [entry["barcode"] for entry in labels] == expected  # in order, each once
    assert decode(serial.file(labels[41]["png"])) == [expected[41]]
    in_db = db.execute(
        "SELECT count(*) FROM serials s JOIN lots l ON l.id = s.lot_id WHERE l.lot_number = %s", (lot,)
    ).fetchone()
    assert in_db == (100,)


def _print_body(lot: dict[str, Any], printer_id: str) -> dict[str, Any]:
    return {
        "label_type": "LOT",
        "lot_number": lot["lot_number"],
        "product_model": lot["product_model"],
        "target_quantity": lot["target_quantity"],
        "created_date": lot["created_date"],
        "printer_id": printer_id,
    }


def test_label_print_through_the_gateway_success_and_paper_out(
    http: httpx.Client, printers: dict[str, EmulatedPrinter]
) -> None:
    lot = create_lot(http, quantity=20, printer_id=LOT_PRINTER)
    printer = printers["lot"]
    printer.wait_barcodes([lot["lot_number"]])
    ok = http.post("/api/v1/label/print", json=_print_body(lot, LOT_PRINTER), timeout=30)
    assert ok.status_code == 200, ok.text
    assert ok.json()["message"] == "라벨이 출력되었습니다." and ok.json()["data"]["printer_id"] == LOT_PRINTER
    assert printer.barcodes().count(lot["lot_number"]) == 2
    printer.set_state(PrinterState.PAPER_OUT)
    try:
        refused = http.post("/api/v1/label/print", json=_print_body(lot, LOT_PRINTER), timeout=30)
    finally:
        printer.set_state(PrinterState.READY)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error_code"] == "PRINTER_OUT_OF_PAPER"
    assert refused.json()["data"] == {"printer_id": LOT_PRINTER, "printer_status": "paper_out"}
    assert printer.barcodes().count(lot["lot_number"]) == 2


def test_gateway_stopped_print_times_out_as_printer_not_connected(
    http: httpx.Client,
    printers: dict[str, EmulatedPrinter],
    broker: MosquittoServer,
    tmp_path: Path,
    logs_dir: Path,
) -> None:
    port = find_free_port()
    env = {
        "MES_GW_STATION": LONE_STATION,
        "MES_GW_WORK_DIR": str(tmp_path / LONE_STATION),
        "MES_GW_MQTT_PORT": str(broker.port),
        "MES_GW_LOCAL_PORT": str(port),
    }
    gateway = ChildProcess(
        f"gateway-{LONE_STATION}",
        mes_command("gateway", "--station", LONE_STATION),
        env,
        logs_dir / f"gateway-{LONE_STATION}.log",
    ).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/status", 30, gateway)
        register(http, printers["lot"].printer_body(LONE_PRINTER, LONE_STATION, ["LOT"]))
        lot = create_lot(http, quantity=10, printer_id=LOT_PRINTER)
        ok = http.post("/api/v1/label/print", json=_print_body(lot, LONE_PRINTER), timeout=30)
        assert ok.status_code == 200, ok.text  # the station answers while its gateway runs
    finally:
        gateway.stop()
    refused = http.post("/api/v1/label/print", json=_print_body(lot, LONE_PRINTER), timeout=30)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error_code"] == "PRINTER_NOT_CONNECTED"
    assert refused.json()["data"] == {"printer_id": LONE_PRINTER, "printer_status": "offline"}
