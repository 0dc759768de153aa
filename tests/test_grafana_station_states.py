"""Station states for the Stations dashboard (issue 16): the ingestor keeps every gateway's retained state in
station_states (latest) and station_state_days (per factory day), read by Grafana through the reporting views."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.publish as publish
import psycopg
import pytest

from cloud_api.services.station_states import errored_since, read_state
from deploy.localstack.mosquitto import MosquittoServer
from mes_contracts.envelope import MessageType, Source, make_envelope
from mes_contracts.topics import StationAddress, service_address
from tests.support.print_centre import eventually

pytestmark = pytest.mark.plain_pg


def _state(address: StationAddress, at: datetime, errored: int, online: bool = True, **extra: Any) -> bytes:
    payload = {
        "site": address.site,
        "line": address.line,
        "station": address.station,
        "gateway_id": "gw-test",
        "online": online,
        "software_version": "1.2.3",
        "outbox_depth": extra.get("depth", 0),
        "oldest_pending_age_s": extra.get("age"),
        "counters": {"errored": errored, "completed": 5},
        "reported_at": at.isoformat(),
        **({"last_error": extra["error"]} if "error" in extra else {}),
    }
    source = Source.of(extra.get("source", address), "gw-test")
    return make_envelope(MessageType.STATION_STATE, source, 1, payload).to_bytes()


def test_files_in_error_per_day_follow_the_gateway_counter() -> None:
    assert errored_since(None, 7) == 0  # first report: nothing known before it
    assert errored_since(3, 5) == 2
    assert errored_since(5, 5) == 0
    assert errored_since(9, 2) == 2  # the gateway restarted: its counter began again at 0


def test_only_a_station_state_from_that_station_is_read() -> None:
    st = StationAddress("KR", "L1", "st03")
    now = datetime.now(UTC)
    assert read_state(st.state(), _state(st, now, 1)) is not None
    assert read_state(service_address("ingestor").state(), b'{"service": "ingestor", "online": true}') is None
    assert read_state(st.state(), b"") is None  # a cleared retained message
    assert read_state(st.state(), b"not json") is None
    forged = _state(st, now, 1, source=StationAddress("KR", "L1", "st04"))
    assert read_state(st.state(), forged) is None
    other = _state(StationAddress("KR", "L1", "st04"), now, 1)
    assert read_state(st.state(), other) is None


def test_the_ingestor_keeps_the_retained_states(ingestor: Any, broker: MosquittoServer, db: psycopg.Connection) -> None:
    st = StationAddress("KR", "L1", f"g{uuid.uuid4().hex[:8]}")
    start = datetime.now(UTC).replace(microsecond=0)

    def send(at: datetime, errored: int, **extra: Any) -> None:
        publish.single(st.state(), _state(st, at, errored, **extra), qos=1, retain=True, port=broker.port)

    def stored() -> tuple[Any, ...]:
        return (
            db.execute(
                "SELECT online, outbox_depth, errored_total, reported_at, last_error_code FROM station_states "
                "WHERE station = %s",
                (st.station,),
            ).fetchone()
            or ()
        )

    def day() -> tuple[Any, ...] | None:
        return db.execute(
            "SELECT reports, offline_reports, max_outbox_depth, files_errored FROM station_state_days "
            "WHERE station = %s",
            (st.station,),
        ).fetchone()

    send(start, 4, depth=2)
    eventually(lambda: stored()[3:4] == (start,), what="the first state stored")
    error = {"code": "MOVE_FAILED", "message": "x", "at": start.isoformat()}
    send(start + timedelta(seconds=10), 7, depth=9, online=False, error=error)
    eventually(lambda: stored()[3:4] == (start + timedelta(seconds=10),), what="the newer state stored")
    assert stored()[:3] == (False, 9, 7) and stored()[4] == "MOVE_FAILED"
    # an older copy (a retained message seen again) changes nothing; the next newer one counts once
    send(start + timedelta(seconds=5), 99, depth=50)
    send(start + timedelta(seconds=20), 8, depth=1)
    eventually(lambda: stored()[3:4] == (start + timedelta(seconds=20),), what="the third state stored")
    assert day() == (3, 1, 9, 4)  # 0 (first) + 3 + 1 files put in error/; the stale copy not counted
    publish.single(st.state(), b"", qos=1, retain=True, port=broker.port)  # clear the retained message
