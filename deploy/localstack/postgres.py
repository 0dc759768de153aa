"""A real PostgreSQL server for tests and `mes up`: initdb once per state dir, never run as root, every TCP
connection with a password (scram-sha-256; passwords generated once per state dir, see pg_auth.py). TimescaleDB
is preloaded and created in the database when installed (mode `auto`, see pg_timescale.py)."""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from deploy.localstack import pg_timescale
from deploy.localstack.common import ManagedServer, ServiceError, find_binary, pid_alive, wait_until
from deploy.localstack.pg_auth import PasswordStore, hba_is_ours, password_file, write_hba
from deploy.localstack.pg_roles import ensure_role, hand_over_to_owner

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
_MAX_SOCKET_DIR = 80  # sun_path holds 107 bytes and PostgreSQL appends "/.s.PGSQL.<port>"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


class PostgresServer(ManagedServer):
    """PostgreSQL on 127.0.0.1:port, cluster in base_dir/pgdata; role and database created if missing."""

    name = "postgres"
    binary = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown
    ready_timeout = 30.0

    def __init__(
        self,
        base_dir: Path,
        port: int | None = None,
        user: str = "mes",
        password: str | None = None,
        database: str = "mes",
        owner: str | None = None,
        owner_password: str | None = None,
        timescale: pg_timescale.Mode | None = None,
        extra_settings: Sequence[str] = (),
    ) -> None:
        """`owner` set: two roles, the owner runs migrations and owns the database, `user` is the application's.
        Passwords not given are generated once and kept in base_dir/passwords.json (0600).
        `timescale`: auto | timescale | plain (pg_timescale.py); None = $MES_TEST_POSTGRES, else auto.
        `extra_settings`: more `name=value` server settings (`-c`), e.g. synchronous replication (pg_replica.py)."""
        super().__init__(base_dir, port)
        self.extra_settings = tuple(extra_settings)
        self.timescale_mode: pg_timescale.Mode = timescale or pg_timescale.mode_from_env()
        self.timescale = False  # set by start(): whether the running server preloads TimescaleDB
        self.passwords = PasswordStore(self.base_dir)
        self.user = user
        self.password = password or self.passwords.get(user)
        self.database = database
        self.owner = owner if owner != user else None
        self.owner_password = owner_password or (self.passwords.get(self.owner) if self.owner else self.password)
        self.superuser_password = self.passwords.get(SUPERUSER)
        self._socket_tmp: Path | None = None

    # -- addresses ------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver)."""
        return self.dsn.replace("postgresql://", "postgresql+psycopg://", 1)

    @property
    def dsn(self) -> str:
        """Plain libpq URI, for psycopg.connect() and psql."""
        return self._uri(self.user, self.password)

    @property
    def owner_url(self) -> str:
        """SQLAlchemy URL of the schema owner (migrations); the application's URL when there is one role."""
        return self.owner_dsn.replace("postgresql://", "postgresql+psycopg://", 1)

    @property
    def owner_dsn(self) -> str:
        return self.dsn if self.owner is None else self._uri(self.owner, self.owner_password)

    @property
    def superuser_dsn(self) -> str:
        return self._uri(SUPERUSER, self.superuser_password, "postgres")

    def _uri(self, user: str, password: str | None = None, database: str | None = None) -> str:
        userinfo = quote(user, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
        return f"postgresql://{userinfo}@127.0.0.1:{self.port}/{quote(database or self.database, safe='')}"

    # -- files ---------------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        """base_dir/pgdata; as root, a symlink into /var/tmp if base_dir is closed to the postgres user."""
        return self.base_dir / "pgdata"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    def _write_pid_file(self, pid: int) -> None:
        """The postmaster writes its own postmaster.pid."""

    # -- running as an unprivileged user -------------------------------------------------------------------
    @staticmethod
    def _os_user() -> pwd.struct_passwd | None:
        """The account to run PostgreSQL as when we are root (it refuses to run as root), else None."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise ServiceError(
                "running as root but there is no 'postgres' OS user to run PostgreSQL as: "
                "apt-get install postgresql (or run deploy/setup.sh)"
            ) from None

    @staticmethod
    def _reachable(path: Path, owner: pwd.struct_passwd | None) -> bool:
        if owner is None:
            return True
        check = ["test", "-x", str(path)]
        done = subprocess.run(check, cwd="/", user=owner.pw_uid, group=owner.pw_gid, extra_groups=[])
        return done.returncode == 0

    @staticmethod
    def _chown_tree(path: Path, owner: pwd.struct_passwd) -> None:
        for root, dirs, files in os.walk(path):
            os.chown(root, owner.pw_uid, owner.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), owner.pw_uid, owner.pw_gid, follow_symlinks=False)

    def _prepare_data_dir(self, owner: pwd.struct_passwd | None) -> Path:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        link = self.data_dir
        if link.is_symlink() and not link.exists():
            logger.warning("%s points to missing %s; creating a new cluster", link, os.readlink(link))
            link.unlink()
        if not link.exists():
            if self._reachable(self.base_dir, owner):
                link.mkdir(mode=0o700)
            else:  # e.g. pytest's tmp_path under /tmp/pytest-of-root (mode 0700) when running as root
                digest = hashlib.sha256(str(self.base_dir.resolve()).encode()).hexdigest()[:16]
                parent = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
                target = parent / f"mes-localstack-pgdata-{digest}"
                target.mkdir(mode=0o700, exist_ok=True)
                link.symlink_to(target, target_is_directory=True)
                logger.info("%s is closed to the postgres OS user; data lives in %s", self.base_dir, target)
        real = link.resolve()
        if owner is not None:
            if real.stat().st_uid != owner.pw_uid:
                self._chown_tree(real, owner)
            if not self._reachable(real, owner):
                raise ServiceError(f"{real} is not reachable by the postgres OS user; move the state dir")
        real.chmod(0o700)
        return real

    def _socket_dir(self, owner: pwd.struct_passwd | None) -> Path:
        candidate = self.base_dir / "pgsock"
        if len(str(candidate)) <= _MAX_SOCKET_DIR and self._reachable(self.base_dir, owner):
            candidate.mkdir(mode=0o700, exist_ok=True)
        else:
            candidate = self._socket_tmp = Path(tempfile.mkdtemp(prefix="mes-pg-", dir="/tmp"))
        if owner is not None:
            os.chown(candidate, owner.pw_uid, owner.pw_gid)
        return candidate

    # -- lifecycle hooks ------------------------------------------------------------------------------------
    def _spawn(self) -> subprocess.Popen[bytes]:
        bin_dir = Path(find_binary("postgres")).resolve().parent
        owner = self._os_user()
        uid, gid = (owner.pw_uid, owner.pw_gid) if owner else (None, None)
        data = self._prepare_data_dir(owner)
        if not (data / "PG_VERSION").exists():
            logger.info("initdb %s", data)
            self._initdb(bin_dir, data, owner)
        if hba_is_ours(data):
            write_hba(data, owner)  # a cluster made before passwords keeps its old file until _after_ready
        if self.pid_file.exists():  # left behind by a crash / kill(); the process is gone
            logger.info("removing stale %s", self.pid_file)
            self.pid_file.unlink()
        socket_dir = self._socket_dir(owner)
        try:
            preload = pg_timescale.resolve(self.timescale_mode, bin_dir)
        except pg_timescale.TimescaleUnavailable as error:
            raise ServiceError(str(error)) from None
        settings = [*pg_timescale.PRELOAD_SETTINGS, *pg_timescale.WORKER_SETTINGS] if preload else []
        cmd = [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(self.port),
            "-k",
            str(socket_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
            *(arg for setting in [*settings, *self.extra_settings] for arg in ("-c", setting)),
        ]
        return self._popen(cmd, cwd="/", user=uid, group=gid)

    def _initdb(self, bin_dir: Path, data: Path, owner: pwd.struct_passwd | None) -> None:
        uid, gid = (owner.pw_uid, owner.pw_gid) if owner else (None, None)
        with password_file(self.superuser_password, owner) as pwfile:
            initdb = [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-locale",
            ]
            with open(self.log_file, "ab") as log:
                done = subprocess.run(
                    initdb,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd="/",
                    user=uid,
                    group=gid,
                    extra_groups=None if owner is None else [],
                )
        if done.returncode != 0:
            raise ServiceError(f"initdb failed ({done.returncode}); log {self.log_file}:\n{self._tail()}")
        write_hba(data, owner)

    def _ready(self) -> bool:
        try:
            with psycopg.connect(self.superuser_dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as error:
            if "password authentication failed" in str(error):  # waiting will not help
                raise ServiceError(
                    f"postgres refused the superuser password kept in {self.passwords.path} "
                    f"(file replaced or lost?): {error}"
                ) from None
            return False
        except psycopg.Error:
            return False
        return True

    def _after_ready(self) -> None:
        owner = self.owner or self.user
        with psycopg.connect(self.superuser_dsn, autocommit=True) as conn:
            self._require_passwords(conn)
            # Asked of the running server, which may be one an earlier run left running (then _spawn did not run).
            self.timescale = pg_timescale.preloaded(conn)
            if self.timescale_mode == "timescale" and not self.timescale:
                raise ServiceError(
                    f"TimescaleDB is required ({pg_timescale.ENV_MODE}=timescale) but the running server "
                    f"(pid {self.pid}) was started without it: stop it and start again"
                )
            if self.owner is not None:
                ensure_role(conn, self.owner, self.owner_password, createdb=True)
            if self.user != SUPERUSER:
                ensure_role(conn, self.user, self.password, createdb=self.owner is None)
            found = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if found is None:
                logger.info("creating database %s owned by %s", self.database, owner)
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(self.database), sql.Identifier(owner))
                )
        if self.owner is not None and self.user != SUPERUSER:
            with psycopg.connect(self._uri(SUPERUSER, self.superuser_password), autocommit=True) as conn:
                hand_over_to_owner(conn, self.database, self.user, self.owner)
        self._ensure_timescale(owner)

    def _ensure_timescale(self, owner: str) -> None:
        """Preloaded: the database owner creates the extension (it is trusted) in a database not migrated yet, so
        migration 0001 finds it and makes hypertables. A database migrated on plain PostgreSQL stays plain: its
        migrations made no hypertables or continuous aggregates, and queries decide by the extension's presence.
        Plain: a database that already has TimescaleDB cannot work without the preload."""
        password = self.owner_password if self.owner is not None else self.password
        refused = False
        with psycopg.connect(self._uri(owner, password), autocommit=True) as conn:
            if not self.timescale:
                refused = pg_timescale.has_extension(conn)
            elif conn.execute("SELECT to_regclass('public.alembic_version')").fetchone() == (None,):
                conn.execute("SET client_min_messages = warning")  # not the extension's welcome banner
                conn.execute(f"CREATE EXTENSION IF NOT EXISTS {pg_timescale.EXTENSION}")
            elif not pg_timescale.has_extension(conn):
                logger.warning(
                    "database %s was migrated on plain PostgreSQL: it stays plain although TimescaleDB is loaded "
                    "(README 'Database: TimescaleDB or plain PostgreSQL')",
                    self.database,
                )
        if refused:
            if self._proc is not None:  # started here just now: do not leave a server behind that cannot work
                self.stop()
            raise ServiceError(
                f"database {self.database} uses TimescaleDB but this server was started without it "
                f"({self.timescale_mode} mode): start it with TimescaleDB (unset {pg_timescale.ENV_MODE}) "
                "or use a new state dir"
            )

    @property
    def flavour(self) -> str:
        """ "TimescaleDB" or "plain PostgreSQL" (valid once started)."""
        return pg_timescale.TIMESCALE_LABEL if self.timescale else pg_timescale.PLAIN_LABEL

    def _require_passwords(self, conn: psycopg.Connection) -> None:
        """A cluster made when the stack trusted loopback: give the superuser its password, then switch to
        scram-sha-256 (the other roles get theirs from ensure_role on every start)."""
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(SUPERUSER), sql.Literal(self.superuser_password))
        )
        if write_hba(self.data_dir.resolve(), self._os_user()):
            logger.info("postgres: pg_hba.conf now requires passwords (scram-sha-256) on TCP; reloading")
            conn.execute("SELECT pg_reload_conf()")

    def _after_exit(self, pid: int, killed: bool) -> None:
        super()._after_exit(pid, killed)
        if self._socket_tmp is not None:
            shutil.rmtree(self._socket_tmp, ignore_errors=True)
            self._socket_tmp = None

    def kill(self) -> None:
        """SIGKILL the postmaster, then wait for its orphaned backends to exit so start() can recover."""
        pid = self.pid
        children = _children(pid) if pid is not None else []
        super().kill()
        if not wait_until(lambda: not any(pid_alive(c, "postgres") for c in children), 10.0):
            for child in children:
                if pid_alive(child, "postgres"):
                    logger.warning("postgres backend %s outlived its postmaster; killing it", child)
                    os.kill(child, signal.SIGKILL)

    def destroy(self) -> None:
        """Stop and delete the cluster (also its /var/tmp location when it was relocated)."""
        self.stop()
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir.resolve(), ignore_errors=True)
        if self.data_dir.is_symlink():
            self.data_dir.unlink()
        shutil.rmtree(self.base_dir / "pgsock", ignore_errors=True)
