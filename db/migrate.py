"""Apply or inspect Alembic migrations programmatically (used by `mes db upgrade`, the stack and tests)."""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
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


def alembic_config(database_url: str, app_role: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats % as interpolation; a password may contain it.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if app_role:
        config.attributes["app_role"] = app_role
    return config


def role_of(database_url: str) -> str | None:
    """The user a database URL connects as."""
    return make_url(database_url).username


def upgrade(database_url: str, revision: str = "head", app_role: str | None = None) -> None:
    """Migrate as `database_url`'s user (the schema owner); `app_role` gets the application's rights.

    Without `app_role`: MES_DB_APP_ROLE, else the user of MES_DATABASE_URL, else none (single-role database).
    """
    command.upgrade(alembic_config(database_url, app_role), revision)


def downgrade(database_url: str, revision: str, app_role: str | None = None) -> None:
    command.downgrade(alembic_config(database_url, app_role), revision)


def current(database_url: str) -> None:
    command.current(alembic_config(database_url), verbose=True)
