"""The backup use cases behind `mes backup`: set up the stanza, take a backup, list them, check archiving and age."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cloud_api.backup.config import ARCHIVE_TIMEOUT_S
from cloud_api.backup.info import BackupRow, StanzaInfo, parse_info
from cloud_api.backup.metrics import BackupSample, write_textfile
from cloud_api.backup.runner import BackupError, Runner, pg_binary


def stanza_create(runner: Runner) -> str:
    """Create the stanza (idempotent: pgBackRest accepts a second run on the same cluster and repository)."""
    runner.prepare()
    runner.pgbackrest("stanza-create")
    return f"stanza {runner.settings.stanza} ready for {runner.settings.pg_data_dir}"


_OK, _NO_BACKUP = 0, 2  # pgBackRest's stanza status codes that still make a usable repository
_NOT_CREATED = {1, 3}  # missing stanza path / missing stanza data


def info(runner: Runner) -> StanzaInfo:
    """The stanza's backups; a repository in an unusable state (never set up, another cluster) is a BackupError."""
    runner.prepare()
    stanza = parse_info(runner.pgbackrest("info", "--output=json"), runner.settings.stanza)
    if stanza.status_code not in (_OK, _NO_BACKUP):
        hint = ": run `mes backup stanza-create`" if stanza.status_code in _NOT_CREATED else ""
        raise BackupError(
            f"stanza {stanza.name}: {stanza.status_message} (pgBackRest status {stanza.status_code}){hint}"
        )
    return stanza


@dataclass(frozen=True, slots=True)
class BackupDone:
    row: BackupRow
    duration_s: float
    expired: int  # backups removed by retention during this run


def run_backup(runner: Runner, kind: str) -> BackupDone:
    """One backup; pgBackRest expires old ones after it (retention); the metrics textfile updated on success.
    An `incr`/`diff` with no full backup yet is taken as a full by pgBackRest (said by the returned row's type)."""
    before = info(runner)
    started = time.monotonic()
    runner.pgbackrest("backup", f"--type={kind}")
    duration = time.monotonic() - started
    after = info(runner)
    known = {row.label for row in before.backups}
    new = [row for row in after.backups if row.label not in known]
    if not new:
        raise BackupError("pgbackrest backup succeeded but no new backup is listed by pgbackrest info")
    row = new[-1]
    expired = len(known - {r.label for r in after.backups})
    path = runner.settings.metrics_textfile
    if path is not None:
        sample = BackupSample(row.type, row.stop.timestamp(), duration, row.repo_size_bytes)
        try:
            write_textfile(path, sample)
        except OSError as error:
            raise BackupError(
                f"backup {row.label} done, but the metrics file {path} was not written: {error}"
            ) from None
    return BackupDone(row, duration, expired)


@dataclass(frozen=True, slots=True)
class CheckResult:
    newest: BackupRow
    age: timedelta


def _check_archive_timeout(runner: Runner) -> None:
    """The RPO rests on archive_timeout: a quiet database would otherwise keep its last writes in an unarchived
    segment for hours. Asked of the running server over its socket, as the OS user (peer authentication)."""
    settings = runner.settings
    psql = [pg_binary(settings, "psql"), "-X", "-At", "-h", str(settings.pg_socket_dir), "-p", str(settings.pg_port)]
    sql = "SELECT setting FROM pg_settings WHERE name = 'archive_timeout'"
    answer = runner.run([*psql, "-d", "postgres", "-c", sql], "asking PostgreSQL for archive_timeout", timeout=30)
    seconds = int(answer.strip() or "0")
    if seconds == 0 or seconds > ARCHIVE_TIMEOUT_S:
        raise BackupError(
            f"archive_timeout is {seconds} s: the RPO of {ARCHIVE_TIMEOUT_S // 60} min is not met "
            f"(set archive_timeout = {ARCHIVE_TIMEOUT_S}, see `mes backup configure`)"
        )


def check(runner: Runner, now: datetime | None = None) -> CheckResult:
    """`pgbackrest check` (the cluster archives a forced WAL switch into the repository within its timeout),
    archive_timeout set for the RPO, and the newest backup younger than MES_BACKUP_MAX_AGE_HOURS; else BackupError."""
    runner.prepare()
    runner.pgbackrest("check", "--archive-timeout=60")
    _check_archive_timeout(runner)
    stanza = info(runner)
    newest = stanza.newest
    if newest is None:
        raise BackupError(f"archiving works but stanza {stanza.name} has no backup yet: run `mes backup run`")
    age = (now or datetime.now(UTC)) - newest.stop
    limit = timedelta(hours=runner.settings.max_age_hours)
    if age > limit:
        hours = age.total_seconds() / 3600
        raise BackupError(
            f"newest backup {newest.label} is {hours:.1f} h old (limit {runner.settings.max_age_hours:g} h): "
            "are the mes-backup timers running?"
        )
    return CheckResult(newest, age)
