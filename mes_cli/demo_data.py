"""`mes demo-data`: fill a database with years of production at the spec's scale (issue 13 point 7).

The generator lives in bench/scale (a checkout's tool, not part of the installed wheel). It writes with COPY into
the migrated schema of MES_MIGRATION_DATABASE_URL (the schema owner: it may pause the live-view triggers during
the load and set the id sequences), else MES_DATABASE_URL, else --database-url. Run it on a database nobody else
is writing to: it reserves ids and LOT numbers up front.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer


def demo_data_command(
    years: Annotated[float, typer.Option(help="Years of production ending today (~255 working days a year)")] = 3.0,
    days: Annotated[int | None, typer.Option(help="Instead of --years: the last N working days")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data")] = 13,
    database_url: Annotated[
        str | None, typer.Option(help="Default: MES_MIGRATION_DATABASE_URL, MES_DATABASE_URL")
    ] = None,
    samples: Annotated[bool, typer.Option("--samples/--no-samples", help="Also write PROC-006 curves")] = True,
    curves_per_day: Annotated[float, typer.Option(help="Curves (force + displacement) per working day")] = 7.0,
    curve_hz: Annotated[float, typer.Option(help="Samples per second and channel of a curve")] = 500.0,
    chunk_days: Annotated[int, typer.Option(help="Working days per COPY transaction")] = 10,
    compress: Annotated[bool, typer.Option("--compress/--no-compress", help="TimescaleDB: compress old chunks")] = True,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip working days that already have LOTs: go on with a stopped load")
    ] = False,
) -> None:
    """Fill the database with demo production: 500 units a day, measurements, curves, serials, labels."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "bench" / "scale").is_dir() and str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))  # the console script does not put the checkout on the path
    try:
        from bench.scale.generator import Options, run
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("bench"):
            raise
        typer.echo(
            "mes demo-data runs from a source checkout (bench/scale is not installed with the package)", err=True
        )
        raise typer.Exit(2) from None
    url = database_url or os.environ.get("MES_MIGRATION_DATABASE_URL") or os.environ.get("MES_DATABASE_URL")
    if not url:
        typer.echo("no database: pass --database-url or set MES_DATABASE_URL", err=True)
        raise typer.Exit(2)
    options = Options(
        years=None if days else years,
        days=days,
        seed=seed,
        samples=samples,
        curves_per_day=curves_per_day,
        curve_hz=curve_hz,
        chunk_days=chunk_days,
        compress=compress,
        resume=resume,
    )
    report = run(url, options, typer.echo)
    for line in report.lines():
        typer.echo(line)
