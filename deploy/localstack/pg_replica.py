"""A streaming standby of a running localstack PostgresServer on the same machine (docs/ops/ha.md, issue 17):
`pg_basebackup -R` through a physical replication slot, started on its own port, waited for until it streams
(and is the synchronous standby when the primary asks for one), promoted with `pg_promote()`.

The standby is a PostgresServer (same lifecycle: runs as the `postgres` OS account when root, kill/stop/destroy)
whose first start copies the primary instead of running initdb, and which creates no roles while it is read-only:
roles, passwords and the database arrive with the WAL stream.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from deploy.localstack import pg_timescale
from deploy.localstack.common import ServiceError, find_binary, wait_until
from deploy.localstack.pg_auth import PASSWORDS_FILE
from deploy.localstack.postgres import SUPERUSER, PostgresServer

STANDBY_NAME = "mes_standby"


def require_synchronous(primary: PostgresServer, *standbys: str) -> None:
    """From now on a commit on `primary` returns only once one of `standbys` has flushed its WAL, so no
    acknowledged commit is missing after a failover (`ANY 1 (…)`: any one will do; docs/ops/ha.md on the cost).

    Set on the running primary (ALTER SYSTEM + reload), not at its start: with it, every commit waits for a
    standby, the primary's own set-up (roles, database) included, and there is no standby before the primary.
    Set after the base backup, it stays out of the standby's copy of postgresql.auto.conf: once promoted, the
    standby does not wait for a standby of its own that does not exist (it would hang every commit)."""
    names = ", ".join(standbys or (STANDBY_NAME,))
    with psycopg.connect(primary.superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(sql.Literal(f"ANY 1 ({names})")))
        conn.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
        conn.execute("SELECT pg_reload_conf()")


def failover_url(
    servers: Sequence[PostgresServer], driver: str = "postgresql+psycopg", connect_timeout: int = 3
) -> str:
    """The application's URL naming every server, primary first: libpq tries them in order and keeps the first
    that accepts writes (`target_session_attrs=read-write`), so after a promotion new connections find the new
    primary with no configuration change. SQLAlchemy 2 passes repeated `host=h:p` query parameters to psycopg."""
    first = servers[0]
    userinfo = f"{quote(first.user, safe='')}:{quote(first.password, safe='')}"
    hosts = "&".join(f"host=127.0.0.1:{server.port}" for server in servers)
    return (
        f"{driver}://{userinfo}@/{quote(first.database, safe='')}?{hosts}"
        f"&target_session_attrs=read-write&connect_timeout={connect_timeout}"
    )


class StandbyServer(PostgresServer):
    """A hot standby of `primary` in base_dir/pgdata, streaming as `application_name` through a slot of that name."""

    name = "postgres-standby"

    def __init__(
        self,
        primary: PostgresServer,
        base_dir: Path,
        port: int | None = None,
        application_name: str = STANDBY_NAME,
        extra_settings: Sequence[str] = (),
    ) -> None:
        base_dir = Path(base_dir).absolute()
        base_dir.mkdir(parents=True, exist_ok=True)
        # The same roles and passwords as the primary (they replicate): keep its password file next to ours.
        if not (base_dir / PASSWORDS_FILE).exists():
            shutil.copy2(primary.passwords.path, base_dir / PASSWORDS_FILE)
        super().__init__(
            base_dir,
            port,
            user=primary.user,
            password=primary.password,
            database=primary.database,
            owner=primary.owner,
            owner_password=primary.owner_password if primary.owner else None,
            timescale=primary.timescale_mode,
            extra_settings=extra_settings,
        )
        self.primary = primary
        self.application_name = application_name

    # -- first start: a base backup instead of initdb ----------------------------------------------------------
    def _spawn(self) -> subprocess.Popen[bytes]:
        if not (self.data_dir / "PG_VERSION").exists():
            self._base_backup()
        return super()._spawn()

    def _base_backup(self) -> None:
        owner = self._os_user()
        data = self._prepare_data_dir(owner)
        self._ensure_slot()
        conninfo = f"host=127.0.0.1 port={self.primary.port} user={SUPERUSER} application_name={self.application_name}"
        cmd = [
            find_binary("pg_basebackup"),
            "-D",
            str(data),
            "-d",
            conninfo,
            "-X",
            "stream",
            "-S",
            self.application_name,
            "-R",  # standby.signal + primary_conninfo (with this application_name) in postgresql.auto.conf
            "-c",
            "fast",
            "--no-password",
        ]
        env = {**os.environ, "PGPASSWORD": self.superuser_password}
        with open(self.log_file, "ab") as log:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd="/",
                env=env,
                user=None if owner is None else owner.pw_uid,
                group=None if owner is None else owner.pw_gid,
                extra_groups=None if owner is None else [],
                check=False,
            )
        if done.returncode != 0:
            raise ServiceError(f"pg_basebackup failed ({done.returncode}); log {self.log_file}:\n{self._tail()}")

    def _ensure_slot(self) -> None:
        """A physical slot on the primary: it keeps the WAL the standby has not received yet (a standby down
        for a while catches up instead of needing a new base backup; docs/ops/ha.md: watch the primary's disk)."""
        with psycopg.connect(self.primary.superuser_dsn, autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (self.application_name,)
            ).fetchone()
            if found is None:
                conn.execute("SELECT pg_create_physical_replication_slot(%s)", (self.application_name,))

    # -- readiness: a standby is read-only, its roles come from the primary ---------------------------------------
    def _after_ready(self) -> None:
        if not self.in_recovery():
            super()._after_ready()  # promoted earlier: an ordinary server
            return
        with psycopg.connect(self.superuser_dsn, autocommit=True) as conn:
            self.timescale = pg_timescale.preloaded(conn)

    def in_recovery(self) -> bool:
        with psycopg.connect(self.superuser_dsn, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row and row[0])

    # -- replication state ----------------------------------------------------------------------------------------
    def replication_state(self) -> tuple[str, str] | None:
        """(state, sync_state) of this standby as the primary sees it (pg_stat_replication), else None."""
        with psycopg.connect(self.primary.superuser_dsn, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s",
                (self.application_name,),
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def wait_streaming(self, timeout: float = 30.0, synchronous: bool = False) -> tuple[str, str]:
        """Wait until the primary streams to this standby (and counts it as synchronous when asked)."""
        wanted = {"sync", "quorum"} if synchronous else {"async", "potential", "sync", "quorum"}
        seen: list[tuple[str, str] | None] = [None]

        def streaming() -> bool:
            seen[0] = self.replication_state()
            return seen[0] is not None and seen[0][0] == "streaming" and seen[0][1] in wanted

        if not wait_until(streaming, timeout, 0.1):
            raise ServiceError(f"standby {self.application_name} not streaming after {timeout:.0f} s: {seen[0]}")
        assert seen[0] is not None
        return seen[0]

    # -- failover -------------------------------------------------------------------------------------------------
    def promote(self, timeout: int = 30) -> float:
        """Make this standby the primary (`pg_promote`, waits for the end of recovery); seconds it took."""
        began = time.monotonic()
        with psycopg.connect(self.superuser_dsn, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT pg_promote(true, %s)", (timeout,)).fetchone()
        if not (row and row[0]):
            raise ServiceError(f"standby {self.application_name} not promoted within {timeout} s; log {self.log_file}")
        return time.monotonic() - began
