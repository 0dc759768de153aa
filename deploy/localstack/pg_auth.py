"""Passwords for the local PostgreSQL: generated once per state dir (0600), scram-sha-256 on every TCP connection."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

PASSWORDS_FILE = "passwords.json"
HBA_HEADER = "# mes localstack: written at every start by deploy/localstack/pg_auth.py (edits are overwritten)"
# TCP always asks for a password (no `trust`, superuser included). The unix socket, in a 0700 directory, keeps
# peer access: only the OS account of the same name (the `postgres` account when root runs the stack) gets in.
# Replication (a standby's pg_basebackup and WAL stream, deploy/localstack/pg_replica.py): loopback, password,
# and only roles with the REPLICATION attribute (the superuser), which could read everything anyway.
HBA = f"""{HBA_HEADER}
local   all   all                  peer
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
host    replication   all   127.0.0.1/32   scram-sha-256
"""


class PasswordStore:
    """role → password in base_dir/passwords.json (mode 0600), a new random one the first time a role is asked."""

    def __init__(self, base_dir: Path) -> None:
        self.path = base_dir / PASSWORDS_FILE

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def get(self, role: str) -> str:
        known = self._load()
        if role not in known:
            known[role] = secrets.token_urlsafe(24)
            self._save(known)
        return known[role]

    def _save(self, known: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as sink:
            json.dump(known, sink, indent=2)
        os.chmod(tmp, 0o600)  # an older file may have been created with a wider umask
        os.replace(tmp, self.path)


def hba_is_ours(data_dir: Path) -> bool:
    """Whether the cluster already runs with our pg_hba.conf (so the superuser has its password)."""
    try:
        return (data_dir / "pg_hba.conf").read_text().startswith(HBA_HEADER)
    except OSError:
        return False


def write_hba(data_dir: Path, owner: pwd.struct_passwd | None) -> bool:
    """Write our pg_hba.conf; True when it changed (the server then needs a reload)."""
    path = data_dir / "pg_hba.conf"
    with contextlib.suppress(OSError):
        if path.read_text() == HBA:
            return False
    path.write_text(HBA)
    path.chmod(0o600)
    if owner is not None:  # root writes it; the server runs as `postgres` and must read it
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return True


@contextlib.contextmanager
def password_file(password: str, owner: pwd.struct_passwd | None) -> Iterator[Path]:
    """initdb --pwfile: a private file the (possibly other) OS account running initdb can read, then removed."""
    directory = Path(tempfile.mkdtemp(prefix="mes-pgpw-"))
    path = directory / "pw"
    try:
        path.write_text(password + "\n")
        path.chmod(0o600)
        if owner is not None:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
            os.chown(path, owner.pw_uid, owner.pw_gid)
        yield path
    finally:
        path.unlink(missing_ok=True)
        directory.rmdir()
