"""Envelope v2 at the ingestor over a real broker and database: many completion records in one message, stored
exactly once each, answered by one BatchReply with an outcome per record in order; a malformed or poison record
fails alone; v1 and v2 interleave; an unknown envelope version is refused alone and the next message flows."""

from __future__ import annotations

import hashlib
import json
import queue
import random
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.parser import text_string_to_metric_families

from deploy.localstack.children import ChildProcess
from deploy.localstack.services import MosquittoServer
from line_simulator.payloads import completion_record
from mes_contracts.batch import BatchEnvelope, BatchReply, make_batch
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload, Source, make_envelope
from mes_contracts.topics import Name, StationAddress
from tests.support.auth import RoleAuth
from tests.support.line import SEOUL, start_body
from tests.support.stations import allow_processes

STATION = StationAddress("KR", "L1", "stbatch2")
SOURCE = Source.of(STATION, "gw-batch2")


class BatchClient:
    """Publishes raw messages with a ResponseTopic and the message id as CorrelationData, as a gateway does, and
    hands back each reply (v1 or v2) by that correlation."""

    def __init__(self, port: int, address: StationAddress = STATION) -> None:
        self.address = address
        self.metrics_port = ""  # the session ingestor's, when the test reads its metrics
        self._replies: queue.Queue[tuple[bytes, bytes]] = queue.Queue()
        self._early: dict[bytes, bytes] = {}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"batch2-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = lambda c, u, m: self._replies.put(
            (bytes(m.properties.CorrelationData or b""), bytes(m.payload))  # type: ignore[union-attr]
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        subscribed = self.client.subscribe(address.reply(), qos=1)
        assert subscribed[0] == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.2)  # the SUBACK (as tests/support/mqtt.Requester)

    def send(self, topic: str, raw: bytes, correlation: str) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.address.reply()
        props.CorrelationData = correlation.encode()
        self.client.publish(topic, raw, qos=1, properties=props).wait_for_publish(5)

    def reply_raw(self, correlation: str, timeout: float = 20) -> bytes:
        key, deadline = correlation.encode(), time.monotonic() + timeout
        while key not in self._early:
            got, raw = self._replies.get(timeout=max(0.01, deadline - time.monotonic()))
            self._early[got] = raw
        return self._early.pop(key)

    def batch(self, batch: BatchEnvelope, name: Name = Name.PROCESS_COMPLETED, raw: bytes | None = None) -> BatchReply:
        self.send(self.address.event(name), raw or batch.to_bytes(), str(batch.message_id))
        reply = BatchReply.from_bytes(self.reply_raw(str(batch.message_id)))
        assert reply.in_reply_to == batch.message_id and len(reply.replies) == len(batch.records)
        return reply

    def single(self, envelope: Envelope, topic: str, raw: bytes | None = None) -> ReplyPayload:
        self.send(topic, raw or envelope.to_bytes(), str(envelope.message_id))
        return ReplyPayload.model_validate(Envelope.from_bytes(self.reply_raw(str(envelope.message_id))).payload)

    def close(self) -> None:
        self.client.disconnect()  # first: the network loop then ends at once, not at its next 1 s select
        self.client.loop_stop()


@pytest.fixture
def station(broker: MosquittoServer, ingestor: ChildProcess, db: psycopg.Connection) -> Iterator[BatchClient]:
    allow_processes(db, STATION.station, ["PROC-001"])
    client = BatchClient(broker.port)
    client.metrics_port = ingestor.env["MES_INGESTOR_METRICS_PORT"]
    yield client
    client.close()


def started_lots(client: BatchClient, api_url: str, auth: RoleAuth, count: int) -> list[str]:
    """LOTs with PROC-001 started, each through a v1 start request (so v1 and v2 share the link)."""
    lots = []
    for _ in range(count):
        created = httpx.post(f"{api_url}/api/v1/lots", json={"shift": "D"}, timeout=10, auth=auth.manager)
        lot = str(created.json()["data"]["lot_number"])
        start = make_envelope(MessageType.PROCESS_START_REQUEST, SOURCE, 1, start_body(lot, "PROC-001"))
        assert client.single(start, STATION.request(Name.PROCESS_START)).outcome is Outcome.ACCEPTED
        lots.append(lot)
    return lots


def completion(lot: str, process_id: str = "PROC-001", seed: int = 1) -> Envelope:
    end = datetime.now(SEOUL).replace(microsecond=0)
    record = completion_record(process_id, lot, "W001", end - timedelta(minutes=1), end, random.Random(seed))
    payload = {
        "record": record,
        "file_name": f"{lot}_{process_id}_{end:%Y%m%d%H%M%S}.json",
        "sha256": hashlib.sha256(json.dumps(record).encode() + lot.encode()).hexdigest(),
    }
    return make_envelope(MessageType.PROCESS_COMPLETED, SOURCE, seed, payload)


def ingestor_metrics_port(station: BatchClient) -> str:
    return station.metrics_port


def scrape(url: str) -> dict[str, float]:
    """The records-per-message histogram's sum and count, and the completions answered `accepted`."""
    text = httpx.get(url, timeout=10).text
    found = {"records_sum": 0.0, "records_n": 0.0, "accepted": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mes_ingestor_records_per_message_sum":
                found["records_sum"] = sample.value
            elif sample.name == "mes_ingestor_records_per_message_count":
                found["records_n"] = sample.value
            elif sample.name == "mes_ingestor_messages_total" and sample.labels == {
                "type": "process.completed",
                "outcome": "accepted",
            }:
                found["accepted"] = sample.value
    return found


def stored(db: psycopg.Connection, ids: list[uuid.UUID]) -> int:
    row = db.execute("SELECT count(*) FROM process_results WHERE message_id = ANY(%s)", (ids,)).fetchone()
    return int(row[0]) if row else 0


def outcomes(reply: BatchReply) -> list[str]:
    return [r.outcome.value for r in reply.replies]


def test_a_batch_is_stored_once_and_answered_once_per_record_in_order(
    station: BatchClient, api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    lots = started_lots(station, api_url, auth, 4)
    envelopes = [completion(lot, seed=i) for i, lot in enumerate(lots)]
    batch = make_batch(envelopes)
    metrics_url = f"http://127.0.0.1:{ingestor_metrics_port(station)}/metrics"
    before = scrape(metrics_url)
    reply = station.batch(batch)
    after = scrape(metrics_url)
    assert after["records_sum"] - before["records_sum"] == 4 and after["records_n"] - before["records_n"] == 1
    assert after["accepted"] - before["accepted"] == 4  # mes_ingestor_messages_total counts records
    assert [r.in_reply_to for r in reply.replies] == [e.message_id for e in envelopes]
    assert outcomes(reply) == ["accepted"] * 4, reply.replies
    assert all(r.body["data"]["lot_number"] == lot for r, lot in zip(reply.replies, lots, strict=True))
    ids = [e.message_id for e in envelopes]
    assert stored(db, ids) == 4

    again = station.batch(make_batch(envelopes))  # a replay after a lost reply: a new batch id, the same records
    assert outcomes(again) == ["duplicate"] * 4
    assert stored(db, ids) == 4
    claimed = db.execute("SELECT count(*) FROM processed_messages WHERE message_id = ANY(%s)", (ids,)).fetchone()
    assert claimed == (4,)


def test_a_malformed_and_a_poison_record_fail_alone_at_their_positions(
    station: BatchClient, api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    lots = started_lots(station, api_url, auth, 2)
    good = [completion(lots[0], seed=10), completion(lots[1], seed=11)]
    unknown_lot = completion("WF-KR-991231D-999", seed=12)
    not_configured = completion(lots[1], "PROC-003", seed=13)  # the station may not report it: one by one
    document = json.loads(make_batch([good[0], unknown_lot, good[1], good[1], not_configured]).to_bytes())
    document["records"][3]["seq"] = -5  # malformed: the record's own id is still readable
    document["records"][3]["message_id"] = str(uuid.uuid4())
    batch = BatchEnvelope.model_validate(document)
    reply = station.batch(batch, raw=json.dumps(document).encode())

    assert outcomes(reply) == ["accepted", "rejected", "accepted", "rejected", "rejected"], reply.replies
    codes = [r.body.get("error_code") for r in reply.replies]
    assert codes[1] == "LOT_NOT_FOUND" and codes[3] == "INVALID_REQUEST" and codes[4] not in (None, "INVALID_REQUEST")
    assert [r.in_reply_to for r in reply.replies] == [batch.record_id(i) for i in range(5)]
    assert "seq" in reply.replies[3].body["data"]["error"]
    assert stored(db, [good[0].message_id, good[1].message_id]) == 2
    letter = db.execute(
        "SELECT error_code, message_type, source_station, payload FROM dead_letters WHERE message_id = %s",
        (batch.record_id(3),),
    ).fetchone()
    assert letter is not None and letter[:3] == ("INVALID_REQUEST", "process.completed", STATION.prefix)
    assert json.loads(bytes(letter[3]))["seq"] == -5  # the record as received, not the whole message


def test_forged_unreadable_and_future_messages_are_refused_alone_and_the_next_flows(
    station: BatchClient, api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    lots = started_lots(station, api_url, auth, 2)
    other = Source.of(StationAddress("KR", "L1", "st99"), "gw-x")
    forged = make_batch([completion(lots[0], seed=20).model_copy(update={"source": other})])
    reply = station.batch(forged)
    assert outcomes(reply) == ["rejected"] and reply.replies[0].body["error_code"] == "INVALID_REQUEST"

    empty = json.loads(forged.to_bytes()) | {"records": [], "message_id": str(uuid.uuid4())}
    station.send(STATION.event(Name.PROCESS_COMPLETED), json.dumps(empty).encode(), empty["message_id"])
    refused = Envelope.from_bytes(station.reply_raw(empty["message_id"]))  # one v1 answer to the batch id
    assert refused.payload["in_reply_to"] == empty["message_id"]
    assert refused.payload["body"]["error_code"] == "INVALID_REQUEST"

    future = json.loads(completion(lots[0], seed=21).to_bytes()) | {"v": 99}
    future_raw = json.dumps(future).encode()
    station.send(STATION.event(Name.PROCESS_COMPLETED), future_raw, future["message_id"])
    answer = Envelope.from_bytes(station.reply_raw(future["message_id"])).payload
    assert answer["in_reply_to"] == future["message_id"] and answer["outcome"] == "rejected"
    assert answer["body"]["error_code"] == "UNSUPPORTED_MESSAGE_VERSION", answer
    letter = db.execute("SELECT error_code, message_id::text FROM dead_letters WHERE payload = %s", (future_raw,))
    assert letter.fetchone() == ("UNSUPPORTED_MESSAGE_VERSION", future["message_id"])

    # The next messages flow, v1 and v2 side by side (the batcher may put them in one transaction).
    single, batched = completion(lots[0], seed=22), make_batch([completion(lots[1], seed=23)])
    station.send(STATION.event(Name.PROCESS_COMPLETED), single.to_bytes(), str(single.message_id))
    reply = station.batch(batched)
    first = ReplyPayload.model_validate(Envelope.from_bytes(station.reply_raw(str(single.message_id))).payload)
    assert first.outcome is Outcome.ACCEPTED and outcomes(reply) == ["accepted"]
    assert stored(db, [single.message_id, batched.read_record(0).message_id]) == 2


def test_reply_template_writes_what_pydantic_writes_for_a_batch() -> None:
    from cloud_api.ingestor.handler import ReplyTemplate
    from cloud_api.ingestor.runner import RESPONDER
    from cloud_api.services.handlers import Answer

    answers: list[tuple[uuid.UUID, Any]] = [
        (uuid.uuid4(), Answer(Outcome.ACCEPTED, 200, {"message": '따옴표 "x" %s', "data": {"n": [1, 2.5, None]}})),
        (uuid.uuid4(), Answer(Outcome.REJECTED, 422, {"at": uuid.UUID(int=3), "nan": float("nan")})),  # pydantic's way
    ]
    batch_id = uuid.uuid4()
    raw = ReplyTemplate(RESPONDER).render_batch(batch_id, answers)
    reply = BatchReply.from_bytes(raw)
    assert reply.in_reply_to == batch_id and reply.source == RESPONDER
    assert [r.in_reply_to for r in reply.replies] == [a[0] for a in answers]
    assert reply.replies[0].body == answers[0][1].body and reply.replies[1].body["at"] == str(uuid.UUID(int=3))
    again = BatchReply(**{**reply.model_dump(), "replies": reply.replies[:1]})
    assert json.loads(again.to_bytes())["replies"] == json.loads(raw)["replies"][:1]  # same keys, same order
    assert list(json.loads(raw)) == list(json.loads(again.to_bytes()))


def test_each_record_of_a_v2_message_holds_one_slot_and_a_reconnect_gives_them_back() -> None:
    from cloud_api.ingestor.batch_messages import BatchAnswers, read_batch, split
    from cloud_api.ingestor.batching import CompletionBatcher, Pending
    from cloud_api.ingestor.handler import completion_item

    released: list[int] = []
    batcher = CompletionBatcher(None, "ko", None, None, lambda: released.append(1))  # type: ignore[arg-type]
    batch = make_batch([completion("WF-KR-240101D-001", seed=i) for i in range(3)])
    topic = STATION.event(Name.PROCESS_COMPLETED)
    parsed, read = read_batch(topic, batch.to_bytes())
    answers = BatchAnswers(None, topic, read)
    work = split(topic, parsed, answers, "ko")
    pendings = []
    for index, envelope in work.readable:
        item = completion_item(parsed, envelope)
        assert item is not None
        pendings.append(Pending(None, *item, None, answers, index))  # type: ignore[arg-type]
        batcher.put(pendings[-1])
    assert batcher.discard() == 3 and len(released) == 3  # one slot per record, all given back
    assert answers.missing == 3  # nobody answered: the broker or the station sends the message again
    letter = pendings[2].dead_letter()
    assert letter.message_id == batch.read_record(2).message_id
    assert Envelope.from_bytes(letter.payload) == batch.read_record(2)  # the v1 envelope the record stands for
