"""A real Redis server on 127.0.0.1 for tests and `mes up`, append-only file in its state dir."""

from __future__ import annotations

import logging
import subprocess

import redis

from deploy.localstack.common import ManagedServer, find_binary

logger = logging.getLogger(__name__)


class RedisServer(ManagedServer):
    """redis-server with --dir base_dir, AOF persistence, no RDB snapshots, log base_dir/redis.log."""

    name = "redis"
    binary = "redis-server"
    stop_timeout = 15.0

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self) -> subprocess.Popen[bytes]:
        binary = find_binary("redis-server")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.base_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.log_file),
            "--daemonize",
            "no",
        ]
        return self._popen(cmd)

    def _ready(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()
