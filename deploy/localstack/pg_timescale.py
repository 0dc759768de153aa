"""TimescaleDB for the local PostgreSQL: is the extension installed next to this server, which flavour do we run
(preloaded TimescaleDB or plain PostgreSQL), and what does a database actually have.

The flavour is one of three modes:
- ``auto``: preload TimescaleDB when its files are installed for this server, else plain PostgreSQL (`mes up`,
  the test suite by default);
- ``timescale``: require it (an error naming the fix when the files are missing);
- ``plain``: never preload it, even when installed (the suite's plain-PostgreSQL pass).
``MES_TEST_POSTGRES`` sets the mode of every PostgresServer made without an explicit one, so one variable switches
the whole test run (session fixture, fault rigs, `mes up` children) to plain PostgreSQL or insists on TimescaleDB.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Literal

import psycopg

Mode = Literal["auto", "timescale", "plain"]
MODES: tuple[Mode, ...] = ("auto", "timescale", "plain")
ENV_MODE = "MES_TEST_POSTGRES"
EXTENSION = "timescaledb"
# Passed with -c on the postgres command line: postgresql.conf stays untouched, so the same cluster can be started
# plain again. Telemetry off: a factory server does not phone home.
PRELOAD_SETTINGS = ("shared_preload_libraries=timescaledb", "timescaledb.telemetry_level=off")
# Each database with the extension runs one scheduler background worker (plus policy jobs); the suite creates a few
# databases, and PostgreSQL's default of 8 workers would leave jobs waiting (and parallel query without workers).
WORKER_SETTINGS = ("max_worker_processes=32", "timescaledb.max_background_workers=16")

# What the fixture, `mes status` and the banner print.
TIMESCALE_LABEL = "TimescaleDB"
PLAIN_LABEL = "plain PostgreSQL"

BUNDLE_HINT = (
    "install it (deploy/setup.sh does so from ../shared/timescaledb or $MES_TIMESCALEDB_BUNDLE; on a real site "
    "the timescaledb-2-postgresql-<major> package, README 'Database: TimescaleDB or plain PostgreSQL')"
)


class TimescaleUnavailable(RuntimeError):
    """TimescaleDB was required (mode ``timescale``) but its files are not installed for this server."""


def mode_from_env(default: Mode = "auto") -> Mode:
    """The mode `MES_TEST_POSTGRES` asks for (unset or empty: `default`); a typo is an error, not plain."""
    value = os.environ.get(ENV_MODE, "").strip().lower()
    if not value:
        return default
    if value not in MODES:
        raise ValueError(f"{ENV_MODE}={value!r}: expected one of {', '.join(MODES)}")
    return value


def _pg_dirs(bin_dir: Path) -> tuple[Path, Path] | None:
    """(pkglibdir, sharedir) of the server in bin_dir, from the pg_config beside it (Debian ships one per major)."""
    pg_config = bin_dir / "pg_config"
    if not pg_config.is_file():
        return None
    try:
        out = subprocess.run(
            [str(pg_config), "--pkglibdir", "--sharedir"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return (Path(out[0]), Path(out[1])) if len(out) == 2 else None


def installed(bin_dir: Path) -> bool:
    """Whether TimescaleDB's loader library and control file are installed for the server in bin_dir."""
    dirs = _pg_dirs(bin_dir)
    if dirs is None:  # no pg_config: Debian's layout (/usr/lib/postgresql/N/bin -> lib, /usr/share/postgresql/N)
        major = bin_dir.parent.name
        dirs = (bin_dir.parent / "lib", bin_dir.parents[3] / "share" / "postgresql" / major)
    libdir, sharedir = dirs
    return (libdir / f"{EXTENSION}.so").is_file() and (sharedir / "extension" / f"{EXTENSION}.control").is_file()


def resolve(mode: Mode, bin_dir: Path) -> bool:
    """Whether to preload TimescaleDB for `mode` on the server in bin_dir; raises when `timescale` cannot be met."""
    if mode == "plain":
        return False
    available = installed(bin_dir)
    if mode == "timescale" and not available:
        raise TimescaleUnavailable(
            f"TimescaleDB is required ({ENV_MODE}=timescale) but is not installed for {bin_dir}: {BUNDLE_HINT}"
        )
    return available


def preloaded(conn: psycopg.Connection) -> bool:
    """Whether the server preloads TimescaleDB: the loader's own setting exists only then (any role can see it,
    unlike shared_preload_libraries; migration 0001 asks the same)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_settings WHERE name = 'timescaledb.max_background_workers')"
    ).fetchone()
    return bool(row and row[0])


def has_extension(conn: psycopg.Connection) -> bool:
    """Whether the connected database has TimescaleDB (the same test the migrations and queries use)."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()
    return bool(row and row[0])


def extension_version(conn: psycopg.Connection) -> str | None:
    """TimescaleDB's version in the connected database, None on plain PostgreSQL."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return str(row[0]) if row else None


def describe(conn: psycopg.Connection) -> str:
    """One phrase for banners and reports: "TimescaleDB 2.28.3" or "plain PostgreSQL"."""
    version = extension_version(conn)
    return f"{TIMESCALE_LABEL} {version}" if version else PLAIN_LABEL


def _main() -> None:
    """`python -m deploy.localstack.pg_timescale`: "timescale" or "plain", what a PostgresServer started now would
    run (MES_TEST_POSTGRES and the installed files); test.sh asks it whether a separate plain pass is needed."""
    from deploy.localstack.common import find_binary

    bin_dir = Path(find_binary("postgres")).resolve().parent
    print("timescale" if resolve(mode_from_env(), bin_dir) else "plain")


if __name__ == "__main__":
    _main()
