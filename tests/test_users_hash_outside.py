"""User admin hashes with no pooled connection held (cloud_api/auth/user_admin.py): while the hash gate is busy with
a sign-in burst, a user-creation request waits for its hash without a connection or a transaction, the pool keeps
serving others, and the user is created as before. Refusals that cost no hash before still cost none."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cloud_api.adapters.database import Database, make_engine
from cloud_api.auth import hash_gate, passwords, sessions, user_admin
from cloud_api.auth.settings import AuthSettings
from cloud_api.auth.users import NewUser, UserChange
from cloud_api.domain.access import Principal, Role
from cloud_api.domain.errors import DomainError
from deploy.localstack.postgres import PostgresServer
from mes_contracts.errors import ErrorCode
from tests.support.auth import AUTH_ENV


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def name(prefix: str = "h") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[hash_gate.HashGate]:
    """The process's gate, fresh: one hash at a time, as the API runs it by default."""
    fresh = hash_gate.HashGate(workers=1, queue_max=10, nice=0)
    monkeypatch.setattr(hash_gate, "_GATE", fresh)
    yield fresh
    fresh.shutdown()


@pytest.fixture
async def engine(postgres: PostgresServer) -> AsyncIterator[AsyncEngine]:
    made = make_engine(postgres.url, pool_size=1, pool_timeout=2)
    yield made
    await made.dispose()


@pytest.fixture
def hashed_with(monkeypatch: pytest.MonkeyPatch, engine: AsyncEngine) -> list[int]:
    """The pool's checked-out count at the moment each password hash runs (the real argon2 hash still runs)."""
    seen: list[int] = []
    real = passwords.hash_password

    def spy(password: str) -> str:
        seen.append(engine.pool.checkedout())  # type: ignore[attr-defined]
        return real(password)

    monkeypatch.setattr(passwords, "hash_password", spy)
    return seen


async def test_user_creation_holds_no_connection_while_the_gate_is_busy(
    gate: hash_gate.HashGate, engine: AsyncEngine, db: psycopg.Connection
) -> None:
    release = threading.Event()
    blocker = asyncio.create_task(gate.run(release.wait, 30))  # a sign-in's hash, as long as we like
    try:
        await until(lambda: gate.running == 1, "the blocking job to run")
        username = name("c")
        creating = asyncio.create_task(
            user_admin.create_user(engine, NewUser(username=username, role=Role.VIEWER), "tester")
        )
        await until(lambda: gate.pending == 2, "the creation's hash to queue behind the blocker")
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        async with engine.begin() as conn:  # the pool's one connection serves others meanwhile
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        assert not creating.done()
        assert db.execute("SELECT count(*) FROM users WHERE username = %s", (username,)).fetchone() == (0,)

        taken = user_admin.create_user(engine, NewUser(username=username.upper(), role=Role.VIEWER), "tester")
        weak = user_admin.create_user(engine, NewUser(username=name("w"), role=Role.VIEWER, password="short"), "t")
        with pytest.raises(DomainError) as refused_weak:  # refused at once: no place taken in the hash queue
            await asyncio.wait_for(weak, 5)
        assert refused_weak.value.code is ErrorCode.INVALID_REQUEST
        assert "password: at least 10 characters" in str(refused_weak.value.data)
        assert gate.pending == 2
    finally:
        release.set()
        await blocker
    result = await asyncio.wait_for(creating, 30)
    assert (
        result.one_time_password and passwords.verify_password(result.one_time_password, result.user.password_hash).ok
    )
    stored = db.execute(
        "SELECT role, must_change_password, password_hash LIKE '$argon2id$%%' FROM users WHERE username = %s",
        (username,),
    ).fetchone()
    assert stored == ("viewer", True, True)
    assert db.execute(
        "SELECT actor FROM audit_log WHERE action = 'user.create' AND entity_key = %s", (username,)
    ).fetchall() == [("tester",)]
    with pytest.raises(DomainError) as duplicate:  # the name check still comes before any hash
        await asyncio.wait_for(taken, 5)
    assert duplicate.value.code is ErrorCode.DUPLICATE_USER


async def test_every_path_that_hashes_does_it_with_no_connection_checked_out(
    gate: hash_gate.HashGate, engine: AsyncEngine, hashed_with: list[int], db: psycopg.Connection
) -> None:
    username = name("p")
    made = await user_admin.create_user(
        engine, NewUser(username=username, role=Role.OPERATOR, password="first-password-1"), "tester"
    )
    assert made.one_time_password is None and not made.user.must_change_password
    reset = await user_admin.change_user(engine, username, UserChange(reset_password=True, role=Role.MANAGER), "t")
    assert reset.one_time_password and reset.user.must_change_password and reset.user.role is Role.MANAGER
    chosen = await user_admin.set_password(engine, username, "second-password-2", "tester")
    assert chosen.one_time_password is None and not chosen.user.must_change_password
    database = Database(engine, ZoneInfo("Asia/Seoul"))
    settings = AuthSettings(jwt_secret=AUTH_ENV["MES_JWT_SECRET"])  # type: ignore[arg-type]
    principal = Principal(username, Role.MANAGER)
    with pytest.raises(DomainError) as weak:  # refused after the current password is verified, before a hash
        await sessions.change_password(database, settings, principal, "second-password-2", "second-password-2")
    assert weak.value.code is ErrorCode.INVALID_REQUEST
    own = await sessions.change_password(database, settings, principal, "second-password-2", "third-password-3")
    assert own.username == username and not own.must_change_password

    service = name("s")
    for password in ("service-password-1", "service-password-2"):  # `mes up`: created, then reset
        secret = await user_admin.service_secret(service, password)
        async with engine.begin() as conn:
            await user_admin.ensure_service_user(conn, service, Role.MANAGER, secret, "mes-up")

    assert hashed_with == [0] * 6  # create, reset, set, own change, service create, service reset
    stored = db.execute("SELECT username, password_hash FROM users WHERE username IN (%s, %s)", (username, service))
    hashes: dict[str, str] = dict(stored.fetchall())
    assert passwords.verify_password("third-password-3", hashes[username]).ok
    assert passwords.verify_password("service-password-2", hashes[service]).ok
    actions = db.execute(
        "SELECT action FROM audit_log WHERE entity_key = %s AND action LIKE 'user.%%' ORDER BY id", (username,)
    ).fetchall()
    assert [a for (a,) in actions] == [
        "user.create",
        "user.role_change",
        "user.password_reset",
        "user.password_set",
        "user.password_change",
    ]
