"""Which completion records a trace lists (adapters/trace_sql.MAX_LISTED): a station that writes one file per unit
before serials exist (12 PROC-003 records for one LOT here) is summarised, not listed record by record."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import httpx
import pytest

from cloud_api.adapters.trace_sql import MAX_LISTED
from line_simulator.payloads import completion_record
from mes_contracts.route import ROUTE
from tests.support.auth import RoleAuth
from tests.support.line import SEOUL, start_body

pytestmark = pytest.mark.plain_pg
PER_UNIT = MAX_LISTED + 2


def test_many_unit_records_before_proc_007_are_counted_not_listed(api_url: str, auth: RoleAuth) -> None:
    created = httpx.post(
        f"{api_url}/api/v1/lots", json={"shift": "N", "target_quantity": 20}, auth=auth.manager, timeout=15
    )
    lot = str(created.json()["data"]["lot_number"])
    at = datetime.now(SEOUL).replace(microsecond=0) - timedelta(hours=3)
    serials: list[str] = []
    with httpx.Client(base_url=api_url, auth=auth.operator, timeout=15) as client:
        for step in ROUTE:
            started = client.post("/api/v1/process/start", json=start_body(lot, step.process_id, "W002", at))
            assert started.status_code == 200, started.text
            serials = started.json()["data"].get("serial_numbers", serials)
            files = PER_UNIT if step.process_id == "PROC-003" else 1
            for n in range(files):
                # `unit` keeps the bodies distinct (identical content is one record: the body's hash is its key).
                record = completion_record(
                    step.process_id, lot, "W002", at, at + timedelta(minutes=1), random.Random(n), fail=n == 0,
                    process_data={"unit": n},
                )  # fmt: skip
                done = client.post("/api/v1/process/complete", json=record)
                assert done.status_code == 200, done.text
            at += timedelta(minutes=5)
        serial = client.get(f"/api/v1/trace/serials/{serials[0]}").json()["data"]
        lot_trace = client.get(f"/api/v1/trace/lots/{lot}").json()["data"]
    sensor = serial["processes"][2]
    assert sensor["result_counts"] == {
        "total": PER_UNIT,
        "lot_level": PER_UNIT,
        "unit_level": 0,
        "passed": PER_UNIT - 1,
        "failed": 1,
    }
    assert sensor["failure_counts"][0]["count"] == 1
    assert sensor["results"] == []  # which of the 12 was this unit's is not known
    assert len(serial["processes"][0]["results"]) == 1  # one record for the cart: listed
    lot_sensor = lot_trace["processes"][2]
    assert [r["result"] for r in lot_sensor["results"]] == ["FAIL"]  # the LOT trace lists the failures
    assert lot_sensor["results"][0]["measurements"]
    # Each FAIL record of the LOT is one unit that left the cart: 20 − 8 failed records = 12 serials.
    assert len(serials) == 20 - sum(p["result_counts"]["failed"] for p in lot_trace["processes"][:6])
