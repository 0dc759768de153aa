"""`mes housekeeping` (issue 17 point 4): the central side's retention of processed_messages and the audit trail.

`report` prints sizes, oldest rows and what is due; `run` archives and deletes the processed_messages rows past
the retention (`--dry-run`: only says what it would do). The audit trail is kept for ever and only reported.
Policy and reasons: docs/ops/housekeeping.md.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from cloud_api.adapters.database import Database
    from cloud_api.services.housekeeping import HousekeepingReport, RetentionRun
    from cloud_api.settings import CentralSettings

housekeeping_app = typer.Typer(
    help="Retention of old central rows: archived per the documented policy, never dropped.", no_args_is_help=True
)

KeepDays = Annotated[
    int | None,
    typer.Option("--keep-days", min=30, help="processed_messages kept this long (MES_PROCESSED_MESSAGES_KEEP_DAYS)"),
]


def _settings() -> CentralSettings:
    from cloud_api.settings import CentralSettings

    return CentralSettings()  # type: ignore[call-arg]


def _archive_dir(settings: CentralSettings, chosen: Path | None) -> Path:
    from mes_cli.local_env import state_dirs

    return chosen or settings.housekeeping_archive_dir or state_dirs()[0] / "archive"


async def _with_db(settings: CentralSettings, work: Any) -> Any:
    from zoneinfo import ZoneInfo

    from cloud_api.adapters.database import Database, make_engine

    engine = make_engine(settings.database_url, 1)
    try:
        return await work(Database(engine, ZoneInfo(settings.timezone)))
    finally:
        await engine.dispose()


def _mib(size: int) -> str:
    return f"{size / 1048576:.1f} MiB"


def _print_report(found: HousekeepingReport) -> None:
    processed, audit, cutoff = found.processed, found.audit, found.cutoff
    typer.echo(
        f"processed_messages: {processed.rows} rows, {_mib(processed.total_bytes)}, oldest {processed.oldest}, "
        f"{processed.rows_last_30_days} in the last 30 days"
    )
    typer.echo(
        f"  policy: archived then deleted after {found.keep_days:g} days; cutoff now {cutoff.at.isoformat()}"
        f" -> due: {found.rows_due} rows (oldest {found.oldest_due})"
    )
    if cutoff.held_by is not None:
        hold = cutoff.held_by
        typer.echo(
            f"  held back by {hold.site}/{hold.line}/{hold.station} (outbox {hold.outbox_depth}, "
            f"{'online' if hold.online else 'offline'}): its oldest record is from {hold.oldest_record_at}"
        )
    typer.echo(
        f"audit_log: {audit.rows} rows, {_mib(audit.total_bytes)} (~{found.audit_bytes_per_row:.0f} bytes/row), "
        f"oldest {audit.oldest}; ~{found.audit_rows_per_year} rows/year at the last 30 days' pace"
    )
    typer.echo("  policy: kept for ever (append-only, hash-chained; check it with `mes audit verify`)")


@housekeeping_app.command("report")
def report_command(
    keep_days: KeepDays = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of text")] = False,
) -> None:
    """Sizes, oldest rows and what `mes housekeeping run` would archive now. Changes nothing."""
    from cloud_api.services.housekeeping import report

    settings = _settings()
    days = keep_days or settings.processed_messages_keep_days

    async def work(db: Database) -> HousekeepingReport:
        return await report(db, days)

    found: HousekeepingReport = asyncio.run(_with_db(settings, work))
    if as_json:
        typer.echo(json.dumps({**asdict(found), "audit_rows_per_year": found.audit_rows_per_year}, default=str))
    else:
        _print_report(found)


@housekeeping_app.command("run")
def run_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what is due; write and delete nothing")] = False,
    keep_days: KeepDays = None,
    archive_dir: Annotated[
        Path | None, typer.Option(help="Where archive files go (MES_HOUSEKEEPING_ARCHIVE_DIR; default .state/archive)")
    ] = None,
    copy_to_store: Annotated[
        bool,
        typer.Option(
            "--copy-to-store", help="Also put each file in the firmware's storage (MES_FIRMWARE_STORAGE: local or S3)"
        ),
    ] = False,
) -> None:
    """Everything due: processed_messages past the retention archived (verified, checksummed), then deleted."""
    from cloud_api.firmware.settings import FirmwareSettings
    from cloud_api.firmware.storage import make_storage
    from cloud_api.services.housekeeping import archive_processed_messages

    settings = _settings()
    days = keep_days or settings.processed_messages_keep_days
    folder = _archive_dir(settings, archive_dir)
    store = make_storage(FirmwareSettings()) if copy_to_store else None

    async def work(db: Database) -> RetentionRun:
        return await archive_processed_messages(db, folder, days, dry_run, store=store)

    done: RetentionRun = asyncio.run(_with_db(settings, work))
    cutoff = done.cutoff
    held = "" if cutoff.held_by is None else f" (held back by station {cutoff.held_by.station}'s outbox)"
    if dry_run:
        typer.echo(
            f"dry run: {done.rows_due} processed_messages row(s) received before {cutoff.at.isoformat()}{held} "
            f"would be archived to {folder} and deleted (oldest {done.oldest_due}); nothing changed"
        )
        return
    for archived in done.files:
        typer.echo(
            f"archived {archived.rows} row(s) to {archived.path} ({archived.bytes} bytes, sha256 {archived.sha256})"
        )
    typer.echo(
        f"processed_messages: {done.rows_deleted} row(s) received before {cutoff.at.isoformat()}{held} archived and "
        f"deleted; audit_log kept (policy: for ever)"
    )
