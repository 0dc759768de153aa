"""The processes of one fault test: `mes gateway` children (`Gateway`) and a broker with ingestors (`Rig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from deploy.localstack.children import ChildProcess, mes_command, rss_kb, wait_http_ok
from deploy.localstack.service_state import wait_service_online
from deploy.localstack.services import find_free_port
from tests.support.fault_central import Central, start_broker
from tests.support.folders import WorkFolders

# Fast but realistic gateway timings for the tests (production defaults: 0.5 / 2.0 / 10 / 2.0 s).
GATEWAY_TIMINGS = {
    "MES_GW_STABLE_WINDOW_S": "0.2",
    "MES_GW_RESCAN_INTERVAL_S": "1.0",
    "MES_GW_REPLY_TIMEOUT_S": "5",
    "MES_GW_RETRY_INTERVAL_S": "0.5",
    "MES_GW_LOG_LEVEL": "INFO",
}


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
