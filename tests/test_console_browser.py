"""The console in a real browser (Debian's Chromium + Selenium, headless) against the real stack (issue 13, point 5).

Log in, create a LOT, watch the today board change when a completion file lands (live, no reload), trace the LOT
and a serial, search a recall and export its CSV, list defects, switch to English. Each page is saved as
docs/screenshots/console-*.png (shown in the README).
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud_api.domain.access import Role
from line_simulator.payloads import completion_record
from mes_contracts.route import ROUTE
from tests.support import browser
from tests.support.auth import ApiUser
from tests.support.line import SEOUL, Line

pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing())),
]

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def _complete(line: Line, lot: str, process_id: str, fail: bool = False, **overrides: Any) -> None:
    end = datetime.now(SEOUL).replace(microsecond=0)
    record = completion_record(
        process_id, lot, "W001", end - timedelta(minutes=5), end, random.Random(13), fail=fail, **overrides
    )
    stamp = datetime.now(SEOUL) + timedelta(seconds=random.randint(1, 10**6))
    name = line.drop_record(record, stamp=stamp)
    assert line.wait_disposition(process_id, name) == "completed"


def _run(line: Line, lot: str, process_id: str, **overrides: Any) -> None:
    response = line.start_via_gateway(lot, process_id)
    assert response.status_code == 200, response.text
    _complete(line, lot, process_id, **overrides)


def _shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"console-{name}.png"))


def _text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def _go(driver: Any, fragment: str) -> None:
    driver.execute_script("location.hash = arguments[0]", fragment)


def test_the_managers_console_in_chromium(
    line: Line, api_url: str, api_users: dict[Role, ApiUser], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    manager = api_users[Role.MANAGER]
    spring = f"SPR-H3-{random.randint(10**5, 10**6 - 1)}"
    with browser.chromium(download_dir=tmp_path) as driver:
        driver.get(f"{api_url}/console")
        driver.find_element(By.NAME, "username").send_keys(manager.username)
        driver.find_element(By.NAME, "password").send_keys(manager.password)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        browser.wait_for(lambda: _text(driver, "cardCompleted"), what="the today board")
        browser.wait_for(lambda: "on" in driver.find_element(By.ID, "live").get_attribute("class"), what="live link")

        # Create a LOT from the LOT page.
        _go(driver, "lots")
        browser.wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#models option"), what="product models")
        driver.find_element(By.CSS_SELECTOR, "#createLot input[name=target_quantity]").clear()
        driver.find_element(By.CSS_SELECTOR, "#createLot input[name=target_quantity]").send_keys("5")
        driver.find_element(By.CSS_SELECTOR, "#createLot button").click()
        message = browser.wait_for(lambda: re.search(r"WF-KR-\d{6}[DN]-\d{3}", _text(driver, "message")), what="LOT")
        lot = message.group(0)
        browser.wait_for(lambda: lot in _text(driver, "lotList"), what="the new LOT in the list")
        _shot(driver, "lots")

        # The board changes, without a reload, when a completion file lands at a station.
        _go(driver, "board")
        browser.wait_for(lambda: lot in _text(driver, "boardLots"), what="the LOT on the board")
        marker = driver.execute_script("window.__notReloaded = 1; return document.body.dataset.liveEvents || '0'")
        completed = int(_text(driver, "cardCompleted"))
        _run(line, lot, "PROC-001")
        # TC-DASH-003: visible within 5 s (counted from the file's disposition, after the commit).
        browser.wait_for(lambda: int(_text(driver, "cardCompleted")) > completed, timeout=5, what="board update")
        assert driver.execute_script("return window.__notReloaded") == 1
        assert int(driver.execute_script("return document.body.dataset.liveEvents")) > int(marker)
        _run(line, lot, "PROC-002", process_data={"sma_spring_lot": spring})
        _run(line, lot, "PROC-003", fail=True)  # a defect with its cause
        assert line.start_via_gateway(lot, "PROC-004").status_code == 200
        browser.wait_for(lambda: "펌웨어 업로드" in _text(driver, "boardLots"), what="the LOT's current process")
        _shot(driver, "board")
        _complete(line, lot, "PROC-004")
        for step in ROUTE[4:]:
            _run(line, lot, step.process_id)
        browser.wait_for(lambda: lot not in _text(driver, "boardLots"), what="the finished LOT leaves the board")

        # LOT trace and serial trace.
        _go(driver, f"lot/{lot}")
        browser.wait_for(lambda: lot in _text(driver, "lotTitle") and "COMPLETED" in _text(driver, "lotTitle"))
        serial = browser.wait_for(lambda: re.search(rf"{lot}-\d{{4}}", _text(driver, "lotSerials")), what="serials")
        _shot(driver, "lot")
        _go(driver, f"serial/{serial.group(0)}")
        browser.wait_for(lambda: serial.group(0) in _text(driver, "serialTitle"), what="the serial trace")
        processes = _text(driver, "serialProcesses")
        assert all(step.name_ko in processes for step in ROUTE) and "FAIL" in processes
        _shot(driver, "serial")

        # Recall: the spring lot leads back to this LOT; export the CSV.
        _go(driver, f"recall/sma_spring:{spring}")
        browser.wait_for(lambda: lot in _text(driver, "recallBody"), what="the recall answer")
        _shot(driver, "recall")
        driver.find_element(By.ID, "recallCsv").click()
        csv = browser.wait_for(lambda: [p for p in tmp_path.glob("*.csv")], what="the CSV download")[0]
        browser.wait_for(lambda: lot in csv.read_text(encoding="utf-8-sig"), what="the LOT in the CSV")

        _go(driver, "defects")
        browser.wait_for(lambda: lot in _text(driver, "defectBody"), what="the defect list")
        _shot(driver, "defects")
        _go(driver, f"labels/SERIAL:{serial.group(0)}")
        browser.wait_for(lambda: driver.find_elements(By.ID, "labelHistory"), what="the label page")
        _shot(driver, "labels")

        # English on demand.
        driver.find_element(By.CSS_SELECTOR, "#lang option[value=en]").click()
        _go(driver, "board")
        browser.wait_for(lambda: "Today" in driver.find_element(By.ID, "nav").text, what="English")
        browser.wait_for(lambda: "Laser marking" in _text(driver, "boardBody"), what="English process names")
        _shot(driver, "board-en")
