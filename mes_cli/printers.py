"""`mes printer add/list/disable`: the printer registry from the command line (straight to the database)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from mes_contracts.labels import LabelType, PrinterLanguage

if TYPE_CHECKING:  # SQLAlchemy is imported only by the commands that use it: `mes gateway` stays small
    from sqlalchemy.ext.asyncio import AsyncConnection

printer_app = typer.Typer(help="Label printers attached to station gateways.", no_args_is_help=True)
T = TypeVar("T")
ACTOR = "cli"


def run_in_db(work: Callable[[AsyncConnection], Awaitable[T]], database_url: str | None = None) -> T:
    """`work` in one transaction against MES_DATABASE_URL (or `database_url`)."""
    from cloud_api.adapters.database import make_engine
    from cloud_api.settings import CentralSettings

    url = database_url or CentralSettings().database_url  # type: ignore[call-arg]

    async def _run() -> T:
        engine = make_engine(url, 1)
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    return asyncio.run(_run())


def register(values: dict[str, Any], database_url: str | None = None) -> tuple[dict[str, Any], bool]:
    """Create the printer or bring it in line with `values` (safe to rerun); returns (printer, created)."""
    from cloud_api.labels.domain import PrinterIn
    from cloud_api.labels.printers import register_printer

    printer = PrinterIn.model_validate(values)

    async def work(conn: AsyncConnection) -> tuple[dict[str, Any], bool]:
        found, created = await register_printer(conn, printer, ACTOR)
        return found.public(), created

    return run_in_db(work, database_url)


def _fail(error: Exception) -> typer.Exit:
    from cloud_api.domain.errors import DomainError

    if isinstance(error, ValidationError):
        for item in error.errors():
            typer.echo(f"{'.'.join(str(p) for p in item['loc']) or 'printer'}: {item['msg']}", err=True)
    elif isinstance(error, DomainError):
        typer.echo(f"{error.code.value}: {error.message('en')} {error.data or ''}", err=True)
    else:
        typer.echo(str(error), err=True)
    return typer.Exit(1)


@printer_app.command("add")
def add(
    printer_id: Annotated[str, typer.Argument(help="e.g. PRINTER-07")],
    station: Annotated[str, typer.Option(help="Station id of the gateway the printer hangs on, e.g. st07")],
    host: Annotated[str | None, typer.Option(help="TCP printer: its address (raw port 9100)")] = None,
    port: Annotated[int, typer.Option(help="TCP port")] = 9100,
    serial_port: Annotated[str | None, typer.Option(help="Serial printer: COM3, /dev/ttyUSB0 …")] = None,
    baud: Annotated[int, typer.Option(help="Serial speed")] = 9600,
    language: Annotated[PrinterLanguage, typer.Option(help="ZPL (Zebra), TSPL (TSC), EZPL (Godex)")] = (
        PrinterLanguage.ZPL
    ),
    dpi: Annotated[int, typer.Option(help="203 or 300")] = 203,
    width_mm: Annotated[float, typer.Option(help="Label width")] = 60.0,
    height_mm: Annotated[float, typer.Option(help="Label height")] = 40.0,
    purpose: Annotated[list[LabelType] | None, typer.Option(help="LOT and/or SERIAL (repeat); default both")] = None,
    site: Annotated[str, typer.Option(help="Site of the station (topic segment)")] = "KR",
    line: Annotated[str, typer.Option(help="Line of the station (topic segment)")] = "L1",
    description: Annotated[str | None, typer.Option(help="Free text, e.g. the model and where it stands")] = None,
) -> None:
    """Register a printer, or update it when the id exists (the printer becomes active)."""
    values: dict[str, Any] = {
        "printer_id": printer_id,
        "station": station,
        "site": site,
        "line": line,
        "transport": "serial" if serial_port else "tcp",
        "host": host,
        "port": port,
        "serial_port": serial_port,
        "baud": baud,
        "language": language,
        "dpi": dpi,
        "width_mm": width_mm,
        "height_mm": height_mm,
        "purposes": purpose or [LabelType.LOT, LabelType.SERIAL],
        "active": True,
        "description": description,
    }
    try:
        printer, created = register(values)
    except Exception as error:  # validation and domain errors become a message and exit code 1
        raise _fail(error) from None
    typer.echo(f"{'registered' if created else 'updated'} {json.dumps(printer, ensure_ascii=False)}")


@printer_app.command("list")
def list_all(
    station: Annotated[str | None, typer.Option(help="Only this station's printers")] = None,
    all_printers: Annotated[bool, typer.Option("--all", help="Include disabled printers")] = False,
) -> None:
    """Show the registered printers, oldest first."""
    from cloud_api.labels.printers import list_printers

    rows = run_in_db(lambda conn: list_printers(conn, station, None, None if all_printers else True))
    if not rows:
        typer.echo("no printers")
    for row in rows:
        where = f"{row['host']}:{row['port']}" if row["transport"] == "tcp" else f"{row['serial_port']}@{row['baud']}"
        state = "" if row["active"] else "  (disabled)"
        typer.echo(
            f"{row['printer_id']:<16} {row['site']}/{row['line']}/{row['station']:<6} {where:<22} "
            f"{row['language']} {row['dpi']}dpi {row['width_mm']:g}x{row['height_mm']:g}mm "
            f"{','.join(row['purposes'])}{state}"
        )


@printer_app.command("disable")
def disable(printer_id: Annotated[str, typer.Argument(help="The printer to take out of use")]) -> None:
    """Take a printer out of use: no new label goes to it (its history stays)."""
    from cloud_api.labels.domain import PrinterFields
    from cloud_api.labels.printers import update_printer

    try:
        printer = run_in_db(lambda conn: update_printer(conn, printer_id, PrinterFields(active=False), ACTOR))
    except Exception as error:
        raise _fail(error) from None
    typer.echo(f"disabled {printer.printer_id}")


# `mes up`: two emulated Zebras, like the customer's line (LOT labels at the first station, serials at PROC-007).
DEMO_PRINTERS = (("PRINTER-01", "st01", LabelType.LOT), ("PRINTER-07", "st07", LabelType.SERIAL))


def demo_printer(printer_id: str, station: str, purpose: LabelType, port: int, site: str, line: str) -> dict[str, Any]:
    return {
        "printer_id": printer_id,
        "station": station,
        "site": site,
        "line": line,
        "transport": "tcp",
        "host": "127.0.0.1",
        "port": port,
        "language": PrinterLanguage.ZPL,
        "dpi": 203,
        "purposes": [purpose],
        "active": True,
        "description": "emulated Zebra ZT410 (mes printer-emulator)",
    }
