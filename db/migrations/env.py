"""Alembic environment: runs migrations online as the schema owner, granting the application role its rights."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import make_url

from db.migrate import report_notices

config = context.config
url = (
    config.get_main_option("sqlalchemy.url")
    or os.environ.get("MES_MIGRATION_DATABASE_URL")
    or os.environ.get("MES_DATABASE_URL")
)
if not url:
    raise SystemExit("no database URL: set MES_MIGRATION_DATABASE_URL or MES_DATABASE_URL")


def _app_role() -> str | None:
    """`-x app_role=…`, else what the caller set, else MES_DB_APP_ROLE, else the user of MES_DATABASE_URL."""
    given = context.get_x_argument(as_dictionary=True).get("app_role") or config.attributes.get("app_role")
    if given:
        return str(given)
    if os.environ.get("MES_DB_APP_ROLE"):
        return os.environ["MES_DB_APP_ROLE"]
    app_url = os.environ.get("MES_DATABASE_URL")
    return make_url(app_url).username if app_url else None


# Migrations read it from config.attributes (0004 grants the role its rights; skipped when it is the owner).
config.attributes["app_role"] = _app_role()

connectable = create_engine(url, poolclass=pool.NullPool)
with connectable.connect() as connection:
    report_notices(connection.connection.driver_connection)  # the migrations' RAISE WARNING lines reach the log
    # Online upgrades (db/migrate.py, docs/ops/upgrade.md): a lock wait longer than this fails the migration (and
    # `mes db upgrade` retries it) instead of queueing every writer of that table behind the migration's request.
    lock_timeout_ms = config.attributes.get("lock_timeout_ms")
    if lock_timeout_ms:
        connection.exec_driver_sql(f"SET lock_timeout = {int(lock_timeout_ms)}")
        connection.commit()
    # One transaction per migration: its locks are held for its own work only, and a retry resumes at it.
    context.configure(connection=connection, transactional_ddl=True, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
# For the alembic CLI: `MES_MIGRATION_DATABASE_URL=... alembic -c db/alembic.ini -x app_role=mes upgrade head`.
# `mes db upgrade` does the same without this file.
