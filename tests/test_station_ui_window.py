"""The station window for real: Tk under Xvfb, driven by key events as a barcode scanner types, against real
gateways, the broker, the ingestor, the API and PostgreSQL. Screenshots of each state go to docs/screenshots/.

A scan starts a process (green, work order); an out-of-order scan is red with the required action; a file the
centre refused appears in the error list with its Korean log, and the operator's retry sends the fixed file;
killing the broker shows the offline banner within 5 s, and it clears when the broker is back.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt import publish

from deploy.localstack.children import ChildProcess, mes_command
from deploy.localstack.service_state import wait_service_online
from deploy.localstack.services import MosquittoServer, find_free_port
from edge_gateway.printing.queue_store import PrintQueueStore
from line_simulator.payloads import completion_record
from mes_contracts.alerts import AlertKind, AlertMessage, alert_topic
from mes_contracts.labels import PrinterConfig
from mes_contracts.topics import StationAddress
from station_ui.config import StationConfig
from station_ui.dialogs import ReprintDialog
from tests.support.auth import RoleAuth
from tests.support.faults import Gateway
from tests.support.line import SEOUL, Line, Station
from tests.support.print_centre import make_job
from tests.support.stations import allow_processes
from tests.support.xvfb import pump_until, screenshot, type_like_scanner, xvfb_missing

pytestmark = pytest.mark.skipif(xvfb_missing() is not None, reason=xvfb_missing() or "")

SHOTS = Path(os.environ.get("MES_SCREENSHOT_DIR") or Path(__file__).resolve().parents[1] / "docs" / "screenshots")
BANNER_TEXT = "서버 연결 끊김 — 완공 파일은 보관 후 자동 전송됩니다"


@pytest.fixture
def display(x_display: str) -> str:
    return x_display  # the session's one Xvfb (tests/support/xvfb.py says why one)


# Every window this module opens stays referenced until the interpreter exits. A closed Tk root left to the cyclic
# garbage collector is freed in whichever thread happens to collect, e.g. a later window's gateway-client thread, and
# Tcl aborts the whole process when its interpreter is deleted outside the thread that made it ("Tcl_AsyncDelete:
# async handler deleted by the wrong thread"; seen in CI after a failed test's traceback kept a window alive). The
# station window itself runs one window per process (`mes station-ui --all` starts one process per station).
_NEVER_COLLECTED: list[object] = []


@pytest.fixture
def open_window(display: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str, str], object]]:
    monkeypatch.setenv("DISPLAY", display)
    from station_ui.app import StationWindow  # Tk only with the display set

    opened: list[StationWindow] = []

    def opener(station: str, process_id: str, url: str) -> StationWindow:
        config = StationConfig(station=station, process_id=process_id, gateway_url=url, screen="1280x1024", poll_ms=300)
        window = StationWindow(config)
        window.start()
        opened.append(window)
        _NEVER_COLLECTED.append(window)
        pump_until(window.root, lambda: window.summaries > 0, 15, "the first summary from the gateway")
        return window

    yield opener
    for window in opened:
        window.close()


def _complete(line: Line, lot: str, process_id: str, rng: random.Random) -> None:
    started = line.start_via_gateway(lot, process_id, "W001")
    assert started.status_code == 200, started.text
    end = datetime.now(SEOUL).replace(microsecond=0)
    name = line.drop_record(completion_record(process_id, lot, "W001", end - timedelta(minutes=2), end, rng))
    assert line.wait_disposition(process_id, name) == "completed"


def _publish_alert(port: int, address: StationAddress) -> None:
    now = datetime.now(SEOUL)
    alert = AlertMessage(
        message_id=uuid.uuid4(),
        alert_id=1,
        kind=AlertKind.NELSON,
        rule=1,
        process_id="PROC-005",
        characteristic="assembly_torque",
        lot_number="WF-KR-251110D-001",
        point_time=now,
        raised_at=now,
        message_ko="관리한계(3σ) 밖의 점",
        message_en="point beyond 3 sigma",
    )
    publish.single(alert_topic(address), alert.to_bytes(), qos=1, hostname="127.0.0.1", port=port, protocol=mqtt.MQTTv5)


def _reprinted(window: object, count: int) -> Callable[[], bool]:
    return lambda: window.reprints >= count  # type: ignore[attr-defined]


def _answered(window: object, count: int) -> Callable[[], bool]:
    return lambda: window.answers >= count  # type: ignore[attr-defined]


def _starts_today(window: object) -> int:
    found = re.search(r"착공 (\d+)", window.status_panel.today.cget("text"))  # type: ignore[attr-defined]
    assert found, window.status_panel.today.cget("text")  # type: ignore[attr-defined]
    return int(found.group(1))


def test_scans_start_green_and_refuse_red_with_the_required_action(line: Line, open_window: Callable) -> None:
    station: Station = line.stations["PROC-003"]
    lot = line.create_lot()
    window = open_window(station.station_id, "PROC-003", station.gateway_url)
    assert window.root.focus_get() is window.entry  # the scan field has the focus without a click
    starts_before = _starts_today(window)  # the station's gateway also served earlier tests today
    type_like_scanner(window.root, "W003")
    assert window.worker == "W003" and window.verdict.tone == "info"
    type_like_scanner(window.root, lot)
    pump_until(window.root, _answered(window, 1), 30, "the answer to the out-of-order scan")
    assert window.verdict.tone == "danger" and window.answer.tone == "danger"
    assert window.verdict.headline == "이전 공정이 완료되지 않았습니다"
    assert window.verdict.detail == "LMA 조립 공정을 먼저 완료해주세요"
    assert window.answer.detail.cget("text") == "LMA 조립 공정을 먼저 완료해주세요"
    assert window.beeps[-1] == "error"
    screenshot(os.environ["DISPLAY"], window.root, SHOTS / "station-refused.png")

    rng = random.Random(15)
    _complete(line, lot, "PROC-001", rng)
    _complete(line, lot, "PROC-002", rng)
    assert window.root.focus_get() is window.entry
    scanned = time.monotonic()
    type_like_scanner(window.root, lot)
    pump_until(window.root, _answered(window, 2), 30, "the answer to the scan in order")
    print(f"scan → green answer on screen: {time.monotonic() - scanned:.3f} s")
    assert window.verdict.tone == "success" and window.verdict.headline == "착공이 등록되었습니다"
    assert "WO-" in window.verdict.detail and lot in window.verdict.detail
    assert window.beeps[-1] == "ok"
    pump_until(window.root, lambda: lot in window.status_panel.current.cget("text"), 10, "the current LOT shown")
    pump_until(window.root, lambda: _starts_today(window) == starts_before + 1, 10, "today's starts + 1")
    screenshot(os.environ["DISPLAY"], window.root, SHOTS / "station-started.png")
    window.lang_button.invoke()  # English, switched with one touch; the same answer is shown in English
    assert window.answer.headline.cget("text") == "Process start registered" and window.beeps[-1] == "ok"
    assert window.title.cget("text").startswith("Station st03 — PROC-003 ")
    window.theme_button.invoke()  # dark theme; green still means started
    window.root.update()
    assert window.answer.cget("bg") == window.answer.headline.cget("bg") == "#198754"
    screenshot(os.environ["DISPLAY"], window.root, SHOTS / "station-started-en-dark.png")


def test_a_refused_file_shows_in_the_error_list_and_the_retry_sends_it_after_the_fix(
    line: Line, open_window: Callable
) -> None:
    station: Station = line.stations["PROC-003"]
    lot = line.create_lot()
    rng = random.Random(16)
    _complete(line, lot, "PROC-001", rng)
    _complete(line, lot, "PROC-002", rng)
    assert line.start_via_gateway(lot, "PROC-003", "W003").status_code == 200
    window = open_window(station.station_id, "PROC-003", station.gateway_url)
    end = datetime.now(SEOUL).replace(microsecond=0)
    record = completion_record("PROC-003", lot, "W003", end - timedelta(minutes=2), end, rng)
    bad = {**record, "worker_id": "W999"}  # a worker who left: the centre refuses the completion
    name = line.drop_record(bad)
    assert line.wait_disposition("PROC-003", name) == "error"
    pump_until(window.root, lambda: window.errors.errors.exists(name), 15, f"{name} in the error list")
    window.errors.errors.selection_set(name)
    pump_until(window.root, lambda: "error_code:" in window.errors.log.get("1.0", "end"), 5, "the error log shown")
    log = window.errors.log.get("1.0", "end")
    assert "작업자 ID가 존재하지 않습니다" in log or "WORKER" in log, log
    screenshot(os.environ["DISPLAY"], window.root, SHOTS / "station-error-file.png")

    fixed = json.dumps({**record, "worker_id": "W003"}, ensure_ascii=False)
    (station.error / name).write_text(fixed, encoding="utf-8")  # the operator corrects the worker id
    window.errors.retry.invoke()  # the big button, as a touch would
    pump_until(window.root, lambda: window.verdict.tone == "success", 10, "the retry confirmed")
    assert line.wait_disposition("PROC-003", name) == "completed"
    pump_until(window.root, lambda: window.files.completed.exists(name), 15, f"{name} in the completed list")
    assert not window.errors.errors.exists(name)
    entries = [json.loads(x) for x in (station.work_dir / "retries.log").read_text().splitlines()]
    assert entries[-1]["file"] == name and entries[-1]["previous_error_code"]
    assert line.lot(lot)["progress"]["completed_processes"] == 3


def test_killing_the_broker_shows_the_offline_banner_within_5_s_and_it_clears(
    central_env: dict[str, str], open_window: Callable, tmp_path: Path
) -> None:
    broker = MosquittoServer(tmp_path / "mosquitto", port=find_free_port())
    broker.start()
    env = {**central_env, "MES_MQTT_PORT": str(broker.port), "MES_INGESTOR_CLIENT_ID": "ingestor-station-ui"}
    ingestor = ChildProcess("ingestor-ui", mes_command("ingest"), env, tmp_path / "ingestor.log").start()
    gateway = Gateway("st05", tmp_path / "st05", broker.port, tmp_path / "gateway.log")
    try:
        wait_service_online(broker.port, "ingestor-station-ui")
        gateway.start()
        window = open_window("st05", "PROC-005", gateway.url)
        pump_until(window.root, lambda: window.model is not None and window.model.banner is None, 20, "online")
        assert window.status_panel.connection.cget("text") == "● 서버 연결됨"
        _publish_alert(broker.port, StationAddress("KR", "L1", "st05"))  # as the centre's alert watch does
        pump_until(window.root, lambda: any("SPC 규칙 1" in x for x in window.alerts.texts()), 10, "the SPC alert")
        killed = time.monotonic()
        broker.kill()
        pump_until(window.root, lambda: window.banner.visible, 5, "the offline banner within 5 s of the kill")
        shown_after = time.monotonic() - killed
        assert window.banner.text.cget("text") == f"⚠ {BANNER_TEXT}" and window.banner.winfo_ismapped()
        screenshot(os.environ["DISPLAY"], window.root, SHOTS / "station-offline.png")
        broker.start()
        pump_until(window.root, lambda: not window.banner.visible, 40, "the banner gone after the broker is back")
        assert not window.banner.winfo_ismapped()
        print(f"offline banner shown {shown_after:.2f} s after the broker was killed")
    finally:
        gateway.stop()
        ingestor.stop()
        broker.stop()


def test_proc_007_serial_labels_printer_alert_and_the_reprint_relayed_to_the_centre(
    broker: MosquittoServer, api_url: str, api_users: dict, open_window: Callable, tmp_path: Path
) -> None:
    from cloud_api.domain.access import Role

    work = tmp_path / "st97"
    closed_port = find_free_port()  # nothing listens: the printer is offline and the labels wait
    printer = PrinterConfig(
        printer_id="PRINTER-97", station="st97", transport="tcp", host="127.0.0.1", port=closed_port
    )
    store = PrintQueueStore(work / "print_queue.sqlite3")
    try:
        for unit in (1, 2, 3):
            store.accept(make_job(printer, f"WF-KR-251110D-097-{unit:04d}"), time.time())
    finally:
        store.close()
    gateway = Gateway("st97", work, broker.port, tmp_path / "gateway.log", {"MES_GW_API_BASE_URL": api_url})
    try:
        gateway.start()
        window = open_window("st97", "PROC-007", gateway.url)
        pump_until(window.root, lambda: len(window.serials.tree.get_children()) == 3, 15, "three serial labels")
        pump_until(window.root, lambda: any("PRINTER-97" in x for x in window.alerts.texts()), 20, "printer alert")
        assert window.serials.tree.item("WF-KR-251110D-097-0001", "values")[1].startswith("대기")
        screenshot(os.environ["DISPLAY"], window.root, SHOTS / "station-serials.png")

        operator = api_users[Role.OPERATOR]
        window.serials.tree.selection_set("WF-KR-251110D-097-0001")
        for password, answers in (("wrong-password", 1), (operator.password, 2)):
            window.reprint_selected()  # the big button
            dialog = next(w for w in window.root.winfo_children() if isinstance(w, ReprintDialog))
            dialog.reason.set("라벨 훼손")
            dialog.worker.delete(0, "end")
            dialog.worker.insert(0, "W007")
            dialog.password.insert(0, password)
            dialog.username.delete(0, "end")
            dialog.username.insert(0, operator.username)  # the operator's account (the worker's own, usually)
            dialog.submit()
            pump_until(window.root, _reprinted(window, answers), 30, "the reprint answer")
            assert window.verdict.tone == "danger"
        # The second sign-in worked: the centre itself answered about the serial, not about the password.
        assert "아이디 또는 비밀번호" not in window.verdict.headline
        assert window.last_reprint_status in (404, 422), window.verdict
    finally:
        gateway.stop()


def test_proc_004_tells_the_operator_the_firmware_download_failed_three_times(
    broker: MosquittoServer,
    api_url: str,
    auth: RoleAuth,
    ingestor: object,
    db: psycopg.Connection,
    open_window: Callable,
    tmp_path: Path,
) -> None:
    from tests.test_firmware_api import firmware_bytes, lot_ready_for_proc_004, new_version, upload

    version = new_version()
    # Only the default MCU's active version goes out with a PROC-004 start: ours replaces it for this test only.
    before = [row[0] for row in db.execute("SELECT version FROM firmware_versions WHERE active").fetchall()]
    with httpx.Client(base_url=api_url, timeout=15, auth=auth.admin) as admin:
        assert upload(admin, version, firmware_bytes(4096)).status_code == 201
        assert admin.post(f"/api/v1/firmware/{version}/activate").status_code == 200
        lot = lot_ready_for_proc_004(admin)
    allow_processes(db, "st94", ["PROC-004"])
    unreachable = f"http://127.0.0.1:{find_free_port()}"  # the download server is away: every attempt fails
    env = {"MES_GW_API_BASE_URL": unreachable, "MES_GW_FIRMWARE_TOKEN": "station-token"}
    gateway = Gateway("st94", tmp_path / "st94", broker.port, tmp_path / "gateway.log", env)
    try:
        gateway.start()
        window = open_window("st94", "PROC-004", gateway.url)
        assert window.firmware.texts() == ["펌웨어 정보 없음 (firmware_meta.json 없음)"]
        type_like_scanner(window.root, "W004")
        type_like_scanner(window.root, lot)
        pump_until(window.root, _answered(window, 1), 40, "the PROC-004 start answer after the downloads")
        assert window.verdict.tone == "warning" and window.verdict.headline == "착공이 등록되었습니다"
        assert (
            f"펌웨어 {version} 다운로드에 실패했습니다" in window.verdict.detail and "3회 시도" in window.verdict.detail
        )
        pump_until(
            window.root,
            lambda: "펌웨어 다운로드 3회 실패" in " ".join(window.firmware.texts()),
            10,
            "the 3-failures line",
        )
        assert window.firmware.texts()[0] == f"버전 {version} · 상태 오류 · 재시도 2"
        screenshot(os.environ["DISPLAY"], window.root, SHOTS / "station-firmware.png")
    finally:
        gateway.stop()
        db.execute(
            "UPDATE firmware_versions SET active = (version = ANY(%s)) WHERE active OR version = ANY(%s)",
            (before, before),
        )
