"""GET /api/v1/events: Server-Sent Events from PostgreSQL LISTEN/NOTIFY, reconnect with Last-Event-ID, auth."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.auth import RoleAuth

pytestmark = pytest.mark.plain_pg


@dataclass
class Event:
    kind: str
    id: str | None
    data: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class EventReader:
    """Reads one event stream in a thread; `next(kind)` waits for the next event of that kind."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.events: queue.Queue[Event] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        kind, event_id, data = "message", None, list[str]()
        try:
            for line in self.response.iter_lines():
                if line == "":
                    if data:
                        self.events.put(Event(kind, event_id, json.loads("\n".join(data))))
                    kind, event_id, data = "message", None, list[str]()
                elif line.startswith(":"):
                    continue  # keep-alive
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        kind = value
                    elif name == "id":
                        event_id = value
                    elif name == "data":
                        data.append(value)
        except (httpx.HTTPError, ValueError):
            return

    def next(self, match: Any, timeout: float = 10) -> Event:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching event in time")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if match(event):
                return event


@contextmanager
def stream(api_url: str, token: str, headers: dict[str, str] | None = None, **params: str) -> Iterator[EventReader]:
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=60)) as client,
        client.stream(
            "GET", f"{api_url}/api/v1/events", params={"access_token": token, **params}, headers=headers or {}
        ) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventReader(response)


def _lot_event(lot: str) -> Any:
    return lambda e: e.kind == "lot" and any(item.get("lot") == lot for item in e.data.get("items", []))


def _create_lot(api_url: str, auth: RoleAuth) -> tuple[str, float]:
    response = httpx.post(f"{api_url}/api/v1/lots", json={"shift": "D", "target_quantity": 10}, auth=auth.manager)
    assert response.status_code == 201, response.text
    return response.json()["data"]["lot_number"], time.monotonic()


def test_a_new_lot_reaches_a_viewer_within_a_second(api_url: str, auth: RoleAuth) -> None:
    with stream(api_url, auth.viewer.token()) as events:
        hello = events.next(lambda e: e.kind == "hello")
        assert hello.id and "." in hello.id
        lot, committed = _create_lot(api_url, auth)
        event = events.next(_lot_event(lot), timeout=5)
        assert event.data["op"] == "INSERT" and event.data["items"][0]["status"] == "CREATED"
        # The REST answer comes after the commit, so this bounds commit → client from above.
        assert event.at - committed < 1.0
        assert event.id is not None and int(event.id.split(".")[1]) > int(hello.id.split(".")[1])


def test_reconnect_with_last_event_id_replays_what_was_missed(api_url: str, auth: RoleAuth) -> None:
    token = auth.viewer.token()
    with stream(api_url, token) as events:
        last_seen = events.next(lambda e: e.kind == "hello").id
    assert last_seen is not None
    missed, _ = _create_lot(api_url, auth)  # while no stream is open
    with stream(api_url, token, headers={"Last-Event-ID": last_seen}) as events:
        replayed = events.next(_lot_event(missed), timeout=5)
        assert replayed.id is not None and replayed.id != last_seen
    # The same through the query parameter (a new EventSource cannot set the header).
    with stream(api_url, token, last_event_id=last_seen) as events:
        events.next(_lot_event(missed), timeout=5)


def test_an_id_from_another_process_or_start_asks_for_a_reload(api_url: str, auth: RoleAuth) -> None:
    with stream(api_url, auth.viewer.token(), headers={"Last-Event-ID": "deadbeef.12"}) as events:
        reset = events.next(lambda e: e.kind == "reset", timeout=5)
        assert reset.data["reason"] == "unknown_event_id"


def test_the_stream_needs_a_valid_token(api_url: str, auth: RoleAuth) -> None:
    assert httpx.get(f"{api_url}/api/v1/events").status_code == 401
    refused = httpx.get(f"{api_url}/api/v1/events", params={"access_token": "not-a-token"})
    assert refused.status_code == 401 and refused.json()["error_code"] == "UNAUTHORIZED"
    unknown = httpx.get(f"{api_url}/api/v1/events", params={"access_token": "x", "channel": "all"})
    assert unknown.status_code in (401, 422)
    # The header works too (tools other than a browser).
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=30)) as client,
        client.stream("GET", f"{api_url}/api/v1/events", headers=auth.operator.headers()) as response,
    ):
        assert response.status_code == 200


def test_unknown_query_parameters_are_refused(api_url: str, auth: RoleAuth) -> None:
    response = httpx.get(
        f"{api_url}/api/v1/events", params={"access_token": auth.viewer.token(), "channel": "all"}, timeout=10
    )
    assert response.status_code == 422 and response.json()["error_code"] == "INVALID_REQUEST"


def test_a_lost_listen_link_is_remade_and_clients_told_to_reload(
    api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    with stream(api_url, auth.viewer.token()) as events:
        events.next(lambda e: e.kind == "hello")
        killed = db.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = 'LISTEN mes_events'"
        ).fetchone()
        assert killed is not None and killed[0] >= 1
        reset = events.next(lambda e: e.kind == "reset", timeout=15)
        assert reset.data["reason"] == "listener_reconnected"
        lot, _ = _create_lot(api_url, auth)
        events.next(_lot_event(lot), timeout=5)
