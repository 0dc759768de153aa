"""The optional testcontainers path starts the same services from images (needs a Docker engine)."""

from __future__ import annotations

import psycopg
import pytest
import redis

from tests.support.containers import docker_available, postgres_container, redis_container


@pytest.mark.docker
@pytest.mark.skipif(not docker_available(), reason="needs a Docker engine; this machine has only the docker client")
def test_containers_start_postgres_and_redis() -> None:
    pg = postgres_container()
    cache = redis_container()
    try:
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert redis.Redis.from_url(cache.url).ping()
    finally:
        pg.stop()
        cache.stop()
