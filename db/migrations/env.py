"""Alembic environment: runs migrations online against the URL given in the config or MES_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ.get("MES_DATABASE_URL")
if not url:
    raise SystemExit("no database URL: set MES_DATABASE_URL")

connectable = create_engine(url, poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
