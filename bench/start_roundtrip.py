"""Start (착공) round-trip latency, open loop at fixed rates, over MQTT 5 request/response and over REST."""

from __future__ import annotations

import argparse
import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench._stack import (
    BenchStack,
    bench_stack,
    cpu_seconds,
    cpu_used,
    create_lots,
    percentiles,
    print_cpu,
    write_results,
)
from line_simulator.clock import KST
from line_simulator.payloads import start_request
from mes_contracts.envelope import MessageType, Source, make_envelope
from mes_contracts.topics import Name, StationAddress

STATION = StationAddress("KR", "L1", "stbench")
REPLY_WAIT_S = 30.0


def bodies(lots: list[str]) -> Iterator[dict[str, Any]]:
    now = datetime.now(KST)
    for i, lot in enumerate(lots):
        yield start_request("PROC-001", lot, f"W{i % 10 + 1:03d}", now)


def summarize(
    transport: str,
    rate: float,
    intended: list[float],
    done: dict[int, float],
    outcomes: dict[int, str],
    lag: list[float],
) -> dict[str, Any]:
    latencies = [(done[i] - intended[i]) * 1000 for i in range(len(intended)) if i in done]
    bad = {str(v) for v in outcomes.values() if v not in ("accepted", "200")}
    span = max(done.values(), default=0.0) - (intended[0] if intended else 0.0)
    return {
        "transport": transport,
        "rate": rate,
        "sent": len(intended),
        "answered": len(done),
        "accepted": sum(v in ("accepted", "200") for v in outcomes.values()),
        "errors": sorted(bad)[:5],
        "latency_ms": percentiles(latencies),
        "achieved_per_s": round(len(done) / span, 1) if span > 0 else 0.0,
        "send_lag_ms_max": round(max(lag, default=0.0) * 1000, 3),
    }


def mqtt_run(stack: BenchStack, lots: list[str], rate: float) -> dict[str, Any]:
    """One paho client: a timer thread publishes on schedule, the network thread stamps each reply."""
    received: dict[bytes, tuple[float, bytes]] = {}
    all_in = threading.Event()

    def on_message(client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        corr = getattr(message.properties, "CorrelationData", b"")
        received[bytes(corr)] = (time.perf_counter(), bytes(message.payload))
        if len(received) >= len(lots):
            all_in.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{time.time_ns()}", protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", stack.mqtt_port)
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    try:
        subscribed = client.subscribe(STATION.reply(), qos=1)
        assert subscribed[0] == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.3)
        source = Source.of(STATION, "gw-bench")
        request_topic = STATION.request(Name.PROCESS_START)
        messages = []
        for seq, body in enumerate(bodies(lots), start=1):
            envelope = make_envelope(MessageType.PROCESS_START_REQUEST, source, seq, body)
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = STATION.reply()
            correlation = str(envelope.message_id).encode()
            props.CorrelationData = correlation
            messages.append((correlation, envelope.to_bytes(), props))
        intended, lag = [], []
        start = time.perf_counter() + 0.05
        for i, (_, payload, props) in enumerate(messages):
            due = start + i / rate
            while (delay := due - time.perf_counter()) > 0:
                time.sleep(min(delay, 0.01))
            intended.append(due)
            client.publish(request_topic, payload, qos=1, properties=props)
            lag.append(time.perf_counter() - due)
        all_in.wait(REPLY_WAIT_S)
    finally:
        client.loop_stop()
        client.disconnect()
    done, outcomes = {}, {}
    for i, (corr, _, _) in enumerate(messages):
        if corr in received:
            done[i] = received[corr][0]
            reply = json.loads(received[corr][1])["payload"]
            outcomes[i] = (
                reply["outcome"]
                if reply["outcome"] == "accepted"
                else f"{reply['outcome']}:{reply['body'].get('error_code')}"
            )
    return summarize("mqtt", rate, intended, done, outcomes, lag)


def rest_run(stack: BenchStack, lots: list[str], rate: float, concurrency: int = 16) -> dict[str, Any]:
    """A timer thread queues each start on schedule; `concurrency` threads, each with a keep-alive httpx.Client,
    send them. Latency counts from the scheduled time, so waiting for a free connection is included."""
    payloads = list(bodies(lots))
    intended: list[float] = []
    lag: list[float] = []
    done: dict[int, float] = {}
    outcomes: dict[int, str] = {}
    work: queue.Queue[int | None] = queue.Queue()
    give_up = time.perf_counter() + len(payloads) / rate + REPLY_WAIT_S

    def sender() -> None:
        with httpx.Client(base_url=stack.api_url, timeout=REPLY_WAIT_S, headers=stack.auth_headers) as client:
            client.get("/health")  # connect before the clock starts
            ready.wait()
            while (i := work.get()) is not None:
                if time.perf_counter() > give_up:
                    outcomes[i] = "not sent (gave up)"
                    continue
                try:
                    response = client.post("/api/v1/process/start", json=payloads[i])
                except httpx.HTTPError as error:
                    outcomes[i] = type(error).__name__
                    continue
                done[i] = time.perf_counter()
                outcomes[i] = (
                    "200"
                    if response.status_code == 200
                    else f"{response.status_code}:{response.json().get('error_code')}"
                )

    ready = threading.Event()
    threads = [threading.Thread(target=sender, daemon=True) for _ in range(max(1, min(concurrency, 256)))]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    ready.set()
    start = time.perf_counter() + 0.05
    for i in range(len(payloads)):
        due = start + i / rate
        while (delay := due - time.perf_counter()) > 0:
            time.sleep(min(delay, 0.01))
        intended.append(due)
        work.put(i)
        lag.append(time.perf_counter() - due)
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join(max(0.1, give_up + 5 - time.perf_counter()))
    return summarize("rest", rate, intended, done, outcomes, lag)


def measure(stack: BenchStack, transport: str, lots: list[str], rate: float, concurrency: int) -> dict[str, Any]:
    return mqtt_run(stack, lots, rate) if transport == "mqtt" else rest_run(stack, lots, rate, concurrency)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'transport':<9} {'rate/s':>6} {'sent':>5} {'ok':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'lag max':>8} {'done/s':>7}  errors"
    )
    for r in rows:
        lat = r["latency_ms"]
        print(
            f"{r['transport']:<9} {r['rate']:>6g} {r['sent']:>5} {r['accepted']:>5} {lat.get('p50', 0):>8.2f} "
            f"{lat.get('p95', 0):>8.2f} {lat.get('p99', 0):>8.2f} {lat.get('max', 0):>8.2f} "
            f"{r['send_lag_ms_max']:>8.2f} {r['achieved_per_s']:>7.1f}  {','.join(r['errors']) or '-'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per rate and transport")
    parser.add_argument("--rates", default="20,200", help="comma-separated starts per second")
    parser.add_argument("--transports", default="mqtt,rest")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured starts before each run")
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--rest-concurrency", type=int, default=16, help="REST sender threads (connections)")
    parser.add_argument("--ingestors", type=int, default=1, help="`mes ingest` processes (shared subscription)")
    parser.add_argument("--log-level", default="INFO", help="MES_LOG_LEVEL of the API and ingestor")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    transports = args.transports.split(",")
    runs = [(t, r, max(1, min(int(r * args.seconds), 20_000))) for r in rates for t in transports]
    with bench_stack(args.api_workers, args.log_level, args.keep_logs, args.ingestors) as stack:
        needed = sum(n + args.warmup for _, _, n in runs)
        began = time.perf_counter()
        lots = create_lots(stack.api_url, needed, headers=stack.auth_headers)
        print(f"created {needed} LOTs in {time.perf_counter() - began:.1f} s")
        rows, used = [], 0
        for transport, rate, count in runs:
            measure(stack, transport, lots[used : used + args.warmup], min(rate, 50.0), args.rest_concurrency)
            used += args.warmup
            before, began = cpu_seconds(stack.groups()), time.perf_counter()
            row = measure(stack, transport, lots[used : used + count], rate, args.rest_concurrency)
            row["cpu"] = cpu_used(before, cpu_seconds(stack.groups()), time.perf_counter() - began)
            used += count
            rows.append(row)
            print(
                f"{transport} @ {rate:g}/s: p99 {row['latency_ms'].get('p99')} ms, "
                f"{row['accepted']}/{row['sent']} accepted"
            )
    print_table(rows)
    for row in rows:
        print(f"\n{row['transport']} @ {row['rate']:g}/s", end=": ")
        print_cpu(row["cpu"])
    path = write_results("start_roundtrip", {"args": vars(args), "runs": rows})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
