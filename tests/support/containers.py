"""Optional path: the same three services from Docker images through testcontainers (MES_TEST_SERVICES=docker).

The default path starts local processes (deploy.localstack); this one is for machines with a Docker engine
and without the Debian packages. Fault-injection tests that kill or restart a server need the local path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


def docker_requested() -> bool:
    return os.environ.get("MES_TEST_SERVICES", "local").lower() == "docker"


def docker_available() -> bool:
    return os.path.exists("/var/run/docker.sock") or bool(os.environ.get("DOCKER_HOST"))


@dataclass
class ContainerService:
    """Quacks like the local servers where the fixtures need it: url, dsn, port, stop()."""

    container: Any
    port: int
    url: str
    dsn: str = ""

    def stop(self) -> None:
        self.container.stop()

    destroy = stop


def postgres_container() -> ContainerService:
    from testcontainers.postgres import PostgresContainer

    container = PostgresContainer("postgres:15", username="mes", password="mes", dbname="mes", driver="psycopg")
    container.start()
    port = int(container.get_exposed_port(5432))
    host = container.get_container_host_ip()
    return ContainerService(
        container, port, f"postgresql+psycopg://mes:mes@{host}:{port}/mes", f"postgresql://mes:mes@{host}:{port}/mes"
    )


def mosquitto_container() -> ContainerService:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    container = DockerContainer("eclipse-mosquitto:2").with_exposed_ports(1883)
    container.with_command("mosquitto -c /mosquitto-no-auth.conf")
    container.start()
    wait_for_logs(container, "running", timeout=30)
    port = int(container.get_exposed_port(1883))
    return ContainerService(container, port, f"mqtt://{container.get_container_host_ip()}:{port}")


def redis_container() -> ContainerService:
    from testcontainers.redis import RedisContainer

    container = RedisContainer("redis:7")
    container.start()
    port = int(container.get_exposed_port(6379))
    return ContainerService(container, port, f"redis://{container.get_container_host_ip()}:{port}/0")
