"""Running pgbackrest (and PostgreSQL's pg_ctl/psql) as the OS user that owns the cluster.

PostgreSQL refuses to run as root and pgBackRest must read the data directory and write the repository with the
cluster owner's rights, so when `mes` runs as root every child runs as MES_BACKUP_OS_USER (`postgres`), as
deploy/localstack/postgres.py does for the test clusters. Any failure becomes one BackupError line.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cloud_api.backup.config import write_config
from cloud_api.backup.settings import BackupSettings

PGBACKREST = "pgbackrest"
_TIMEOUT_S = 6 * 3600.0  # a full backup of years of data; the timers start the next one anyway


class BackupError(Exception):
    """A failed step, said in one line (the CLI prints it and exits non-zero)."""


def os_user(settings: BackupSettings) -> pwd.struct_passwd | None:
    """The account children run as when we are root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(settings.os_user)
    except KeyError:
        raise BackupError(f"no OS user {settings.os_user!r} to run pgbackrest as (MES_BACKUP_OS_USER)") from None


def pg_binary(settings: BackupSettings, name: str) -> str:
    """pg_ctl/psql: MES_BACKUP_PG_BIN_DIR, then PATH, then the newest /usr/lib/postgresql/*/bin (Debian)."""
    if settings.pg_bin_dir is not None:
        return str(settings.pg_bin_dir / name)
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if not candidates:
        raise BackupError(f"{name} not found: install postgresql or set MES_BACKUP_PG_BIN_DIR")
    return str(candidates[-1])


def make_owned_dir(path: Path, user: pwd.struct_passwd | None, mode: int = 0o750) -> None:
    """A directory the OS user can write (created with its parents; chowned when we are root)."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


class Runner:
    """pgbackrest with the rendered --config, as the cluster's OS user; see the module docstring."""

    def __init__(self, settings: BackupSettings) -> None:
        self.settings = settings
        self.user = os_user(settings)

    def prepare(self) -> None:
        """Config file and pgBackRest's directories in place (idempotent; every command does it first)."""
        if shutil.which(PGBACKREST) is None:
            raise BackupError("pgbackrest is not installed: apt-get install pgbackrest (deploy/setup.sh does)")
        uid, gid = (self.user.pw_uid, self.user.pw_gid) if self.user else (None, None)
        try:
            write_config(self.settings, uid, gid)
            make_owned_dir(self.settings.log_dir, self.user)
            make_owned_dir(self.settings.lock_dir, self.user)
            if self.settings.storage == "local":
                make_owned_dir(self.settings.local_dir, self.user)
        except OSError as error:
            raise BackupError(f"cannot prepare pgBackRest's files: {error}") from None

    def command(self, name: str, *args: str) -> list[str]:
        return [PGBACKREST, f"--config={self.settings.config_file}", f"--stanza={self.settings.stanza}", *args, name]

    def pgbackrest(self, name: str, *args: str, timeout: float = _TIMEOUT_S) -> str:
        """Run one pgbackrest command; its stdout, or BackupError with pgBackRest's own error line."""
        return self.run(self.command(name, *args), f"pgbackrest {name}", timeout)

    def run(self, argv: Sequence[str], what: str, timeout: float = _TIMEOUT_S) -> str:
        user = self.user
        try:
            done = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd="/",  # the OS user may not be able to enter our working directory
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
                env={**os.environ, "HOME": user.pw_dir} if user else None,
            )
        except subprocess.TimeoutExpired:
            raise BackupError(f"{what} did not finish within {timeout:.0f} s") from None
        except OSError as error:
            raise BackupError(f"{what} could not start: {error}") from None
        if done.returncode != 0:
            raise BackupError(f"{what} failed (exit {done.returncode}): {_error_line(done.stderr or done.stdout)}")
        return done.stdout


def _error_line(output: str) -> str:
    """pgBackRest's ERROR line (e.g. `ERROR: [055]: unable to load info file …`), else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "ERROR:" in line:
            return line[line.index("ERROR:") :]
    return lines[-1] if lines else "no output"
