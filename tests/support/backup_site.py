"""A PostgreSQL cluster that archives its WAL with pgBackRest, its repository and `mes backup` settings, for the
restore drill (tests/test_backup_restore.py).

Everything lives under one folder in /var/tmp that the postgres OS user can reach (the suite runs as root and
pytest's tmp_path is closed to other users); the cluster is the suite's own PostgresServer, restarted once with
the archive settings `mes backup configure` prints (archive_mode needs a restart).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import random
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters.database import Database
from cloud_api.backup.config import postgres_settings
from cloud_api.backup.settings import BackupSettings
from cloud_api.services.handlers import handle_completion, handle_start
from cloud_api.services.lots import CreateLot, create_lot
from cloud_api.services.process_complete import CompletionSource
from db.migrate import upgrade
from deploy.localstack import pg_timescale
from deploy.localstack.children import mes_command
from deploy.localstack.common import find_binary
from deploy.localstack.postgres import PostgresServer
from line_simulator.payloads import completion_record, start_request
from mes_contracts.envelope import Outcome
from mes_contracts.numbering import Shift

REPO = Path(__file__).resolve().parents[2]
STATION = "KR/L1/st01"
FIRST_PROCESS = "PROC-001"


@dataclass
class BackupSite:
    root: Path
    server: PostgresServer
    env: dict[str, str] = field(default_factory=dict)

    @property
    def socket_dir(self) -> Path:
        return self.server.base_dir / "pgsock"

    def mes(
        self, *args: str, extra: dict[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        # MES_DATABASE_URL set: the checkout's local stack settings (.state/mes.env) are not read (mes_cli/local_env.py)
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MES_DATABASE_URL": self.server.url}
        env = {**base, **self.env, **(extra or {})}
        return subprocess.run(mes_command(*args), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def settings(self, **extra: str) -> BackupSettings:
        values = {key.removeprefix("MES_BACKUP_").lower(): value for key, value in {**self.env, **extra}.items()}
        return BackupSettings(**values)  # type: ignore[arg-type]

    def apply_archiving(self, env: dict[str, str], restart: bool) -> None:
        """ALTER SYSTEM with the settings `mes backup configure` prints for `env` (archive_command reloads)."""
        # PostgresServer passes max_connections on its command line; a restored copy started by pg_ctl must have at
        # least the source's value or recovery stops ("insufficient parameter settings").
        wanted = {**postgres_settings(self.settings(**env)), "max_connections": "200"}
        if self.server.timescale:  # kept in postgresql.auto.conf so a restored copy preloads it too
            for setting in (*pg_timescale.PRELOAD_SETTINGS, *pg_timescale.WORKER_SETTINGS):
                name, _, value = setting.partition("=")
                wanted[name] = value
        with psycopg.connect(self.server.superuser_dsn, autocommit=True) as conn:
            for name, value in wanted.items():
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
            conn.execute("SELECT pg_reload_conf()")
        if restart:
            self.server.stop()
            self.server.start()

    def dsn_on(self, port: int, database: str = "mes") -> str:
        return self.server.dsn.replace(f":{self.server.port}/", f":{port}/").rsplit("/", 1)[0] + f"/{database}"


def backup_env(root: Path, server: PostgresServer) -> dict[str, str]:
    return {
        "MES_BACKUP_STORAGE": "local",
        "MES_BACKUP_LOCAL_DIR": str(root / "repo"),
        "MES_BACKUP_STANZA": "drill",
        "MES_BACKUP_PG_DATA_DIR": str(server.data_dir.resolve()),
        "MES_BACKUP_PG_PORT": str(server.port),
        "MES_BACKUP_PG_SOCKET_DIR": str(server.base_dir / "pgsock"),
        "MES_BACKUP_CONFIG_FILE": str(root / "pgbackrest.conf"),
        "MES_BACKUP_LOG_DIR": str(root / "log"),
        "MES_BACKUP_LOCK_DIR": str(root / "lock"),
        "MES_BACKUP_METRICS_TEXTFILE": str(root / "textfile" / "mes_backup.prom"),
    }


@contextmanager
def backup_site() -> Iterator[BackupSite]:
    """A migrated cluster archiving into a local repository (stanza not created yet); removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="mes-backup-", dir="/var/tmp"))
    root.chmod(0o755)  # the postgres OS user traverses it (repository, logs, config, restored copies)
    server = PostgresServer(root / "pg", owner="mes_owner")
    try:
        server.start()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
        site = BackupSite(root, server, backup_env(root, server))
        site.apply_archiving({}, restart=True)
        upgrade(server.owner_url, app_role=server.user)
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO workers (worker_id, name) VALUES ('W001', '작업자 1') ON CONFLICT DO NOTHING")
        yield site
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


async def _write_lots(url: str, count: int) -> list[str]:
    """`count` LOTs through the real services, each with PROC-001 started and completed (audit rows included)."""
    engine = create_async_engine(url, pool_size=2)
    db = Database(engine, ZoneInfo("Asia/Seoul"))
    lots = []
    try:
        for _ in range(count):
            async with db.transaction() as conn:
                lot = str((await create_lot(db, conn, CreateLot(shift=Shift.DAY), "backup-drill"))["lot_number"])
            at = datetime.now(ZoneInfo("Asia/Seoul")) - timedelta(minutes=5)
            started = await handle_start(db, start_request(FIRST_PROCESS, lot, "W001", at), STATION, uuid.uuid4(), "ko")
            assert started.outcome is Outcome.ACCEPTED, started
            record = completion_record(FIRST_PROCESS, lot, "W001", at, at + timedelta(seconds=30), random.Random(0))
            source = CompletionSource(STATION, uuid.uuid4(), None, None)
            done = await handle_completion(db, record, source, "ko")
            assert done.outcome is Outcome.ACCEPTED, done
            lots.append(lot)
    finally:
        await engine.dispose()
    return lots


def write_lots(server: PostgresServer, count: int) -> list[str]:
    return asyncio.run(_write_lots(server.url, count))


def stop_cluster(data_dir: Path) -> None:
    """pg_ctl stop of a restored copy (as the postgres OS user when root); quiet when it is not running."""
    pg_ctl = str(Path(find_binary("postgres")).resolve().parent / "pg_ctl")
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    subprocess.run(
        [pg_ctl, "stop", "-D", str(data_dir), "-m", "immediate", "-w"],
        capture_output=True,
        cwd="/",
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
        timeout=60,
    )
