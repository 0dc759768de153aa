"""1,000 stored records replayed straight to the broker (same envelopes): all answered duplicate, no new row.

The gateway sends a backlog in v2 messages (many records each); the replay sends every stored record again once,
half alone as v1 and half in v2 messages of 100, so both versions meet records stored under the other."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mes_contracts.batch import BatchEnvelope, BatchReply, envelope_version, make_batch
from mes_contracts.envelope import Envelope, MessageType, ReplyPayload
from mes_contracts.topics import Name, StationAddress
from tests.support.faults import (
    Central,
    Rig,
    Sniffer,
    completion_files,
    drop,
    produced,
    run_start_time,
    wait_disposed,
)
from tests.support.verifier import assert_clean, verify

RECORDS = 1000
STATION = StationAddress("KR", "L1", "st01")


class Replayer:
    """A paho MQTT 5 client publishing raw envelopes with a response topic, counting the replies (station gone)."""

    def __init__(self, port: int, reply_topic: str) -> None:
        self.reply_topic = reply_topic  # the ingestor answers a station only on that station's own reply topic
        self.replies: list[ReplyPayload] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"replayer-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.max_inflight_messages_set(100)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(self.reply_topic, qos=1)
        assert self._ready.wait(10)

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        raw = bytes(message.payload)
        if envelope_version(raw) == 2:
            replies = list(BatchReply.from_bytes(raw).replies)  # one per record of a v2 message
        else:
            envelope = Envelope.from_bytes(raw)
            if envelope.type is not MessageType.REPLY:
                return
            replies = [ReplyPayload.model_validate(envelope.payload)]
        with self._lock:
            self.replies.extend(replies)

    def publish(self, topic: str, raw: bytes, message_id: uuid.UUID) -> mqtt.MQTTMessageInfo:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = str(message_id).encode()
        return self.client.publish(topic, raw, qos=1, properties=props)

    def count(self) -> int:
        with self._lock:
            return len(self.replies)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def records_of(raw: bytes) -> list[Envelope]:
    """The records a captured message carries: itself (v1), or each record of a v2 message as its v1 envelope."""
    if envelope_version(raw) == 2:
        batch = BatchEnvelope.from_bytes(raw)
        return [batch.read_record(i) for i in range(len(batch.records))]
    return [Envelope.from_bytes(raw)]


@pytest.mark.timeout(300)
def test_replayed_envelopes_are_answered_duplicate_and_store_nothing(
    central: Central, rig: Rig, db: psycopg.Connection[Any]
) -> None:
    started = run_start_time()
    lots = central.create_started_lots(50, started)
    files = completion_files(lots, RECORDS, started, seed=9)
    sniffer = Sniffer(rig.broker.port, STATION.event(Name.PROCESS_COMPLETED))  # a copy of all the station sends
    rig.start_ingestor()
    gateway = rig.gateway(STATION.station)
    items = produced(gateway.work_dir, files)
    drop(gateway.pending, files)
    first_pass = wait_disposed(items, 180)
    assert_clean(verify(items, db))
    gateway.stop()
    time.sleep(0.5)
    sniffer.close()

    # The envelope each file was stored with (a resend of the same id may have been seen twice), read out of the
    # v2 messages the gateway packed them in.
    stored_ids = {
        row[0]
        for row in db.execute(
            "SELECT r.message_id FROM process_results r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = ANY(%s)",
            (lots,),
        ).fetchall()
    }
    envelopes: dict[uuid.UUID, tuple[str, Envelope]] = {}
    for topic, raw in sniffer.snapshot():
        for envelope in records_of(raw):
            if envelope.type is MessageType.PROCESS_COMPLETED and envelope.message_id in stored_ids:
                envelopes.setdefault(envelope.message_id, (topic, envelope))
    assert len(envelopes) == RECORDS, f"captured {len(envelopes)} stored envelopes of {RECORDS}"
    assert any(envelope_version(raw) == 2 for _, raw in sniffer.snapshot()), "the backlog went in v2 messages"

    def rows() -> tuple[int, int]:
        results = db.execute("SELECT count(*) FROM process_results").fetchone()
        messages = db.execute("SELECT count(*) FROM processed_messages").fetchone()
        assert results is not None and messages is not None
        return int(results[0]), int(messages[0])

    before = rows()
    replayer = Replayer(rig.broker.port, STATION.reply())
    began = time.monotonic()
    try:
        captured = list(envelopes.values())
        for topic, envelope in captured[: RECORDS // 2]:
            replayer.publish(topic, envelope.to_bytes(), envelope.message_id)
        rest = captured[RECORDS // 2 :]
        for start in range(0, len(rest), 100):
            batch = make_batch([envelope for _, envelope in rest[start : start + 100]])
            replayer.publish(rest[start][0], batch.to_bytes(), batch.message_id)
        deadline = time.monotonic() + 120
        while replayer.count() < RECORDS and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # anything beyond one answer per envelope would show up now
    finally:
        replayer.close()
    took = time.monotonic() - began
    after = rows()
    by_outcome = Counter(reply.outcome.value for reply in replayer.replies)
    answered = {reply.in_reply_to for reply in replayer.replies}
    print(
        f"\nfirst pass {RECORDS} files in {first_pass:.1f} s; replayed {len(envelopes)} envelopes in {took:.1f} s: "
        f"replies {dict(by_outcome)}; rows/processed_messages before {before}, after {after}"
    )
    assert after == before, "a replay must not add rows"
    assert by_outcome == Counter({"duplicate": RECORDS})
    assert answered == set(envelopes)
    assert all(reply.http_status == 200 for reply in replayer.replies)
    assert_clean(verify(items, db))
