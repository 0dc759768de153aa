"""GET /api/v1/measurements/trend and GET /api/v1/measurements against the suite's database (either flavour):
completions through the REST write path → measurements with their station → rollups → the API."""

from __future__ import annotations

import random
import statistics
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from line_simulator.payloads import completion_record
from mes_contracts.route import ROUTE
from tests.support.auth import RoleAuth
from tests.support.line import SEOUL, start_body

pytestmark = pytest.mark.plain_pg

# A day of its own (nothing else in the suite writes 2024-02-29), so the trend sees only this module's rows.
DAY = datetime(2024, 2, 29, 9, 0, tzinfo=SEOUL)


def _run_line(api_url: str, auth: RoleAuth, lots: int) -> list[str]:
    """LOTs through PROC-001…PROC-006 over the REST contracts, an hour apart; returns their numbers."""
    numbers = []
    with httpx.Client(base_url=api_url, auth=auth.operator, timeout=15) as client:
        for n in range(lots):
            lot = httpx.post(f"{api_url}/api/v1/lots", json={"shift": "D"}, auth=auth.manager, timeout=15)
            number = str(lot.json()["data"]["lot_number"])
            at = DAY + timedelta(hours=n)
            for step in ROUTE[:6]:
                started = client.post("/api/v1/process/start", json=start_body(number, step.process_id, "W001", at))
                assert started.status_code == 200, started.text
                record = completion_record(
                    step.process_id, number, "W001", at, at + timedelta(minutes=5), random.Random(n)
                )
                done = client.post("/api/v1/process/complete", json=record)
                assert done.status_code == 200, done.text
            numbers.append(number)
    return numbers


@pytest.fixture(scope="module")
def line_lots(api_url: str, auth: RoleAuth) -> list[str]:
    return _run_line(api_url, auth, 3)


def _get(api_url: str, auth: RoleAuth, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{api_url}{path}", params=params, auth=auth.viewer, timeout=15)


def test_trend_of_force_matches_the_stored_values(
    line_lots: list[str], api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    rows = db.execute(
        "SELECT m.test_point_id, m.value, m.station FROM measurements m JOIN lots l ON l.id = m.lot_id "
        "WHERE l.lot_number = ANY(%s) AND m.process_id = 'PROC-006' AND m.characteristic = 'force' "
        "AND m.value IS NOT NULL",
        (line_lots,),
    ).fetchall()
    assert rows and {r[2] for r in rows} == {"rest"}  # the writer fills the station (migration 0010)
    point = rows[0][0]
    values = [r[1] for r in rows if r[0] == point]
    window = {"from": (DAY - timedelta(hours=1)).isoformat(), "to": (DAY + timedelta(days=1)).isoformat()}
    answer = _get(
        api_url,
        auth,
        "/api/v1/measurements/trend",
        process_id="PROC-006",
        characteristic="force",
        test_point=point,
        bucket="day",
        **window,
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["source"] == "daily" and data["unit"] == "kgf" and data["bucket"] == "1d"
    [day] = data["points"]
    assert day["bucket"] == "2024-02-29T00:00:00+09:00"
    assert day["n"] == len(values) == 3
    assert day["mean"] == pytest.approx(statistics.fmean(values), abs=1e-6)
    assert day["stddev"] == pytest.approx(statistics.stdev(values), abs=1e-6)
    assert day["lsl"] is not None and day["usl"] > day["lsl"]
    assert data["spec"]["usl"] == day["usl"]
    hourly = _get(
        api_url,
        auth,
        "/api/v1/measurements/trend",
        process_id="PROC-006",
        characteristic="force",
        test_point=point,
        bucket="hour",
        station="rest",
        **window,
    ).json()["data"]
    assert [p["n"] for p in hourly["points"]] == [1, 1, 1]
    raw = _get(
        api_url,
        auth,
        "/api/v1/measurements/trend",
        process_id="PROC-006",
        characteristic="force",
        test_point=point,
        bucket="20m",
        **window,
    ).json()["data"]
    assert raw["source"] == "raw" and sum(p["n"] for p in raw["points"]) == 3
    elsewhere = _get(
        api_url,
        auth,
        "/api/v1/measurements/trend",
        process_id="PROC-006",
        characteristic="force",
        station="st99",
        **window,
    ).json()["data"]
    assert elsewhere["points"] == []


def test_trend_refuses_what_it_cannot_answer(api_url: str, auth: RoleAuth) -> None:
    base = {"process_id": "PROC-006", "characteristic": "force", "from": "2024-02-29T00:00:00+09:00"}
    for params in (
        {**base, "to": "2024-03-01T00:00:00+09:00", "bucket": "3 fortnights"},
        {**base, "to": "2024-02-28T00:00:00+09:00"},  # to before from
        {**base, "to": "2025-02-28T00:00:00+09:00", "bucket": "5m"},  # 100k buckets
        {**base, "to": "2024-03-01T00:00:00"},  # no offset
        {**base, "to": "2024-03-01T00:00:00+09:00", "testpoint": "T52_P200"},  # misspelt filter
        {**base, "from": "0001-01-01T00:00:00+00:00", "to": "0002-01-01T00:00:00+00:00", "bucket": "9999w"},
    ):
        answer = httpx.get(
            f"{api_url}/api/v1/measurements/trend", params=params, headers={"Accept-Language": "en"}, auth=auth.viewer
        )
        assert answer.status_code == 422, (params, answer.text)
        assert answer.json()["error_code"] == "INVALID_REQUEST"
        assert answer.json()["message"] == "Invalid request data" and answer.json()["data"]["errors"]
    anonymous = httpx.get(f"{api_url}/api/v1/measurements/trend", params={**base, "to": "2024-03-01T00:00:00+09:00"})
    assert anonymous.status_code == 401


def test_raw_measurements_of_a_lot_and_of_a_serial(
    line_lots: list[str], api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    lot = line_lots[0]
    answer = _get(api_url, auth, "/api/v1/measurements", lot=lot)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    stored = db.execute(
        "SELECT count(*) FROM measurements m JOIN lots l ON l.id = m.lot_id WHERE l.lot_number = %s", (lot,)
    ).fetchone()
    assert stored is not None and data["count"] == stored[0] > 0 and not data["truncated"]
    processes = {m["process_id"] for m in data["measurements"]}
    assert processes == {"PROC-003", "PROC-006"}
    first = data["measurements"][0]
    assert first["level"] == "lot" and first["station"] == "rest" and first["time"].endswith("+09:00")
    only = _get(api_url, auth, "/api/v1/measurements", lot=lot, process_id="PROC-003", limit=1).json()["data"]
    assert only["count"] == 1 and only["truncated"] and only["measurements"][0]["process_id"] == "PROC-003"
    # A serial sees its LOT's LOT-level values (no unit-level ones were recorded for it).
    db.execute(
        "INSERT INTO serials (serial_number, lot_id, sequence) SELECT %s, id, 1 FROM lots WHERE lot_number = %s",
        (f"{lot}-0001", lot),
    )
    db.commit()
    of_serial = _get(api_url, auth, "/api/v1/measurements", serial=f"{lot}-0001").json()["data"]
    assert of_serial["count"] == data["count"]
    missing = _get(api_url, auth, "/api/v1/measurements", serial=f"{lot}-0999")
    assert missing.status_code == 404 and missing.json()["error_code"] == "SERIAL_NOT_FOUND"
    both = _get(api_url, auth, "/api/v1/measurements", serial=f"{lot}-0001", lot=lot)
    assert both.status_code == 422
    unknown_lot = _get(api_url, auth, "/api/v1/measurements", lot="WF-KR-240229D-999")
    assert unknown_lot.status_code == 404 and unknown_lot.json()["error_code"] == "LOT_NOT_FOUND"
