"""`mes station allow/revoke/list`: which processes each station may start and complete (table station_processes).

Straight to the database (MES_DATABASE_URL, or the local stack's .state/mes.env); every change is audited. The
ingestor picks a change up within a few seconds (services/station_access.py, CACHE_TTL_S).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mes_cli.printers import run_in_db

if TYPE_CHECKING:  # SQLAlchemy is imported only by the commands that use it
    from sqlalchemy.ext.asyncio import AsyncConnection

    from cloud_api.domain.stations import StationKey

station_app = typer.Typer(help="Which processes each station may start and complete (over MQTT).", no_args_is_help=True)
ACTOR = "cli"

Station = Annotated[str, typer.Argument(help="Station id, e.g. st03 (MES_GW_STATION)")]
Processes = Annotated[list[str], typer.Argument(help="Process ids, e.g. PROC-003")]
Site = Annotated[str, typer.Option("--site", help="Site (MES_GW_SITE)")]
Line = Annotated[str, typer.Option("--line", help="Line (MES_GW_LINE)")]


def _key(site: str, line: str, station: str) -> StationKey:
    from cloud_api.domain.stations import StationKey

    try:
        return StationKey(site, line, station)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def change(key: StationKey, processes: list[str], allow: bool, database_url: str | None = None) -> list[str]:
    """Allow or revoke each process for the station; returns one line per process. Audited in one transaction."""
    from cloud_api.adapters import stations_sql
    from cloud_api.audit.trail import record_audit

    async def work(conn: AsyncConnection) -> list[str]:
        lines, changed = [], []
        for process_id in processes:
            if allow and not await stations_sql.process_exists(conn, process_id):
                raise typer.BadParameter(f"no process {process_id!r} (see GET /api/v1/processes)")
            did = await (
                stations_sql.allow(conn, key, process_id, ACTOR)
                if allow
                else stations_sql.revoke(conn, key, process_id)
            )
            verb = "allowed" if allow else "revoked"
            lines.append(f"{key} {process_id}: {verb}" if did else f"{key} {process_id}: unchanged")
            if did:
                changed.append(process_id)
        if changed:
            await record_audit(
                conn,
                actor=ACTOR,
                action="station_process_allow" if allow else "station_process_revoke",
                entity="station_process",
                entity_key=str(key),
                new={"processes": changed},
            )
        return lines

    return run_in_db(work, database_url)


@station_app.command("allow")
def allow_command(station: Station, processes: Processes, site: Site = "KR", line: Line = "L1") -> None:
    """Let the station start and complete these processes (re-running is harmless)."""
    for text in change(_key(site, line, station), processes, allow=True):
        typer.echo(text)


@station_app.command("revoke")
def revoke_command(station: Station, processes: Processes, site: Site = "KR", line: Line = "L1") -> None:
    """Refuse these processes from the station from now on (STATION_NOT_ALLOWED)."""
    for text in change(_key(site, line, station), processes, allow=False):
        typer.echo(text)


@station_app.command("list")
def list_command() -> None:
    """Every station and the processes it may report."""
    from cloud_api.adapters import stations_sql

    permissions = run_in_db(stations_sql.load_permissions)
    stations = sorted({key for key, _ in permissions.allowed})
    if not stations:
        typer.echo("no station may report any process: mes station allow <station> <PROC-…>")
    for key in stations:
        typer.echo(f"{key!s:<24} {' '.join(permissions.processes_of(key))}")
