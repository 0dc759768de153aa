"""A shift's sign-ins at once on the real API (issue 18, Locust): no 503 from a small pool, the other users keep
being served, and past MES_LOGIN_QUEUE_MAX a clear 503 with Retry-After at once (cloud_api/auth/hash_gate.py).

Each sign-in is a real argon2id verification (~0.17 s of CPU), so the bursts stay small enough for the suite's
time budget; the pool is made tiny (1 + 1 overflow, 1 s timeout) so that a connection held while hashing, or an
event loop starved by hashing threads, shows up as 503s rather than as a slow run.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from cloud_api.auth.passwords import hash_password
from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.common import find_free_port
from deploy.localstack.services import PostgresServer

PASSWORD = "Burst-Passw0rd-2026"
BURST = 16
SMALL_POOL = {"MES_DB_POOL_SIZE": "1", "MES_DB_POOL_TIMEOUT_S": "1"}


@contextmanager
def api(central_env: dict[str, str], logs_dir: Path, name: str, env: dict[str, str]) -> Iterator[str]:
    port = find_free_port()
    argv = mes_command("api", "--port", str(port))
    child = ChildProcess(name, argv, {**central_env, **env}, logs_dir / f"{name}.log").start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/metrics", 60, child)
        yield f"http://127.0.0.1:{port}"
    finally:
        child.stop()


@pytest.fixture(scope="module")
def accounts(postgres: PostgresServer) -> list[str]:
    """BURST + 1 operators with one real argon2id hash (the same password: each verification costs the same)."""
    stored = hash_password(PASSWORD)
    names = [f"burst-{n:03d}" for n in range(BURST + 1)]
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO users (username, display_name, role, password_hash, active, must_change_password, "
            "password_changed_at, created_at, updated_at) VALUES (%s, %s, 'operator', %s, true, false, now(), now(), "
            "now()) ON CONFLICT (username) DO NOTHING",
            [(name, name, stored) for name in names],
        )
    return names


async def _sign_in_all(url: str, names: list[str], other_token: str | None) -> tuple[list[httpx.Response], Side]:
    """Every sign-in at once; meanwhile one signed-in user reads LOTs in a loop until the last sign-in answers, and
    the API's hash gauges are read between its requests."""
    side = Side()
    done = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=64)) as client:

        async def meanwhile(token: str) -> None:
            while not done.is_set():
                answer = await client.get("/api/v1/lots", params={"limit": 5}, headers={"Authorization": token})
                side.statuses.append(answer.status_code)
                text = (await client.get("/metrics")).text
                side.running.append(_gauge(text, "mes_password_hashes_running"))
                side.pending.append(_gauge(text, "mes_password_hashes_pending"))

        task = asyncio.create_task(meanwhile(other_token)) if other_token else None
        answers = await asyncio.gather(
            *(client.post("/api/v1/auth/login", json={"username": n, "password": PASSWORD}) for n in names)
        )
        done.set()
        if task is not None:
            await task
    return list(answers), side


@dataclass
class Side:
    statuses: list[int] = field(default_factory=list)
    running: list[float] = field(default_factory=list)
    pending: list[float] = field(default_factory=list)


def _gauge(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, name
    return float(found.group(1))


def _metric(url: str, name: str) -> float:
    return _gauge(httpx.get(f"{url}/metrics", timeout=10).text, name)


def test_a_burst_of_sign_ins_with_a_tiny_pool_all_succeed_and_others_are_served(
    central_env: dict[str, str], logs_dir: Path, accounts: list[str]
) -> None:
    with api(central_env, logs_dir, "api-signin-burst", SMALL_POOL) as url:
        first = httpx.post(
            f"{url}/api/v1/auth/login", json={"username": accounts[-1], "password": PASSWORD}, timeout=60
        )
        assert first.status_code == 200, first.text
        token = "Bearer " + first.json()["data"]["access_token"]
        answers, side = asyncio.run(_sign_in_all(url, accounts[:BURST], token))
        assert sorted({a.status_code for a in answers}) == [200], [a.text for a in answers if a.status_code != 200]
        assert side.statuses, "the signed-in user's requests ran during the burst"
        assert set(side.statuses) == {200}, side.statuses  # a 503 here: the pool (2 connections) ran dry
        # The sign-ins queued for the one hashing thread (MES_PASSWORD_HASH_WORKERS=1), never more at once: with
        # asyncio.to_thread's cpu_count + 4 threads, each argon2 hash's 4 threads starved the event loop.
        assert max(side.pending) >= 2, side.pending
        assert max(side.running) == 1, side.running
        assert _metric(url, "mes_password_hashes_pending") == 0
        assert _metric(url, "mes_sign_ins_refused_total") == 0


def test_past_the_sign_in_queue_a_clear_503_with_retry_after(
    central_env: dict[str, str], logs_dir: Path, accounts: list[str]
) -> None:
    env = {**SMALL_POOL, "MES_LOGIN_QUEUE_MAX": "2"}  # one hashing, two waiting: the rest of the burst is refused
    with api(central_env, logs_dir, "api-signin-queue", env) as url:
        answers, _ = asyncio.run(_sign_in_all(url, accounts[:10], None))
        refused = [a for a in answers if a.status_code == 503]
        assert {a.status_code for a in answers} <= {200, 503}
        assert len(answers) - len(refused) >= 3  # the one hashing and the two waiting got in
        assert refused, "10 sign-ins at once against a queue of 2"
        for answer in refused:
            body = answer.json()
            assert body["error_code"] == "SERVICE_UNAVAILABLE"
            assert body["data"]["reason"] == "sign_in_queue_full"
            assert 1 <= int(answer.headers["Retry-After"]) <= 60
        assert _metric(url, "mes_sign_ins_refused_total") == len(refused)
        # Refused at once, not after a wait: the queue frees and the same user gets in.
        again = httpx.post(f"{url}/api/v1/auth/login", json={"username": accounts[0], "password": PASSWORD}, timeout=60)
        assert again.status_code == 200
