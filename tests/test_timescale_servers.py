"""Real clusters of their own (issue 14, point 1): the trap — TimescaleDB installed but not preloaded — leaves
`mes db upgrade` working on plain PostgreSQL with one line telling the administrator what to change; a server is
never started in a flavour its database cannot live with."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from deploy.localstack import pg_timescale
from deploy.localstack.children import mes_command
from deploy.localstack.common import find_binary
from deploy.localstack.postgres import PostgresServer
from deploy.localstack.services import ServiceError

pytestmark = pytest.mark.processes  # starts its own PostgreSQL clusters and `mes db upgrade`

INSTALLED = pg_timescale.installed(Path(find_binary("postgres")).resolve().parent)
needs_files = pytest.mark.skipif(
    not INSTALLED, reason="TimescaleDB files are not installed for this PostgreSQL (deploy/setup.sh installs them)"
)
WARNING = "TimescaleDB is installed but not preloaded"


def mes_db_upgrade(server: PostgresServer) -> subprocess.CompletedProcess[str]:
    """`mes db upgrade` as an administrator runs it: only the two URLs, nothing of the test session's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MES_")}
    env |= {"MES_DATABASE_URL": server.url, "MES_MIGRATION_DATABASE_URL": server.owner_url}
    return subprocess.run(mes_command("db", "upgrade"), env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "pg"
    PostgresServer(tmp_path / "pg").destroy()


@needs_files
def test_installed_but_not_preloaded_upgrade_warns_in_one_line_and_stays_plain(state: Path) -> None:
    server = PostgresServer(state, owner="mes_owner", timescale="plain")
    server.start()
    assert not server.timescale
    done = mes_db_upgrade(server)
    assert done.returncode == 0, done.stderr
    assert "database upgraded to head" in done.stdout
    output = done.stdout + done.stderr
    warnings = [line for line in output.splitlines() if WARNING in line]
    assert len(warnings) == 1, output
    assert "shared_preload_libraries = 'timescaledb'" in warnings[0] and "restart" in warnings[0]
    with psycopg.connect(server.dsn, autocommit=True) as conn:  # the application role
        assert not pg_timescale.has_extension(conn)
        assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'measurements'").fetchone() == ("r",)
        conn.execute(
            "INSERT INTO measurements (time, lot_id, process_id, result_id, characteristic, value) "
            "VALUES (now(), 1, 'PROC-006', 1, 'force', 12.5)"
        )
        assert conn.execute("SELECT value FROM measurements").fetchone() == (12.5,)
    # The administrator fixes the preload later: the database, migrated plain, stays plain (no extension that
    # would make the analytics look for continuous aggregates its migrations never made).
    server.stop()
    with PostgresServer(state, owner="mes_owner", timescale="timescale") as fixed:
        assert fixed.timescale
        with psycopg.connect(fixed.dsn) as conn:
            assert not pg_timescale.has_extension(conn)
            assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'measurements'").fetchone() == ("r",)


@needs_files
def test_a_timescaledb_database_is_never_started_plain(state: Path) -> None:
    with PostgresServer(state, owner="mes_owner", timescale="timescale") as server:
        assert server.timescale
        done = mes_db_upgrade(server)  # on TimescaleDB: quiet (its per-column style advice stays at debug level)
        assert done.returncode == 0 and "WARNING" not in done.stderr, done.stderr
        with psycopg.connect(server.dsn) as conn:
            assert pg_timescale.describe(conn).startswith("TimescaleDB 2.")
            assert conn.execute(
                "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'measurements'"
            ).fetchone() == (1,)
    # Without the preload every TimescaleDB call would fail: refuse at start, saying what to do.
    plain = PostgresServer(state, owner="mes_owner", timescale="plain")
    with pytest.raises(ServiceError, match="uses TimescaleDB but this server was started without it"):
        plain.start()
    assert not plain.is_running()  # refused servers are not left behind
    with PostgresServer(state, owner="mes_owner", timescale="auto") as again:  # preloaded again, the data still there
        assert again.timescale


def test_timescale_required_but_the_running_server_is_plain(state: Path) -> None:
    with PostgresServer(state, timescale="plain") as plain:
        assert not plain.timescale
        # A second handle on the same state dir reuses the running server: it cannot become TimescaleDB.
        with pytest.raises(ServiceError, match="started without it"):
            PostgresServer(state, timescale="timescale").start()
