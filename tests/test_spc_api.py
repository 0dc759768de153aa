"""GET /api/v1/spc/… and its baselines through the real API and PostgreSQL: the piston-ring data of Montgomery
ISQC Table 6.3 stored as measurements give the book's limits (73.988 / 74.014, R UCL 0.048); baselines are
versioned, audited and managers-only; CSV export; refusals in Korean and English."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest

from tests.support.auth import RoleAuth
from tests.test_spc_domain import PISTON_RINGS

pytestmark = pytest.mark.plain_pg

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
PROCESS = "PROC-003"


def _lot(api_url: str, auth: RoleAuth, db: psycopg.Connection[Any]) -> tuple[str, int]:
    created = httpx.post(f"{api_url}/api/v1/lots", json={"shift": "D"}, timeout=10, auth=auth.manager)
    assert created.status_code == 201, created.text
    number = str(created.json()["data"]["lot_number"])
    row = db.execute("SELECT id FROM lots WHERE lot_number = %s", (number,)).fetchone()
    assert row is not None
    return number, int(row[0])


def _seed(
    db: psycopg.Connection[Any], lot_ids: list[int], characteristic: str, rows: tuple[tuple[float, ...], ...]
) -> None:
    """One value a minute; subgroup i of the table goes to LOT i % len(lot_ids) … i.e. LOT subgroups differ."""
    data = []
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            at = T0 + timedelta(minutes=5 * i + j)
            data.append((at, lot_ids[i % len(lot_ids)], PROCESS, 0, "TP1", characteristic, value, "mm", 74.0, 0.05))
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO measurements (time, lot_id, process_id, result_id, test_point_id, characteristic, value, "
            "unit, target, tolerance, lower_limit, upper_limit) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "%s - %s, %s + %s)",
            [(*d, d[8], d[9], d[8], d[9]) for d in data],
        )


@pytest.fixture
def series(api_url: str, auth: RoleAuth, db: psycopg.Connection[Any]) -> str:
    """A fresh characteristic holding the 40 piston-ring samples (25 phase I, then 15 phase II), all in one LOT."""
    characteristic = f"ring_{uuid.uuid4().hex[:8]}"
    _, lot_id = _lot(api_url, auth, db)
    _seed(db, [lot_id], characteristic, PISTON_RINGS)
    return characteristic


def _url(api_url: str, characteristic: str, suffix: str = "") -> str:
    return f"{api_url}/api/v1/spc/{PROCESS}/{characteristic}{suffix}"


PHASE_I = {"from": T0.isoformat(), "to": (T0 + timedelta(minutes=125)).isoformat()}
ALL = {"from": T0.isoformat(), "to": (T0 + timedelta(days=1)).isoformat(), "test_point": "TP1"}


def test_xbar_r_from_a_stored_baseline_matches_montgomery(api_url: str, auth: RoleAuth, series: str) -> None:
    body = {"chart": "xbar_r", "subgroup": "5", "test_point": "TP1", **PHASE_I, "reason": "phase I, Table 6.3"}
    set_ = httpx.post(_url(api_url, series, "/baseline"), json=body, auth=auth.manager, timeout=10)
    assert set_.status_code == 201, set_.text
    stored = set_.json()["data"]
    assert stored["version"] == 1 and stored["points"] == 25 and stored["created_by"] == "t-manager"
    assert stored["mu"] == pytest.approx(74.00118, abs=1e-5)

    got = httpx.get(_url(api_url, series), params={**ALL, "chart": "xbar_r", "subgroup": "5"}, auth=auth.viewer)
    assert got.status_code == 200, got.text
    data = got.json()["data"]
    assert data["baseline"]["source"] == "baseline" and data["baseline"]["stored"]["version"] == 1
    xbar, r = data["limits"]["location"], data["limits"]["spread"]
    assert (round(xbar["lcl"], 3), round(xbar["ucl"], 3)) == (73.988, 74.014)
    assert round(r["cl"], 4) == 0.0228 and round(r["ucl"], 3) == 0.048 and r["lcl"] == 0
    assert len(data["points"]["value"]) == 40 and data["point_limits"] == {"location": None, "spread": None}
    beyond = [v["index"] + 1 for v in data["violations"]["location"] if 1 in v["rules"]]
    assert beyond == [37, 38, 39]  # Montgomery: phase-II samples 37-39 plot above the UCL
    assert data["violation_counts"]["1"] == 3 and data["violations"]["spread"] == []
    assert data["spec"] == {"lsl": pytest.approx(73.95), "usl": pytest.approx(74.05)}
    cap = data["capability"]
    assert cap["n"] == 200 and cap["cp"]["lower"] < cap["cp"]["value"] < cap["cp"]["upper"]
    assert cap["confidence"] == 0.95 and cap["ppk"]["value"] > 0


def test_without_a_baseline_limits_come_from_the_period(api_url: str, auth: RoleAuth, series: str) -> None:
    got = httpx.get(
        _url(api_url, series),
        params={**PHASE_I, "test_point": "TP1", "chart": "xbar_s", "subgroup": "5"},
        auth=auth.viewer,
    )
    assert got.status_code == 200, got.text
    data = got.json()["data"]
    assert data["baseline"]["source"] == "period" and data["baseline"]["stored"] is None
    assert (round(data["limits"]["location"]["lcl"], 3), round(data["limits"]["location"]["ucl"], 3)) == (
        73.988,
        74.014,
    )
    assert data["charts"] == {"location": "Xbar", "spread": "S"}
    imr = httpx.get(_url(api_url, series), params={**PHASE_I, "test_point": "TP1"}, auth=auth.viewer).json()["data"]
    assert imr["chart"] == "imr" and len(imr["points"]["value"]) == 125 and imr["points"]["spread"][0] is None


def test_baselines_are_versioned_audited_and_listed(
    api_url: str, auth: RoleAuth, series: str, db: psycopg.Connection[Any]
) -> None:
    for reason in ("first", "after the fixture change"):
        body = {"chart": "imr", "test_point": "TP1", **PHASE_I, "reason": reason}
        assert httpx.post(_url(api_url, series, "/baseline"), json=body, auth=auth.manager).status_code == 201
    listed = httpx.get(_url(api_url, series, "/baseline"), params={"test_point": "TP1"}, auth=auth.viewer).json()[
        "data"
    ]
    assert [(b["version"], b["reason"]) for b in listed] == [(2, "after the fixture change"), (1, "first")]
    audit = db.execute(
        "SELECT actor, reason FROM audit_log WHERE action = 'spc.baseline' AND entity_key LIKE %s ORDER BY id",
        (f"{PROCESS}/{series}/%",),
    ).fetchall()
    assert audit == [("t-manager", "first"), ("t-manager", "after the fixture change")]


def test_only_managers_set_a_baseline(api_url: str, auth: RoleAuth, series: str) -> None:
    body = {"chart": "imr", "test_point": "TP1", **PHASE_I, "reason": "try"}
    for who in (auth.viewer, auth.operator):
        assert httpx.post(_url(api_url, series, "/baseline"), json=body, auth=who).status_code == 403
    assert httpx.get(_url(api_url, series), params=ALL).status_code == 401


def test_refusals_speak_korean_and_english(api_url: str, auth: RoleAuth, series: str) -> None:
    empty = {"chart": "imr", "test_point": "NOPE", **PHASE_I, "reason": "nothing there"}
    ko = httpx.post(_url(api_url, series, "/baseline"), json=empty, auth=auth.manager)
    assert ko.status_code == 422 and ko.json()["error_code"] == "SPC_NOT_ENOUGH_DATA"
    assert "데이터가 부족" in ko.json()["message"]
    en = httpx.post(
        _url(api_url, series, "/baseline"), json=empty, auth=auth.manager, headers={"Accept-Language": "en"}
    )
    assert en.json()["message"].startswith("Not enough data")
    bad = httpx.get(_url(api_url, series), params={**ALL, "chart": "xbar_r", "subgroup": "40"}, auth=auth.viewer)
    assert bad.status_code == 422 and bad.json()["error_code"] == "INVALID_REQUEST"
    unknown = httpx.get(f"{api_url}/api/v1/spc/PROC-099/{series}", params=ALL, auth=auth.viewer)
    assert unknown.status_code == 404


def test_csv_export_has_one_row_per_point(api_url: str, auth: RoleAuth, series: str) -> None:
    body = {"chart": "xbar_r", "subgroup": "5", "test_point": "TP1", **PHASE_I, "reason": "phase I"}
    assert httpx.post(_url(api_url, series, "/baseline"), json=body, auth=auth.manager).status_code == 201
    got = httpx.get(
        _url(api_url, series), params={**ALL, "chart": "xbar_r", "subgroup": "5", "format": "csv"}, auth=auth.viewer
    )
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert "attachment" in got.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(got.text)))
    assert len(rows) == 40
    assert [int(r["index"]) + 1 for r in rows if "1" in r["rules"].split()] == [37, 38, 39]
    assert float(rows[0]["value"]) == pytest.approx(74.0102)


def test_lot_subgroups_chart_one_point_per_lot(api_url: str, auth: RoleAuth, db: psycopg.Connection[Any]) -> None:
    characteristic = f"ring_{uuid.uuid4().hex[:8]}"
    lots = [_lot(api_url, auth, db) for _ in range(3)]
    _seed(db, [lot_id for _, lot_id in lots], characteristic, PISTON_RINGS[:6])
    got = httpx.get(_url(api_url, characteristic), params={**ALL, "chart": "xbar_r"}, auth=auth.viewer).json()["data"]
    assert got["subgroup"] == "lot"
    assert got["points"]["key"] == [number for number, _ in lots]
    assert got["points"]["n"] == [10, 10, 10]


def test_csv_export_of_a_characteristic_named_with_any_text_is_no_server_error(api_url: str, auth: RoleAuth) -> None:
    # Found by the API fuzzer: a characteristic with a DEL and characters outside Latin-1 made the download's
    # Content-Disposition header unencodable, a 500. The name is kept in RFC 6266's filename* (UTF-8).
    characteristic = "¬ß;Ù£C\U000f06a6\U000f9ee7)Í>\x7f토크"
    got = httpx.get(
        _url(api_url, quote(characteristic, safe="")),
        params={**ALL, "chart": "xbar_r", "format": "csv"},
        auth=auth.viewer,
    )
    assert got.status_code == 200, got.text
    disposition = got.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="spc_') and "filename*=UTF-8''" in disposition
    assert quote("토크") in disposition  # the full name survives, percent-encoded
