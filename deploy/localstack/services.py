"""Real PostgreSQL, Mosquitto and Redis processes on loopback ports for the test suite and `mes up`."""

from __future__ import annotations

from deploy.localstack.common import (
    ManagedServer,
    MissingBinary,
    ServiceError,
    find_binary,
    find_free_port,
    port_is_free,
)
from deploy.localstack.mosquitto import MosquittoServer
from deploy.localstack.postgres import PostgresServer
from deploy.localstack.redis_server import RedisServer

__all__ = [
    "ManagedServer",
    "MissingBinary",
    "MosquittoServer",
    "PostgresServer",
    "RedisServer",
    "ServiceError",
    "find_binary",
    "find_free_port",
    "port_is_free",
]
