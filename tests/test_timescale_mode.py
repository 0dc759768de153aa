"""The suite's database is what MES_TEST_POSTGRES asks for, and migration 0001 shapes `measurements` to match:
a hypertable on TimescaleDB, a plain table on plain PostgreSQL (issue 14, point 1). The mode rules themselves are
checked without a server (quick)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from deploy.localstack import pg_timescale
from deploy.localstack.common import find_binary
from deploy.localstack.postgres import PostgresServer

HYPERTABLE = "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = %s)"


@pytest.mark.plain_pg
def test_the_suite_runs_on_the_database_it_was_asked_for(postgres: PostgresServer, timescaledb: bool) -> None:
    mode = pg_timescale.mode_from_env()
    if mode == "plain":
        assert not timescaledb
        assert not postgres.timescale
    elif mode == "timescale":
        assert timescaledb
    else:  # auto: TimescaleDB exactly when its files are installed next to the server
        bin_dir = Path(find_binary("postgres")).resolve().parent
        assert timescaledb == pg_timescale.installed(bin_dir)
    assert postgres.timescale == timescaledb  # what the server preloads is what the database has


@pytest.mark.timescale
def test_on_timescaledb_measurements_is_a_hypertable_usable_by_the_app_role(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute(HYPERTABLE, ("measurements",)).fetchone() == (True,)
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        assert version is not None and version[0].startswith("2.")
        # The app role (not the owner) reads through the hypertable's chunks.
        conn.execute("SELECT count(*) FROM measurements WHERE time > now() - interval '1 day'").fetchone()
        assert conn.execute("SHOW timescaledb.telemetry_level").fetchone() == ("off",)


@pytest.mark.plain_pg
def test_on_plain_postgresql_measurements_is_an_ordinary_table(postgres: PostgresServer, timescaledb: bool) -> None:
    if timescaledb:
        pytest.skip("this run uses TimescaleDB; the plain pass (MES_TEST_POSTGRES=plain) checks this")
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'measurements'").fetchone() == ("r",)
        assert conn.execute("SELECT to_regnamespace('_timescaledb_catalog')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM pg_settings WHERE name LIKE 'timescaledb.%'").fetchone() == (0,)


# -- the mode rules, without a server ------------------------------------------------------------------------------


def test_mode_comes_from_the_environment_and_a_typo_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pg_timescale.ENV_MODE, raising=False)
    assert pg_timescale.mode_from_env() == "auto"
    monkeypatch.setenv(pg_timescale.ENV_MODE, " Plain ")
    assert pg_timescale.mode_from_env() == "plain"
    assert PostgresServer(Path("/nonexistent/state")).timescale_mode == "plain"
    assert PostgresServer(Path("/nonexistent/state"), timescale="timescale").timescale_mode == "timescale"
    monkeypatch.setenv(pg_timescale.ENV_MODE, "timescal")
    with pytest.raises(ValueError, match="MES_TEST_POSTGRES='timescal'"):
        pg_timescale.mode_from_env()


def _debian_layout(root: Path, with_library: bool, with_control: bool) -> Path:
    """/usr/lib/postgresql/15/{bin,lib} and /usr/share/postgresql/15/extension under root (no pg_config)."""
    bin_dir = root / "usr/lib/postgresql/15/bin"
    bin_dir.mkdir(parents=True)
    (root / "usr/lib/postgresql/15/lib").mkdir()
    (root / "usr/share/postgresql/15/extension").mkdir(parents=True)
    if with_library:
        (root / "usr/lib/postgresql/15/lib/timescaledb.so").write_bytes(b"")
    if with_control:
        (root / "usr/share/postgresql/15/extension/timescaledb.control").write_text("trusted = true\n")
    return bin_dir


@pytest.mark.parametrize(("library", "control"), [(True, True), (True, False), (False, True), (False, False)])
def test_installed_needs_both_the_library_and_the_control_file(tmp_path: Path, library: bool, control: bool) -> None:
    bin_dir = _debian_layout(tmp_path, library, control)
    assert pg_timescale.installed(bin_dir) == (library and control)
    assert pg_timescale.resolve("auto", bin_dir) == (library and control)
    assert pg_timescale.resolve("plain", bin_dir) is False


def test_timescale_mode_fails_loudly_when_not_installed(tmp_path: Path) -> None:
    bin_dir = _debian_layout(tmp_path, with_library=True, with_control=False)
    with pytest.raises(pg_timescale.TimescaleUnavailable, match=r"MES_TEST_POSTGRES=timescale.*install"):
        pg_timescale.resolve("timescale", bin_dir)
    assert pg_timescale.resolve("timescale", _debian_layout(tmp_path / "ok", True, True)) is True
