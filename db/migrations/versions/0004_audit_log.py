"""Append-only, hash-chained audit log (security).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import re

from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Serialises chain appends across transactions; held until commit, so rows commit in id order.
CHAIN_LOCK = 5567948054382004564  # int.from_bytes(b"MESAUDIT", "big")
GENESIS = "0" * 64

SCHEMA = f"""
CREATE SEQUENCE audit_log_id_seq;
CREATE TABLE audit_log (
    id bigint PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor varchar(100) NOT NULL,
    action varchar(60) NOT NULL,
    entity varchar(60) NOT NULL,
    entity_key varchar(200),
    old_value jsonb,
    new_value jsonb,
    reason text,
    request_id varchar(128),
    prev_hash char(64) NOT NULL,
    row_hash char(64) NOT NULL UNIQUE
);
ALTER SEQUENCE audit_log_id_seq OWNED BY audit_log.id;
CREATE INDEX audit_log_occurred_idx ON audit_log (occurred_at);
CREATE INDEX audit_log_entity_idx ON audit_log (entity, entity_key, id);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id);
CREATE INDEX audit_log_request_idx ON audit_log (request_id) WHERE request_id IS NOT NULL;

-- The one canonical text of a row (everything but the hashes); `mes audit verify` recomputes the same bytes.
-- No SET search_path (it would cost a GUC swap per row); every name is schema-qualified instead.
CREATE FUNCTION audit_row_text(r audit_log) RETURNS text
LANGUAGE sql STABLE
AS $fn$
    SELECT pg_catalog.jsonb_build_array(
        r.id,
        pg_catalog.to_char(r.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        r.actor, r.action, r.entity, r.entity_key, r.old_value, r.new_value, r.reason, r.request_id
    )::pg_catalog.text
$fn$;

CREATE FUNCTION audit_row_hash(r audit_log) RETURNS char(64)
LANGUAGE sql STABLE
AS $fn$
    SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
        r.prev_hash::pg_catalog.text OPERATOR(pg_catalog.||) public.audit_row_text(r), 'UTF8')), 'hex')
$fn$;

-- SECURITY DEFINER: the application role needs no right on the sequence, and cannot choose id, time or hashes.
CREATE FUNCTION audit_log_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    last_hash char(64);
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        -- An older snapshot would not see the latest committed row and would fork the chain.
        RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
            MESSAGE = 'audit_log rows are appended in READ COMMITTED transactions only';
    END IF;
    PERFORM pg_advisory_xact_lock({CHAIN_LOCK});
    SELECT a.row_hash INTO last_hash FROM public.audit_log a ORDER BY a.id DESC LIMIT 1;
    NEW.id := nextval('public.audit_log_id_seq');
    NEW.occurred_at := clock_timestamp();
    NEW.prev_hash := COALESCE(last_hash, '{GENESIS}');
    NEW.row_hash := public.audit_row_hash(NEW);
    RETURN NEW;
END
$fn$;

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = 'audit_log is append-only: ' || TG_OP || ' refused';
END
$fn$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_chain();
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
REVOKE ALL ON audit_log FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_log_chain() FROM PUBLIC;
"""

_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")


def _app_role() -> str | None:
    """The role MES_DATABASE_URL connects as (db/migrations/env.py resolves it); None: single-role database."""
    role = context.config.attributes.get("app_role")
    if not role:
        return None
    if not _ROLE.fullmatch(role):
        raise ValueError(f"invalid application role name {role!r}")
    return str(role)


def _grants(role: str) -> str:
    quoted = f'"{role}"'
    return f"""
DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
        RAISE EXCEPTION USING MESSAGE = 'application role {role} does not exist: create it, or pass '
            || 'alembic -x app_role=... / MES_DB_APP_ROLE';
    END IF;
END
$do$;
GRANT USAGE ON SCHEMA public TO {quoted};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted};
REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {quoted};
-- Tables of later migrations (created by this same owner) are granted too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {quoted};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {quoted};
-- The audit log: read and append, nothing else.
REVOKE ALL ON audit_log FROM {quoted};
GRANT SELECT, INSERT ON audit_log TO {quoted};
REVOKE ALL ON SEQUENCE audit_log_id_seq FROM {quoted};
"""


def upgrade() -> None:
    op.execute(SCHEMA)
    role = _app_role()
    owner = op.get_bind().exec_driver_sql("SELECT current_user").scalar()
    if role is not None and role != owner:
        op.execute(_grants(role))


def downgrade() -> None:
    role = _app_role()
    owner = op.get_bind().exec_driver_sql("SELECT current_user").scalar()
    if role is not None and role != owner:
        op.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM "{role}"')
        op.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM "{role}"')
    op.execute("DROP FUNCTION IF EXISTS audit_row_hash(audit_log), audit_row_text(audit_log)")
    op.execute("DROP TABLE IF EXISTS audit_log")
    op.execute("DROP FUNCTION IF EXISTS audit_log_chain(), audit_log_refuse_change()")
