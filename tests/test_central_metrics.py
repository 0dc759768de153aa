"""The centre's Prometheus metrics against the real API and ingestor (issue 17 point 2).

A start over REST, one over MQTT and a completion; then both /metrics are scraped: the start histogram counts each
path once, requests are labelled by route template, the pool gauges are there, the station's last-seen time is
set. A flood of distinct unknown paths must not grow the request metrics' label sets.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Receive, Scope, Send

from cloud_api.http.metrics import install_request_metrics
from cloud_api.ingestor import metrics as ingestor_registry
from deploy.localstack.children import ChildProcess
from deploy.localstack.common import wait_until
from deploy.localstack.services import MosquittoServer
from line_simulator.payloads import completion_record
from mes_contracts.envelope import MessageType, Outcome, Source, make_envelope
from mes_contracts.topics import Name, StationAddress
from tests.support.auth import RoleAuth
from tests.support.line import SEOUL, start_body
from tests.support.mqtt import Requester
from tests.support.stations import allow_processes

STATION = StationAddress("KR", "L1", "stmetrics")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def label_sets(samples: Samples, name: str) -> set[frozenset[tuple[str, str]]]:
    return {labels for sample_name, labels in samples if sample_name == name}


@pytest.fixture
def ingestor_metrics(ingestor: ChildProcess) -> str:
    return f"http://127.0.0.1:{ingestor.env['MES_INGESTOR_METRICS_PORT']}/metrics"


@pytest.fixture
def requester(broker: MosquittoServer, ingestor: ChildProcess, db: psycopg.Connection) -> Iterator[Requester]:
    allow_processes(db, STATION.station, ["PROC-001"])
    client = Requester(broker.port, STATION.reply(), f"test-metrics-{uuid.uuid4().hex[:8]}")
    yield client
    client.close()


def _lot(api_url: str, auth: RoleAuth) -> str:
    created = httpx.post(f"{api_url}/api/v1/lots", json={"shift": "D"}, timeout=10, auth=auth.manager)
    assert created.status_code == 201, created.text
    return str(created.json()["data"]["lot_number"])


def _completion(lot: str) -> dict[str, object]:
    end = datetime.now(SEOUL).replace(microsecond=0)
    record = completion_record("PROC-001", lot, "W001", end - timedelta(minutes=1), end, random.Random(7))
    raw = json.dumps(record).encode()
    name = f"{lot}_PROC-001_{end:%Y%m%d%H%M%S}.json"
    return {"record": record, "file_name": name, "sha256": hashlib.sha256(raw).hexdigest()}


def test_rest_start_is_timed_and_counted_by_route_template(api_url: str, auth: RoleAuth) -> None:
    metrics_url = f"{api_url}/metrics"
    lot = _lot(api_url, auth)
    before = scrape(metrics_url)
    started = httpx.post(f"{api_url}/api/v1/process/start", json=start_body(lot, "PROC-001"), auth=auth.manager)
    assert started.status_code == 200, started.text
    assert httpx.get(f"{api_url}/api/v1/lots/{lot}", auth=auth.manager, timeout=10).status_code == 200
    after = scrape(metrics_url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mes_start_seconds_count", path="rest") == 1
    assert delta("mes_api_requests_total", method="POST", route="/api/v1/process/start", status="200") == 1
    assert delta("mes_api_request_seconds_count", method="POST", route="/api/v1/process/start") == 1
    assert delta("mes_api_requests_total", method="GET", route="/api/v1/lots/{lot_number}", status="200") == 1
    routes = {dict(labels)["route"] for labels in label_sets(after, "mes_api_requests_total")}
    assert not any(lot in route for route in routes), routes  # never the raw path
    pool = {dict(labels)["state"] for labels in label_sets(after, "mes_db_pool_connections")}
    assert pool == {"in_use", "idle", "overflow"}
    open_connections = value(after, "mes_db_pool_connections", process="api", state="idle") + value(
        after, "mes_db_pool_connections", process="api", state="in_use"
    )
    assert 1 <= open_connections <= value(after, "mes_db_pool_max_connections", process="api")


def test_unknown_paths_do_not_grow_the_label_sets(api_url: str) -> None:
    metrics_url = f"{api_url}/metrics"
    httpx.get(f"{api_url}/no-such-page", timeout=10)  # the one `unmatched` series exists from here on
    before = scrape(metrics_url)
    with httpx.Client(base_url=api_url, timeout=10) as client:
        for index in range(200):
            assert client.get(f"/scan/{uuid.uuid4().hex}/{index}").status_code == 404
    after = scrape(metrics_url)
    for name in ("mes_api_requests_total", "mes_api_request_seconds_count", "mes_api_request_seconds_bucket"):
        assert label_sets(after, name) == label_sets(before, name), name
    flood = value(after, "mes_api_requests_total", method="GET", route="unmatched", status="404") - value(
        before, "mes_api_requests_total", method="GET", route="unmatched", status="404"
    )
    assert flood == 200


def test_mqtt_start_and_completion_in_the_ingestor_metrics(
    requester: Requester, api_url: str, auth: RoleAuth, ingestor_metrics: str
) -> None:
    lot = _lot(api_url, auth)
    source = Source.of(STATION, "gw-metrics")
    before = scrape(ingestor_metrics)
    sent_at = time.time()
    start = make_envelope(MessageType.PROCESS_START_REQUEST, source, 1, start_body(lot, "PROC-001"))
    requester.send(STATION.request(Name.PROCESS_START), start)
    assert requester.reply().outcome is Outcome.ACCEPTED
    done = make_envelope(MessageType.PROCESS_COMPLETED, source, 2, _completion(lot))
    requester.send(STATION.event(Name.PROCESS_COMPLETED), done)
    assert requester.reply().outcome is Outcome.ACCEPTED

    def delta(samples: Samples, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    # The reply counter moves once the broker acknowledged the reply, which may be just after the test got it.
    assert wait_until(lambda: delta(scrape(ingestor_metrics), "mes_ingestor_replies_total", result="sent") >= 2, 10)
    after = scrape(ingestor_metrics)
    assert delta(after, "mes_start_seconds_count", path="mqtt") == 1
    assert delta(after, "mes_ingestor_commit_seconds_count", kind="process.start.request") == 1
    assert delta(after, "mes_ingestor_commit_seconds_count", kind="completion_batch") == 1
    assert delta(after, "mes_ingestor_batch_size_count") == 1
    assert delta(after, "mes_ingestor_messages_received_total") >= 2
    assert delta(after, "mes_ingestor_messages_total", type="process.completed", outcome="accepted") == 1
    seen = value(after, "mes_ingestor_station_last_seen_timestamp_seconds", station=STATION.station)
    assert sent_at - 1 <= seen <= time.time() + 1
    assert value(after, "mes_ingestor_broker_connected") == 1
    assert value(after, "mes_ingestor_healthy") == 1
    states = {dict(labels)["state"] for labels in label_sets(after, "mes_db_pool_connections")}
    assert states == {"in_use", "idle", "overflow"}
    assert ("mes_db_pool_connections", frozenset({("process", "ingestor"), ("state", "idle")})) in after


def test_an_answer_before_routing_is_labelled_with_the_route_it_would_have_had() -> None:
    """A 429 from the rate limiter (outside the router) keeps its route template; a 404 stays `unmatched`."""
    app = FastAPI()

    @app.get("/api/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    async def refuse_all(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 429, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    class Refuse:
        def __init__(self, inner: ASGIApp) -> None:
            self.inner = inner

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"].endswith("/refused"):
                await refuse_all(scope, receive, send)
                return
            await self.inner(scope, receive, send)

    app.add_middleware(Refuse)
    install_request_metrics(app)

    def count(route: str, status: str) -> float:
        return (
            REGISTRY.get_sample_value("mes_api_requests_total", {"method": "GET", "route": route, "status": status})
            or 0.0
        )

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            assert (await client.get("/api/v1/things/refused")).status_code == 429
            assert (await client.get("/api/v1/things/a1")).status_code == 200
            assert (await client.get("/elsewhere")).status_code == 404

    template = "/api/v1/things/{thing_id}"
    before = (count(template, "429"), count(template, "200"), count("unmatched", "404"))
    asyncio.run(run())
    assert (count(template, "429"), count(template, "200"), count("unmatched", "404")) == tuple(b + 1 for b in before)


def test_station_label_is_bounded_and_ignores_retained_and_central_messages() -> None:
    def stations() -> set[str]:
        return {
            sample.labels["station"]
            for family in REGISTRY.collect()
            if family.name == "mes_ingestor_station_last_seen_timestamp_seconds"
            for sample in family.samples
        }

    ingestor_registry.station_seen("mes/v1/KR/L1/st-retained/state", retained=True)
    ingestor_registry.station_seen("mes/v1/central/services/ingestor-1/state", retained=False)
    ingestor_registry.station_seen("not/a/topic", retained=False)
    assert not {"st-retained", "ingestor-1", "a"} & stations()
    for index in range(ingestor_registry.MAX_STATIONS + 100):
        ingestor_registry.station_seen(f"mes/v1/KR/L1/flood{index}/evt/process-completed", retained=False)
    assert len(stations()) <= ingestor_registry.MAX_STATIONS
