"""Point-in-time restore into a new data directory (`mes restore --to`), optionally started and promoted there.

Never over the live cluster by accident: the live data directory (MES_BACKUP_PG_DATA_DIR) or any non-empty one is
refused unless `--delta --force`. A restore beside the live cluster gets archive_mode=off, so the copy never pushes
its own WAL (a new timeline) into the live cluster's repository.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cloud_api.backup.info import BackupRow, StanzaInfo
from cloud_api.backup.operations import info
from cloud_api.backup.runner import BackupError, Runner, make_owned_dir, pg_binary

_PROMOTE_TIMEOUT_S = 600.0


class TargetError(BackupError):
    """The requested point in time is unusable (not a time, before the first backup, in the future): exit 2."""


LATEST = "latest"


def parse_target(value: str) -> datetime | None:
    """An ISO 8601 time with its offset (2026-12-05T10:30:00+09:00 or …Z; a time without one is ambiguous), or
    None for `latest`: the end of the archived WAL (disaster recovery)."""
    if value.strip().lower() == LATEST:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise TargetError(f"--to {value!r} is not an ISO 8601 time such as 2026-12-05T10:30:00+09:00") from None
    if parsed.tzinfo is None:
        raise TargetError(f"--to {value!r} has no UTC offset: write it as e.g. {value.strip()}+09:00")
    return parsed.astimezone(UTC)


def check_target(target: datetime | None, stanza: StanzaInfo, now: datetime) -> BackupRow:
    """The backup pgBackRest will restore from (the newest finished before the target; the newest for latest)."""
    if target is None:
        if stanza.newest is None:
            raise TargetError(f"stanza {stanza.name} has no backup to restore")
        return stanza.newest
    # pgBackRest compares whole seconds (its info shows stop times in seconds): a backup that stopped within the
    # target's second is not yet usable, so say so here rather than let pgbackrest fail with error 075.
    usable = [row for row in stanza.backups if row.stop < target.replace(microsecond=0)]
    if not usable:
        first = stanza.oldest
        since = f"the first backup ({first.label}) finished at {first.stop.isoformat()}" if first else "no backup"
        raise TargetError(f"--to {target.isoformat()} is before any restorable point: {since}")
    if target > now:
        raise TargetError(f"--to {target.isoformat()} is in the future (now {now.isoformat()})")
    return usable[-1]


@dataclass(frozen=True, slots=True)
class RestoreDone:
    backup: BackupRow
    restore_s: float
    start_s: float | None  # start until promoted and answering; None when not started


def _check_data_dir(runner: Runner, data_dir: Path, delta: bool, force: bool) -> None:
    live = runner.settings.pg_data_dir
    if data_dir.resolve() == live.resolve() and not (delta and force):
        raise TargetError(f"{data_dir} is the live cluster (MES_BACKUP_PG_DATA_DIR): stop it and add --delta --force")
    if data_dir.exists() and any(data_dir.iterdir()) and not delta:
        raise TargetError(f"{data_dir} is not empty: choose a new directory (or --delta --force to overwrite)")
    if (data_dir / "postmaster.pid").exists():
        raise TargetError(f"{data_dir} holds a running server (postmaster.pid): stop it first")


def restore(
    runner: Runner,
    target: datetime | None,
    data_dir: Path,
    port: int | None = None,
    start: bool = False,
    delta: bool = False,
    force: bool = False,
    now: datetime | None = None,
) -> RestoreDone:
    _check_data_dir(runner, data_dir, delta, force)
    if start and port is None and data_dir.resolve() != runner.settings.pg_data_dir.resolve():
        raise TargetError("--start beside the live cluster needs --port (two servers cannot share one port)")
    backup = check_target(target, info(runner), now or datetime.now(UTC))
    make_owned_dir(data_dir, runner.user, 0o700)
    beside_live = data_dir.resolve() != runner.settings.pg_data_dir.resolve()
    # No target: pgBackRest's default recovery replays all archived WAL and promotes.
    to_time = [f"--target={target:%Y-%m-%d %H:%M:%S.%f}+00", "--type=time", "--target-action=promote"] if target else []
    args = [
        f"--pg1-path={data_dir}",
        *to_time,
        f"--archive-mode={'off' if beside_live else 'preserve'}",
        *(["--delta"] if delta else []),
        *(["--force"] if force else []),
    ]
    began = time.monotonic()
    runner.pgbackrest("restore", *args)
    restore_s = time.monotonic() - began
    if port is not None:
        _set_port(data_dir, port)
    start_s = _start_and_promote(runner, data_dir, port or runner.settings.pg_port) if start else None
    return RestoreDone(backup, restore_s, start_s)


def _set_port(data_dir: Path, port: int) -> None:
    """Appended to postgresql.auto.conf (read last, so it wins). pgBackRest wrote that file as the OS user, and
    appending keeps its owner; we can write it as that user or as root."""
    try:
        with open(data_dir / "postgresql.auto.conf", "a") as conf:
            conf.write(f"port = {port}  # mes restore --port\n")
    except OSError as error:
        raise BackupError(f"restored, but the port was not set in postgresql.auto.conf: {error}") from None


def _log_line(log: Path) -> str:
    """The server's first FATAL/PANIC line (why it stopped), else its last line."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError as error:
        return f"unreadable ({error})"
    fatal = [line for line in lines if "FATAL:" in line or "PANIC:" in line]
    return (fatal or lines or ["empty"])[0 if fatal else -1]


def _start_and_promote(runner: Runner, data_dir: Path, port: int) -> float:
    """pg_ctl start, then wait until recovery reached the target and promoted (pg_is_in_recovery() = f)."""
    if not (data_dir / "postgresql.conf").exists():
        raise BackupError(
            f"restored, but {data_dir} has no postgresql.conf (a Debian cluster keeps it in /etc/postgresql): "
            "copy it there, then start the server yourself (docs/ops/backup.md 'Restore')"
        )
    began = time.monotonic()
    log = data_dir / "mes-restore-start.log"
    socket = str(runner.settings.pg_socket_dir)
    start = [pg_binary(runner.settings, "pg_ctl"), "start", "-D", str(data_dir), "-w", "-t", "300", "-l", str(log)]
    try:
        runner.run([*start, "-o", f"-k {socket}"], "pg_ctl start of the restored cluster", timeout=330)
    except BackupError as error:
        raise BackupError(f"{error}; server log: {_log_line(log)}") from None
    psql = [pg_binary(runner.settings, "psql"), "-X", "-At", "-h", socket, "-p", str(port), "-d", "postgres"]
    deadline = began + _PROMOTE_TIMEOUT_S
    while True:
        try:
            answer = runner.run([*psql, "-c", "SELECT pg_is_in_recovery()"], "asking the restored cluster", timeout=30)
        except BackupError as error:
            if not (data_dir / "postmaster.pid").exists():  # the server stopped: recovery failed
                raise BackupError(f"the restored cluster stopped: {_log_line(log)}") from None
            answer = str(error)  # e.g. shutting down after a failed archive-get, or restarting: ask again
        if answer.strip() == "f":
            return time.monotonic() - began
        if time.monotonic() > deadline:
            raise BackupError(f"the restored cluster is still recovering after {_PROMOTE_TIMEOUT_S:.0f} s; see {log}")
        time.sleep(0.2)  # replaying WAL up to the target: nothing to wait on but the server's answer
