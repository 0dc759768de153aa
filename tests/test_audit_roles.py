"""Two database roles: a state dir from the single-role days is handed to the owner and keeps its data."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from db.migrate import upgrade
from deploy.localstack.children import mes_command
from deploy.localstack.postgres import PostgresServer

pytestmark = pytest.mark.processes  # starts its own PostgreSQL clusters and runs `mes db upgrade`

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("old-state") / "postgres"
    yield path
    PostgresServer(path).destroy()


@pytest.mark.parametrize("old_revision", ["0002", "head"])
def test_single_role_state_is_handed_over_to_the_owner(state_dir: Path, old_revision: str) -> None:
    with PostgresServer(state_dir) as old:  # as `./run.sh` left it before: everything owned by `mes`
        upgrade(old.url, old_revision)
        with psycopg.connect(old.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO workers (worker_id, name) VALUES ('W077', '이전 작업자')")
            if old_revision == "head":
                conn.execute("INSERT INTO audit_log (actor, action, entity) VALUES ('old', 'worker.upsert', 'w')")

    with PostgresServer(state_dir, owner="mes_owner") as new:
        upgrade(new.owner_url, app_role=new.user)
        with psycopg.connect(new.dsn, autocommit=True) as conn:
            assert conn.execute("SELECT name FROM workers WHERE worker_id = 'W077'").fetchone() == ("이전 작업자",)
            conn.execute("INSERT INTO workers (worker_id, name) VALUES ('W078', '새 작업자')")
            conn.execute("INSERT INTO audit_log (actor, action, entity) VALUES ('new', 'worker.upsert', 'w')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                conn.execute("DELETE FROM audit_log")
            owners = conn.execute(
                "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public' UNION "
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
            ).fetchall()
        assert owners == [("mes_owner",)]


def test_mes_db_upgrade_migrates_as_owner_and_grants_the_app_role(postgres: PostgresServer) -> None:
    if getattr(postgres, "owner", None) is None:
        pytest.skip("needs the local two-role PostgreSQL (the Docker path has one role)")
    name = f"cli_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.owner_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    app_dsn, owner_dsn = (dsn.rsplit("/", 1)[0] + f"/{name}" for dsn in (postgres.dsn, postgres.owner_dsn))
    env = {
        "PATH": "/usr/bin:/bin",
        "MES_DATABASE_URL": app_dsn.replace("postgresql://", "postgresql+psycopg://"),
        "MES_MIGRATION_DATABASE_URL": owner_dsn.replace("postgresql://", "postgresql+psycopg://"),
    }
    try:
        done = subprocess.run(
            mes_command("db", "upgrade"), env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        with psycopg.connect(app_dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO workers (worker_id, name) VALUES ('W001', 'a')")
            conn.execute("INSERT INTO audit_log (actor, action, entity) VALUES ('cli', 'worker.upsert', 'worker')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                conn.execute("UPDATE audit_log SET actor = 'x'")
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_log'").fetchone()
        assert owner == ("mes_owner",)
    finally:
        with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:  # may end the app role's sessions
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
