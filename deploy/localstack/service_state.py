"""Wait for a central service's retained MQTT state (online/offline) before relying on it."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt

from mes_contracts.topics import service_address


def wait_service_online(
    port: int,
    service_id: str,
    timeout: float = 30.0,
    online: bool = True,
    username: str | None = None,
    password: str | None = None,
) -> None:
    topic = service_address(service_id).state()
    seen = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if json.loads(message.payload).get("online") is online:
            seen.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    if username is not None:
        client.username_pw_set(username, password)
    client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        if not seen.wait(timeout):
            raise TimeoutError(f"{service_id} did not report online={online} on {topic} within {timeout} s")
    finally:
        client.loop_stop()
        client.disconnect()
