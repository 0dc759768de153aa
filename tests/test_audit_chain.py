"""The audit log in PostgreSQL: hash chain built by the trigger, append-only for every role, `mes audit verify`."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cloud_api.audit.chain import GENESIS, ChainRow, canonical_text, compute_hash, verify_chain
from cloud_api.audit.trail import AuditEntry, record_audit, record_audit_many, request_id_scope
from db.migrate import upgrade
from deploy.localstack.children import mes_command
from deploy.localstack.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class AuditDb:
    """A fresh database on the session server, migrated by the owner; the app role connects with `app_dsn`."""

    app_dsn: str
    owner_dsn: str

    @property
    def app_url(self) -> str:
        return self.app_dsn.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def audit_db(postgres: PostgresServer) -> Iterator[AuditDb]:
    if getattr(postgres, "owner", None) is None:
        pytest.skip("needs the local two-role PostgreSQL (the Docker path has one role)")
    name = f"audit_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.owner_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    made = AuditDb(postgres.dsn.rsplit("/", 1)[0] + f"/{name}", postgres.owner_dsn.rsplit("/", 1)[0] + f"/{name}")
    upgrade(made.owner_dsn.replace("postgresql://", "postgresql+psycopg://", 1), app_role=postgres.user)
    yield made
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:  # may end the app role's sessions
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
async def app_engine(audit_db: AuditDb) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(audit_db.app_url, pool_size=8)
    yield engine
    await engine.dispose()


async def append(engine: AsyncEngine, count: int, tag: str = "t") -> None:
    async with engine.begin() as conn:
        await record_audit_many(
            conn, [AuditEntry("tester", "lot.create", "lot", f"{tag}-{n}", None, {"n": n}) for n in range(count)]
        )


def rows(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id, prev_hash, row_hash, actor, request_id FROM audit_log ORDER BY id").fetchall()


def verify_cli(audit_db: AuditDb, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"MES_DATABASE_URL": audit_db.app_url, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        mes_command("audit", "verify", *args), env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )


def tamper(audit_db: AuditDb, *statements: str) -> None:
    """An attacker with the owner's credentials: switch the append-only triggers off, edit, switch them on."""
    with psycopg.connect(audit_db.owner_dsn) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for statement in statements:
            conn.execute(statement)
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


# -- the chain ------------------------------------------------------------------------------------------------------


async def test_trigger_chains_rows_and_python_recomputes_every_hash(audit_db: AuditDb, app_engine: AsyncEngine) -> None:
    awkward = {
        "text": 'quote " back \\ tab \t newline \n bell \x07 한글 \u2028',
        "scale": Decimal("1.50"),
        "float": 59.8,
        "big": 10**20,
        "day": date(2026, 1, 2),
        "id": uuid.UUID(int=7),
        "none": None,
        "nested": {"b": [1, 2], "a": True},
    }
    async with app_engine.begin() as conn:
        with request_id_scope("req-1"):
            await record_audit(
                conn,
                actor="관리자",
                action="worker.upsert",
                entity="worker",
                entity_key="W001",
                old={"name": "a"},
                new=awkward,
                reason="이름 변경",
            )
        await record_audit(
            conn, actor="system", action="lot.close", entity="lot", entity_key=None, request_id="explicit"
        )
    async with app_engine.connect() as conn:
        result = await verify_chain(conn)
    assert result.ok and result.checked == 2 and (result.first_id, result.last_id) == (1, 2)

    found = rows(audit_db.app_dsn)
    assert [(r[0], r[3], r[4]) for r in found] == [(1, "관리자", "req-1"), (2, "system", "explicit")]
    assert found[0][1] == GENESIS and found[1][1] == found[0][2]
    with psycopg.connect(audit_db.app_dsn) as conn:
        stored = conn.execute(
            "SELECT new_value, occurred_at <= clock_timestamp() FROM audit_log WHERE id = 1"
        ).fetchone()
        full = conn.execute(
            "SELECT id, occurred_at, actor, action, entity, entity_key, old_value::text, new_value::text, reason, "
            "request_id, prev_hash, row_hash FROM audit_log ORDER BY id"
        ).fetchall()
    assert stored is not None
    assert stored[0]["day"] == "2026-01-02" and stored[0]["id"] == str(uuid.UUID(int=7)) and stored[1]
    assert stored[0]["scale"] == "1.50" and stored[0]["text"] == awkward["text"]
    for row in full:
        chain_row = ChainRow(*row)
        assert compute_hash(chain_row) == chain_row.row_hash


def test_client_cannot_choose_id_time_or_hashes(audit_db: AuditDb) -> None:
    with psycopg.connect(audit_db.app_dsn) as conn:
        conn.execute(
            "INSERT INTO audit_log (id, occurred_at, actor, action, entity, prev_hash, row_hash) "
            "VALUES (999, '2000-01-01', 'x', 'lot.create', 'lot', %s, %s)",
            ("f" * 64, "e" * 64),
        )
        row = conn.execute("SELECT id, occurred_at > '2020-01-01', prev_hash, row_hash FROM audit_log").fetchone()
    assert row is not None
    assert row[0] == 1 and row[1] is True and row[2] == GENESIS and row[3] != "e" * 64


async def test_concurrent_appends_and_rollbacks_keep_one_chain(audit_db: AuditDb, app_engine: AsyncEngine) -> None:
    async def writer(n: int) -> None:
        for round_ in range(5):
            if (n + round_) % 3 == 0:  # a rolled-back append leaves an id gap, never a chain break
                with pytest.raises(RuntimeError):
                    async with app_engine.begin() as conn:
                        await record_audit(conn, actor=f"w{n}", action="lot.create", entity="lot", entity_key="x")
                        raise RuntimeError("rollback")
            else:
                await append(app_engine, 3, f"w{n}-{round_}")

    await asyncio.gather(*(writer(n) for n in range(6)))
    async with app_engine.connect() as conn:
        result = await verify_chain(conn)
    found = rows(audit_db.app_dsn)
    assert result.ok, result.broken
    assert result.checked == len(found) == 3 * sum(1 for n in range(6) for r in range(5) if (n + r) % 3)
    assert found[-1][0] > len(found), "rolled-back appends leave id gaps"
    assert all(later[1] == earlier[2] for earlier, later in itertools.pairwise(found))


def test_repeatable_read_appends_are_refused(audit_db: AuditDb) -> None:
    with psycopg.connect(audit_db.app_dsn) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with pytest.raises(psycopg.errors.SerializationFailure, match="READ COMMITTED"):
            conn.execute("INSERT INTO audit_log (actor, action, entity) VALUES ('x', 'lot.create', 'lot')")


# -- append-only ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER USER",
        "SELECT setval('audit_log_id_seq', 1)",
    ],
)
async def test_app_role_cannot_change_or_remove_audit_rows(
    audit_db: AuditDb, app_engine: AsyncEngine, statement: str
) -> None:
    await append(app_engine, 2)
    with (
        psycopg.connect(audit_db.app_dsn) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"permission denied|must be owner"),
    ):
        conn.execute(statement)
    assert len(rows(audit_db.app_dsn)) == 2


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
async def test_even_the_owner_is_refused_by_the_trigger(
    audit_db: AuditDb, app_engine: AsyncEngine, statement: str
) -> None:
    await append(app_engine, 2)
    with (
        psycopg.connect(audit_db.owner_dsn) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="audit_log is append-only"),
    ):
        conn.execute(statement)
    assert len(rows(audit_db.app_dsn)) == 2


def test_app_role_keeps_normal_dml_on_other_tables(audit_db: AuditDb) -> None:
    with psycopg.connect(audit_db.app_dsn) as conn:
        conn.execute("INSERT INTO workers (worker_id, name) VALUES ('WX', 'a')")
        conn.execute("UPDATE workers SET name = 'b' WHERE worker_id = 'WX'")
        conn.execute("DELETE FROM workers WHERE worker_id = 'WX'")
        owners = conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'").fetchall()
    assert owners == [("mes_owner",)]


# -- mes audit verify -----------------------------------------------------------------------------------------------


async def test_verify_cli_passes_a_clean_chain(audit_db: AuditDb, app_engine: AsyncEngine) -> None:
    empty = verify_cli(audit_db)
    assert empty.returncode == 0 and "no rows" in empty.stdout, empty.stderr
    await append(app_engine, 5)
    done = verify_cli(audit_db)
    assert done.returncode == 0, done.stdout + done.stderr
    last_hash = rows(audit_db.app_dsn)[-1][2]
    assert "5 rows checked (ids 1..5)" in done.stdout and f"last 5:{last_hash}" in done.stdout
    later = verify_cli(audit_db, "--from-id", "3", "--anchor", f"5:{last_hash}")
    assert later.returncode == 0 and "3 rows checked (ids 3..5)" in later.stdout
    tail = subprocess.run(
        mes_command("audit", "tail", "-n", "2"),
        env={"MES_DATABASE_URL": audit_db.app_url},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tail.returncode == 0, tail.stderr
    assert [json.loads(line)["id"] for line in tail.stdout.splitlines()] == [4, 5]


async def test_verify_cli_catches_a_changed_row(audit_db: AuditDb, app_engine: AsyncEngine) -> None:
    await append(app_engine, 5)
    tamper(audit_db, "UPDATE audit_log SET new_value = '{\"n\": 99}' WHERE id = 3")
    done = verify_cli(audit_db)
    assert done.returncode == 1
    assert "BROKEN at audit row 3: row changed" in done.stdout and "2 rows checked" in done.stdout


async def test_verify_cli_catches_a_changed_row_even_with_its_hash_recomputed(
    audit_db: AuditDb, app_engine: AsyncEngine
) -> None:
    await append(app_engine, 5)
    tamper(
        audit_db,
        "UPDATE audit_log a SET actor = 'intruder' WHERE id = 2",
        "UPDATE audit_log a SET row_hash = audit_row_hash(a) WHERE id = 2",
    )
    done = verify_cli(audit_db)
    assert done.returncode == 1 and "BROKEN at audit row 3: chain broken" in done.stdout


async def test_verify_cli_catches_a_removed_row(audit_db: AuditDb, app_engine: AsyncEngine) -> None:
    await append(app_engine, 5)
    tamper(audit_db, "DELETE FROM audit_log WHERE id = 3")
    done = verify_cli(audit_db)
    assert done.returncode == 1
    assert "BROKEN at audit row 4" in done.stdout and "removed" in done.stdout


async def test_verify_cli_catches_a_removed_first_row(audit_db: AuditDb, app_engine: AsyncEngine) -> None:
    await append(app_engine, 3)
    tamper(audit_db, "DELETE FROM audit_log WHERE id = 1")
    done = verify_cli(audit_db)
    assert done.returncode == 1 and "BROKEN at audit row 2: chain broken at its start" in done.stdout


async def test_verify_cli_catches_an_inserted_row(audit_db: AuditDb, app_engine: AsyncEngine) -> None:
    await append(app_engine, 2)
    with pytest.raises(RuntimeError):  # burns id 3: a gap an attacker could fill
        async with app_engine.begin() as conn:
            await record_audit(conn, actor="x", action="lot.create", entity="lot", entity_key="gone")
            raise RuntimeError("rollback")
    await append(app_engine, 2, "after")
    assert verify_cli(audit_db).returncode == 0
    # A forged row with a correct link to row 2 and a correctly computed hash of its own.
    tamper(
        audit_db,
        "INSERT INTO audit_log (id, occurred_at, actor, action, entity, entity_key, prev_hash, row_hash) "
        "SELECT 3, now(), 'intruder', 'lot.close', 'lot', 'x', row_hash, repeat('0', 64) FROM audit_log "
        "WHERE id = 2",
        "UPDATE audit_log a SET row_hash = audit_row_hash(a) WHERE id = 3",
    )
    done = verify_cli(audit_db)
    assert done.returncode == 1 and "BROKEN at audit row 3: row 3 was inserted" in done.stdout


async def test_verify_cli_anchor_catches_a_cut_off_tail(audit_db: AuditDb, app_engine: AsyncEngine) -> None:
    await append(app_engine, 4)
    last_hash = rows(audit_db.app_dsn)[-1][2]
    tamper(audit_db, "DELETE FROM audit_log WHERE id = 4")
    assert verify_cli(audit_db).returncode == 0  # a chain alone cannot see its end cut off …
    done = verify_cli(audit_db, "--anchor", f"4:{last_hash}")
    assert done.returncode == 1 and "anchored row is missing" in done.stdout  # … an anchor kept elsewhere can


async def test_verify_notices_an_altered_hash_function(audit_db: AuditDb, app_engine: AsyncEngine) -> None:
    await append(app_engine, 2)
    with psycopg.connect(audit_db.owner_dsn) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION audit_row_hash(r audit_log) RETURNS char(64) LANGUAGE sql "
            "STABLE AS $$ SELECT encode(sha256(convert_to(r.actor, 'UTF8')), 'hex') $$"
        )
    async with app_engine.connect() as conn:
        result = await verify_chain(conn)
    assert result.broken is not None and "audit_row_hash() disagrees" in result.broken.reason


def test_genesis_and_time_format_are_stable() -> None:
    row = ChainRow(
        1, datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "a", "b", "c", None, None, '{"x": 1}', None, None, GENESIS, ""
    )
    assert canonical_text(row) == '[1, "2026-01-02T03:04:05.000006Z", "a", "b", "c", null, null, {"x": 1}, null, null]'
