"""Apply or inspect Alembic migrations programmatically (used by `mes db upgrade`, the stack and tests)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import make_url

# Resolved from the installed package, not the checkout: the wheel ships db/migrations (env.py, script.py.mako,
# versions/*.py) as package data, so `mes db upgrade` works from `pip install withforce-mes[central]` anywhere.
# Alembic needs a real directory; wheels are always unpacked on disk, so the resource is a plain path.
MIGRATIONS_DIR = Path(str(files("db") / "migrations"))
logger = logging.getLogger("db.migrate")
# TimescaleDB's style advice on create_hypertable (varchar columns: the agreed schema uses them on purpose), one
# WARNING per column: not something an administrator must act on, so it stays at debug level.
_ADVISORY = ("does not follow best practices",)


def report_notices(dbapi_connection: Any) -> None:
    """Pass the server's RAISE WARNING lines (e.g. 0001's "TimescaleDB is installed but not preloaded …") to the
    log, which `mes db upgrade` shows on stderr; psycopg drops notices when nobody listens. NOTICEs (e.g. "…
    already exists, skipping") stay at debug level."""
    add = getattr(dbapi_connection, "add_notice_handler", None)
    if add is None:  # not psycopg 3 (another driver in a site's URL): nothing to forward
        return

    def forward(diagnostic: Any) -> None:
        severity = diagnostic.severity_nonlocalized or diagnostic.severity or ""
        message = diagnostic.message_primary or ""
        level = logging.WARNING if severity in ("WARNING", "ERROR", "FATAL", "PANIC") else logging.DEBUG
        if any(advice in message for advice in _ADVISORY):
            level = logging.DEBUG
        logger.log(level, "PostgreSQL %s: %s", severity, message)

    add(forward)


# A lock wait that ran out (lock_timeout) or a deadlock: the migration's transaction is rolled back whole, so
# running it again is safe (0010 on TimescaleDB excepted: docs/ops/upgrade.md).
_RETRYABLE_SQLSTATES = frozenset({"55P03", "40P01"})


@dataclass(frozen=True)
class LockPolicy:
    """How an online upgrade waits for a table lock: `lock_timeout_ms` per lock request (None: wait for ever, the
    PostgreSQL default), then up to `attempts` runs, `delay_s` apart (doubling, at most `max_delay_s`)."""

    lock_timeout_ms: int | None = 2000
    attempts: int = 30
    delay_s: float = 1.0
    max_delay_s: float = 15.0


WAIT_FOREVER = LockPolicy(lock_timeout_ms=None, attempts=1)


def alembic_config(database_url: str, app_role: str | None = None, lock_timeout_ms: int | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats % as interpolation; a password may contain it.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if app_role:
        config.attributes["app_role"] = app_role
    if lock_timeout_ms:
        config.attributes["lock_timeout_ms"] = lock_timeout_ms
    return config


def role_of(database_url: str) -> str | None:
    """The user a database URL connects as."""
    return make_url(database_url).username


def upgrade(
    database_url: str, revision: str = "head", app_role: str | None = None, policy: LockPolicy = WAIT_FOREVER
) -> int:
    """Migrate as `database_url`'s user (the schema owner); `app_role` gets the application's rights. Returns how
    many times a migration gave up a lock wait and was run again (`policy`; `mes db upgrade` passes one).

    Without `app_role`: MES_DB_APP_ROLE, else the user of MES_DATABASE_URL, else none (single-role database).
    Each migration is its own transaction (env.py): a retry starts at the migration that gave up.
    """
    config = alembic_config(database_url, app_role, policy.lock_timeout_ms)
    delay = policy.delay_s
    for attempt in range(1, policy.attempts + 1):
        try:
            command.upgrade(config, revision)
            return attempt - 1
        except Exception as error:
            code = _sqlstate(error)
            if code not in _RETRYABLE_SQLSTATES or attempt == policy.attempts:
                raise
            logger.warning(
                "migration gave up waiting for a lock (SQLSTATE %s: a long transaction holds the table; writers "
                "were not kept waiting): attempt %d of %d, again in %.1f s",
                code,
                attempt,
                policy.attempts,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, policy.max_delay_s)
    raise AssertionError("unreachable")


def _sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error, however wrapped (SQLAlchemy's DBAPIError.orig, exception chains)."""
    seen: BaseException | None = error
    while seen is not None:
        for candidate in (seen, getattr(seen, "orig", None)):
            code = getattr(candidate, "sqlstate", None)
            if isinstance(code, str):
                return code
        seen = seen.__cause__ or seen.__context__
    return None


def pending(database_url: str) -> list[Script]:
    """The migrations `upgrade` to head would run, oldest first (nothing is changed)."""
    scripts = ScriptDirectory.from_config(alembic_config(database_url))
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            heads = MigrationContext.configure(connection).get_current_heads()
    finally:
        engine.dispose()
    lower = heads[0] if heads else "base"
    return list(reversed(list(scripts.iterate_revisions("heads", lower))))


def downgrade(database_url: str, revision: str, app_role: str | None = None) -> None:
    command.downgrade(alembic_config(database_url, app_role), revision)


def current(database_url: str) -> None:
    command.current(alembic_config(database_url), verbose=True)
