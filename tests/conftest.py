"""Session fixtures: real PostgreSQL, Mosquitto and Redis on free ports, and the MES processes on top."""

from __future__ import annotations

import _posixsubprocess  # what multiprocessing forks with
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud_api.domain.access import Role
from db.migrate import upgrade
from deploy.localstack import pg_timescale
from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.service_state import wait_service_online
from deploy.localstack.services import (
    MissingBinary,
    MosquittoServer,
    PostgresServer,
    RedisServer,
    find_binary,
    find_free_port,
)
from mes_contracts.route import ROUTE
from tests.support.auth import AUTH_ENV, ApiUser, RoleAuth, add_users, role_auth, role_users
from tests.support.containers import docker_requested, mosquitto_container, postgres_container, redis_container
from tests.support.line import Line, Station, station_ids
from tests.support.xvfb import x_display  # noqa: F401  (a session fixture: one Xvfb for the in-process Tk tests)

WORKERS = [(f"W{n:03d}", f"작업자 {n}") for n in range(1, 11)]


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """TimescaleDB preloaded when installed; MES_TEST_POSTGRES=plain|timescale forces one (pg_timescale.py)."""
    if docker_requested():
        server: Any = postgres_container()
    else:
        server = PostgresServer(tmp_path_factory.mktemp("postgres"), owner="mes_owner")
        server.start()
    try:  # a failing migration must not leave the cluster running after the session (it did: one per failed run)
        # Migrations as the schema owner; the suite runs as the application role, as in production.
        upgrade(getattr(server, "owner_url", server.url), app_role=getattr(server, "user", None))
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.cursor().executemany(
                "INSERT INTO workers (worker_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", WORKERS
            )
            conn.execute(
                "INSERT INTO workers (worker_id, name, active) VALUES ('W999', '퇴사자', false) ON CONFLICT DO NOTHING"
            )
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def timescaledb(postgres: PostgresServer) -> bool:
    """Whether the suite's database has TimescaleDB (else plain PostgreSQL): what migrations and queries see."""
    with psycopg.connect(postgres.dsn) as conn:
        return pg_timescale.has_extension(conn)


@pytest.fixture(autouse=True)
def _skip_timescale_tests_on_plain(request: pytest.FixtureRequest) -> None:
    """`@pytest.mark.timescale` tests need the extension: skipped, with the reason, on plain PostgreSQL."""
    if request.node.get_closest_marker("timescale") is not None and not request.getfixturevalue("timescaledb"):
        pytest.skip("needs TimescaleDB; this run uses plain PostgreSQL (MES_TEST_POSTGRES, README 'Database')")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    if docker_requested():
        server: Any = mosquitto_container()
    else:
        server = MosquittoServer(tmp_path_factory.mktemp("mosquitto"))
        server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if docker_requested():
        server: Any = redis_container()
    else:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def central_env(
    postgres: PostgresServer,
    broker: MosquittoServer,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    return {
        "MES_FIRMWARE_LOCAL_DIR": str(tmp_path_factory.mktemp("firmware")),
        "MES_DATABASE_URL": postgres.url,
        "MES_MIGRATION_DATABASE_URL": getattr(postgres, "owner_url", postgres.url),
        "MES_REDIS_URL": redis_server.url,
        "MES_MQTT_HOST": "127.0.0.1",
        "MES_MQTT_PORT": str(broker.port),
        "MES_LOG_JSON": "true",
        **AUTH_ENV,  # the suite's JWT key (tests sign their own bad tokens with it)
        # Every test talks from 127.0.0.1; the real limits are tested with their own API processes.
        "MES_RATE_LIMIT_PER_MINUTE": "1000000",
        "MES_RATE_LIMIT_USER_PER_MINUTE": "1000000",
    }


@pytest.fixture
def db(postgres: PostgresServer) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def api_url(central_env: dict[str, str], logs_dir: Path) -> Iterator[str]:
    port = find_free_port()
    child = ChildProcess("api", mes_command("api", "--port", str(port)), central_env, logs_dir / "api.log").start()
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/health", 30, child)
    yield url
    child.stop()


@pytest.fixture(scope="session")
def api_users(central_env: dict[str, str]) -> dict[Role, ApiUser]:
    """One user per role (t-viewer, t-operator, t-manager, t-admin), made with the real `mes user add`."""
    users = role_users()
    add_users(central_env, list(users.values()))
    return users


@pytest.fixture(scope="session")
def auth(api_url: str, api_users: dict[Role, ApiUser]) -> RoleAuth:
    """httpx auth per role, logged in through the API: `httpx.post(url, json=…, auth=auth.manager)`."""
    return role_auth(api_url, api_users)


@pytest.fixture(scope="session")
def ingestor(central_env: dict[str, str], logs_dir: Path, broker: MosquittoServer) -> Iterator[ChildProcess]:
    # Its own /metrics on a free port (tests/test_central_metrics.py scrapes it: env["MES_INGESTOR_METRICS_PORT"]).
    env = {**central_env, "MES_INGESTOR_CLIENT_ID": "ingestor-test", "MES_INGESTOR_METRICS_PORT": str(find_free_port())}
    child = ChildProcess("ingestor", mes_command("ingest"), env, logs_dir / "ingestor.log").start()
    try:
        wait_service_online(broker.port, "ingestor-test")
    except TimeoutError:
        raise RuntimeError(f"ingestor did not come up:\n{child.log_tail()}") from None
    yield child
    child.stop()


@pytest.fixture(scope="session")
def line(
    api_url: str,
    ingestor: ChildProcess,
    broker: MosquittoServer,
    auth: RoleAuth,
    tmp_path_factory: pytest.TempPathFactory,
    logs_dir: Path,
) -> Iterator[Line]:
    root = tmp_path_factory.mktemp("stations")
    the_line = Line(api_url, auth=auth.manager)
    children = []
    for step in ROUTE:
        station_id = station_ids()[step.process_id]
        port = find_free_port()
        work_dir = root / station_id
        env = {
            "MES_GW_STATION": station_id,
            "MES_GW_WORK_DIR": str(work_dir),
            "MES_GW_MQTT_PORT": str(broker.port),
            "MES_GW_LOCAL_PORT": str(port),
            "MES_GW_STABLE_WINDOW_S": "0.2",
            "MES_GW_RESCAN_INTERVAL_S": "0.5",
            "MES_GW_RETRY_INTERVAL_S": "0.5",
        }
        child = ChildProcess(
            f"gateway-{station_id}",
            mes_command("gateway", "--station", station_id),
            env,
            logs_dir / f"gateway-{station_id}.log",
        ).start()
        children.append(child)
        the_line.stations[step.process_id] = Station(step.process_id, station_id, work_dir, f"http://127.0.0.1:{port}")
    for child, station in zip(children, the_line.stations.values(), strict=True):
        wait_http_ok(f"{station.gateway_url}/status", 30, child)
    yield the_line
    for child in children:
        child.stop()


def pytest_report_header() -> list[str]:
    return [f"withforce-mes tests; uid={os.getuid()}", f"database: {_database_flavour()}"]


def _database_flavour() -> str:
    """Which PostgreSQL the `postgres` fixture will start, decided as PostgresServer does (nothing started)."""
    if docker_requested():
        return "postgres:15 container (plain PostgreSQL)"
    try:
        mode = pg_timescale.mode_from_env()
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    try:
        bin_dir = Path(find_binary("postgres")).resolve().parent
        preload = pg_timescale.resolve(mode, bin_dir)
    except (MissingBinary, pg_timescale.TimescaleUnavailable) as error:
        return f"unavailable ({error})"
    flavour = pg_timescale.TIMESCALE_LABEL if preload else pg_timescale.PLAIN_LABEL
    return f"{flavour} ({pg_timescale.ENV_MODE}={mode}; `-m plain_pg` with =plain is the plain pass)"


# -- test tiers (README "Tests") ------------------------------------------------------------------------------------
# `quick`: set here, never by hand, on every test that needs no service and starts no process: its fixture closure
# (which holds every fixture it depends on, however indirectly) has none of PROCESS_FIXTURES, and its module is not
# marked `pytestmark = pytest.mark.processes` (a module that starts servers or `mes …` children by itself).
# `./test.sh -m quick` runs them; a quick test that starts a child process anyway fails (_quick_tier_guard).
PROCESS_FIXTURES = frozenset(
    {
        # tests/conftest.py: the three servers and everything on top of them
        "postgres",
        "broker",
        "redis_server",
        "central_env",
        "db",
        "api_url",
        "api_users",
        "auth",
        "ingestor",
        "line",
        # tests/fault/conftest.py: the fault modules' PostgreSQL + API, a test's own broker
        "central",
        "rig",
        # tests/support/xvfb.py: the session's Xvfb
        "x_display",
    }
)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (
            item.get_closest_marker("processes") is None
            and item.get_closest_marker("docker") is None
            and not PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        ):
            item.add_marker(pytest.mark.quick)


def _no_child_process(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"a test of the quick tier started a child process ({what}): mark its module "
            '`pytestmark = pytest.mark.processes` (tests/conftest.py, README "Tests")'
        )

    return refuse


@contextmanager
def _quick_tier_guard(item: pytest.Item) -> Iterator[None]:
    """A quick test may not start a process (subprocess, asyncio subprocesses, multiprocessing, fork), neither in
    its body nor in the setup of any fixture it uses, whatever the fixture's scope."""
    if item.get_closest_marker("quick") is None:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", _no_child_process("subprocess.Popen"))
        patch.setattr(_posixsubprocess, "fork_exec", _no_child_process("fork_exec"))
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
            if hasattr(os, name):
                patch.setattr(os, name, _no_child_process(f"os.{name}"))
        yield


# Setup and call only: the teardown after a quick test may stop the servers of the tests before it.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with _quick_tier_guard(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _quick_tier_guard(item):
        return (yield)
