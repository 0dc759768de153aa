"""SPC alerts through the real line: a completion file whose force breaks a Nelson rule (and one whose test point
has too low a Cpk) → alert rows, audit rows, the station's MQTT alert topic, GET /api/v1/alerts, acknowledge.

Each test point is new to the database (a unique id), so its history is only what the test stores: 25 earlier
values (result id 0: not a completion, never judged themselves) and, for point A, a baseline set via the API.
"""

from __future__ import annotations

import queue
import random
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest

from deploy.localstack.services import MosquittoServer
from line_simulator.payloads import completion_record
from mes_contracts.alerts import AlertMessage
from mes_contracts.route import ROUTE
from tests.support.auth import RoleAuth
from tests.support.line import SEOUL, Line

pytestmark = pytest.mark.plain_pg
PROCESS = "PROC-006"


def _complete(line: Line, lot: str, process_id: str, **overrides: Any) -> None:
    assert line.start_via_gateway(lot, process_id, "W001").status_code == 200
    end = datetime.now(SEOUL).replace(microsecond=0)
    record = completion_record(process_id, lot, "W001", end - timedelta(minutes=3), end, random.Random(14), **overrides)
    assert line.wait_disposition(process_id, line.drop_record(record)) == "completed"


def _history(db: psycopg.Connection[Any], lot: str, point: str, values: list[float], tolerance: float) -> None:
    start = datetime.now(SEOUL) - timedelta(hours=2)
    db.cursor().executemany(
        "INSERT INTO measurements (time, lot_id, process_id, result_id, test_point_id, characteristic, value, unit, "
        "target, tolerance, lower_limit, upper_limit, result) SELECT %s, id, %s, 0, %s, 'force', %s, 'kgf', 50, %s, "
        "50 - %s, 50 + %s, 'PASS' FROM lots WHERE lot_number = %s",
        [
            (start + timedelta(minutes=i), PROCESS, point, v, tolerance, tolerance, tolerance, lot)
            for i, v in enumerate(values)
        ],
    )


class AlertListener:
    def __init__(self, port: int):
        self.messages: queue.Queue[tuple[str, AlertMessage]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"alerts-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda _c, _u, m: self.messages.put(
            (m.topic, AlertMessage.from_bytes(bytes(m.payload)))
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("mes/v1/+/+/+/cmd/alert", qos=1)

    def wait(self, alert_id: int, timeout: float = 20) -> tuple[str, AlertMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                topic, message = self.messages.get(timeout=0.2)
            except queue.Empty:
                continue
            if message.alert_id == alert_id:
                return topic, message
        raise AssertionError(f"no MQTT alert {alert_id} within {timeout} s")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _wait_alerts(api_url: str, auth: RoleAuth, point: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        listed = httpx.get(
            f"{api_url}/api/v1/alerts", params={"process_id": PROCESS, "characteristic": "force"}, auth=auth.viewer
        )
        assert listed.status_code == 200, listed.text
        mine = [a for a in listed.json()["data"] if a["test_point"] == point]
        if len(mine) >= count or time.monotonic() > deadline:
            return mine
        time.sleep(0.2)


def test_a_completion_breaking_rules_raises_alerts_everywhere(
    line: Line, api_url: str, auth: RoleAuth, db: psycopg.Connection[Any], broker: MosquittoServer
) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    point_a, point_b = f"SPC_A_{tag}", f"SPC_B_{tag}"
    lot = line.create_lot()
    for step in ROUTE[:5]:
        _complete(line, lot, step.process_id)
    rng = random.Random(6)
    _history(db, lot, point_a, [50 + rng.gauss(0, 0.1) for _ in range(25)], 5.0)  # capable: Cpk ≈ 16
    _history(db, lot, point_b, [50 + rng.gauss(0, 0.4) for _ in range(25)], 0.5)  # Cpk ≈ 0.4
    period = {"from": (datetime.now(SEOUL) - timedelta(hours=3)).isoformat(), "to": datetime.now(SEOUL).isoformat()}
    body = {"chart": "imr", "test_point": point_a, **period, "reason": "25 units after the fixture change"}
    baseline = httpx.post(f"{api_url}/api/v1/spc/{PROCESS}/force/baseline", json=body, auth=auth.manager)
    assert baseline.status_code == 201, baseline.text

    listener = AlertListener(broker.port)
    try:
        points = [
            {"test_point_id": point_a, "spec": {"target_force": 50, "tolerance": 5}, "result": "PASS",
             "measured_force": 53.0},  # 30 sigma above the baseline's centre: rule 1
            {"test_point_id": point_b, "spec": {"target_force": 50, "tolerance": 0.5}, "result": "PASS",
             "measured_force": 50.0},
        ]  # fmt: skip
        _complete(line, lot, PROCESS, process_data={"test_results": points, "overall_result": "PASS"})

        alerts_a = _wait_alerts(api_url, auth, point_a, 1)
        alerts_b = _wait_alerts(api_url, auth, point_b, 1)
        assert [a["rule"] for a in alerts_a if a["kind"] == "nelson"].count(1) == 1, alerts_a
        rule_1 = next(a for a in alerts_a if a["rule"] == 1)
        assert rule_1["value"] == 53.0 and rule_1["lot_number"] == lot and rule_1["status"] == "open"
        assert rule_1["baseline_id"] == baseline.json()["data"]["id"]
        assert rule_1["station"].endswith("/st06") and "넬슨 규칙 1" in rule_1["message_ko"]
        cpk = [a for a in alerts_b if a["kind"] == "cpk_low"]
        assert len(cpk) == 1 and cpk[0]["cpk"] < 1.0 and cpk[0]["threshold"] == 1.0

        topic, message = listener.wait(rule_1["id"])
        assert topic.endswith("/st06/cmd/alert") and message.rule == 1 and message.lot_number == lot
        listener.wait(cpk[0]["id"])
    finally:
        listener.close()

    audit = db.execute(
        "SELECT actor, action FROM audit_log WHERE entity = 'alert' AND entity_key = %s", (str(rule_1["id"]),)
    ).fetchall()
    assert audit == [("system:alert-watch", "alert.raise")]

    assert httpx.post(f"{api_url}/api/v1/alerts/{rule_1['id']}/ack", auth=auth.viewer).status_code == 403
    acked = httpx.post(
        f"{api_url}/api/v1/alerts/{rule_1['id']}/ack", json={"note": "gauge re-zeroed"}, auth=auth.operator
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["data"]["status"] == "acknowledged" and acked.json()["data"]["acknowledged_by"] == "t-operator"
    again = httpx.post(f"{api_url}/api/v1/alerts/{rule_1['id']}/ack", auth=auth.operator)
    assert again.status_code == 200 and again.json()["data"]["ack_note"] == "gauge re-zeroed"
    ack_audit = db.execute(
        "SELECT actor, reason FROM audit_log WHERE action = 'alert.ack' AND entity_key = %s", (str(rule_1["id"]),)
    ).fetchall()
    assert ack_audit == [("t-operator", "gauge re-zeroed")]  # acknowledging twice is audited once
    missing = httpx.post(
        f"{api_url}/api/v1/alerts/999999999/ack", auth=auth.operator, headers={"Accept-Language": "en"}
    )
    assert missing.status_code == 404 and missing.json()["message"] == "The alert does not exist"
    still_open = httpx.get(
        f"{api_url}/api/v1/alerts", params={"status": "open", "process_id": PROCESS}, auth=auth.viewer
    )
    assert rule_1["id"] not in [a["id"] for a in still_open.json()["data"]]
