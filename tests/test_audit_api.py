"""Every mutating REST route leaves exactly one audit row of its action with the right old/new values; read API."""

from __future__ import annotations

import hashlib
import random
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from line_simulator.payloads import completion_record
from mes_contracts.route import ROUTE
from tests.support.auth import ApiAuth, RoleAuth
from tests.support.line import SEOUL, start_body


class Api:
    """Calls as one user with a fresh X-Request-ID each, and reads back the audit rows that request left."""

    def __init__(self, base_url: str, auth: ApiAuth) -> None:
        self.actor = auth.username
        self.client = httpx.Client(base_url=base_url, timeout=15, auth=auth)

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, str]:
        request_id = f"test-{uuid.uuid4().hex}"
        response = self.client.request(method, path, headers={"X-Request-ID": request_id}, **kwargs)
        assert response.headers["X-Request-ID"] == request_id
        return response, request_id

    def audit(self, **filters: Any) -> dict[str, Any]:
        response = self.client.get("/api/v1/audit", params=filters)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def rows_of(self, request_id: str) -> list[dict[str, Any]]:
        """The request's rows, oldest first."""
        return list(reversed(self.audit(request_id=request_id)["items"]))

    def one(self, request_id: str, action: str) -> dict[str, Any]:
        found = [row for row in self.rows_of(request_id) if row["action"] == action]
        assert len(found) == 1, found
        return found[0]

    def new_lot(self) -> str:
        response, _ = self.call("POST", "/api/v1/lots", json={"shift": "D"})
        assert response.status_code == 201, response.text
        return str(response.json()["data"]["lot_number"])


@pytest.fixture(scope="module")
def api(api_url: str, auth: RoleAuth) -> Api:
    return Api(api_url, auth.admin)


def test_request_ids_are_echoed_or_minted(api: Api) -> None:
    sane = "client-42.retry_1"
    assert api.client.get("/health", headers={"X-Request-ID": sane}).headers["X-Request-ID"] == sane
    for bad in (b"has space", b"x" * 65, "ünïcode".encode(), b'a"b', b""):
        minted = api.client.get("/health", headers={b"X-Request-ID": bad}).headers["X-Request-ID"]
        assert uuid.UUID(minted).version == 7
    assert uuid.UUID(api.client.get("/health").headers["X-Request-ID"]).version == 7


def test_lot_create_and_close(api: Api) -> None:
    response, request_id = api.call("POST", "/api/v1/lots", json={"shift": "N", "target_quantity": 50})
    assert response.status_code == 201
    lot = response.json()["data"]["lot_number"]
    [row] = api.rows_of(request_id)
    assert (row["action"], row["entity"], row["entity_key"], row["actor"]) == ("lot.create", "lot", lot, api.actor)
    assert row["old_value"] is None and row["request_id"] == request_id
    assert row["new_value"]["status"] == "CREATED" and row["new_value"]["target_quantity"] == 50
    assert row["new_value"]["shift"] == "N"

    response, request_id = api.call("POST", f"/api/v1/lots/{lot}/close", json={"reason": "취소: 계획 변경"})
    assert response.status_code == 200, response.text
    [row] = api.rows_of(request_id)
    assert (row["action"], row["entity_key"], row["actor"]) == ("lot.close", lot, api.actor)
    assert row["old_value"] == {"status": "CREATED"} and row["new_value"] == {"status": "CLOSED"}
    assert row["reason"] == "취소: 계획 변경"

    refused, request_id = api.call("POST", f"/api/v1/lots/{lot}/close", json={})
    assert refused.status_code >= 400
    assert api.rows_of(request_id) == []  # a refused change leaves no row


def test_worker_upsert_records_old_and_new_values(api: Api) -> None:
    worker_id = f"WA{secrets.randbelow(10**6):06d}"
    response, request_id = api.call("POST", "/api/v1/workers", json={"worker_id": worker_id, "name": "김감사"})
    assert response.status_code == 201
    row = api.one(request_id, "worker.upsert")
    assert (row["entity"], row["entity_key"], row["actor"]) == ("worker", worker_id, api.actor)
    assert row["old_value"] is None
    assert row["new_value"] == {"worker_id": worker_id, "name": "김감사", "active": True}

    _, request_id = api.call(
        "POST", "/api/v1/workers", json={"worker_id": worker_id, "name": "김감사2", "active": False}
    )
    row = api.one(request_id, "worker.upsert")
    assert row["old_value"] == {"worker_id": worker_id, "name": "김감사", "active": True}
    assert row["new_value"] == {"worker_id": worker_id, "name": "김감사2", "active": False}
    assert len(api.rows_of(request_id)) == 1


def _upload(api: Api, version: str, mcu: str) -> tuple[httpx.Response, str]:
    data = secrets.token_bytes(2048)
    return api.call(
        "POST",
        "/api/v1/firmware",
        data={"version": version, "target_mcu": mcu},
        files={"file": ("build.bin", data, "application/octet-stream")},
    )


def test_firmware_upload_and_activate(api: Api) -> None:
    mcu = f"AUDIT-{secrets.token_hex(4)}"  # its own MCU: PROC-004 starts elsewhere never see these versions
    first, second = (f"v9.{secrets.randbelow(1000)}.{n}" for n in (1, 2))
    for version in (first, second):
        response, request_id = _upload(api, version, mcu)
        assert response.status_code == 201, response.text
        [row] = api.rows_of(request_id)
        assert (row["action"], row["entity"], row["entity_key"]) == ("firmware.upload", "firmware", version)
        assert row["old_value"] is None
        assert row["new_value"]["md5_hash"] == response.json()["data"]["md5_hash"]
        assert row["new_value"]["target_mcu"] == mcu and row["new_value"]["active"] is False

    response, request_id = api.call("POST", f"/api/v1/firmware/{first}/activate")
    assert response.status_code == 200, response.text
    [row] = api.rows_of(request_id)
    assert (row["action"], row["entity_key"], row["actor"]) == ("firmware.activate", first, api.actor)
    assert row["old_value"] == {"active": False, "active_version": None, "target_mcu": mcu}
    assert row["new_value"] == {"active": True, "active_version": first, "target_mcu": mcu}

    _, request_id = api.call("POST", f"/api/v1/firmware/{second}/activate")
    [row] = api.rows_of(request_id)
    assert row["old_value"]["active_version"] == first and row["new_value"]["active_version"] == second


def test_station_token_issue_and_revoke(api: Api) -> None:
    station = f"st-audit-{secrets.token_hex(3)}"
    response, request_id = api.call("POST", f"/api/v1/stations/{station}/token")
    assert response.status_code == 201
    token = response.json()["data"]["token"]
    [row] = api.rows_of(request_id)
    assert (row["action"], row["entity"], row["entity_key"], row["actor"]) == (
        "station_token.issue",
        "station",
        station,
        api.actor,
    )
    assert row["old_value"] == {"live_tokens": 0}
    assert row["new_value"]["token_sha256_prefix"] == hashlib.sha256(token.encode()).hexdigest()[:12]
    assert token not in str(row), "the token itself never enters the audit trail"

    response, request_id = api.call("DELETE", f"/api/v1/stations/{station}/token")
    assert response.status_code == 200
    [row] = api.rows_of(request_id)
    assert (row["action"], row["entity_key"], row["actor"]) == ("station_token.revoke", station, api.actor)
    assert row["old_value"] == {"live_tokens": 1} and row["new_value"] == {"live_tokens": 0}


def _complete(api: Api, lot: str, process_id: str, at: datetime) -> tuple[httpx.Response, str]:
    record = completion_record(process_id, lot, "W002", at, at + timedelta(seconds=30), random.Random(3))
    return api.call("POST", "/api/v1/process/complete", json=record)


def test_process_start_and_complete_through_the_whole_route(api: Api) -> None:
    lot = api.new_lot()
    at = datetime.now(SEOUL).replace(microsecond=0) - timedelta(hours=1)
    for step in ROUTE:
        response, request_id = api.call("POST", "/api/v1/process/start", json=start_body(lot, step.process_id, at=at))
        assert response.status_code == 200, response.text
        start = api.one(request_id, "process.start")
        assert (start["entity"], start["entity_key"], start["actor"]) == (
            "process_run",
            f"{lot}/{step.process_id}",
            api.actor,
        )
        assert start["new_value"]["work_order_id"] == response.json()["data"]["work_order_id"]
        assert start["old_value"] is None and start["new_value"]["worker_id"] == "W001"
        moved = [row for row in api.rows_of(request_id) if row["action"] == "lot.status"]
        if step.sequence == 1:
            assert [(r["old_value"], r["new_value"], r["reason"]) for r in moved] == [
                ({"status": "CREATED"}, {"status": "IN_PROGRESS"}, "PROC-001 start")
            ]
        else:
            assert moved == []

        response, request_id = _complete(api, lot, step.process_id, at)
        assert response.status_code == 200, response.text
        done = api.one(request_id, "process.complete")
        assert (done["entity_key"], done["actor"]) == (f"{lot}/{step.process_id}", api.actor)
        assert done["new_value"]["result"] == response.json()["data"]["result"]
        assert done["new_value"]["lot_number"] == lot and done["old_value"] is None
        moved = [row for row in api.rows_of(request_id) if row["action"] == "lot.status"]
        expected = [({"status": "IN_PROGRESS"}, {"status": "COMPLETED"})] if step.process_id == "PROC-008" else []
        assert [(r["old_value"], r["new_value"]) for r in moved] == expected

    again, request_id = api.call("POST", "/api/v1/process/start", json=start_body(lot, "PROC-001", at=at))
    assert again.status_code >= 400
    assert api.rows_of(request_id) == []
    history = api.audit(entity="lot", entity_key=lot)["items"]
    lot_actions = [row["action"] for row in reversed(history) if row["action"].startswith("lot.")]
    assert lot_actions == ["lot.create", "lot.status", "lot.status"]


# -- read API ------------------------------------------------------------------------------------------------------


def test_filters_and_pagination(api: Api, api_url: str, auth: RoleAuth) -> None:
    manager = Api(api_url, auth.manager)
    since = datetime.now(SEOUL)
    lots = [manager.new_lot() for _ in range(5)]
    until = datetime.now(SEOUL) + timedelta(seconds=5)
    mine = {"actor": manager.actor, "action": "lot.create", "from": since.isoformat()}

    found = api.audit(**mine)["items"]
    assert [row["entity_key"] for row in found] == list(reversed(lots))  # newest first
    assert [row["id"] for row in found] == sorted((row["id"] for row in found), reverse=True)
    assert all(row["actor"] == manager.actor for row in api.audit(actor=manager.actor, limit=50)["items"])
    assert api.audit(**{**mine, "action": "lot.close"})["items"] == []
    assert len(api.audit(**mine, entity="lot", to=until.isoformat())["items"]) == 5
    assert api.audit(**{**mine, "to": since.isoformat()})["items"] == []
    assert [row["entity_key"] for row in api.audit(entity="lot", entity_key=lots[2])["items"]] == [lots[2]]
    by_request = api.audit(request_id=found[0]["request_id"])["items"]
    assert [row["entity_key"] for row in by_request] == [lots[-1]]

    page = api.audit(**mine, limit=2)
    seen = [row["entity_key"] for row in page["items"]]
    while page["next_before_id"] is not None:
        page = api.audit(**mine, limit=2, before_id=page["next_before_id"])
        seen += [row["entity_key"] for row in page["items"]]
    assert seen == list(reversed(lots))
    assert datetime.fromisoformat(found[0]["occurred_at"]).utcoffset() == timedelta(hours=9)


def test_only_admins_read_the_audit_trail(api_url: str, auth: RoleAuth) -> None:
    for role in (auth.manager, auth.operator, auth.viewer):
        assert httpx.get(f"{api_url}/api/v1/audit", auth=role, timeout=15).status_code == 403
    assert httpx.get(f"{api_url}/api/v1/audit", timeout=15).status_code == 401


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 1001},
        {"limit": 0},
        {"from": "yesterday"},
        {"from": "2026-01-01T00:00:00"},
        {"before_id": 0},
        {"before_id": 2**63},
        {"actor": "a\x00b"},
        {"entity_key": "x" * 201},
    ],
)
def test_invalid_filters_are_refused(api: Api, params: dict[str, Any]) -> None:
    response = api.client.get("/api/v1/audit", params=params)
    assert response.status_code == 422
    assert response.json()["error_code"] == "INVALID_REQUEST"
