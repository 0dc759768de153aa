"""The station window's reprint that works (FR-SN-003, TC-SN-004), for real: Tk under Xvfb, a real gateway, the
emulated printer on a real socket, the broker, the ingestor, the API and PostgreSQL.

PROC-007 prints a LOT's serial labels through the station's gateway; the operator picks one printed serial in the
window, signs in in the reprint dialog, and the window says it was reprinted (Korean by default) while the centre
records the reprint (label_reprints, a reprint print job, the audit trail) and the printer prints the label again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from deploy.localstack.children import ChildProcess
from deploy.localstack.services import MosquittoServer
from mes_contracts.labels import PrinterState
from station_ui.config import StationConfig
from station_ui.dialogs import ReprintDialog
from tests.support.auth import ApiUser, RoleAuth
from tests.support.faults import Gateway
from tests.support.line import start_body
from tests.support.printers import EmulatedPrinter, advance, create_lot, deactivate, register
from tests.support.xvfb import pump_until, xvfb_missing

pytestmark = pytest.mark.skipif(xvfb_missing() is not None, reason=xvfb_missing() or "")

STATION = "st89"
PRINTER = "UI-REPRINT-89"
# Kept referenced until the interpreter exits: a Tk root collected in another thread aborts Tcl
# (tests/test_station_ui_window.py, _NEVER_COLLECTED).
_NEVER_COLLECTED: list[object] = []


@pytest.fixture
def display(x_display: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DISPLAY", x_display)  # the session's one Xvfb (tests/support/xvfb.py says why one)
    return x_display


@pytest.fixture
def printed(
    api_url: str, auth: RoleAuth, ingestor: ChildProcess, broker: MosquittoServer, tmp_path: Path, logs_dir: Path
) -> Iterator[tuple[Gateway, EmulatedPrinter, dict[str, Any]]]:
    """The station's gateway and printer, and a LOT of 2 whose serial labels PROC-007 printed through them."""
    emulator = EmulatedPrinter("ui-reprint", tmp_path / "printer", logs_dir).start()
    gateway = Gateway(STATION, tmp_path / STATION, broker.port, logs_dir / "gateway-ui-reprint.log")
    gateway.extra_env["MES_GW_API_BASE_URL"] = api_url
    with httpx.Client(base_url=api_url, auth=auth.admin, timeout=30) as http:
        try:
            register(http, emulator.printer_body(PRINTER, STATION, ["SERIAL"]))
            emulator.set_state(PrinterState.READY)
            gateway.start()
            lot = create_lot(http, quantity=2)
            advance(http, lot["lot_number"])
            body = {**start_body(lot["lot_number"], "PROC-007", "W007"), "printer_id": PRINTER}
            started = http.post("/api/v1/process/start", json=body)
            assert started.status_code == 200, started.text
            serials = started.json()["data"]["serial_numbers"]
            emulator.wait_barcodes(serials, 30)
            yield gateway, emulator, {**lot, "serials": serials}
        finally:
            deactivate(http, PRINTER)  # later modules' starts must not queue labels on it
            gateway.stop()
            emulator.stop()


def test_an_operator_reprints_a_printed_serial_from_the_window(
    display: str,
    printed: tuple[Gateway, EmulatedPrinter, dict[str, Any]],
    api_users: dict[Any, ApiUser],
    db: psycopg.Connection,
) -> None:
    from cloud_api.domain.access import Role
    from station_ui.app import StationWindow  # Tk only with the display set

    gateway, emulator, lot = printed
    serial = lot["serials"][0]
    config = StationConfig(
        station=STATION, process_id="PROC-007", gateway_url=gateway.url, screen="1280x1024", poll_ms=300
    )
    window = StationWindow(config)
    _NEVER_COLLECTED.append(window)
    window.start()
    try:
        pump_until(
            window.root, lambda: window.serials.tree.exists(serial) and _printed(window, serial), 20, "printed serial"
        )
        window.serials.tree.selection_set(serial)
        window.reprint_selected()  # the big button
        dialog = next(w for w in window.root.winfo_children() if isinstance(w, ReprintDialog))
        operator = api_users[Role.OPERATOR]
        dialog.reason.set("라벨 훼손")
        dialog.worker.delete(0, "end")
        dialog.worker.insert(0, "W007")
        dialog.username.delete(0, "end")
        dialog.username.insert(0, operator.username)
        dialog.password.insert(0, operator.password)
        dialog.submit()
        pump_until(window.root, lambda: window.reprints >= 1, 30, "the reprint answer")

        assert window.reprints == 1 and window.last_reprint_status == 200, window.verdict
        assert window.verdict.tone == "success"
        assert window.verdict.headline == f"{serial} 라벨을 재출력했습니다"
    finally:
        window.close()
    recorded = db.execute(
        "SELECT reason, worker_id, requested_by, status FROM label_reprints WHERE label_key = %s", (serial,)
    ).fetchall()
    assert recorded == [("라벨 훼손", "W007", operator.username, "printed")]
    jobs = db.execute(
        "SELECT reprint, status FROM label_print_jobs WHERE label_key = %s ORDER BY queue_seq", (serial,)
    ).fetchall()
    assert jobs == [(False, "printed"), (True, "printed")]
    assert db.execute(
        "SELECT actor, reason FROM audit_log WHERE action = 'label.reprint' AND entity_key = %s", (serial,)
    ).fetchall() == [(operator.username, "라벨 훼손")]
    assert emulator.barcodes().count(serial) == 2  # the label really came out again


def _printed(window: Any, serial: str) -> bool:
    return str(window.serials.tree.item(serial, "values")[1]).startswith("출력 완료")
