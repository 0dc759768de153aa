"""PostgreSQL restarted during a burst: the API answers 503 quickly meanwhile, the ingestor loses nothing."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.faults import (
    Central,
    Rig,
    completed_count,
    completion_files,
    drop,
    fault_rng,
    grep_log,
    outcomes,
    produced,
    run_start_time,
    sized,
    wait_disposed,
    wait_for,
)
from tests.support.line import SEOUL, start_body
from tests.support.verifier import assert_clean, verify

FILES = sized(400, 2000)
ANSWER_WITHIN_S = 5.0
PROBES = 3


Probe = tuple[int, float, dict[str, Any]]


def _probe(client: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None) -> Probe:
    """Status (0 = no answer in time), seconds taken and the JSON body of one request."""
    began = time.monotonic()
    try:
        response = client.request(method, path, json=body)
    except httpx.TimeoutException:
        return 0, time.monotonic() - began, {}
    took = time.monotonic() - began
    try:
        payload = dict(response.json())
    except ValueError:
        payload = {"raw": response.text[:200]}
    return response.status_code, took, payload


@pytest.mark.timeout(600)
def test_postgres_restarted_during_a_burst(central: Central, rig: Rig) -> None:
    rng = fault_rng("postgres-restart")
    begin = datetime.now(SEOUL)
    started = run_start_time()
    lots = central.create_started_lots(50, started)
    with httpx.Client(base_url=central.api_url, timeout=15, auth=central.auth) as client:
        spare = client.post("/api/v1/lots", json={"shift": "D"}).json()["data"]["lot_number"]  # never started
    files = completion_files(lots, FILES, started, seed=8)
    ingestor = rig.start_ingestor()
    gateway = rig.gateway("st01")
    items = produced(gateway.work_dir, files)
    drop(gateway.pending, files)
    target = rng.randint(FILES // 10, FILES // 3)
    assert wait_for(lambda: completed_count([gateway]) >= target, 120), rig.tails()

    central.postgres.stop()
    stopped_at = completed_count([gateway])
    answers: list[tuple[str, int, float, dict[str, Any]]] = []
    with httpx.Client(base_url=central.api_url, timeout=ANSWER_WITHIN_S * 3, auth=central.auth) as client:
        for _ in range(PROBES):
            status, took, body = _probe(client, "GET", f"/api/v1/lots/{lots[0]}")
            answers.append(("GET /api/v1/lots/{lot}", status, took, body))
            status, took, body = _probe(client, "POST", "/api/v1/process/start", start_body(spare, "PROC-001"))
            answers.append(("POST /api/v1/process/start", status, took, body))
        time.sleep(rng.uniform(1.0, 3.0))  # the outage lasts a while; the gateway keeps sending
        still_down = _probe(client, "GET", f"/api/v1/lots/{lots[0]}")
        answers.append(("GET /api/v1/lots/{lot} (later)", *still_down))
    central.postgres.start()

    with httpx.Client(base_url=central.api_url, timeout=15, auth=central.auth) as client:
        recovered = wait_for(lambda: client.get(f"/api/v1/lots/{lots[0]}").status_code == 200, 30, 0.25)
        again = client.post("/api/v1/process/start", json=start_body(spare, "PROC-001"))
    elapsed = wait_disposed(items, 240)
    with central.connect() as db:
        final = verify(items, db)
        answered = outcomes(db, begin)
    retries = len(grep_log(ingestor.log_path, "database unavailable"))
    print(f"\nPostgreSQL stopped at {stopped_at}/{FILES} completed files; API while down:")
    for what, status, took, body in answers:
        print(f"  {what}: {status} {body.get('error_code')} in {took * 1000:.0f} ms")
    print(
        f"API recovered: {recovered}, start after recovery {again.status_code}; ingestor DB retries logged "
        f"{retries}; drained {elapsed:.1f} s after the restart; processed_messages {answered}"
    )
    for what, status, took, body in answers:
        assert status == 503, f"{what}: {status} {body}"
        assert body.get("error_code") == "SERVICE_UNAVAILABLE", f"{what}: {body}"
        assert took < ANSWER_WITHIN_S, f"{what} took {took:.1f} s"
    assert recovered and again.status_code == 200, again.text
    assert_clean(final)
