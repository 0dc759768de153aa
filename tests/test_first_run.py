"""First-run friction (issue 11, finding 5): a real `mes up --no-simulate` writes `.state/mes.env` and
`stations.json`, gives the gateways fixed ports and station tokens; the CLI finds all of it without variables,
or says in one line what to set."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from deploy.localstack.children import ChildProcess, mes_command
from deploy.localstack.common import find_free_port
from mes_cli.local_env import read_env_file
from mes_cli.stack import GATEWAY_BASE_PORT, _gateway_port

pytestmark = pytest.mark.processes  # runs `mes up` and other `mes` commands as processes

STATIONS = [f"st{n:02d}" for n in range(1, 9)]
BANNER_END = "label preview"  # the banner's last line: everything is up


def cli(*args: str, state_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`mes …` as a user runs it from a shell: no MES_* variable but the state dir to look in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MES_")}
    env["MES_STATE_DIR"] = str(state_dir)
    return subprocess.run(
        mes_command(*args), env=env, capture_output=True, text=True, timeout=timeout, cwd=state_dir.parent
    )


@dataclass(frozen=True)
class Up:
    state_dir: Path
    child: ChildProcess

    def output(self) -> str:
        return self.child.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    root = tmp_path_factory.mktemp("first-run")
    state_dir = root / ".state"
    argv = mes_command("up", "--no-simulate", "--state-dir", str(state_dir), "--api-port", str(find_free_port()))
    child = ChildProcess("mes-up", argv, {"PYTHONUNBUFFERED": "1"}, root / "up.out").start()
    running = Up(state_dir, child)
    try:
        deadline = time.monotonic() + 180
        while BANNER_END not in running.output():
            assert child.running, f"mes up exited:\n{child.log_tail(60)}"
            assert time.monotonic() < deadline, f"mes up not up after 180 s:\n{child.log_tail(60)}"
            time.sleep(0.5)
        yield running
    finally:
        child.stop(timeout=120)  # a second signal would interrupt its orderly stop


def test_up_writes_the_cli_settings_privately(up: Up) -> None:
    env_file = up.state_dir / "mes.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    values = read_env_file(env_file)
    for key in ("MES_DATABASE_URL", "MES_MIGRATION_DATABASE_URL", "MES_REDIS_URL", "MES_MQTT_PORT", "MES_JWT_SECRET"):
        assert values.get(key), key
    url = urlsplit(values["MES_DATABASE_URL"].replace("+psycopg", ""))
    assert url.password and url.username == "mes"
    with psycopg.connect(urlunsplit(url), connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("mes",)
    without_password = urlunsplit(url._replace(netloc=f"mes@{url.hostname}:{url.port}"))
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(without_password, connect_timeout=5).close()


def test_user_worker_and_audit_commands_find_the_local_stack(up: Up) -> None:
    listed = cli("user", "list", state_dir=up.state_dir)
    assert listed.returncode == 0, listed.stderr
    assert "admin" in listed.stdout and "line-simulator" in listed.stdout
    added = cli("worker", "add", "W321", "처음 작업자", state_dir=up.state_dir)
    assert added.returncode == 0, added.stderr
    dsn = read_env_file(up.state_dir / "mes.env")["MES_DATABASE_URL"].replace("+psycopg", "")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT name FROM workers WHERE worker_id = 'W321'").fetchone() == ("처음 작업자",)
    verified = cli("audit", "verify", state_dir=up.state_dir)
    assert verified.returncode == 0, verified.stderr
    assert "audit chain OK" in verified.stdout


def test_stations_file_and_fixed_gateway_ports_without_the_simulator(up: Up) -> None:
    stations = json.loads((up.state_dir / "stations.json").read_text())
    assert [s["station_id"] for s in stations] == STATIONS
    for n, station in enumerate(stations, start=1):
        port = urlsplit(station["gateway_url"]).port
        fixed = GATEWAY_BASE_PORT + n
        # The fixed port, unless something else held it (then the start said so).
        assert port == fixed or f"port {fixed} of {station['station_id']} is taken" in up.output()


def test_gateway_status_finds_a_running_local_station(up: Up) -> None:
    shown = cli("gateway", "status", "--station", "st04", state_dir=up.state_dir)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "KR/L1/st04" in shown.stdout and "실행 중 running" in shown.stdout
    elsewhere = cli("gateway", "status", "--station", "st04", state_dir=up.state_dir.parent / "nothing-here")
    assert elsewhere.returncode == 1 and "NOT RUNNING" in elsewhere.stdout  # without stations.json: defaults


def test_each_gateway_has_a_live_download_token_and_the_demo_firmware_is_active(up: Up) -> None:
    dsn = read_env_file(up.state_dir / "mes.env")["MES_DATABASE_URL"].replace("+psycopg", "")
    with psycopg.connect(dsn) as conn:
        live = conn.execute(
            "SELECT station_id, count(*) FROM station_tokens WHERE revoked_at IS NULL "
            "GROUP BY station_id ORDER BY station_id"
        ).fetchall()
        active = conn.execute("SELECT version FROM firmware_versions WHERE active").fetchall()
    assert live == [(station, 1) for station in STATIONS]
    assert active == [("v1.0.0",)]
    assert "demo firmware v1.0.0 uploaded and activated" in up.output()


def test_up_uses_timescaledb_when_installed_and_says_which_database(up: Up) -> None:
    """Issue 14: `mes up` preloads TimescaleDB when its files are installed (MES_TEST_POSTGRES=plain: never)."""
    from deploy.localstack import pg_timescale
    from deploy.localstack.common import find_binary

    installed = pg_timescale.installed(Path(find_binary("postgres")).resolve().parent)
    expect = installed and pg_timescale.mode_from_env() != "plain"
    dsn = read_env_file(up.state_dir / "mes.env")["MES_DATABASE_URL"].replace("+psycopg", "")
    with psycopg.connect(dsn) as conn:
        assert pg_timescale.has_extension(conn) == expect
        hypertable = conn.execute("SELECT to_regclass('_timescaledb_catalog.hypertable') IS NOT NULL").fetchone()
    assert hypertable == (expect,)
    banner = [line for line in up.output().splitlines() if line.strip().startswith("database:")]
    assert len(banner) == 1 and ("TimescaleDB 2." in banner[0]) == expect, banner


def test_cli_without_settings_says_in_one_line_what_to_set(tmp_path: Path) -> None:
    empty = tmp_path / ".state"
    empty.mkdir()
    for args in (("user", "list"), ("worker", "add", "W1", "x"), ("audit", "verify")):
        done = cli(*args, state_dir=empty)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mes: MES_DATABASE_URL is not set"), done.stderr


def test_a_taken_fixed_port_falls_back_to_a_free_one(capsys: pytest.CaptureFixture[str]) -> None:
    sequence = next((n for n in range(90, 99) if _bindable(GATEWAY_BASE_PORT + n)), None)
    if sequence is None:
        pytest.skip("no free port in 8790-8798 to test with")
    assert _gateway_port(sequence) == GATEWAY_BASE_PORT + sequence
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", GATEWAY_BASE_PORT + sequence))
        holder.listen()
        port = _gateway_port(sequence)
    assert port != GATEWAY_BASE_PORT + sequence
    assert f"port {GATEWAY_BASE_PORT + sequence} of st{sequence:02d} is taken" in capsys.readouterr().out


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_stopped_stack_is_reported_in_one_line(tmp_path: Path) -> None:
    from mes_cli.local_env import write_env_file

    state = tmp_path / ".state"
    state.mkdir()
    closed = f"postgresql+psycopg://mes:pw@127.0.0.1:{find_free_port()}/mes"  # nothing listens there
    write_env_file(state, {"MES_DATABASE_URL": closed})
    done = cli("user", "list", state_dir=state)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "the database does not answer" in lines[0] and str(state / "mes.env") in lines[0]
