"""`mes backup configure|stanza-create|run|list|check` and `mes restore --to` (issue 17 point 1): pgBackRest behind
a few commands, configured from MES_BACKUP_* (cloud_api/backup/settings.py; docs/ops/backup.md).

Every failure is one line on stderr: exit 1 for a failed backup/check, exit 2 for a bad request (unusable time or
directory)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from cloud_api.backup.runner import Runner

backup_app = typer.Typer(
    help="Backups of the central database (pgBackRest): configure, stanza-create, run, list, check.",
    no_args_is_help=True,
)


def _runner() -> Runner:
    from cloud_api.backup.runner import Runner
    from cloud_api.backup.settings import BackupSettings

    return Runner(BackupSettings())


def _fail(error: Exception, code: int = 1, command: str = "backup") -> typer.Exit:
    typer.echo(f"mes {command}: {error}", err=True)
    return typer.Exit(code)


def _mib(size: int) -> str:
    return f"{size / 1048576:.1f} MiB"


@backup_app.command("configure")
def configure() -> None:
    """Write pgBackRest's config file from MES_BACKUP_* and print the postgresql.conf lines archiving needs."""
    from cloud_api.backup.config import postgres_conf_lines
    from cloud_api.backup.runner import BackupError

    runner = _runner()
    try:
        runner.prepare()
    except BackupError as error:
        raise _fail(error) from None
    typer.echo(f"wrote {runner.settings.config_file}; add to postgresql.conf (then restart PostgreSQL):")
    for line in postgres_conf_lines(runner.settings):
        typer.echo(f"  {line}")


@backup_app.command("stanza-create")
def stanza_create() -> None:
    """Set up the repository for this cluster (idempotent; run once after `configure`)."""
    from cloud_api.backup.operations import stanza_create as create
    from cloud_api.backup.runner import BackupError

    try:
        typer.echo(create(_runner()))
    except BackupError as error:
        raise _fail(error) from None


@backup_app.command("run")
def run(
    kind: Annotated[
        Literal["full", "incr", "diff"], typer.Option("--type", help="full daily, incr every 6 h (timers)")
    ] = "incr",
) -> None:
    """Take one backup; retention expires old ones; the metrics textfile is updated on success."""
    from cloud_api.backup.operations import run_backup
    from cloud_api.backup.runner import BackupError

    try:
        done = run_backup(_runner(), kind)
    except BackupError as error:
        raise _fail(error) from None
    row = done.row
    note = f" (asked {kind}: pgBackRest makes a full when none exists)" if row.type != kind else ""
    typer.echo(
        f"backup {row.label} ({row.type}{note}) done in {done.duration_s:.1f} s: database {_mib(row.size_bytes)}, "
        f"repository +{_mib(row.repo_size_bytes)}, WAL {row.wal_start}..{row.wal_stop}; {done.expired} expired"
    )


@backup_app.command("list")
def list_backups() -> None:
    """The backups in the repository, oldest first."""
    from cloud_api.backup.operations import info
    from cloud_api.backup.runner import BackupError

    try:
        stanza = info(_runner())
    except BackupError as error:
        raise _fail(error) from None
    if not stanza.backups:
        typer.echo(f"stanza {stanza.name}: no backups ({stanza.status_message})")
        return
    header = f"{'label':<34} {'type':<5} {'start (UTC)':<20} {'stop (UTC)':<20} {'size':>12} {'WAL range'}"
    typer.echo(header)
    for row in stanza.backups:
        typer.echo(
            f"{row.label:<34} {row.type:<5} {row.start:%Y-%m-%d %H:%M:%S} {row.stop:%Y-%m-%d %H:%M:%S} "
            f"{_mib(row.size_bytes):>12} {row.wal_start}..{row.wal_stop}"
        )
    typer.echo(f"WAL archive {stanza.wal_min}..{stanza.wal_max}")


@backup_app.command("check")
def check() -> None:
    """Archiving works (pgbackrest check forces a WAL switch and waits for it) and the newest backup is recent."""
    from cloud_api.backup.operations import check as run_check
    from cloud_api.backup.runner import BackupError

    try:
        result = run_check(_runner())
    except BackupError as error:
        raise _fail(error) from None
    minutes = result.age.total_seconds() / 60
    typer.echo(f"backup OK: WAL archiving works; newest backup {result.newest.label} is {minutes:.0f} min old")


def restore_command(
    to: Annotated[str, typer.Option("--to", help="ISO time with offset (2026-12-05T10:30:00+09:00), or latest")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="A NEW directory (the live one needs --delta --force)")],
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port written into the restored cluster")] = None,
    start: Annotated[bool, typer.Option("--start", help="Start it and wait until promoted (measures the RTO)")] = False,
    delta: Annotated[bool, typer.Option("--delta", help="Restore over an existing directory")] = False,
    force: Annotated[bool, typer.Option("--force", help="With --delta: also over the live data directory")] = False,
) -> None:
    """Restore the central database as it was at --to into a new data directory (pgBackRest PITR, promoted)."""
    from cloud_api.backup.restore import TargetError, parse_target, restore
    from cloud_api.backup.runner import BackupError

    began = datetime.now(UTC)
    try:
        target = parse_target(to)
        done = restore(_runner(), target, data_dir, port, start, delta, force)
    except TargetError as error:
        raise _fail(error, 2, "restore") from None
    except BackupError as error:
        raise _fail(error, 1, "restore") from None
    point = target.isoformat() if target is not None else "the end of the archived WAL"
    typer.echo(
        f"restored {data_dir} to {point} from backup {done.backup.label} ({done.backup.type}) in {done.restore_s:.1f} s"
    )
    if done.start_s is not None:
        total = (datetime.now(UTC) - began).total_seconds()
        typer.echo(f"started on port {port}, recovered and promoted in {done.start_s:.1f} s; RTO {total:.1f} s")
    else:
        typer.echo(f"not started: pg_ctl start -D {data_dir} (as {_runner().settings.os_user})")
