"""Throw-away MES processes for the fault tests: own PostgreSQL, Mosquitto, API, ingestors and gateways."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg

from cloud_api.domain.access import Role
from db.migrate import upgrade
from deploy.localstack.children import ChildProcess, mes_command, rss_kb, wait_http_ok
from deploy.localstack.service_state import wait_service_online
from deploy.localstack.services import MosquittoServer, PostgresServer, find_free_port
from line_simulator.payloads import completion_record, render, start_request
from mes_contracts.completion import completion_file_name
from tests.support.auth import AUTH_ENV, ApiAuth, ApiUser, add_users
from tests.support.folders import WorkFolders
from tests.support.line import SEOUL
from tests.support.stations import allow_processes
from tests.support.verifier import Produced

WORKERS = [(f"W{n:03d}", f"작업자 {n}") for n in range(1, 11)]
MANAGER = ApiUser("fault-manager", "fault-manager-Passw0rd", Role.MANAGER)  # creates LOTs and starts over REST
PROCESS = "PROC-001"
SCALE_ENV = "MES_FAULT_SCALE"
# Fast but realistic gateway timings for the tests (production defaults: 0.5 / 2.0 / 10 / 2.0 s).
GATEWAY_TIMINGS = {
    "MES_GW_STABLE_WINDOW_S": "0.2",
    "MES_GW_RESCAN_INTERVAL_S": "1.0",
    "MES_GW_REPLY_TIMEOUT_S": "5",
    "MES_GW_RETRY_INTERVAL_S": "0.5",
    "MES_GW_LOG_LEVEL": "INFO",
}


def full_scale() -> bool:
    return os.environ.get(SCALE_ENV, "ci").strip().lower() == "full"


def sized(ci: int, full: int) -> int:
    """The CI size, or the full one with `MES_FAULT_SCALE=full`."""
    return full if full_scale() else ci


# -- central side -----------------------------------------------------------------------------------------------


def start_postgres(base: Path) -> PostgresServer:
    """A new cluster in `base`, migrated to head, workers W001…W010 seeded."""
    server = PostgresServer(base)
    server.start()
    upgrade(server.url)
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO workers (worker_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", WORKERS
        )
        # Every fault-rig gateway (st01…st99) reports PROC-001 completions, which only st01 may by default.
        for number in range(1, 100):
            allow_processes(conn, f"st{number:02d}", [PROCESS])
    return server


def start_broker(base: Path) -> MosquittoServer:
    """Mosquitto with the local stack's config (the site's persistence and queue limits), $SYS every second."""
    server = MosquittoServer(base, extra_config="sys_interval 1")
    server.start()
    return server


@dataclass
class Central:
    """PostgreSQL and the REST API of one test module; each test adds its own broker, ingestor and gateways."""

    root: Path
    postgres: PostgresServer
    api_port: int
    api: ChildProcess | None = None
    auth: ApiAuth | None = None  # MANAGER's, logged in through this API

    @classmethod
    def start(cls, root: Path) -> Central:
        root.mkdir(parents=True, exist_ok=True)
        central = cls(root, start_postgres(root / "postgres"), find_free_port())
        add_users(central.env(), [MANAGER])
        central.start_api()
        central.auth = ApiAuth(central.api_url, MANAGER)
        return central

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def env(self, broker_port: int | None = None) -> dict[str, str]:
        """MES_* of the central processes. No Redis: nothing in these paths needs it (health reports it down)."""
        env = {
            "MES_DATABASE_URL": self.postgres.url,
            "MES_REDIS_URL": f"redis://127.0.0.1:{find_free_port()}/0",
            "MES_LOG_JSON": "true",
            "MES_MQTT_HOST": "127.0.0.1",
            **AUTH_ENV,
        }
        if broker_port is not None:
            env["MES_MQTT_PORT"] = str(broker_port)
        return env

    def start_api(self) -> None:
        self.api = ChildProcess(
            "api", mes_command("api", "--port", str(self.api_port)), self.env(), self.logs / "api.log"
        ).start()
        wait_http_ok(f"{self.api_url}/health", 60, self.api)

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.postgres.dsn, autocommit=True)

    def create_started_lots(self, count: int, at: datetime) -> list[str]:
        """`count` new LOTs (REST), each with PROC-001 started at `at` (REST), ready for completion files."""

        async def run() -> list[str]:
            gate = asyncio.Semaphore(8)
            async with httpx.AsyncClient(base_url=self.api_url, timeout=30, auth=self.auth) as client:

                async def one(index: int) -> str:
                    async with gate:
                        created = await client.post("/api/v1/lots", json={"shift": "D", "target_quantity": 100})
                        assert created.status_code == 201, created.text
                        lot = str(created.json()["data"]["lot_number"])
                        body = start_request(PROCESS, lot, WORKERS[index % len(WORKERS)][0], at)
                        started = await client.post("/api/v1/process/start", json=body)
                        assert started.status_code == 200, started.text
                        return lot

                return list(await asyncio.gather(*(one(i) for i in range(count))))

        return asyncio.run(run())

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
        self.postgres.destroy()


# -- completion files ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompletionFile:
    name: str
    content: bytes


def run_start_time() -> datetime:
    """Start time of the test runs: far enough back that every completion stamp stays in the past."""
    return (datetime.now(SEOUL) - timedelta(hours=8)).replace(microsecond=0)


def completion_files(
    lots: list[str], count: int, started: datetime, seed: int = 0, padding: int = 0
) -> list[CompletionFile]:
    """`count` distinct valid PROC-001 files, round robin over `lots` (re-tests: distinct stamps and bytes).

    The k-th file of a LOT is stamped `started + 60 s + k s`; `padding` adds that many bytes of extra data.
    """
    rng = random.Random(seed)
    files = []
    for index in range(count):
        lot, k = lots[index % len(lots)], index // len(lots)
        complete = started + timedelta(seconds=60 + k)
        overrides: dict[str, Any] = {"process_data": {"trace": "x" * padding}} if padding else {}
        record = completion_record(PROCESS, lot, WORKERS[k % len(WORKERS)][0], started, complete, rng, **overrides)
        files.append(CompletionFile(completion_file_name(lot, PROCESS, complete), render(record)))
    return files


def drop(pending: Path, files: Iterable[CompletionFile]) -> None:
    """Write each file as a vendor app should: a temporary name, then an atomic rename into pending/."""
    for item in files:
        temporary = pending / f".{item.name}.tmp"
        temporary.write_bytes(item.content)
        os.replace(temporary, pending / item.name)


def produced(work_dir: Path, files: Iterable[CompletionFile], keep_data: bool = False) -> list[Produced]:
    return [Produced.of(work_dir, item.name, item.content, keep_data) for item in files]


def disposed_names(work_dir: Path) -> set[str]:
    names: set[str] = set()
    for folder in ("completed", "error"):
        with os.scandir(work_dir / folder) as entries:
            names.update(entry.name for entry in entries)
    return names


def wait_disposed(
    items: list[Produced], timeout: float, poll: float = 0.25, alive: Callable[[], None] | None = None
) -> float:
    """Seconds until every produced file is in completed/ or error/ (under its own name); never raises on time."""
    begin = time.monotonic()
    by_dir: dict[Path, set[str]] = {}
    for item in items:
        by_dir.setdefault(item.work_dir, set()).add(item.name)
    while time.monotonic() - begin < timeout:
        if alive is not None:
            alive()
        if all(names <= disposed_names(work_dir) for work_dir, names in by_dir.items()):
            return time.monotonic() - begin
        time.sleep(poll)
    return time.monotonic() - begin


# -- processes -------------------------------------------------------------------------------------------------------


@dataclass
class Gateway(WorkFolders):
    """One `mes gateway` child with its work dir; start/kill/stop/restart at will."""

    station: str
    work_dir: Path
    broker_port: int
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    local_port: int = field(default_factory=find_free_port)
    child: ChildProcess | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def env(self) -> dict[str, str]:
        return {
            "MES_GW_STATION": self.station,
            "MES_GW_WORK_DIR": str(self.work_dir),
            "MES_GW_MQTT_PORT": str(self.broker_port),
            "MES_GW_LOCAL_PORT": str(self.local_port),
            **GATEWAY_TIMINGS,
            **self.extra_env,
        }

    def start(self, wait: bool = True) -> Gateway:
        for folder in (self.pending, self.completed, self.error):
            folder.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.child = ChildProcess(
            f"gateway-{self.station}", mes_command("gateway", "--station", self.station), self.env(), self.log_path
        ).start()
        if wait:
            wait_http_ok(f"{self.url}/status", 30, self.child)
        return self

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.running

    @property
    def pid(self) -> int | None:
        return self.child.process.pid if self.child is not None and self.child.process is not None else None

    def kill(self) -> None:
        if self.child is not None:
            self.child.kill()

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def status(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/status", timeout=5).json())

    def connected(self) -> bool:
        try:
            return bool(self.status()["connected"])
        except (httpx.HTTPError, KeyError, ValueError):
            return False

    def rss_kb(self) -> int | None:
        pid = self.pid
        return None if pid is None else rss_kb(pid)


class Rig:
    """The processes of one fault test on top of a module's `Central`: a broker, ingestors, gateways."""

    def __init__(self, central: Central, root: Path) -> None:
        self.central = central
        self.root = root
        self.logs = root / "logs"
        self.broker = start_broker(root / "mosquitto")
        self.ingestors: list[ChildProcess] = []
        self.gateways: list[Gateway] = []

    def ingestor_env(self, client_id: str, fault: str | None = None, **extra: str) -> dict[str, str]:
        env = {**self.central.env(self.broker.port), "MES_INGESTOR_CLIENT_ID": client_id, **extra}
        env["MES_FAULT_INJECT"] = fault or ""
        return env

    def start_ingestor(
        self, fault: str | None = None, client_id: str = "ingestor-fault", wait: bool = True, **extra: str
    ) -> ChildProcess:
        """`mes ingest` (with `MES_FAULT_INJECT=fault` if given); waits for its retained online state."""
        number = len(self.ingestors) + 1
        child = ChildProcess(
            f"ingestor-{number}",
            mes_command("ingest"),
            self.ingestor_env(client_id, fault, **extra),
            self.logs / f"ingestor-{number}.log",
        ).start()
        self.ingestors.append(child)
        if wait:
            try:
                wait_service_online(self.broker.port, client_id, 30)
            except TimeoutError:
                raise RuntimeError(f"ingestor did not come up:\n{child.log_tail()}") from None
        return child

    def gateway(self, station: str = "st01", start: bool = True, **env: str) -> Gateway:
        gateway = Gateway(
            station, self.root / "stations" / station, self.broker.port, self.logs / f"gateway-{station}.log", dict(env)
        )
        self.gateways.append(gateway)
        return gateway.start() if start else gateway

    def log_files(self) -> list[Path]:
        return [
            *sorted(self.logs.glob("*.log")),
            self.broker.log_file,
            self.central.logs / "api.log",
            self.central.postgres.log_file,
        ]

    def tails(self, lines: int = 12) -> str:
        parts = []
        for path in self.log_files():
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        for gateway in self.gateways:
            gateway.stop()
        for child in self.ingestors:
            child.stop()
        self.broker.stop()


# -- observation -----------------------------------------------------------------------------------------------------


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
    """Files in the gateways' completed/ folders (a cheap progress gauge while a burst runs)."""
    total = 0
    for gateway in gateways:
        with os.scandir(gateway.completed) as entries:
            total += sum(1 for _ in entries)
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
