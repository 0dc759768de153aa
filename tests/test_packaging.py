"""What is installed where (pyproject extras): a station install never needs the central packages, the CLI names
the extra a command of the other role needs, and the wheel ships the migrations so `mes db upgrade` works from it.

The station checks run in a subprocess where the other role's packages are made unimportable (`sys.modules[name] =
None`, which is what an uninstalled package looks like to `import` and to `importlib.util.find_spec`).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
import uuid
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from deploy.localstack.postgres import PostgresServer
from mes_cli.extras import EXTRA_OF_MODULE

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
CENTRAL_ONLY = (
    "sqlalchemy",
    "fastapi",
    "psycopg",
    "alembic",
    "boto3",
    "botocore",
    "redis",
    "jwt",
    "pwdlib",
    "multipart",
    "python_multipart",
    "PIL",
    "barcode",
    "jinja2",
)
STATION_ONLY = ("watchdog", "httpx", "serial", "ttkbootstrap")
STATION_PACKAGES = ("edge_gateway", "mes_contracts", "line_simulator", "printer_emulator", "station_ui")
OUR_PACKAGES = frozenset(
    {
        "mes_contracts",
        "cloud_api",
        "edge_gateway",
        "db",
        "deploy",
        "line_simulator",
        "mes_cli",
        "printer_emulator",
        "mes_labels",
    }
)


def _dist_name(requirement: str) -> str:
    for stop in "[<>=!~; ":
        requirement = requirement.split(stop)[0]
    return requirement.lower().replace("_", "-")


def run_without(modules: tuple[str, ...], code: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter in which `modules` cannot be imported, as if they were not installed."""
    prelude = f"import sys\nfor name in {modules!r}:\n    sys.modules[name] = None\n"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MES_")}
    env["MES_STATE_DIR"] = str(cwd / "no-state")  # never the checkout's local stack settings
    return subprocess.run(
        [sys.executable, "-c", prelude + code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def mes_without(modules: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    return run_without(modules, f"sys.argv = ['mes', *{list(args)!r}]\nfrom mes_cli.main import main\nmain()")


# -- quick: the declared extras --------------------------------------------------------------------------------------
def test_station_extra_and_core_hold_no_central_package() -> None:
    station = {_dist_name(req) for req in [*PYPROJECT["project"]["dependencies"], *EXTRAS["station"]]}
    assert station.isdisjoint({"sqlalchemy", "fastapi", "psycopg", "alembic", "boto3", "redis", "pyjwt"}), station
    assert {"pytest", "ruff", "mypy"}.isdisjoint(_dist_name(req) for req in EXTRAS["central"] + EXTRAS["station"])
    assert {"ruff", "mypy", "import-linter"} <= {_dist_name(req) for req in EXTRAS["dev"]}


def test_every_package_of_an_extra_is_mapped_to_that_extra_for_the_cli() -> None:
    """mes_cli/extras.py names the extra for a missing module; each station/central package must be in it."""
    modules_of: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(_dist_name(dist), set()).add(module)
    for extra in ("central", "station"):
        for dist in map(_dist_name, EXTRAS[extra]):
            modules = modules_of.get(dist)
            assert modules, f"{dist} ([{extra}]) is not installed in this venv: run ./test.sh once"
            assert any(EXTRA_OF_MODULE.get(module) == extra for module in modules), (dist, modules)


def test_station_code_imports_no_central_package_even_lazily() -> None:
    """The subprocess test below sees module-level imports; this one also sees imports inside functions."""
    offenders = []
    for package in STATION_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module]
                    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    else []
                )
                offenders += [
                    f"{path.relative_to(REPO)}: {name}"
                    for name in names
                    if name.split(".")[0] in CENTRAL_ONLY or name.split(".")[0] == "cloud_api"
                ]
    assert offenders == []


# -- processes: a station install, simulated ---------------------------------------------------------------------
@pytest.mark.processes
def test_station_install_imports_and_runs_the_gateway_cli_without_central_packages() -> None:
    station_modules = "edge_gateway.bootstrap, line_simulator.cli_entry, printer_emulator.server, mes_cli.main"
    done = run_without(CENTRAL_ONLY, f"import {station_modules}\nprint('imported')")
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr
    done = mes_without(CENTRAL_ONLY, "gateway", "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: mes gateway" in done.stdout and "--station" in done.stdout


@pytest.mark.processes
@pytest.mark.parametrize("command", [("db", "upgrade"), ("api",), ("ingest",), ("worker", "add", "W1", "a")])
def test_central_command_on_a_station_names_the_extra_in_one_line(command: tuple[str, ...]) -> None:
    done = mes_without(CENTRAL_ONLY, *command)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"mes {' '.join(command[:2])}: needs the central server's packages" in done.stderr
    assert "pip install 'withforce-mes[central]'" in done.stderr


@pytest.mark.processes
def test_station_command_on_a_central_install_names_the_station_extra() -> None:
    done = mes_without(STATION_ONLY, "gateway", "--station", "st01")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.strip().splitlines() == [
        "mes gateway: needs the station's packages, which are not installed (no module 'watchdog'); "
        "install them with: pip install 'withforce-mes[station]'"
    ]


# -- processes: the wheel ---------------------------------------------------------------------------------------------
def _build_wheel(tmp: Path) -> Path:
    """`pip wheel` from a copy of the sources, so no build/ directory is left in (or reused from) the checkout."""
    source = tmp / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", ".state", "tests", "bench", "__pycache__", "*.egg-info", ".*_cache"
        ),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp / "dist").glob("withforce_mes-*.whl")
    return wheel


@pytest.mark.processes
def test_wheel_ships_the_migrations_and_mes_db_upgrade_runs_from_it(tmp_path: Path, postgres: PostgresServer) -> None:
    if getattr(postgres, "owner", None) is None:
        pytest.skip("needs the local two-role PostgreSQL (the Docker path has one role)")
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    versions = {f"db/migrations/versions/{p.name}" for p in (REPO / "db/migrations/versions").glob("*.py")}
    assert len(versions) >= 7
    assert {"db/alembic.ini", "db/migrations/env.py", "db/migrations/script.py.mako", *versions} <= names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)

    database = f"wheel_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.owner_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    app_dsn, owner_dsn = (dsn.rsplit("/", 1)[0] + f"/{database}" for dsn in (postgres.dsn, postgres.owner_dsn))
    # cwd outside the checkout and the wheel first on the path: `db` and `mes_cli` come from the wheel.
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(unpacked),
        "MES_STATE_DIR": str(tmp_path / "state"),
        "MES_DATABASE_URL": app_dsn.replace("postgresql://", "postgresql+psycopg://"),
        "MES_MIGRATION_DATABASE_URL": owner_dsn.replace("postgresql://", "postgresql+psycopg://"),
    }
    try:
        where = subprocess.run(
            [sys.executable, "-c", "import db.migrate as m; print(m.MIGRATIONS_DIR)"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert where.stdout.strip() == str(unpacked / "db" / "migrations"), where.stderr
        done = subprocess.run(
            [sys.executable, "-m", "mes_cli", "db", "upgrade"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "database upgraded to head" in done.stdout
        with psycopg.connect(app_dsn, autocommit=True) as conn:
            head = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            conn.execute("INSERT INTO workers (worker_id, name) VALUES ('W001', 'a')")
        assert head is not None and head[0] == max(versions).rsplit("/", 1)[1].split("_")[0]
    finally:
        with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
