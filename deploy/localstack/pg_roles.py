"""Roles of the local PostgreSQL: create or update them with their password, and hand an old single-role
database over to the schema owner."""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)


# What migration 0004 grants the application role (repeated here for databases handed over after it ran).
_APP_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO {app}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES "
    "TO {app}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {app}",
)
_AUDIT_GRANTS = (
    "REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {app}",
    "REVOKE ALL ON audit_log FROM {app}",
    "GRANT SELECT, INSERT ON audit_log TO {app}",
    "REVOKE ALL ON SEQUENCE audit_log_id_seq FROM {app}",
)


def ensure_role(conn: psycopg.Connection, role: str, password: str, createdb: bool) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = sql.SQL("ALTER" if exists else "CREATE")
    conn.execute(
        sql.SQL("{} ROLE {} LOGIN {} PASSWORD {}").format(
            verb, sql.Identifier(role), sql.SQL("CREATEDB" if createdb else "NOCREATEDB"), sql.Literal(password)
        )
    )


def hand_over_to_owner(conn: psycopg.Connection, database: str, user: str, owner_role: str) -> None:
    """A single-role state dir (owned by the application role, which could then alter the audit log): hand
    it to the owner, with the grants migration 0004 gives, for databases already past it."""
    owned = conn.execute(
        "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relowner = r.oid) "
        "+ (SELECT count(*) FROM pg_database d WHERE d.datname = current_database() AND d.datdba = r.oid) "
        "FROM pg_roles r WHERE r.rolname = %s",
        (user,),
    ).fetchone()
    if not owned or not owned[0]:
        return
    logger.warning("database %s was owned by the application role %s: handing it to %s", database, user, owner_role)
    app, owner = sql.Identifier(user), sql.Identifier(owner_role)
    with conn.transaction():
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database), owner))
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(app, owner))
        for statement in _APP_GRANTS:
            conn.execute(sql.SQL(statement).format(app=app, owner=owner))
        if conn.execute("SELECT to_regclass('public.audit_log')").fetchone() != (None,):
            for statement in _AUDIT_GRANTS:
                conn.execute(sql.SQL(statement).format(app=app))
