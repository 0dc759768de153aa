"""evt/measurement through a real broker and ingestor into measurement_samples (COPY): stored once, in order,
with the right owner; refusals (station, LOT, serial, bad batch) stored as answers and adding no row."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from deploy.localstack.children import ChildProcess
from deploy.localstack.services import MosquittoServer
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload, Source, make_envelope
from mes_contracts.measurement import Curve, SampleSource, Series, chunk_samples
from mes_contracts.topics import Name, StationAddress
from tests.support.auth import RoleAuth
from tests.support.mqtt import Requester
from tests.support.stations import allow_processes

pytestmark = pytest.mark.plain_pg

STATION = StationAddress("KR", "L1", "stsamples")
T0 = datetime(2026, 12, 5, 0, 30, 0, 250_000, tzinfo=UTC)


@pytest.fixture
def requester(broker: MosquittoServer, ingestor: ChildProcess, db: psycopg.Connection) -> Iterator[Requester]:
    allow_processes(db, STATION.station, ["PROC-003", "PROC-006"])
    client = Requester(broker.port, STATION.reply(), f"test-{uuid.uuid4().hex[:8]}")
    yield client
    client.close()


@pytest.fixture
def lot(api_url: str, auth: RoleAuth) -> str:
    created = httpx.post(f"{api_url}/api/v1/lots", json={"shift": "D"}, timeout=10, auth=auth.manager)
    return str(created.json()["data"]["lot_number"])


def _serial(db: psycopg.Connection, lot: str, unit: int) -> str:
    number = f"{lot}-{unit:04d}"
    db.execute(
        "INSERT INTO serials (serial_number, lot_id, sequence) SELECT %s, id, %s FROM lots WHERE lot_number = %s",
        (number, unit, lot),
    )
    return number


def _curve(lot: str, serial: str | None, process: str = "PROC-006", n: int = 1500) -> Curve:
    times = [i * 1000 for i in range(n)]  # 1 kHz
    force = Series("force", "kgf", "T52_P200", times, [10.0 + i / 1000 for i in range(n)])
    displacement = Series("displacement", "mm", "T52_P200", times, [float(i % 250) for i in range(n)])
    return Curve(lot, serial, process, T0, (force, displacement))


def _send(requester: Requester, envelope: Envelope) -> ReplyPayload:
    requester.send(STATION.event(Name.MEASUREMENT), envelope)
    reply = requester.reply(20)
    assert reply.in_reply_to == envelope.message_id
    return reply


def _envelope(payload: dict[str, object], seq: int = 1) -> Envelope:
    return make_envelope(MessageType.MEASUREMENT, Source.of(STATION, "gw-test"), seq, payload)


def _rows(db: psycopg.Connection, message_id: uuid.UUID) -> list[tuple[object, ...]]:
    return db.execute(
        "SELECT seq, time, channel, unit, value, test_point_id, serial_id IS NOT NULL, station, process_id "
        "FROM measurement_samples WHERE message_id = %s ORDER BY seq",
        (message_id,),
    ).fetchall()


def test_a_chunked_curve_is_stored_once_in_order(requester: Requester, db: psycopg.Connection, lot: str) -> None:
    serial = _serial(db, lot, 1)
    batches = chunk_samples(_curve(lot, serial), SampleSource.CURVE, "x.curve.csv", "0" * 64, limit=2000)
    assert [b.sample_count for b in batches] == [2000, 1000]
    envelopes = [_envelope(b.model_dump(mode="json"), i) for i, b in enumerate(batches)]
    for envelope in envelopes:
        assert _send(requester, envelope).outcome is Outcome.ACCEPTED
    first = _rows(db, envelopes[0].message_id)
    assert [r[0] for r in first] == list(range(2000))  # seq = position in the batch
    # batch 0: all 1,500 force samples, then displacement's first 500
    assert first[0][1:5] == (T0, "force", "kgf", 10.0)
    assert first[1499][1] == T0 + timedelta(milliseconds=1499) and first[1499][4] == pytest.approx(11.499)
    assert first[1500][2:4] == ("displacement", "mm")
    assert first[0][5:] == ("T52_P200", True, "KR/L1/stsamples", "PROC-006")
    assert len(_rows(db, envelopes[1].message_id)) == 1000
    # The same message again (a replay after a lost answer): the first answer, no second row.
    again = envelopes[1].model_copy(update={"replay": True})
    assert _send(requester, again).outcome is Outcome.DUPLICATE
    assert len(_rows(db, envelopes[1].message_id)) == 1000
    total = db.execute(
        "SELECT count(*) FROM measurement_samples WHERE lot_id = (SELECT id FROM lots WHERE lot_number = %s)", (lot,)
    )
    assert total.fetchone() == (3000,)


def test_refusals_are_answered_and_store_nothing(requester: Requester, db: psycopg.Connection, lot: str) -> None:
    cases: list[tuple[dict[str, object], str]] = []
    good = chunk_samples(_curve(lot, None, n=10), SampleSource.CURVE)[0].model_dump(mode="json")
    cases.append(({**good, "process_id": "PROC-001"}, "STATION_NOT_ALLOWED"))  # not configured for this station
    cases.append(({**good, "lot_number": "WF-KR-991231D-999"}, "LOT_NOT_FOUND"))
    cases.append(({**good, "serial_number": f"{lot}-9999"}, "SERIAL_NOT_FOUND"))
    backwards = {**good["series"][0], "offsets_us": [5, 4, 3, 2, 1, 6, 7, 8, 9, 10]}
    cases.append(({**good, "series": [backwards]}, "INVALID_MEASUREMENT_DATA"))
    for payload, code in cases:
        envelope = _envelope(payload)
        reply = _send(requester, envelope)
        assert (reply.outcome, reply.body["error_code"]) == (Outcome.REJECTED, code)
        assert _rows(db, envelope.message_id) == []
        again = _send(requester, envelope)  # stored: the redelivery gets the same answer
        assert (again.outcome, again.body["error_code"]) == (Outcome.REJECTED, code)


def test_a_serial_of_another_lot_is_refused(
    requester: Requester, db: psycopg.Connection, lot: str, api_url: str, auth: RoleAuth
) -> None:
    other = httpx.post(f"{api_url}/api/v1/lots", json={"shift": "D"}, timeout=10, auth=auth.manager).json()
    foreign = _serial(db, other["data"]["lot_number"], 1)
    payload = chunk_samples(_curve(lot, foreign, n=5), SampleSource.CURVE)[0].model_dump(mode="json")
    envelope = _envelope(payload)
    reply = _send(requester, envelope)
    assert (reply.outcome, reply.body["error_code"]) == (Outcome.REJECTED, "INVALID_MEASUREMENT_DATA")
    assert _rows(db, envelope.message_id) == []
