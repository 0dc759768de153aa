"""The figures of bench/side_by_side.py: each project figure measured right after its raw limit, on one stack.

Every function takes the running bench stack and returns table rows: (figure, project value, raw value, unit,
ratio target, share of the machine used by other processes during the project's window). The project's paths are
the existing benches' code (start_roundtrip, completion_throughput, outbox_drain, ingest_batch); the raw limits
are bench/raw_mqtt.py and bench/raw_pg.py.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from hashlib import sha256
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from bench._stack import BenchStack, cpu_seconds, cpu_used
from bench.completion_throughput import stage_files, start_gateways, start_proc001, wait_all
from bench.outbox_drain import absorb, drain, wait_until
from bench.raw_mqtt import echo_process, echo_run, publish_stream, replay
from bench.raw_pg import store_vs_raw
from bench.start_roundtrip import mqtt_run
from deploy.localstack.children import mes_command
from deploy.localstack.service_state import wait_service_online
from line_simulator.clock import KST
from line_simulator.payloads import completion_record, render
from mes_contracts.batch import make_batch
from mes_contracts.completion import CompletionEvent, completion_file_name
from mes_contracts.envelope import MessageType, Source, make_envelope
from mes_contracts.topics import Name, StationAddress

REPLAY = StationAddress("KR", "L1", "st90")  # configured for PROC-001 by the bench stack; no gateway runs there


@dataclass(frozen=True)
class Sizes:
    """How much each figure sends; `--quick` uses the small set."""

    start_seconds: float = 10.0
    warmup: int = 50
    ingest_files: int = 4000
    stations: int = 8
    drain_files: int = 10_000
    per_lot: int = 4  # completion files per LOT in the ingest figure (completion_throughput's default)
    replay_records: int = 10_000
    replay_batch: int = 100  # records per v2 message in the replay (1: one v1 envelope per record)
    drain_per_lot: int = 10  # in the drain (re-tests; the drain's work per record is the same, and LOTs take time)
    stream_messages: int = 20_000
    store_records: int = 4000
    store_lots: int = 100
    timeout: float = 600.0


QUICK = Sizes(
    start_seconds=0.5, warmup=5, ingest_files=400, stations=2, drain_files=300, replay_records=300,
    stream_messages=1000, store_records=400, store_lots=20, timeout=120.0,
)  # fmt: skip


@dataclass
class Row:
    figure: str
    project: float
    raw: float
    unit: str
    target: str  # "<= 1.5" or ">= 0.75" (project / raw) or "" (shown, no target)
    other_pct: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.project / self.raw if self.raw else float("inf")

    @property
    def met(self) -> str:
        if not self.target:
            return "-"
        bound = float(self.target.split()[1])
        return "yes" if (self.ratio <= bound if self.target.startswith("<=") else self.ratio >= bound) else "NO"


class Lots:
    """LOT numbers created up front (REST, ~160/s), handed out in slices as the figures need them."""

    def __init__(self, numbers: list[str]) -> None:
        self.numbers, self.used = numbers, 0

    def take(self, count: int) -> list[str]:
        self.used += count
        if self.used > len(self.numbers):
            raise RuntimeError(f"LOT budget exhausted ({len(self.numbers)})")
        return self.numbers[self.used - count : self.used]


def lots_needed(sizes: Sizes, figures: list[str]) -> int:
    need = {
        "start-20": int(20 * sizes.start_seconds) + sizes.warmup,
        "start-200": int(200 * sizes.start_seconds) + sizes.warmup,
        "ingest": -(-sizes.ingest_files // sizes.per_lot),
        "drain": 2 * -(-sizes.drain_files // sizes.drain_per_lot),
        "replay": 2 * -(-sizes.replay_records // sizes.drain_per_lot),
    }
    return sum(need.get(f, 0) for f in figures)


def other_pct(stack: BenchStack, before: dict[str, float], wall: float) -> float:
    return cpu_used(before, cpu_seconds(stack.groups()), wall)["other processes"]["core_pct"]


def start_figure(stack: BenchStack, lots: Lots, sizes: Sizes, rate: float, target: float) -> list[Row]:
    """Bare echo at `rate`, then the project's start over MQTT at `rate` (fresh LOTs, PROC-001)."""
    count = max(1, int(rate * sizes.start_seconds))
    with echo_process(stack.mqtt_port):
        echo_run(stack.mqtt_port, min(rate, 50.0), sizes.warmup)
        echo = echo_run(stack.mqtt_port, rate, count)
    mqtt_run(stack, lots.take(sizes.warmup), min(rate, 50.0))
    before, began = cpu_seconds(stack.groups()), time.perf_counter()
    start = mqtt_run(stack, lots.take(count), rate)
    other = other_pct(stack, before, time.perf_counter() - began)
    if start["accepted"] != count or echo["answered"] != count:
        raise RuntimeError(f"start @ {rate:g}/s: {start['accepted']}/{count} accepted, echo {echo['answered']}")
    ours, raw = start["latency_ms"], echo["latency_ms"]
    rows = [Row(f"start MQTT @ {rate:g}/s {p.upper()}", ours[p], raw[p], "ms", "", other) for p in ("p50", "p95")]
    rows.append(Row(f"start MQTT @ {rate:g}/s P99", ours["p99"], raw["p99"], "ms", f"<= {target}", other))
    rows[-1].detail = {"start": start, "echo": echo}
    return rows


def completion_size() -> int:
    """Bytes of one completion envelope as a gateway publishes it (PROC-001 record): the stream's payload size."""
    now = datetime.now(KST)
    record = completion_record("PROC-001", "WF-KR-240101D-001", "W001", now, now, random.Random(1))
    source = Source.of(StationAddress("KR", "L1", "st01"), "gw-st01")
    return len(make_envelope(MessageType.PROCESS_COMPLETED, source, 1, record).to_bytes())


def stream(stack: BenchStack, sizes: Sizes) -> dict[str, Any]:
    return publish_stream(stack.mqtt_port, sizes.stream_messages, completion_size())


class Gateways:
    """The ingest figure's gateways, started once; the drain uses st01 of them."""

    def __init__(self) -> None:
        self.stations: dict[str, Any] = {}

    def get(self, stack: BenchStack, count: int) -> dict[str, Any]:
        if not self.stations:
            self.stations = start_gateways(stack, count, 0.2, {})
        return self.stations


def ingest_figure(stack: BenchStack, lots: Lots, sizes: Sizes, gateways: Gateways) -> list[Row]:
    """Bare stream, then `completion_throughput`'s workload: files into every station's pending/ at once."""
    raw = stream(stack, sizes)
    stations = gateways.get(stack, sizes.stations)
    numbers = lots.take(-(-sizes.ingest_files // sizes.per_lot))
    started = (datetime.now(KST) - timedelta(minutes=10)).replace(microsecond=0)
    start_proc001(stack.api_url, numbers, started, headers=stack.auth_headers)
    moves = stage_files(stations, numbers, sizes.ingest_files, sizes.per_lot, started)
    before, t0 = cpu_seconds(stack.groups()), time.perf_counter()
    for temp, final in moves:
        temp.rename(final)
    elapsed, progress = wait_all(stations, sizes.ingest_files, sizes.timeout, t0)
    done, failed = progress[-1][1], progress[-1][2]
    if done != sizes.ingest_files:
        raise RuntimeError(f"ingest: {done} completed, {failed} in error/ of {sizes.ingest_files}")
    row = Row(
        f"completion ingest, {len(stations)} gateways",
        round(done / elapsed, 1),
        raw["msg_per_s"],
        "per s",
        ">= 0.75",
        other_pct(stack, before, elapsed),
        {"stream": raw, "elapsed_s": round(elapsed, 2)},
    )
    return [row]


def _outage(stack: BenchStack, keep_sessions: int = 8) -> None:
    """Stop every ingestor; the persistent sessions of ingestor-bench-N for N > keep_sessions are ended too.

    Mosquitto (2.0) deals a shared subscription's messages round robin to every member session, offline ones
    included: a stale second session would hold half of a one-ingestor run's messages until it came back.
    """
    for name in [n for n in stack.children if n.startswith("ingestor")]:
        stack.children.pop(name).stop()  # the ingestors say "offline" as they go
    for n in range(keep_sessions + 1, 9):
        forget = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ingestor-bench-{n}", protocol=mqtt.MQTTv5)
        forget.connect("127.0.0.1", stack.mqtt_port, clean_start=True)  # a clean start discards the old session
        deadline = time.monotonic() + 10
        while not forget.is_connected() and time.monotonic() < deadline:
            forget.loop(0.1)
        forget.disconnect()  # and no session expiry interval: nothing is kept


def commit_rate(stack: BenchStack, after_id: int) -> float:
    """Records/s of the results with id > after_id, from their transactions' start times (`recorded_at` = now()):
    the rows after the first transaction over the span to the last one, so neither the ingestor's start-up nor a
    polling interval counts."""
    query = (
        "WITH r AS (SELECT recorded_at FROM process_results WHERE id > %s) SELECT count(*), "
        "count(*) FILTER (WHERE recorded_at = (SELECT min(recorded_at) FROM r)), "
        "extract(epoch FROM max(recorded_at) - min(recorded_at)) FROM r"
    )
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        total, first, span = conn.execute(query, (after_id,)).fetchone() or (0, 0, 0)
    return round((total - first) / float(span), 1) if span else 0.0


def drain_figure(stack: BenchStack, lots: Lots, sizes: Sizes, gateways: Gateways) -> list[Row]:
    """Bare stream, then `outbox_drain`'s backlog through st01 into one ingestor, then into two."""
    raw = stream(stack, sizes)
    station = gateways.get(stack, sizes.stations)["st01"]
    started = (datetime.now(KST) - timedelta(minutes=10)).replace(microsecond=0)
    rates, others = {}, {}
    for ingestors in (1, 2):
        numbers = lots.take(-(-sizes.drain_files // sizes.drain_per_lot))
        start_proc001(stack.api_url, numbers, started, headers=stack.auth_headers)
        _outage(stack, keep_sessions=ingestors)
        moves = stage_files({"st01": station}, numbers, sizes.drain_files, sizes.drain_per_lot, started)
        absorb(station, moves, sizes.timeout)
        after_id = stack.count("SELECT COALESCE(max(id), 0) FROM process_results")
        before, began = cpu_seconds(stack.groups()), time.perf_counter()
        drain(stack, station, sizes.drain_files, False, ingestors, sizes.timeout)
        others[ingestors] = other_pct(stack, before, time.perf_counter() - began)
        rates[ingestors] = commit_rate(stack, after_id)
    return [
        Row("backlog drain, 1 ingestor", rates[1], raw["msg_per_s"], "per s", ">= 0.75", others[1], {"stream": raw}),
        Row("backlog drain, 2 ingestors", rates[2], raw["msg_per_s"], "per s", ">= 0.75", others[2]),
        Row("drain: 2 ingestors vs 1", rates[2], rates[1], "per s", ">= 1.6"),
    ]


def replay_envelopes(lots: list[str], count: int, per_lot: int, started: datetime, batch: int = 1) -> list[bytes]:
    """PROC-001 completion records exactly as a gateway sends them (record, file name, sha256), from REPLAY: one
    v1 envelope per record (`batch` 1), or v2 messages of up to `batch` records each (mes_contracts/batch.py)."""
    rng, envelopes = random.Random(5), []
    source = Source.of(REPLAY, "gw-replay")
    for index in range(count):
        lot_index, repeat = divmod(index, per_lot)
        lot, complete = lots[lot_index], started + timedelta(minutes=1, seconds=repeat)
        record = completion_record("PROC-001", lots[lot_index], f"W{lot_index % 8 + 1:03d}", started, complete, rng)
        data = render(record)
        event = CompletionEvent(
            record=record, file_name=completion_file_name(lot, "PROC-001", complete), sha256=sha256(data).hexdigest()
        )
        envelopes.append(make_envelope(MessageType.PROCESS_COMPLETED, source, index + 1, event.model_dump()))
    if batch <= 1:
        return [envelope.to_bytes() for envelope in envelopes]
    return [make_batch(envelopes[i : i + batch]).to_bytes() for i in range(0, len(envelopes), batch)]


def replay_figure(stack: BenchStack, lots: Lots, sizes: Sizes) -> list[Row]:
    """Issue 18.4: a light publisher (no gateway) replays completion records as fast as paho sends them into 1,
    then 2 ingestors on the shared subscription; committed records/s, against the bare stream. The records go in
    v2 messages of `sizes.replay_batch` (1: v1, one per message); a reply is counted per message."""
    raw = stream(stack, sizes)
    started = (datetime.now(KST) - timedelta(minutes=10)).replace(microsecond=0)
    rates, others, details = {}, {}, {}  # details: per ingestor count, "1" and "2"
    for ingestors in (1, 2):
        _outage(stack, keep_sessions=ingestors)
        for n in range(1, ingestors + 1):
            stack.spawn(f"ingestor-{n}", mes_command("ingest"), {"MES_INGESTOR_CLIENT_ID": f"ingestor-bench-{n}"})
            wait_service_online(stack.mqtt_port, f"ingestor-bench-{n}")
        numbers = lots.take(-(-sizes.replay_records // sizes.drain_per_lot))
        start_proc001(stack.api_url, numbers, started, headers=stack.auth_headers)
        messages = replay_envelopes(numbers, sizes.replay_records, sizes.drain_per_lot, started, sizes.replay_batch)
        after_id = stack.count("SELECT COALESCE(max(id), 0) FROM process_results")
        before, began = cpu_seconds(stack.groups()), time.perf_counter()
        sent = replay(stack.mqtt_port, messages, REPLAY.event(Name.PROCESS_COMPLETED), REPLAY.reply(), sizes.timeout)
        committed = f"SELECT count(*) FROM process_results WHERE id > {after_id}"
        wait_until(lambda q=committed: stack.count(q) >= sizes.replay_records, sizes.timeout, "replay committed")
        others[ingestors] = other_pct(stack, before, time.perf_counter() - began)
        rates[ingestors] = commit_rate(stack, after_id)
        details[str(ingestors)] = {"messages": len(messages), "records_per_message": sizes.replay_batch, **sent}
        if sent["replies"] != len(messages):
            raise RuntimeError(f"replay: {sent['replies']} replies for {len(messages)} messages")
    return [
        Row("replay (light publisher), 1 ingestor", rates[1], raw["msg_per_s"], "per s", ">= 0.75", others[1], details),
        Row("replay (light publisher), 2 ingestors", rates[2], raw["msg_per_s"], "per s", ">= 0.75", others[2]),
        Row("replay: 2 ingestors vs 1", rates[2], rates[1], "per s", ">= 1.6"),
    ]


def store_figure(stack: BenchStack, sizes: Sizes) -> list[Row]:
    """The project's completion store (batches of 200) vs executemany and COPY of the same rows."""
    found = store_vs_raw(stack.servers["postgres"], sizes.store_records, sizes.store_lots)  # type: ignore[arg-type]
    store, many, copy = found["store"], found["executemany"], found["copy"]
    return [
        Row("completion store vs executemany", store["msg_per_s"], many["msg_per_s"], "per s", "", None, found),
        Row("completion store vs COPY", store["msg_per_s"], copy["msg_per_s"], "per s", ""),
        Row("store PostgreSQL CPU/record vs COPY", store["pg_cpu_ms_per_msg"], copy["pg_cpu_ms_per_msg"], "ms", ""),
    ]
