"""Outbox backlog: gateway RSS while N records wait out a server outage, then the drain rate to committed rows."""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench._stack import BenchStack, bench_stack, cpu_seconds, cpu_used, create_lots, print_cpu, rss_kb, write_results
from bench.completion_throughput import count_dir, stage_files, start_gateways, start_proc001
from deploy.localstack.children import mes_command
from deploy.localstack.service_state import wait_service_online
from line_simulator.clock import KST
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload, Source, make_envelope
from mes_contracts.topics import ingestor_subscriptions, service_address

POLL_S = 0.25
FAKE_ID = "bench-fake-ingestor"


def hwm_kb(pid: int) -> int | None:
    """VmHWM (peak RSS since start) of a process in KiB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class FakeIngestor:
    """Answers every completion `accepted` at once (no database): what the gateway alone can drain."""

    def __init__(self, port: int) -> None:
        self.answered = 0
        self._lock = threading.Lock()
        self._responder = Source(site="central", line="central", station="fake", gateway_id="fake")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=FAKE_ID, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        # Its own share group: the stopped ingestor's persistent session still holds a share of the default one.
        for topic in ingestor_subscriptions(share_group="bench-fake"):
            self.client.subscribe(topic, qos=1)
        time.sleep(0.3)
        state = json.dumps({"service": "ingestor", "online": True})
        self.client.publish(service_address(FAKE_ID).state(), state, qos=1, retain=True).wait_for_publish(5)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        request = Envelope.from_bytes(bytes(message.payload))
        reply = ReplyPayload(
            in_reply_to=request.message_id,
            outcome=Outcome.ACCEPTED,
            http_status=200,
            body={"status": "success", "message": "완공이 등록되었습니다", "data": {}},
        )
        answer = make_envelope(MessageType.REPLY, self._responder, 0, reply.model_dump(mode="json"))
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = message.properties.CorrelationData  # type: ignore[union-attr]
        client.publish(
            message.properties.ResponseTopic,  # type: ignore[union-attr]
            answer.to_bytes(),
            qos=1,
            properties=props,
        )
        with self._lock:
            self.answered += 1

    def close(self) -> None:
        self.client.publish(service_address(FAKE_ID).state(), b"", qos=1, retain=True).wait_for_publish(5)
        self.client.loop_stop()
        self.client.disconnect()


def gateway_status(url: str) -> dict[str, Any]:
    try:
        return dict(httpx.get(f"{url}/status", timeout=5).json())
    except (httpx.HTTPError, ValueError):
        return {}


def wait_until(check: Any, timeout: float, what: str) -> float:
    began = time.perf_counter()
    while not check():
        if time.perf_counter() - began > timeout:
            raise TimeoutError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(POLL_S)
    return time.perf_counter() - began


def absorb(station: dict[str, Any], moves: list[Any], timeout: float) -> dict[str, Any]:
    """Drop every file while no ingestor is online; wait until all are committed to the outbox."""
    pid = station["child"].process.pid
    t0 = time.perf_counter()
    for temp, final in moves:
        temp.rename(final)
    peak = 0

    def all_in() -> bool:
        nonlocal peak
        peak = max(peak, rss_kb(pid) or 0)
        return gateway_status(station["url"]).get("outbox", {}).get("depth") == len(moves)

    elapsed = wait_until(all_in, timeout, "all files in the outbox")
    time.sleep(2.0)  # steady state with the whole backlog waiting
    status = gateway_status(station["url"])
    return {
        "absorb_s": round(elapsed, 2),
        "absorb_files_per_s": round(len(moves) / max(elapsed, 1e-9), 1),
        "rss_kb_waiting": rss_kb(pid),
        "rss_kb_peak_absorbing": max(peak, rss_kb(pid) or 0),
        "hwm_kb": hwm_kb(pid),
        "outbox_bytes": status.get("outbox", {}).get("bytes"),
        "pending_files_left": count_dir(station["dir"] / "pending"),
        "drop_s": round(time.perf_counter() - t0, 2),
        "availability_while_waiting": status.get("availability"),
    }


def drain(
    stack: BenchStack, station: dict[str, Any], total: int, fake: bool, ingestors: int, timeout: float
) -> dict[str, Any]:
    """Bring the centre back and time the backlog to committed rows (real) or answered records (fake)."""
    pid = station["child"].process.pid
    rows_before = 0 if fake else stack.count("SELECT count(*) FROM process_results")
    cpu_before = cpu_seconds(stack.groups())
    t0 = time.perf_counter()
    fake_ingestor = FakeIngestor(stack.mqtt_port) if fake else None
    if not fake:  # the same client ids: each resumes its persistent session in the shared subscription
        for n in range(1, ingestors + 1):
            stack.spawn(f"ingestor-{n}", mes_command("ingest"), {"MES_INGESTOR_CLIENT_ID": f"ingestor-bench-{n}"})
        for n in range(1, ingestors + 1):
            wait_service_online(stack.mqtt_port, f"ingestor-bench-{n}")
    online_s = time.perf_counter() - t0
    progress: list[tuple[float, int]] = []
    peak = 0

    def done() -> bool:
        nonlocal peak
        peak = max(peak, rss_kb(pid) or 0)
        if fake_ingestor is not None:
            count = count_dir(station["dir"] / "completed")
        else:
            count = stack.count("SELECT count(*) FROM process_results") - rows_before
        progress.append((round(time.perf_counter() - t0, 2), count))
        return count >= total

    try:
        elapsed = wait_until(done, timeout, "drain")
        moved = wait_until(lambda: count_dir(station["dir"] / "completed") >= total, timeout, "files moved")
    finally:
        if fake_ingestor is not None:
            fake_ingestor.close()
    cpu = cpu_used(cpu_before, cpu_seconds(stack.groups()), elapsed)
    return {
        "drain_s": round(elapsed, 2),
        "drain_records_per_s": round(total / max(elapsed, 1e-9), 1),
        "centre_online_after_s": round(online_s, 2),
        "all_files_moved_s": round(elapsed + moved, 2),
        "rss_kb_peak_draining": peak,
        "hwm_kb": hwm_kb(pid),
        "cpu": cpu,
        "progress": progress[::8],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000, help="records waiting in the outbox")
    parser.add_argument("--per-lot", type=int, default=4, help="files per LOT (distinct stamps)")
    parser.add_argument(
        "--mode",
        choices=("ingestor", "fake"),
        default="ingestor",
        help="drain into the real ingestor + PostgreSQL, or into an instant fake responder",
    )
    parser.add_argument("--ingestors", type=int, default=1, help="`mes ingest` processes while draining")
    parser.add_argument("--stable-window", type=float, default=0.2, help="MES_GW_STABLE_WINDOW_S")
    parser.add_argument("--gw-env", action="append", default=[], help="extra KEY=VALUE for the gateway")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    total = max(1, min(args.files, 100_000))
    fake = args.mode == "fake"
    extra = dict(item.split("=", 1) for item in args.gw_env)
    with bench_stack(1, "WARNING", args.keep_logs, args.ingestors) as stack:
        lots: list[str] = []
        started = (datetime.now(KST) - timedelta(minutes=10)).replace(microsecond=0)
        if not fake:
            lots = create_lots(stack.api_url, -(-total // args.per_lot), headers=stack.auth_headers)
            start_proc001(stack.api_url, lots, started, headers=stack.auth_headers)
        else:
            lots = [f"WF-KR-2401{1 + i // 999:02d}D-{1 + i % 999:03d}" for i in range(-(-total // args.per_lot))]
        for name in [n for n in stack.children if n.startswith("ingestor")]:
            stack.children.pop(name).stop()  # the outage: the ingestors say "offline" as they go
        station = start_gateways(stack, 1, args.stable_window, extra)["st01"]
        moves = stage_files({"st01": station}, lots, total, args.per_lot, started)
        print(f"outage: no ingestor online; dropping {total} files into one gateway")
        waiting = absorb(station, moves, args.timeout)
        print(
            f"{total} records in the outbox after {waiting['absorb_s']} s "
            f"({waiting['absorb_files_per_s']} files/s); gateway RSS {waiting['rss_kb_waiting'] / 1024:.1f} MiB "
            f"waiting, peak {waiting['rss_kb_peak_absorbing'] / 1024:.1f} MiB; outbox "
            f"{(waiting['outbox_bytes'] or 0) / (1 << 20):.1f} MiB"
        )
        drained = drain(stack, station, total, fake, max(1, min(args.ingestors, 8)), args.timeout)
        status = gateway_status(station["url"])
        rows = None if fake else stack.count("SELECT count(*) FROM process_results")
    print(
        f"drain ({args.mode}): {total} records in {drained['drain_s']} s -> {drained['drain_records_per_s']} "
        f"records/s (centre online after {drained['centre_online_after_s']} s; all files moved after "
        f"{drained['all_files_moved_s']} s); gateway RSS peak while draining "
        f"{drained['rss_kb_peak_draining'] / 1024:.1f} MiB, VmHWM {(drained['hwm_kb'] or 0) / 1024:.1f} MiB"
    )
    if rows is not None:
        print(f"process_results rows: {rows}")
    print_cpu(drained["cpu"])
    result = {
        "args": vars(args),
        "files": total,
        **waiting,
        **drained,
        "process_results_rows": rows,
        "gateway_counters": status.get("counters"),
        "outbox_after": status.get("outbox"),
    }
    print(f"results: {write_results('outbox_drain', result)}")


if __name__ == "__main__":
    main()
