"""A small synchronous MQTT 5 requester for tests: publish an envelope, collect replies on a topic."""

from __future__ import annotations

import queue
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mes_contracts.envelope import Envelope, ReplyPayload


class Requester:
    def __init__(self, port: int, reply_topic: str, client_id: str):
        self.replies: queue.Queue[ReplyPayload] = queue.Queue()
        self.reply_topic = reply_topic
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        result, _ = self.client.subscribe(reply_topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.2)

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.replies.put(ReplyPayload.model_validate(Envelope.from_bytes(bytes(message.payload)).payload))

    def send(self, topic: str, envelope: Envelope, with_reply: bool = True) -> None:
        props = Properties(PacketTypes.PUBLISH)
        if with_reply:
            props.ResponseTopic = self.reply_topic
            props.CorrelationData = str(envelope.message_id).encode()
        info = self.client.publish(topic, envelope.to_bytes(), qos=1, properties=props)
        info.wait_for_publish(5)

    def reply(self, timeout: float = 10) -> ReplyPayload:
        return self.replies.get(timeout=timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
