"""`mes broker` commands: write a site's Mosquitto files and manage its station and service accounts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mes_cli.broker import (
    DEFAULT_CONFIG_DIR,
    DEFAULTS,
    BrokerSite,
    add_account,
    init_site,
    list_accounts,
    remove_account,
)
from mes_cli.broker_acl import (
    DEFAULT_INGESTOR_CLIENT_ID,
    BrokerConfigError,
    ServiceKind,
    service_block,
    station_block,
    validate_username,
)
from mes_contracts.topics import StationAddress

# -- command line -------------------------------------------------------------------------------------------

broker_app = typer.Typer(
    help="Mosquitto broker of a site: configuration, station and service accounts, ACL.", no_args_is_help=True
)

ConfigDir = Annotated[Path, typer.Option(help="Directory of mosquitto.conf, passwords and acl")]
Password = Annotated[
    str | None,
    typer.Option(
        envvar="MES_BROKER_PASSWORD",
        show_default=False,
        help="Password to set (default: a generated one, printed once)",
    ),
]
StationUser = Annotated[str | None, typer.Option(show_default=False, help="Account name (default: the station id)")]
ServiceUser = Annotated[str | None, typer.Option(show_default=False, help="Account name (default: the --name)")]
ClientIds = Annotated[
    list[str] | None,
    typer.Option(
        "--client-id",
        show_default=False,
        help=f"MES_INGESTOR_CLIENT_ID whose state the ingestor may publish (repeatable; {DEFAULT_INGESTOR_CLIENT_ID})",
    ),
]
# Mosquitto 2.0.11's dynamic-security plugin reads its file only at start (SIGHUP does not reload it). A restart
# keeps sessions and queued messages (persistence, saved at a clean stop); clients reconnect by themselves.
RELOAD_HINT = (
    "Restart Mosquitto so it reads the accounts file (a reload/SIGHUP does not; sessions and queued "
    "messages are kept): systemctl restart mosquitto"
)


def _fail(error: Exception) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(2)


def _report(username: str, generated: str | None, settings: str) -> None:
    typer.echo(f"account {username!r}: password, client id and rules written")
    if generated:
        typer.echo(f"password for {username!r} (shown once, store it now): {generated}")
    typer.echo(settings)
    typer.echo(RELOAD_HINT)


@broker_app.command("init")
def init_command(
    config_dir: ConfigDir = DEFAULT_CONFIG_DIR,
    port: Annotated[int, typer.Option(help="Plain MQTT listener port")] = 1883,
    bind: Annotated[str, typer.Option(help="Listener address")] = "0.0.0.0",
    plain_bind: Annotated[
        str | None,
        typer.Option(
            help="Plain listener's address if not --bind (with --tls, 127.0.0.1 keeps logins off the network)"
        ),
    ] = None,
    persistence_dir: Annotated[Path, typer.Option(help="Mosquitto's persistence_location")] = DEFAULTS.persistence_dir,
    log_file: Annotated[Path, typer.Option(help="Mosquitto's log file")] = DEFAULTS.log_file,
    tls: Annotated[bool, typer.Option(help="Enable the TLS listener (otherwise written commented out)")] = False,
    tls_port: Annotated[int, typer.Option(help="TLS listener port")] = 8883,
    cafile: Annotated[Path | None, typer.Option(help="CA certificate (<config-dir>/certs/ca.crt)")] = None,
    certfile: Annotated[Path | None, typer.Option(help="Server certificate (<config-dir>/certs/server.crt)")] = None,
    keyfile: Annotated[Path | None, typer.Option(help="Server key (<config-dir>/certs/server.key)")] = None,
    client_ids: ClientIds = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing, different mosquitto.conf")] = False,
) -> None:
    """Write mosquitto.conf and the accounts file (dynamic-security plugin) with the ingestor and api accounts."""
    site = BrokerSite(
        config_dir=config_dir.absolute(),
        port=port,
        bind=bind,
        persistence_dir=persistence_dir,
        log_file=log_file,
        tls=tls,
        tls_port=tls_port,
        cafile=cafile,
        certfile=certfile,
        keyfile=keyfile,
        plain_bind=plain_bind,
    )
    try:
        notes = init_site(site, client_ids or [DEFAULT_INGESTOR_CLIENT_ID], force)
    except (BrokerConfigError, OSError) as error:
        raise _fail(error) from None
    for note in notes:
        typer.echo(note)
    typer.echo("next: mes broker add-service --name ingestor, --name api; mes broker add-station for each station")
    typer.echo(
        "then (re)start Mosquitto with this configuration (listeners are not reloaded by SIGHUP): "
        f"mosquitto -c {site.config_file}, or systemctl restart mosquitto (mosquitto/README.md)"
    )


@broker_app.command("add-station")
def add_station_command(
    station: Annotated[str, typer.Option(help="Station id, e.g. st09 (MES_GW_STATION)")],
    site_id: Annotated[str, typer.Option("--site", help="Site (MES_GW_SITE)")] = "KR",
    line: Annotated[str, typer.Option(help="Line (MES_GW_LINE)")] = "L1",
    config_dir: ConfigDir = DEFAULT_CONFIG_DIR,
    username: StationUser = None,
    client_id: Annotated[
        str | None,
        typer.Option(
            "--client-id",
            show_default=False,
            help="The only MQTT client id the account may use (default gw-<station>; MES_GW_GATEWAY_ID)",
        ),
    ] = None,
    password: Password = None,
) -> None:
    """Create or update a station account (username = station id), bound to its gateway's client id."""
    try:
        address = StationAddress(site_id, line, station)
    except ValueError as error:
        raise _fail(error) from None
    try:
        block = station_block(address, username, client_id)
        generated = add_account(BrokerSite(config_dir.absolute()), block, password)
    except (BrokerConfigError, OSError) as error:
        raise _fail(error) from None
    _report(
        block.username,
        generated,
        f"gateway settings: MES_GW_STATION={station} MES_GW_SITE={site_id} "
        f"MES_GW_LINE={line} MES_GW_MQTT_USERNAME={block.username} MES_GW_MQTT_PASSWORD=<the password>"
        + (f" MES_GW_GATEWAY_ID={block.client_id}" if client_id else ""),
    )


@broker_app.command("add-service")
def add_service_command(
    name: Annotated[ServiceKind, typer.Option(help="Which central service")],
    config_dir: ConfigDir = DEFAULT_CONFIG_DIR,
    username: ServiceUser = None,
    client_ids: ClientIds = None,
    password: Password = None,
) -> None:
    """Create or update a central service account (username = service name) and its rules; an ingestor account
    with one --client-id may connect only with that id (one account per ingestor instance is the safe setup)."""
    try:
        block = service_block(name, username, client_ids or [DEFAULT_INGESTOR_CLIENT_ID])
        generated = add_account(BrokerSite(config_dir.absolute()), block, password)
    except (BrokerConfigError, OSError) as error:
        raise _fail(error) from None
    ids = ", ".join(client_ids or [DEFAULT_INGESTOR_CLIENT_ID])
    settings = {
        ServiceKind.INGESTOR: f"ingestor settings: MES_MQTT_USERNAME={block.username} MES_MQTT_PASSWORD=<the password> "
        f"MES_INGESTOR_CLIENT_ID=<one of: {ids}>",
        ServiceKind.API: f"api account {block.username!r}: for label-printing commands (cmd/#) and station states",
        ServiceKind.MONITOR: f"monitor account {block.username!r}: e.g. mosquitto_sub -v -t 'mes/v1/#' -u "
        f"{block.username} -P <the password>",
    }
    _report(block.username, generated, settings[name])


@broker_app.command("remove-account")
def remove_account_command(
    username: Annotated[str, typer.Option(help="Account to delete (station id or service account)")],
    config_dir: ConfigDir = DEFAULT_CONFIG_DIR,
) -> None:
    """Delete an account and its rules (a decommissioned station PC)."""
    try:
        removed = remove_account(BrokerSite(config_dir.absolute()), validate_username(username))
    except (BrokerConfigError, OSError) as error:
        raise _fail(error) from None
    typer.echo(f"account {username!r} removed" if removed else f"no account {username!r}; nothing changed")
    if removed:
        typer.echo(RELOAD_HINT + " (the account is refused from then on)")


@broker_app.command("list")
def list_command(config_dir: ConfigDir = DEFAULT_CONFIG_DIR) -> None:
    """The accounts `mes broker` manages, with the client id each is bound to."""
    try:
        rows = list_accounts(BrokerSite(config_dir.absolute()))
    except (BrokerConfigError, OSError) as error:
        raise _fail(error) from None
    for row in rows:
        typer.echo(f"{row['username']:<16} {row['clientid'] or '(any client id)':<20} {row['description']}")
