"""GET /api/v1/samples: a serial's (or a LOT's) curve from measurement_samples, whole or downsampled (LTTB,
min/max) so a 10,000-point PROC-006 curve loads at once. Against the suite's database (either flavour)."""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from deploy.localstack.postgres import PostgresServer
from tests.support.auth import RoleAuth

pytestmark = pytest.mark.plain_pg

T0 = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
N = 10_000
SPIKE = 3_333


@pytest.fixture(scope="module")
def curve(api_url: str, auth: RoleAuth, postgres: PostgresServer) -> tuple[str, str]:
    """A LOT, one serial, and its 10 s force curve at 1 kHz (with a one-sample spike); a LOT-level temperature
    curve. Rows as the sample writer (adapters/samples_copy.py) stores them: one message, seq = position."""
    lot = str(httpx.post(f"{api_url}/api/v1/lots", json={"shift": "D"}, auth=auth.manager).json()["data"]["lot_number"])
    serial = f"{lot}-0001"
    with psycopg.connect(postgres.dsn) as conn:
        conn.execute(
            "INSERT INTO serials (serial_number, lot_id, sequence) SELECT %s, id, 1 FROM lots WHERE lot_number = %s",
            (serial, lot),
        )
        conn.execute(
            "INSERT INTO measurement_samples (time, lot_id, serial_id, process_id, station, test_point_id, channel, "
            "value, unit, message_id, seq) "
            "SELECT %(t0)s + i * interval '1 millisecond', s.lot_id, s.id, 'PROC-006', 'st06', 'T52_P200', 'force', "
            "20 * (1 - exp(-i / 2000.0)) + CASE WHEN i = %(spike)s THEN 8 ELSE 0 END, 'kgf', %(m)s, i "
            "FROM generate_series(0, %(n)s - 1) AS i, serials s WHERE s.serial_number = %(serial)s",
            {"t0": T0, "spike": SPIKE, "m": uuid.uuid4(), "n": N, "serial": serial},
        )
        conn.execute(
            "INSERT INTO measurement_samples (time, lot_id, serial_id, process_id, station, channel, value, unit, "
            "message_id, seq) SELECT %(t0)s + i * interval '1 second', l.id, NULL, 'PROC-003', 'st03', 'temperature', "
            "60 + i / 100.0, '°C', %(m)s, i FROM generate_series(0, 99) AS i, lots l WHERE l.lot_number = %(lot)s",
            {"t0": T0, "m": uuid.uuid4(), "lot": lot},
        )
    return lot, serial


def _samples(api_url: str, auth: RoleAuth, **params: str | int) -> httpx.Response:
    return httpx.get(f"{api_url}/api/v1/samples", params=params, auth=auth.viewer, timeout=15)


def test_whole_curve_in_time_order(curve: tuple[str, str], api_url: str, auth: RoleAuth) -> None:
    _, serial = curve
    data = _samples(api_url, auth, serial=serial, process_id="PROC-006", channel="force").json()["data"]
    assert data["samples"] == data["count"] == N and data["method"] is None
    assert data["unit"] == "kgf" and data["t0"] == "2026-12-05T10:00:00+09:00"
    assert data["t"][:3] == [0.0, 0.001, 0.002] and data["t"][-1] == pytest.approx(9.999)
    assert data["v"][SPIKE] == pytest.approx(20 * (1 - math.exp(-SPIKE / 2000)) + 8)


@pytest.mark.parametrize("method", ["lttb", "minmax"])
def test_downsampled_curve_keeps_its_shape_and_loads_at_once(
    curve: tuple[str, str], api_url: str, auth: RoleAuth, method: str
) -> None:
    _, serial = curve
    started = time.perf_counter()
    answer = _samples(api_url, auth, serial=serial, process_id="PROC-006", channel="force", points=500, method=method)
    elapsed = time.perf_counter() - started
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["samples"] == N and data["method"] == method and data["count"] <= 500
    assert data["t"][0] == 0.0 and data["t"][-1] == pytest.approx(9.999)
    assert data["t"] == sorted(data["t"])
    assert max(data["v"]) == pytest.approx(20 * (1 - math.exp(-SPIKE / 2000)) + 8)  # the spike survives
    assert elapsed < 2.0, f"{elapsed:.2f} s for a 10,000-sample curve"  # ~50 ms unloaded (bench/README.md)


def test_lot_level_curve_and_refusals(curve: tuple[str, str], api_url: str, auth: RoleAuth) -> None:
    lot, serial = curve
    data = _samples(api_url, auth, lot=lot, process_id="PROC-003", channel="temperature").json()["data"]
    assert data["count"] == 100 and data["v"][0] == 60.0 and data["unit"] == "°C"
    none = _samples(api_url, auth, serial=serial, process_id="PROC-006", channel="displacement").json()["data"]
    assert none["count"] == 0 and none["t"] == [] and none["t0"] is None
    for params, code in (
        ({"serial": serial, "process_id": "PROC-006", "channel": "force", "points": 2}, "INVALID_REQUEST"),
        ({"serial": serial, "process_id": "PROC-006", "channel": "force", "method": "fft"}, "INVALID_REQUEST"),
        ({"process_id": "PROC-006", "channel": "force"}, "INVALID_REQUEST"),
        ({"serial": f"{lot}-0777", "process_id": "PROC-006", "channel": "force"}, "SERIAL_NOT_FOUND"),
    ):
        answer = _samples(api_url, auth, **params)
        assert answer.json()["error_code"] == code, (params, answer.text)
    assert (
        httpx.get(
            f"{api_url}/api/v1/samples", params={"lot": lot, "process_id": "PROC-003", "channel": "x"}
        ).status_code
        == 401
    )
