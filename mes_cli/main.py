"""`mes` console script (Typer): api, ingest, gateway, simulate, up, db, worker."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from mes_cli.audit import audit_app
from mes_cli.backup import backup_app, restore_command
from mes_cli.broker_cli import broker_app
from mes_cli.db_commands import pending_command, upgrade_command
from mes_cli.demo_data import demo_data_command
from mes_cli.extras import missing_extra_line, missing_for_command
from mes_cli.gateway_status import status_command
from mes_cli.grafana import grafana_app
from mes_cli.housekeeping import housekeeping_app
from mes_cli.local_env import load_local_env
from mes_cli.logging_setup import configure_logging
from mes_cli.printer_emulator import printer_emulator_command
from mes_cli.printers import printer_app
from mes_cli.station_window import station_ui_command
from mes_cli.stations import station_app
from mes_cli.users import user_app

app = typer.Typer(
    help="Withforce MES: start each process of the system.", no_args_is_help=True, pretty_exceptions_enable=False
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
worker_app = typer.Typer(help="Workers (operators) whose ids stations send.", no_args_is_help=True)
app.add_typer(db_app, name="db")
db_app.command("upgrade")(upgrade_command)  # issue 17: online (lock timeout, retries)
db_app.command("pending")(pending_command)
app.add_typer(worker_app, name="worker")
app.add_typer(broker_app, name="broker", help="Broker accounts and rules for a site (Mosquitto).")
app.add_typer(audit_app, name="audit")
app.add_typer(user_app, name="user")
app.command("printer-emulator")(printer_emulator_command)
app.command("demo-data")(demo_data_command)
app.add_typer(printer_app, name="printer")
app.add_typer(station_app, name="station")
app.command("station-ui")(station_ui_command)
app.add_typer(grafana_app, name="grafana")  # issue 16: dashboards onto a site's Grafana
app.add_typer(backup_app, name="backup")  # issue 17: pgBackRest
app.command("restore")(restore_command)
app.add_typer(housekeeping_app, name="housekeeping")  # issue 17: retention of central rows

LogFile = Annotated[Path | None, typer.Option(help="Write JSON log lines here instead of stderr")]
_SETTINGS_PREFIX = {"GatewaySettings": "MES_GW_"}  # every other settings class reads MES_*
_NO_LOCAL_ENV = frozenset({"up", "gateway", "simulate", "printer-emulator", "station-ui"})
_env_file: Path | None = None  # the local stack's settings file this command read, if any


@app.callback()
def _local_stack(ctx: typer.Context) -> None:
    """A command of a role whose extra is not installed stops here in one line (mes_cli/extras.py). Commands run
    from the checkout without MES_DATABASE_URL use the local stack's `.state/mes.env`."""
    global _env_file
    missing = missing_for_command(ctx.invoked_subcommand)
    if missing:
        typer.echo(missing, err=True)
        raise typer.Exit(2)
    # `mes up` writes that file; station-side commands (gateway, simulator, printer emulator) read no MES_* setting.
    if ctx.invoked_subcommand not in _NO_LOCAL_ENV:
        _env_file = load_local_env()


def settings_error_line(error: ValidationError) -> str:
    """One line naming the variables to set, instead of pydantic's traceback."""
    prefix = _SETTINGS_PREFIX.get(error.title, "MES_")
    problems = []
    for item in error.errors():
        name = prefix + "_".join(str(part) for part in item["loc"]).upper()
        problems.append(f"{name} is not set" if item["type"] == "missing" else f"{name}: {item['msg']}")
    hint = (
        (
            "; for the local stack run ./run.sh (or `mes up`) once, which writes .state/mes.env, "
            "or set MES_STATE_DIR to its state directory"
        )
        if "MES_DATABASE_URL is not set" in problems
        else ""
    )
    return f"mes: {'; '.join(problems)}{hint}"


def _unreachable_database(error: Exception) -> str | None:
    """One line for a database that does not answer (e.g. the local stack is stopped), else None."""
    # Only a loaded driver can have raised its error: a station install has neither package (mes_cli/extras.py).
    psycopg, sqlalchemy_exc = sys.modules.get("psycopg"), sys.modules.get("sqlalchemy.exc")
    kinds = tuple(module.OperationalError for module in (psycopg, sqlalchemy_exc) if module is not None)
    if not kinds or not isinstance(error, kinds):
        return None
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    source = f" (settings from {_env_file})" if _env_file else ""
    return f"mes: the database does not answer{source}: {reason}; is the stack running (./run.sh)?"


def _restore_ctrl_c() -> None:
    """SIGINT is how `mes up` and the tests stop a service cleanly (deploy/localstack/children.py). A process
    started in the background by a non-interactive shell (`cmd &`, as CI runners and nohup scripts do) inherits
    SIGINT as *ignored*, and Python then installs no handler: the service would ignore its stop request and be
    killed 10 s later. Ctrl-C means "stop" for every `mes` command, so take the default back."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main() -> None:
    """The `mes` console script: the Typer app, with a settings error or an unreachable database reported in one
    line (exit 2) instead of a traceback."""
    _restore_ctrl_c()
    try:
        app()
    except ValidationError as error:
        if not error.title.endswith("Settings"):
            raise
        typer.echo(settings_error_line(error), err=True)
        raise SystemExit(2) from None
    except ModuleNotFoundError as error:
        missing = missing_extra_line(error)
        if missing is None:
            raise
        typer.echo(missing, err=True)
        raise SystemExit(2) from None
    except Exception as error:
        line = _unreachable_database(error)
        if line is None:
            raise
        typer.echo(line, err=True)
        raise SystemExit(2) from None


def _central():
    from cloud_api.settings import CentralSettings

    return CentralSettings()  # type: ignore[call-arg]


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address (default MES_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default MES_API_PORT)")] = None,
    workers: Annotated[int, typer.Option(help="Uvicorn worker processes")] = 1,
    log_file: LogFile = None,
) -> None:
    """Run the REST API (FastAPI under uvicorn)."""
    import uvicorn

    from cloud_api import bootstrap

    config = bootstrap.load_api_config()  # invalid MES_* settings or a weak MES_JWT_SECRET stop here, once
    settings = config.central
    configure_logging(settings.log_level, settings.log_json, log_file, "api")
    bootstrap.report_unknown_environment()
    # One worker serves the app built from this process's settings; several workers each build theirs (factory).
    target = bootstrap.build_api(config) if workers == 1 else "cloud_api.bootstrap:api_app"
    uvicorn.run(
        target,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_config=None,
        access_log=False,
        factory=workers != 1,
        proxy_headers=False,
    )  # X-Forwarded-For is judged by the rate limiter against MES_TRUSTED_PROXIES


@app.command()
def ingest(log_file: LogFile = None) -> None:
    """Run the ingestor: MQTT station messages → PostgreSQL, replies after commit."""
    from cloud_api import bootstrap

    config = bootstrap.load_ingestor_config()
    configure_logging(config.central.log_level, config.central.log_json, log_file, "ingestor")
    bootstrap.report_unknown_environment()
    # Everything imported so far lives as long as the process: keep it out of the collector's scans, which
    # otherwise add millisecond pauses to the start round trip (bench/README.md).
    gc.collect()
    gc.freeze()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(bootstrap.run_ingestor(config))


@app.command()
def routes(
    write: Annotated[
        Path | None, typer.Option(help="Replace the table between the route-table markers of this file")
    ] = None,
) -> None:
    """Print the route × role table produced from the API app (`--write README.md` refreshes the README's)."""
    from cloud_api.http.route_table import main as route_table_main

    raise typer.Exit(route_table_main(["--write", str(write)] if write else []))


gateway_app = typer.Typer(
    help="Station edge gateway: run it, or `status` to see its state.", invoke_without_command=True
)
app.add_typer(gateway_app, name="gateway")
gateway_app.command("status")(status_command)


@gateway_app.callback()
def gateway(
    ctx: typer.Context,
    station: Annotated[str | None, typer.Option(help="Station id, e.g. st03 (MES_GW_STATION)")] = None,
    work_dir: Annotated[Path | None, typer.Option(help="Work directory with pending/, completed/, error/")] = None,
    local_port: Annotated[int | None, typer.Option(help="Loopback port of the station interface")] = None,
    log_file: LogFile = None,
) -> None:
    """Run one station's edge gateway (`mes gateway --station st03`)."""
    if ctx.invoked_subcommand is not None:
        return
    from edge_gateway.bootstrap import run
    from edge_gateway.settings import GatewaySettings

    overrides: dict[str, object] = {}
    for key, value in (("station", station), ("work_dir", work_dir), ("local_port", local_port)):
        if value is not None:
            overrides[key] = value
    settings = GatewaySettings(**overrides)  # type: ignore[arg-type]
    configure_logging(settings.log_level, True, log_file, f"gateway-{settings.station}")
    run(settings)  # picks an event loop aiomqtt supports (selector loop on Windows station PCs)


@app.command()
def simulate(
    stations: Annotated[Path, typer.Option(help="JSON list of {process_id, station_id, work_dir, gateway_url}")],
    api_url: Annotated[str, typer.Option(help="Central API base URL")] = "http://127.0.0.1:8000",
    lots: Annotated[int, typer.Option(help="LOTs to run; 0 = until stopped")] = 0,
    speed: Annotated[float, typer.Option(help="Speed factor; higher is faster")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
    failure_rate: Annotated[float, typer.Option(help="Share of failing process results")] = 0.05,
    lot_printer: Annotated[str | None, typer.Option(help="Printer of the LOT labels (default: the centre's)")] = None,
    log_file: LogFile = None,
) -> None:
    """Play the vendor apps and operators: create LOTs, start processes, drop completion files."""
    from line_simulator.cli_entry import main as simulate_main

    configure_logging(os.environ.get("MES_LOG_LEVEL", "INFO"), True, log_file, "simulator")
    raise typer.Exit(simulate_main(api_url, stations, lots, speed, seed, failure_rate, lot_printer_id=lot_printer))


@app.command()
def up(
    state_dir: Annotated[Path, typer.Option(help="Where data, logs and station folders live")] = Path(".state"),
    api_port: Annotated[int, typer.Option(help="API port")] = 8000,
    speed: Annotated[float, typer.Option(help="Simulator speed factor")] = 1.0,
    lots: Annotated[int, typer.Option(help="LOTs the simulator runs; 0 = until Ctrl-C")] = 0,
    simulate_line: Annotated[bool, typer.Option("--simulate/--no-simulate", help="Run the line simulator")] = True,
    exit_when_done: Annotated[bool, typer.Option(help="Stop everything when the simulator has run --lots")] = False,
) -> None:
    """Set up and run the whole system locally: services, migrations, API, ingestor, 8 gateways, simulator."""
    from mes_cli.stack import run_stack

    raise typer.Exit(run_stack(state_dir.resolve(), api_port, speed, lots, simulate_line, exit_when_done))


@db_app.command("current")
def db_current() -> None:
    """Show the applied revision."""
    from db.migrate import current

    settings = _central()
    current(settings.migration_database_url or settings.database_url)


@worker_app.command("add")
def worker_add(worker_id: str, name: str, inactive: bool = False) -> None:
    """Register (or update) a worker."""
    from mes_cli.admin import add_worker

    typer.echo(add_worker(_central(), worker_id, name, not inactive))
