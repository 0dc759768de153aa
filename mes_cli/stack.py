"""`mes up`: the whole system on one machine — services, migrations, API, ingestor, 8 gateways, simulator."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from db.migrate import upgrade
from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.service_state import wait_service_online
from deploy.localstack.services import (
    ManagedServer,
    MosquittoServer,
    PostgresServer,
    RedisServer,
    find_free_port,
    port_is_free,
)
from mes_cli.broker import BrokerConfigError
from mes_cli.local_env import write_env_file, write_stations_file
from mes_cli.logging_setup import configure_logging
from mes_cli.stack_broker import LocalBrokerAccounts, local_broker_accounts
from mes_cli.users import LocalAccounts, local_accounts
from mes_contracts.route import ROUTE
from mes_contracts.topics import StationAddress

log = logging.getLogger(__name__)
SITE, LINE = "KR", "L1"
DEMO_WORKERS = [(f"W{n:03d}", f"작업자 {n:03d}") for n in range(1, 9)]
GATEWAY_BASE_PORT = 8700  # st01 → 8701 … st08 → 8708: stable, so scripts keep working across restarts
INGESTOR_METRICS_PORT = 8790  # the ingestor's Prometheus endpoint under `mes up`


@dataclass
class Stack:
    state_dir: Path
    api_port: int
    servers: list[ManagedServer] = field(default_factory=list)
    children: list[ChildProcess] = field(default_factory=list)
    accounts: LocalAccounts | None = None
    broker_accounts: LocalBrokerAccounts | None = None
    ingestor_metrics_url: str | None = None

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def child(self, name: str, argv: list[str], env: dict[str, str], to_terminal: bool = False) -> ChildProcess:
        process = ChildProcess(name, argv, env, self.logs / f"{name}.log", to_terminal=to_terminal)
        self.children.append(process.start())
        return process

    def stop(self) -> None:
        for process in reversed(self.children):
            process.stop()
        for server in reversed(self.servers):
            server.stop()


def run_stack(
    state_dir: Path, api_port: int, speed: float, lots: int, simulate: bool, exit_when_done: bool = False
) -> int:
    _stop_on_signals()
    state_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(state_dir, api_port)
    stack.logs.mkdir(exist_ok=True)
    configure_logging("INFO", True, stack.logs / "up.log", "up")
    if not port_is_free(api_port):
        print(f"port {api_port} is taken: choose another with --api-port")
        return 2
    try:
        env = _start_services(stack)
        printers = _start_printers(stack, env)
        stations = _start_processes(stack, env)
        _print_banner(stack, stations, printers)
        simulator = _start_simulator(stack, stations, speed, lots) if simulate else None
        _supervise(stack, simulator, exit_when_done)
    except KeyboardInterrupt:
        print("\nstopping …")
    except BrokerConfigError as error:  # e.g. an unreadable accounts file: the message says what to do
        print(f"cannot set up the broker accounts: {error}")
        return 2
    finally:
        stack.stop()
        print(f"stopped. Data kept in {state_dir}; run the same command again to continue.")
    return 0


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both stop the stack in order (SIGINT may arrive ignored from a non-interactive shell)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _start_services(stack: Stack) -> dict[str, str]:
    print(f"state directory: {stack.state_dir}")
    # Two roles: mes_owner owns the schema and migrates; the services connect as mes, which may only read and
    # append the audit log. An older single-role state dir is handed over to mes_owner at start.
    postgres = PostgresServer(stack.state_dir / "postgres", owner="mes_owner")
    # No anonymous clients, as at a site: each station and service has its own account and ACL block.
    accounts = local_broker_accounts(
        stack.state_dir / "broker-accounts", [StationAddress(SITE, LINE, _station_id(step.sequence)) for step in ROUTE]
    )
    stack.broker_accounts = accounts
    broker = MosquittoServer(stack.state_dir / "mosquitto", dynsec_file=accounts.site.dynsec_file)
    redis = RedisServer(stack.state_dir / "redis")
    for server in (postgres, broker, redis):
        _progress(f"starting {server.name} …")
        server.start()
        stack.servers.append(server)
        print(f"  {type(server).__name__:<16} 127.0.0.1:{server.port}  log {server.log_file}", flush=True)
    _progress("applying database migrations …")
    upgrade(postgres.owner_url, app_role=postgres.user)
    print(f"  database: {_database_flavour(postgres)}", flush=True)
    _seed_workers(postgres.dsn)
    stack.accounts = local_accounts(postgres.url, stack.state_dir)  # first admin (printed once), simulator user
    env = {
        "MES_JWT_SECRET": stack.accounts.jwt_secret,
        "MES_DATABASE_URL": postgres.url,
        "MES_REDIS_URL": redis.url,
        "MES_MQTT_HOST": "127.0.0.1",
        "MES_MQTT_PORT": str(broker.port),
        "MES_API_PORT": str(stack.api_port),
        "MES_FIRMWARE_LOCAL_DIR": str(stack.state_dir / "firmware"),
    }
    # `mes user list`, `mes audit verify` … from the checkout read this (0600: it holds the database passwords).
    cli_env = write_env_file(stack.state_dir, {**env, "MES_MIGRATION_DATABASE_URL": postgres.owner_url})
    print(f"  settings for the mes CLI: {cli_env}", flush=True)
    return env


def _progress(text: str) -> None:
    print(f"mes up: {text}", flush=True)


def _database_flavour(postgres: PostgresServer) -> str:
    """ "TimescaleDB 2.28.3" or "plain PostgreSQL (…why)": what the analytics run on (README "Database")."""
    import psycopg

    from deploy.localstack import pg_timescale

    with psycopg.connect(postgres.dsn) as conn:
        flavour = pg_timescale.describe(conn)
    if postgres.timescale:
        timescale = flavour != pg_timescale.PLAIN_LABEL
        return flavour if timescale else f"{flavour} (this state dir was migrated before TimescaleDB was installed)"
    if postgres.timescale_mode == "plain":
        return f"{flavour} ({pg_timescale.ENV_MODE}=plain)"
    return f"{flavour} (TimescaleDB is not installed: deploy/setup.sh installs the bundle when it finds one)"


def _seed_workers(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO workers (worker_id, name) VALUES (%s, %s) ON CONFLICT (worker_id) DO NOTHING", DEMO_WORKERS
        )


def _station_id(sequence: int) -> str:
    return f"st{sequence:02d}"


def _gateway_port(sequence: int) -> int:
    """st0N listens on 870N; only when that port is taken by something else, a free one (and we say so)."""
    return _stable_port(GATEWAY_BASE_PORT + sequence, _station_id(sequence))


def _stable_port(stable: int, who: str) -> int:
    if port_is_free(stable):
        return stable
    port = find_free_port()
    print(f"  ! port {stable} of {who} is taken by another process: using {port} this time", flush=True)
    return port


def _start_processes(stack: Stack, env: dict[str, str]) -> list[dict[str, str]]:
    from mes_cli.stack_firmware import prepare_firmware

    accounts = stack.broker_accounts
    assert accounts is not None
    api_url = f"http://127.0.0.1:{stack.api_port}"
    firmware = prepare_firmware(
        env["MES_DATABASE_URL"], [_station_id(s.sequence) for s in ROUTE], Path(env["MES_FIRMWARE_LOCAL_DIR"])
    )
    if firmware.demo_version:
        print(f"  demo firmware {firmware.demo_version} uploaded and activated (PROC-004 stations download it)")
    _progress("starting the API, the ingestor and 8 station gateways …")
    api = stack.child("api", mes_command("api", "--port", str(stack.api_port)), {**env, **accounts.env("api")})
    # The ingestor's own /metrics (dead letters, refusals, task restarts, batch sizes): a stable port as well.
    metrics_port = _stable_port(INGESTOR_METRICS_PORT, "the ingestor's metrics")
    stack.ingestor_metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    ingestor = stack.child(
        "ingestor",
        mes_command("ingest"),
        {**env, **accounts.env("ingestor"), "MES_INGESTOR_METRICS_PORT": str(metrics_port)},
    )
    stations = []
    for step in ROUTE:
        station_id = _station_id(step.sequence)
        port = _gateway_port(step.sequence)
        work_dir = stack.state_dir / "stations" / station_id
        gateway_env = {
            "MES_GW_SITE": SITE,
            "MES_GW_LINE": LINE,
            "MES_GW_STATION": station_id,
            "MES_GW_WORK_DIR": str(work_dir),
            "MES_GW_MQTT_PORT": env["MES_MQTT_PORT"],
            "MES_GW_LOCAL_PORT": str(port),
            **accounts.env(station_id, "MES_GW_"),
            # The station's own download token (a new one each run; only its hash is stored centrally).
            "MES_GW_API_BASE_URL": api_url,
            "MES_GW_FIRMWARE_TOKEN": firmware.tokens[station_id],
        }
        gateway = stack.child(f"gateway-{station_id}", mes_command("gateway", "--station", station_id), gateway_env)
        stations.append(
            {
                "process_id": step.process_id,
                "station_id": station_id,
                "work_dir": str(work_dir),
                "gateway_url": f"http://127.0.0.1:{port}",
                "_child": gateway.name,
            }
        )
    wait_http_ok(f"{api_url}/health", 60, api)
    print(f"  API        {api_url} up", flush=True)
    try:
        wait_service_online(
            int(env["MES_MQTT_PORT"]), "mes-ingestor-1", 60, username="monitor", password=accounts.passwords["monitor"]
        )
    except TimeoutError:
        raise RuntimeError(f"the ingestor did not come online:\n{ingestor.log_tail()}") from None
    print("  ingestor   online", flush=True)
    for station in stations:
        child = next(c for c in stack.children if c.name == station["_child"])
        wait_http_ok(f"{station['gateway_url']}/status", 60, child)
        print(f"  gateway    {station['station_id']} up at {station['gateway_url']}", flush=True)
    public = [{k: v for k, v in s.items() if not k.startswith("_")} for s in stations]
    # Written with or without the simulator: scanner scripts and `mes gateway status` find the stations here.
    write_stations_file(stack.state_dir, public)
    return public


def _start_printers(stack: Stack, env: dict[str, str]) -> list[dict[str, str]]:
    """Emulated label printers (PRINTER-01: LOT labels at st01, PRINTER-07: serial labels at st07), registered
    with their current ports (a rerun updates them)."""
    from mes_cli.printers import DEMO_PRINTERS, demo_printer, register

    _progress("starting the emulated label printers …")
    printers = []
    for printer_id, station, purpose in DEMO_PRINTERS:
        port, control = find_free_port(), find_free_port()
        out_dir = stack.state_dir / "printers" / printer_id
        stack.child(
            f"printer-{printer_id}",
            mes_command(
                "printer-emulator",
                "--port",
                str(port),
                "--control-port",
                str(control),
                "--out-dir",
                str(out_dir),
                "--dpi",
                "203",
                "--log-file",
                str(stack.logs / f"printer-{printer_id}.json.log"),
            ),
            {},
        )
        register(demo_printer(printer_id, station, purpose, port, SITE, LINE), env["MES_DATABASE_URL"])
        printers.append(
            {
                "printer_id": printer_id,
                "station": station,
                "purpose": purpose.value,
                "labels": str(out_dir / "labels"),
                "control": f"http://127.0.0.1:{control}",
            }
        )
    return printers


def _start_simulator(stack: Stack, stations: list[dict[str, str]], speed: float, lots: int) -> ChildProcess:
    stations_file = write_stations_file(stack.state_dir, stations)
    argv = mes_command(
        "simulate",
        "--stations",
        str(stations_file),
        "--api-url",
        f"http://127.0.0.1:{stack.api_port}",
        "--lots",
        str(lots),
        "--speed",
        str(speed),
        "--lot-printer",
        "PRINTER-01",
        "--log-file",
        str(stack.logs / "simulator.json.log"),
    )
    print("line simulator running (Ctrl-C stops everything):\n")
    # The simulator logs in as its own manager account; the password travels only in its environment.
    return stack.child("simulator", argv, stack.accounts.simulator_env() if stack.accounts else {}, to_terminal=True)


def _print_banner(stack: Stack, stations: list[dict[str, str]], printers: list[dict[str, str]]) -> None:
    api = f"http://127.0.0.1:{stack.api_port}"
    print(f"\nAPI         {api}   docs {api}/docs   health {api}/health   console {api}/console")
    if stack.accounts is not None:
        print(stack.accounts.banner())
    print(f"logs        {stack.logs}/ (api.log, ingestor.log, gateway-stNN.log, simulator.json.log)")
    if stack.ingestor_metrics_url:
        print(f"metrics     {api}/metrics   ingestor {stack.ingestor_metrics_url}")
    if stack.broker_accounts is not None:
        print(
            f"broker      one account per station and service, passwords in {stack.broker_accounts.passwords_file}"
            f"\n            watch: mosquitto_sub -p {_broker_port(stack)} -u monitor -P <monitor> -t 'mes/v1/#' -v"
        )
    for station in stations:
        print(
            f"  {station['station_id']} {station['process_id']}  {station['work_dir']}/{{pending,completed,error}}"
            f"  local {station['gateway_url']}"
        )
    for printer in printers:
        print(
            f"  {printer['printer_id']} ({printer['purpose']} labels, at {printer['station']})  previews "
            f"{printer['labels']}/NNNNNN.png  control {printer['control']}/state"
        )
    print(f"label preview {api}/api/v1/labels/preview.png?serial_number=… (or ?lot_number=…)")
    print()


def _broker_port(stack: Stack) -> int | None:
    return next((server.port for server in stack.servers if isinstance(server, MosquittoServer)), None)


def _supervise(stack: Stack, simulator: ChildProcess | None, exit_when_done: bool) -> None:
    """Keep the line up: restart a crashed service process; stop when asked."""
    restarts: dict[str, int] = {}
    while True:
        time.sleep(1.0)
        for process in stack.children:
            if process.running:
                continue
            if process is simulator:
                if exit_when_done:
                    return
                continue
            restarts[process.name] = restarts.get(process.name, 0) + 1
            print(f"! {process.name} exited; restarting (#{restarts[process.name]}). Log tail:\n{process.log_tail(10)}")
            process.start()
