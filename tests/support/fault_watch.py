"""Observation for the fault tests: logs, latencies, an MQTT sniffer, broker counters, waits and seeded randomness."""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from tests.support.fault_processes import Gateway
from tests.support.verifier import Produced


def grep_log(path: Path, needle: str) -> list[str]:
    try:
        return [line for line in path.read_text(errors="replace").splitlines() if needle in line]
    except OSError:
        return []


def latency_stats(items: list[Produced], written_at: dict[str, float]) -> dict[str, float]:
    """Write → disposition latency per file (the rename into completed/ sets the file's ctime), in seconds."""
    samples = []
    for item in items:
        try:
            moved = os.stat(item.work_dir / "completed" / item.name).st_ctime
        except FileNotFoundError:
            continue
        samples.append(moved - written_at[item.name])
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "max": round(ordered[-1], 2),
    }


class Sniffer:
    """A plain MQTT 5 subscriber that keeps a copy of every envelope published on `topic`."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"sniffer-{os.getpid()}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        if not self._subscribed.wait(10):
            raise RuntimeError(f"could not subscribe to {topic}")

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def broker_stat(port: int, topic: str, timeout: float = 5.0) -> int | None:
    """One `$SYS` counter of the broker (published every `sys_interval` second), else None."""
    seen: list[int] = []
    done = threading.Event()

    def on_message(client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            seen.append(int(message.payload))
        except ValueError:
            return
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    try:
        client.connect("127.0.0.1", port)
    except OSError:
        return None
    client.subscribe(topic, qos=0)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.loop_stop()
        client.disconnect()
    return seen[0] if seen else None


def completed_count(gateways: Iterable[Gateway]) -> int:
    """Result files in the gateways' completed/ folders (a cheap progress gauge while a burst runs).

    The `.duplicate.log` notes a resent file leaves beside itself are not files: counted, they let the gauge pass
    the number of files dropped (a gateway crash test once read 454 of 400).
    """
    total = 0
    for gateway in gateways:
        with os.scandir(gateway.completed) as entries:
            total += sum(1 for entry in entries if not entry.name.endswith(".duplicate.log"))
    return total


def wait_for(predicate: Callable[[], bool], timeout: float, poll: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()


def progress_points(rng: random.Random, total: int, count: int, low: float = 0.05, high: float = 0.9) -> list[int]:
    """`count` increasing random numbers of completed files in [low·total, high·total]: when to strike."""
    return sorted(rng.sample(range(int(low * total), int(high * total)), count))


def fault_rng(name: str) -> random.Random:
    """A seeded RNG per test; `MES_FAULT_SEED` replays a run, the seed used is printed either way."""
    seed = int(os.environ.get("MES_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"\n[{name}] MES_FAULT_SEED={seed}")
    return random.Random(f"{seed}|{name}")


def outcomes(conn: psycopg.Connection[Any], since: datetime) -> dict[str, int]:
    """processed_messages outcomes (accepted / duplicate / rejected) recorded since `since`."""
    rows = conn.execute(
        "SELECT outcome, count(*) FROM processed_messages WHERE received_at >= %s GROUP BY 1", (since,)
    ).fetchall()
    return {str(outcome): int(n) for outcome, n in rows}
