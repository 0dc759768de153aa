"""An ingestor and the st01 gateway logging in to a site-like broker with their own accounts (identity, TLS tests)."""

from __future__ import annotations

from pathlib import Path

from deploy.localstack.children import ChildProcess, mes_command
from deploy.localstack.common import find_free_port
from tests.support.line import Station

INGESTOR_ID = "mes-ingestor-1"


def start_ingestor(
    name: str, central_env: dict[str, str], port: int, password: str, logs_dir: Path, **extra: str
) -> ChildProcess:
    """`mes ingest` as the `ingestor` account (client id INGESTOR_ID) on `port`; `extra`: more MES_* settings."""
    env = {
        **central_env,
        "MES_MQTT_PORT": str(port),
        "MES_MQTT_USERNAME": "ingestor",
        "MES_MQTT_PASSWORD": password,
        "MES_INGESTOR_CLIENT_ID": INGESTOR_ID,
        **extra,
    }
    return ChildProcess(name, mes_command("ingest"), env, logs_dir / f"{name}.log").start()


def start_st01_gateway(
    name: str, work_dir: Path, port: int, password: str, logs_dir: Path, **extra: str
) -> tuple[ChildProcess, Station]:
    """`mes gateway --station st01` as the `st01` account on `port`, quick to pick files up; `extra`: MES_GW_*."""
    local_port = find_free_port()
    env = {
        "MES_GW_STATION": "st01",
        "MES_GW_WORK_DIR": str(work_dir),
        "MES_GW_LOCAL_PORT": str(local_port),
        "MES_GW_MQTT_PORT": str(port),
        "MES_GW_MQTT_USERNAME": "st01",
        "MES_GW_MQTT_PASSWORD": password,
        "MES_GW_STABLE_WINDOW_S": "0.2",
        "MES_GW_RESCAN_INTERVAL_S": "0.5",
        **extra,
    }
    gateway = ChildProcess(name, mes_command("gateway", "--station", "st01"), env, logs_dir / f"{name}.log")
    return gateway.start(), Station("PROC-001", "st01", work_dir, f"http://127.0.0.1:{local_port}")
