"""Raw MQTT limits on the bench's own Mosquitto: a bare MQTT 5 request/reply echo and a bare QoS 1 publish stream;
and the light publisher that replays completion envelopes to the ingestors (issue 18 point 4).

No MES code on the message path: paho clients with TCP_NODELAY, payloads the size of the project's envelopes.
The echo and the stream's two ends run as separate processes (`python -m bench.raw_mqtt echo|sink|pub`), like the
gateway and the ingestor, so the figures are process → broker → process, the same hops the project pays.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench._stack import percentiles
from line_simulator.clock import KST
from line_simulator.payloads import start_request
from mes_contracts.envelope import MessageType, Source, make_envelope
from mes_contracts.topics import StationAddress

ECHO_REQUEST = "raw/echo/req"
ECHO_REPLY = "raw/echo/reply"
STREAM_TOPIC = "raw/stream"
REPLY_WAIT_S = 30.0
STATION = StationAddress("KR", "L1", "stbench")


def start_sized_payload() -> bytes:
    """A real start request envelope: what the project sends per start, so both sides move the same bytes."""
    body = start_request("PROC-001", "WF-KR-240101D-001", "W001", datetime.now(KST))
    return make_envelope(MessageType.PROCESS_START_REQUEST, Source.of(STATION, "gw-raw"), 1, body).to_bytes()


def connect(port: int, name: str) -> mqtt.Client:
    """A paho MQTT 5 client with TCP_NODELAY, its network loop running."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"raw-{name}-{time.time_ns()}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    return client


def subscribed(client: mqtt.Client, topic: str) -> None:
    done = threading.Event()
    client.on_subscribe = lambda *args: done.set()
    client.subscribe(topic, qos=1)
    if not done.wait(10):
        raise TimeoutError(f"no SUBACK for {topic}")


# -- the child processes ---------------------------------------------------------------------------------------------
def run_echo(port: int) -> None:
    """Answer every request on ECHO_REQUEST to its ResponseTopic with its CorrelationData, same payload back."""

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = message.properties.CorrelationData  # type: ignore[union-attr]
        client.publish(message.properties.ResponseTopic, message.payload, qos=1, properties=props)  # type: ignore[union-attr]

    client = connect(port, "echo")
    client.on_message = on_message
    subscribed(client, ECHO_REQUEST)
    print("ready", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    client.loop_stop()


def run_sink(port: int, count: int, timeout: float) -> None:
    """Count `count` messages on STREAM_TOPIC; print when the first and the last arrived (monotonic clock)."""
    arrivals: list[float] = []
    all_in = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        arrivals.append(time.monotonic())
        if len(arrivals) >= count:
            all_in.set()

    client = connect(port, "sink")
    client.on_message = on_message
    subscribed(client, STREAM_TOPIC)
    print("ready", flush=True)
    all_in.wait(timeout)
    client.loop_stop()
    last = arrivals[-1] if arrivals else time.monotonic()
    print(json.dumps({"received": len(arrivals), "first": arrivals[0] if arrivals else None, "last": last}))


def run_publisher(port: int, count: int, size: int) -> None:
    """Publish `count` QoS 1 messages of `size` bytes as fast as paho allows; print when it began and ended."""
    acked = 0
    all_acked = threading.Event()

    def on_publish(*args: Any) -> None:
        nonlocal acked
        acked += 1
        if acked >= count:
            all_acked.set()

    client = connect(port, "pub")
    client.on_publish = on_publish
    payload = (start_sized_payload() * (size // 200 + 1))[:size]
    began = time.monotonic()
    for _ in range(count):
        client.publish(STREAM_TOPIC, payload, qos=1)
    all_acked.wait(REPLY_WAIT_S + count / 100)
    print(json.dumps({"began": began, "acked": acked, "ended": time.monotonic()}))
    client.loop_stop()


def run_replay(port: int, path: str, topic: str, reply_topic: str, timeout: float) -> None:
    """Publish every message of `path` (one per line: a v1 envelope or a v2 batch of records) to `topic`, QoS 1,
    each with a ResponseTopic and its own CorrelationData, as a gateway with an unlimited window would; count the
    replies on `reply_topic` (one per message, v1 or v2); print when it began, when all were acked and when the
    last reply came (or `timeout` passed)."""
    payloads = Path(path).read_bytes().splitlines()
    acked = replies = 0
    all_acked, all_replied = threading.Event(), threading.Event()
    last_reply = 0.0

    def on_publish(*args: Any) -> None:
        nonlocal acked
        acked += 1
        if acked >= len(payloads):
            all_acked.set()

    def on_reply(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal replies, last_reply
        replies, last_reply = replies + 1, time.monotonic()
        if replies >= len(payloads):
            all_replied.set()

    client = connect(port, "replay")
    client.on_publish = on_publish
    client.on_message = on_reply
    subscribed(client, reply_topic)
    props = []
    for i in range(len(payloads)):
        p = Properties(PacketTypes.PUBLISH)
        p.ResponseTopic, p.CorrelationData = reply_topic, str(i).encode()
        props.append(p)
    began = time.monotonic()
    for payload, p in zip(payloads, props, strict=True):
        client.publish(topic, payload, qos=1, properties=p)
    all_acked.wait(timeout)
    acked_at = time.monotonic()
    all_replied.wait(max(0.0, timeout - (acked_at - began)))
    print(
        json.dumps(
            {"began": began, "acked": acked, "ended": acked_at, "replies": replies, "last_reply": last_reply or None}
        )
    )
    client.loop_stop()


# -- the parent side -------------------------------------------------------------------------------------------------
def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.raw_mqtt", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _ready(child: subprocess.Popen[str]) -> None:
    out: IO[str] | None = child.stdout
    if out is None or out.readline().strip() != "ready":
        child.kill()
        raise RuntimeError(f"raw MQTT child {child.args!r} did not start")


@contextmanager
def echo_process(port: int) -> Iterator[None]:
    child = _child("echo", "--port", str(port))
    try:
        _ready(child)
        yield
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


def echo_run(port: int, rate: float, count: int) -> dict[str, Any]:
    """Open loop at `rate` through the echo process; latency from the scheduled send to the reply (ms)."""
    payload = start_sized_payload()
    arrived: dict[bytes, float] = {}
    all_in = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        arrived[bytes(message.properties.CorrelationData)] = time.perf_counter()  # type: ignore[union-attr]
        if len(arrived) >= count:
            all_in.set()

    client = connect(port, "req")
    client.on_message = on_message
    try:
        subscribed(client, ECHO_REPLY)
        props = []
        for i in range(count):
            p = Properties(PacketTypes.PUBLISH)
            p.ResponseTopic, p.CorrelationData = ECHO_REPLY, str(i).encode()
            props.append(p)
        intended = []
        start = time.perf_counter() + 0.05
        for i, p in enumerate(props):
            due = start + i / rate
            while (delay := due - time.perf_counter()) > 0:
                time.sleep(min(delay, 0.01))
            intended.append(due)
            client.publish(ECHO_REQUEST, payload, qos=1, properties=p)
        all_in.wait(REPLY_WAIT_S)
    finally:
        client.loop_stop()
        client.disconnect()
    latencies = [
        (arrived[str(i).encode()] - due) * 1000 for i, due in enumerate(intended) if str(i).encode() in arrived
    ]
    return {"rate": rate, "sent": count, "answered": len(arrived), "latency_ms": percentiles(latencies)}


def publish_stream(port: int, count: int, size: int) -> dict[str, Any]:
    """Publisher process → Mosquitto → subscriber process, QoS 1: messages/s from the first send to the last arrival."""
    sink = _child("sink", "--port", str(port), "--count", str(count))
    try:
        _ready(sink)
        publisher = _child("pub", "--port", str(port), "--count", str(count), "--size", str(size))
        sent = json.loads(publisher.communicate(timeout=REPLY_WAIT_S + count / 100)[0])
        got = json.loads(sink.communicate(timeout=REPLY_WAIT_S)[0])
    finally:
        for child in (sink,):
            if child.poll() is None:
                child.kill()
    span = got["last"] - sent["began"]
    return {
        "messages": count,
        "payload_bytes": size,
        "received": got["received"],
        "acked": sent["acked"],
        "seconds": round(span, 3),
        "msg_per_s": round(got["received"] / span, 1) if span > 0 else 0.0,
    }


def replay(
    port: int, messages: list[bytes], topic: str, reply_topic: str, timeout: float = REPLY_WAIT_S
) -> dict[str, Any]:
    """The light publisher (a process of its own): `messages` (v1 envelopes or v2 batches) to `topic` as fast as
    paho publishes QoS 1; returns when every message is answered (one reply each) or `timeout` has passed."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as batch:
        batch.write(b"\n".join(messages))
        batch.flush()
        args = ("--path", batch.name, "--topic", topic, "--reply", reply_topic, "--timeout", str(timeout))
        child = _child("replay", "--port", str(port), *args)
        result: dict[str, Any] = json.loads(child.communicate(timeout=timeout + REPLY_WAIT_S)[0])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("echo", "sink", "pub", "replay"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--path", help="replay: messages (v1 envelopes or v2 batches), one per line")
    parser.add_argument("--topic", help="replay: where to publish")
    parser.add_argument("--reply", help="replay: the ResponseTopic")
    args = parser.parse_args()
    if args.mode == "echo":
        run_echo(args.port)
    elif args.mode == "replay":
        run_replay(args.port, args.path, args.topic, args.reply, args.timeout)
    elif args.mode == "sink":
        run_sink(args.port, args.count, args.timeout)
    else:
        run_publisher(args.port, args.count, args.size)


if __name__ == "__main__":
    main()
