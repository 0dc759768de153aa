"""The central side of the fault tests: sizes, PostgreSQL migrated and seeded, a Mosquitto, the REST API (`Central`)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from cloud_api.domain.access import Role
from db.migrate import upgrade
from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.services import MosquittoServer, PostgresServer, find_free_port
from line_simulator.payloads import start_request
from tests.support.auth import AUTH_ENV, ApiAuth, ApiUser, add_users
from tests.support.stations import allow_processes

WORKERS = [(f"W{n:03d}", f"작업자 {n}") for n in range(1, 11)]
MANAGER = ApiUser("fault-manager", "fault-manager-Passw0rd", Role.MANAGER)  # creates LOTs and starts over REST
PROCESS = "PROC-001"
SCALE_ENV = "MES_FAULT_SCALE"


def full_scale() -> bool:
    return os.environ.get(SCALE_ENV, "ci").strip().lower() == "full"


def sized(ci: int, full: int) -> int:
    """The CI size, or the full one with `MES_FAULT_SCALE=full`."""
    return full if full_scale() else ci


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
