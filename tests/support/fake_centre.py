"""A fake centre on a real Mosquitto: answers station requests (v1, and v2 batches unless told to be old).

It subscribes like the ingestor, records every message it gets (the records of a v2 message flattened into the
v1 envelopes they stand for), and answers each request that names a response topic: a v1 reply per v1 message,
one `BatchReply` per v2 message. `answer` decides each record's reply (accepted by default). With
`speaks_v2=False` it behaves like a centre older than envelope v2: a v2 message gets the v1 INVALID_REQUEST
refusal that its envelope check gives (`v: Input should be 1`). `set_online` says online/offline on a retained
ingestor service state, as the real ingestor does.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mes_contracts.batch import BatchEnvelope, BatchReply, envelope_version
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload, Source, make_envelope
from mes_contracts.topics import ingestor_subscriptions, service_address

CENTRE = Source(site="central", line="central", station="fake", gateway_id="fake")
SERVICE_STATE = service_address("fake-ingestor").state()
Answer = Callable[[Envelope], ReplyPayload]


def accepted(envelope: Envelope) -> ReplyPayload:
    return ReplyPayload(
        in_reply_to=envelope.message_id,
        outcome=Outcome.ACCEPTED,
        http_status=200,
        body={"status": "success", "message": "완공이 등록되었습니다", "data": {}},
    )


def rejected(envelope: Envelope, status: int = 422, code: str = "INVALID_PROCESS_DATA") -> ReplyPayload:
    return ReplyPayload(
        in_reply_to=envelope.message_id,
        outcome=Outcome.REJECTED,
        http_status=status,
        body={"status": "error", "error_code": code, "message": "공정 데이터가 올바르지 않습니다", "data": {}},
    )


def version_refusal(batch_id: uuid.UUID, topic: str) -> ReplyPayload:
    """What a centre older than v2 answers a v2 message (cloud_api dead letters: an unreadable envelope)."""
    return ReplyPayload(
        in_reply_to=batch_id,
        outcome=Outcome.REJECTED,
        http_status=400,
        body={
            "status": "error",
            "error_code": "INVALID_REQUEST",
            "message": "요청이 올바르지 않습니다",
            "data": {
                "error_class": "cloud_api.ingestor.handler.UnreadableMessage",
                "error": f"{topic}: v: Input should be 1; seq: Field required; payload: Field required",
                "message_id": str(batch_id),
            },
        },
    )


class FakeCentre:
    def __init__(self, port: int, answer: Answer = accepted, speaks_v2: bool = True, name: str = "fake-centre"):
        self.answer = answer
        self.speaks_v2 = speaks_v2
        self.received: list[Envelope] = []  # every record, v2 ones flattened
        self.messages: list[tuple[int, int]] = []  # (envelope version, records) per message
        self.replies_sent = 0
        self._lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        self._client.on_connect = self._on_connect  # subscribe again after a broker restart
        self._client.reconnect_delay_set(1, 2)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        for topic in ingestor_subscriptions():
            client.subscribe(topic, qos=1)

    def set_online(self, online: bool) -> None:
        payload = json.dumps({"service": "ingestor", "online": online})
        self._client.publish(SERVICE_STATE, payload, qos=1, retain=True).wait_for_publish(5)

    def records_of(self, message_type: MessageType) -> list[Envelope]:
        with self._lock:
            return [e for e in self.received if e.type is message_type]

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        raw = bytes(message.payload)
        if envelope_version(raw) == 2:
            batch = BatchEnvelope.from_bytes(raw)
            records = [batch.read_record(i) for i in range(len(batch.records))]
            self._note(2, records)
            if not self.speaks_v2:
                self._reply(message, _v1(version_refusal(batch.message_id, message.topic)))
                return
            replies = [self.answer(record) for record in records]
            reply = BatchReply(
                message_id=uuid.uuid4(),
                source=CENTRE,
                occurred_at=datetime.now(UTC),
                in_reply_to=batch.message_id,
                replies=replies,
            )
            self._reply(message, reply.to_bytes())
            return
        envelope = Envelope.from_bytes(raw)
        self._note(1, [envelope])
        self._reply(message, _v1(self.answer(envelope)))

    def _note(self, version: int, records: list[Envelope]) -> None:
        with self._lock:
            self.messages.append((version, len(records)))
            self.received.extend(records)

    def _reply(self, message: mqtt.MQTTMessage, payload: bytes) -> None:
        response_topic = getattr(message.properties, "ResponseTopic", None)
        if not response_topic:
            return  # an event nobody waits on (a print result published singly)
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = message.properties.CorrelationData  # type: ignore[union-attr]
        self._client.publish(response_topic, payload, qos=1, properties=props)
        with self._lock:
            self.replies_sent += 1

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def answer_batch(client: mqtt.Client, message: mqtt.MQTTMessage, batch: BatchEnvelope) -> None:
    """Every record of `batch` accepted, in one BatchReply on the message's response topic (if it names one)."""
    replies = [accepted(batch.read_record(i)) for i in range(len(batch.records))]
    reply = BatchReply(
        message_id=uuid.uuid4(),
        source=CENTRE,
        occurred_at=datetime.now(UTC),
        in_reply_to=batch.message_id,
        replies=replies,
    )
    response_topic = getattr(message.properties, "ResponseTopic", None)
    if response_topic:
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = message.properties.CorrelationData  # type: ignore[union-attr]
        client.publish(response_topic, reply.to_bytes(), qos=1, properties=props)


def _v1(reply: ReplyPayload) -> bytes:
    return make_envelope(MessageType.REPLY, CENTRE, 0, reply.model_dump(mode="json")).to_bytes()
