"""TC-LOT-001/002/004/006 against the real API process and PostgreSQL."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import psycopg
import pytest

from tests.support.auth import RoleAuth
from tests.support.line import SEOUL

pytestmark = pytest.mark.plain_pg  # issue 14: also run on plain PostgreSQL (test.sh's second pass)

LOT_FORMAT = re.compile(r"^WF-KR-\d{6}[DN]-\d{3}$")


def _create(api_url: str, auth: RoleAuth, **body: object) -> httpx.Response:
    return httpx.post(f"{api_url}/api/v1/lots", json={"shift": "D", **body}, timeout=15, auth=auth.manager)


def test_tc_lot_001_created_lot_follows_format_and_is_stored(
    api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    response = _create(api_url, auth, target_quantity=100, product_model="WF-WAIST-01")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "success" and body["message"] == "LOT이 생성되었습니다"
    number = body["data"]["lot_number"]
    assert LOT_FORMAT.match(number)
    today = datetime.now(SEOUL)
    if today.hour >= 8:  # day shift numbers carry the production day
        assert number[6:12] == today.strftime("%y%m%d")
    row = db.execute("SELECT status, target_quantity, shift FROM lots WHERE lot_number = %s", (number,)).fetchone()
    assert row == ("CREATED", 100, "D")
    history = db.execute(
        "SELECT from_status, to_status FROM lot_status_history h JOIN lots l ON l.id = h.lot_id "
        "WHERE l.lot_number = %s",
        (number,),
    ).fetchall()
    assert history == [(None, "CREATED")]


def test_tc_lot_002_sequence_increments_within_the_day(api_url: str, auth: RoleAuth) -> None:
    numbers = [_create(api_url, auth).json()["data"]["lot_number"] for _ in range(3)]
    sequences = [int(n[-3:]) for n in numbers]
    assert sequences == [sequences[0], sequences[0] + 1, sequences[0] + 2]
    assert len({n[:-4] for n in numbers}) == 1


def test_lot_numbers_are_distinct_and_gap_free_under_50_parallel_creations(api_url: str, auth: RoleAuth) -> None:
    with ThreadPoolExecutor(max_workers=25) as pool:
        responses = list(pool.map(lambda _: _create(api_url, auth, shift="N"), range(50)))
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses if r.status_code != 201]
    numbers = [r.json()["data"]["lot_number"] for r in responses]
    assert len(set(numbers)) == 50
    sequences = sorted(int(n[-3:]) for n in numbers)
    assert sequences == list(range(sequences[0], sequences[0] + 50))


def test_tc_lot_004_duplicate_lot_number_is_refused(api_url: str, auth: RoleAuth, db: psycopg.Connection) -> None:
    first = _create(api_url, auth, lot_number="WF-KR-240101D-007")
    assert first.status_code == 201
    again = _create(api_url, auth, lot_number="WF-KR-240101D-007")
    assert again.status_code == 409
    assert again.json()["error_code"] == "DUPLICATE_LOT"
    assert again.json()["status"] == "error"
    count = db.execute("SELECT count(*) FROM lots WHERE lot_number = 'WF-KR-240101D-007'").fetchone()
    assert count == (1,)
    # The day's counter moved past the explicit number, so the next issued number cannot collide.
    seq = db.execute("SELECT last_value FROM lot_number_sequences WHERE production_date = '2024-01-01'").fetchone()
    assert seq == (7,)


def test_bad_lot_requests_get_spec_errors(api_url: str, auth: RoleAuth) -> None:
    bad_shift = _create(api_url, auth, shift="X")
    assert bad_shift.status_code == 422 and bad_shift.json()["error_code"] == "INVALID_REQUEST"
    bad_model = _create(api_url, auth, product_model="NOPE")
    assert bad_model.status_code == 404 and bad_model.json()["error_code"] == "PRODUCT_MODEL_NOT_FOUND"
    bad_number = _create(api_url, auth, lot_number="LOT-1")
    assert bad_number.status_code == 422 and bad_number.json()["error_code"] == "INVALID_REQUEST"
    zero = _create(api_url, auth, target_quantity=0)
    assert zero.status_code == 422


def test_tc_lot_006_lookup_shows_basics_and_every_process(api_url: str, auth: RoleAuth) -> None:
    number = _create(api_url, auth, target_quantity=80).json()["data"]["lot_number"]
    response = httpx.get(f"{api_url}/api/v1/lots/{number}", timeout=10, auth=auth.viewer)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["lot_number"] == number and data["target_quantity"] == 80 and data["status"] == "CREATED"
    assert [p["process_id"] for p in data["processes"]] == [f"PROC-00{i}" for i in range(1, 9)]
    assert data["processes"][2]["process_name"] == "센서 검사"
    assert all(p["status"] == "NOT_STARTED" for p in data["processes"])
    assert data["current_process"] == "PROC-001" and data["progress"]["percent"] == 0
    missing = httpx.get(f"{api_url}/api/v1/lots/WF-KR-000101D-001", timeout=10, auth=auth.viewer)
    assert missing.status_code == 404 and missing.json()["error_code"] == "LOT_NOT_FOUND"
    english = httpx.get(
        f"{api_url}/api/v1/lots/{number}", headers={"Accept-Language": "en"}, timeout=10, auth=auth.viewer
    )
    assert english.json()["data"]["processes"][2]["process_name"] == "Sensor test"


def test_console_page_is_served(api_url: str) -> None:
    page = httpx.get(f"{api_url}/", follow_redirects=True, timeout=10)
    assert page.status_code == 200 and '<script src="/console/static/lots.js">' in page.text
    # The page is a shell; its texts and calls are in the scripts it names (tests/test_console_browser.py drives it).
    texts = httpx.get(f"{api_url}/console/static/i18n.js", timeout=10)
    lots = httpx.get(f"{api_url}/console/static/lots.js", timeout=10)
    assert texts.status_code == lots.status_code == 200
    assert "LOT 생성" in texts.text and "/api/v1/lots" in lots.text
