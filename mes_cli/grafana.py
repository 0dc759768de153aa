"""`mes grafana provision` and `mes grafana grant-db` (issue 16): the dashboards of grafana/ onto a site's Grafana.

`provision` pushes the data sources, the folder "MES" and every dashboard JSON through Grafana's HTTP API with
grafana-client. It reads what is there first and writes only what differs, so a second run sends no write at
all. The database password goes with the data source only when the data source is created (or with
--set-password): Grafana never gives a secure field back, so comparing it is impossible.
`grant-db` (as a PostgreSQL administrator) gives the read-only role `mes_grafana` a login and the reporting views.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer

grafana_app = typer.Typer(help="Grafana dashboards for managers and QA (README 'Dashboards').", no_args_is_help=True)

FOLDER_UID = "mes"
FOLDER_TITLE = "MES"
DEFAULT_DASHBOARDS = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"
# Fields of a data source Grafana gives back and we set; the rest (id, version, readOnly, …) is Grafana's own.
DATASOURCE_FIELDS = ("name", "type", "uid", "access", "url", "user", "isDefault", "jsonData")


class Api(Protocol):
    """The part of grafana_client.GrafanaApi used here (a fake in the unit tests)."""

    datasource: Any
    folder: Any
    dashboard: Any


@dataclass(frozen=True)
class Site:
    db_host: str
    db_name: str
    db_password: str | None
    prometheus_url: str | None
    timescaledb: bool = True
    sslmode: str = "require"


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def datasource_bodies(site: Site) -> list[dict[str, Any]]:
    """The data sources as grafana/provisioning/datasources/*.yaml describe them, with the site's values."""
    postgres: dict[str, Any] = {
        "name": "MES PostgreSQL",
        "type": "grafana-postgresql-datasource",
        "uid": "mes-postgres",
        "access": "proxy",
        "url": site.db_host,
        "user": "mes_grafana",
        "isDefault": True,
        "jsonData": {
            "database": site.db_name,
            "sslmode": site.sslmode,
            "postgresVersion": 1500,
            "timescaledb": site.timescaledb,
            "timeInterval": "1m",
            "maxOpenConns": 10,
        },
    }
    bodies = [postgres]
    if site.prometheus_url:
        bodies.append(
            {
                "name": "MES Prometheus",
                "type": "prometheus",
                "uid": "mes-prometheus",
                "access": "proxy",
                "url": site.prometheus_url,
                "isDefault": False,
                "jsonData": {"timeInterval": "15s"},
            }
        )
    return bodies


def dashboard_body(board: dict[str, Any]) -> dict[str, Any]:
    """POST /api/dashboards/db: the dashboard into the MES folder, replacing the one with its uid."""
    return {"dashboard": {**board, "id": None}, "folderUid": FOLDER_UID, "overwrite": True, "message": "mes grafana"}


def _not_found(error: Exception) -> bool:
    return getattr(error, "status_code", None) == 404


def _same_datasource(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(current.get(key, None if key != "isDefault" else False) == wanted.get(key) for key in wanted)


def _comparable(board: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in board.items() if k not in ("id", "version")}


def provision(api: Api, site: Site, boards: list[dict[str, Any]], set_password: bool = False) -> Report:
    from grafana_client.client import GrafanaClientError

    report = Report()
    for body in datasource_bodies(site):
        name = f"datasource {body['uid']}"
        secret = {"secureJsonData": {"password": site.db_password}} if body["uid"] == "mes-postgres" else {}
        try:
            current = api.datasource.get_datasource_by_uid(body["uid"])
        except GrafanaClientError as error:
            if not _not_found(error):
                raise
            api.datasource.create_datasource({**body, **(secret if site.db_password else {})})
            report.created.append(name)
            continue
        if _same_datasource(current, body) and not (set_password and secret):
            report.unchanged.append(name)
            continue
        extra = secret if set_password and site.db_password else {}
        api.datasource.update_datasource_by_uid(body["uid"], {**body, **extra})
        report.updated.append(name)
    try:
        folder = api.folder.get_folder(FOLDER_UID)
        if folder.get("title") != FOLDER_TITLE:
            api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
            report.updated.append("folder mes")
        else:
            report.unchanged.append("folder mes")
    except GrafanaClientError as error:
        if not _not_found(error):
            raise
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        report.created.append("folder mes")
    for board in boards:
        name = f"dashboard {board['uid']}"
        try:
            current = api.dashboard.get_dashboard(board["uid"])
        except GrafanaClientError as error:
            if not _not_found(error):
                raise
            api.dashboard.update_dashboard(dashboard_body(board))
            report.created.append(name)
            continue
        same_folder = current.get("meta", {}).get("folderUid") == FOLDER_UID
        if same_folder and _comparable(current.get("dashboard", {})) == _comparable(board):
            report.unchanged.append(name)
            continue
        api.dashboard.update_dashboard(dashboard_body(board))
        report.updated.append(name)
    return report


def load_dashboards(directory: Path) -> list[dict[str, Any]]:
    boards = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]
    if not boards:
        raise typer.BadParameter(f"no dashboard JSON in {directory}")
    return boards


@grafana_app.command("provision")
def provision_command(
    url: Annotated[str, typer.Option(help="Grafana's URL, e.g. https://grafana.example:3000")],
    token: Annotated[
        str, typer.Option(envvar="MES_GRAFANA_TOKEN", help="A service account token (role Editor or Admin)")
    ],
    db_host: Annotated[
        str, typer.Option(envvar="MES_GRAFANA_DB_HOST", help="host:port of PostgreSQL as Grafana reaches it")
    ],
    db_name: Annotated[str, typer.Option(envvar="MES_GRAFANA_DB_NAME")] = "mes",
    db_password: Annotated[str | None, typer.Option(envvar="MES_GRAFANA_DB_PASSWORD")] = None,
    prometheus_url: Annotated[str | None, typer.Option(envvar="MES_GRAFANA_PROMETHEUS_URL")] = None,
    timescaledb: Annotated[bool, typer.Option("--timescaledb/--plain")] = True,
    sslmode: Annotated[str, typer.Option(help="disable, require, verify-ca, verify-full")] = "require",
    set_password: Annotated[bool, typer.Option(help="Send the password to an existing data source too")] = False,
    dashboards: Annotated[Path, typer.Option(help="Folder of dashboard JSON")] = DEFAULT_DASHBOARDS,
) -> None:
    """Push the data sources, the folder MES and the dashboards to an existing Grafana (idempotent)."""
    from grafana_client import GrafanaApi

    api = GrafanaApi.from_url(url, credential=token, timeout=15.0)
    site = Site(db_host, db_name, db_password, prometheus_url, timescaledb, sslmode)
    report = provision(api, site, load_dashboards(dashboards), set_password)
    for word, names in (("created", report.created), ("updated", report.updated), ("unchanged", report.unchanged)):
        if names:
            typer.echo(f"{word}: {', '.join(names)}")


@grafana_app.command("grant-db")
def grant_db_command(
    database_url: Annotated[
        str | None, typer.Option(help="An administrator's URL (CREATEROLE); default MES_MIGRATION_DATABASE_URL")
    ] = None,
    password: Annotated[
        str | None, typer.Option(envvar="MES_GRAFANA_DB_PASSWORD", help="mes_grafana's password")
    ] = None,
) -> None:
    """Create or update the login role mes_grafana (read-only by default) and grant it the reporting views."""
    import psycopg
    from psycopg import sql

    url = database_url or os.environ.get("MES_MIGRATION_DATABASE_URL") or os.environ.get("MES_DATABASE_URL")
    if not url or not password:
        typer.echo("needs --database-url (or MES_MIGRATION_DATABASE_URL) and --password", err=True)
        raise typer.Exit(2)
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'mes_grafana'").fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE mes_grafana LOGIN PASSWORD {}").format(sql.Literal(password)))
        conn.execute("ALTER ROLE mes_grafana SET default_transaction_read_only = on")
        conn.execute("SELECT grant_reporting_reader('mes_grafana')")
    typer.echo("mes_grafana: login, read-only, SELECT on the reporting views")
