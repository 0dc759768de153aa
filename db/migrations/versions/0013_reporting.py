"""Reporting schema for Grafana, the read-only role `mes_grafana`, and persisted station states (issue 16).

`reporting` holds views built for dashboards only: no password hashes, tokens, audit internals or raw process
data. The views are owned by the schema owner, so a reader needs SELECT on the views and nothing on the base
tables (PostgreSQL checks the base tables against the view's owner). `grant_reporting_reader(role)` grants
exactly that (USAGE on `reporting`, SELECT on its views, read-only by default); the migration calls it for
`mes_grafana`, creating that role NOLOGIN when the owner may create roles. A site gives it a password with
`mes grafana grant-db` (README "Dashboards").

`station_states` (latest retained state per station) and `station_state_days` (one row per station and factory
day) are written only by the ingestor (cloud_api/services/station_states.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE station_states (
    site varchar(64) NOT NULL,
    line varchar(64) NOT NULL,
    station varchar(64) NOT NULL,
    gateway_id varchar(128) NOT NULL,
    online boolean NOT NULL,
    software_version varchar(64) NOT NULL,
    outbox_depth integer NOT NULL,
    oldest_pending_age_s double precision,
    outbox_full boolean NOT NULL,
    server_online boolean,
    last_error_code varchar(64),
    last_error_message text,
    last_error_at timestamptz,
    stuck_count integer NOT NULL,
    errored_total integer NOT NULL,
    reported_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, line, station)
);
CREATE TABLE station_state_days (
    day date NOT NULL,
    site varchar(64) NOT NULL,
    line varchar(64) NOT NULL,
    station varchar(64) NOT NULL,
    reports integer NOT NULL,
    offline_reports integer NOT NULL,
    max_outbox_depth integer NOT NULL,
    max_oldest_pending_age_s double precision,
    files_errored integer NOT NULL,
    last_errored_total integer NOT NULL,
    first_reported_at timestamptz NOT NULL,
    last_reported_at timestamptz NOT NULL,
    PRIMARY KEY (day, site, line, station)
);
"""

VIEWS = """
CREATE SCHEMA reporting;
CREATE VIEW reporting.process_steps AS
    SELECT process_id, name_ko, name_en, sequence FROM process_steps;
CREATE VIEW reporting.lots AS
    SELECT l.id AS lot_id, l.lot_number, pm.model_code, pm.model_name, l.target_quantity, l.shift,
        l.production_date, l.status, l.created_at, l.updated_at
    FROM lots l JOIN product_models pm ON pm.id = l.product_model_id;
CREATE VIEW reporting.serials AS
    SELECT id AS serial_id, serial_number, lot_id, sequence, status, created_at FROM serials;
CREATE VIEW reporting.process_runs AS
    SELECT id AS run_id, lot_id, serial_id, process_id, status, start_time, start_worker_id, start_source,
        complete_time, complete_worker_id, result
    FROM process_runs;
CREATE VIEW reporting.process_results AS
    SELECT id AS result_id, run_id, lot_id, serial_id, process_id, source_station AS station, worker_id,
        start_time, complete_time, result, failure_reasons, replay
    FROM process_results;
-- One row per FAIL result and failure reason ('unknown' without one): the Pareto counts of GET /api/v1/defects.
CREATE VIEW reporting.defect_causes AS
    SELECT r.id AS result_id, r.lot_id, r.serial_id, r.process_id, r.source_station AS station, r.complete_time,
        COALESCE(reason.value, 'unknown') AS cause
    FROM process_results r
    LEFT JOIN LATERAL jsonb_array_elements_text(r.failure_reasons) AS reason(value) ON true
    WHERE r.result = 'FAIL';
CREATE VIEW reporting.measurements AS
    SELECT time, lot_id, serial_id, process_id, result_id, COALESCE(test_point_id, '') AS test_point_id,
        characteristic, value, unit, target, lower_limit, upper_limit, result
    FROM measurements;
-- The hourly and daily rollups of 0010 (continuous aggregates or plain stores, same names): trends and Cpk over
-- long ranges read these, never months of raw rows.
CREATE VIEW reporting.measurement_hourly AS
    SELECT bucket, process_id, characteristic, COALESCE(test_point_id, '') AS test_point_id, station, n, sum_value,
        sum_squares, min_value, max_value, out_of_limit, lsl, usl
    FROM measurement_hourly;
CREATE VIEW reporting.measurement_daily AS
    SELECT bucket, process_id, characteristic, COALESCE(test_point_id, '') AS test_point_id, station, n, sum_value,
        sum_squares, min_value, max_value, out_of_limit, lsl, usl
    FROM measurement_daily;
CREATE VIEW reporting.component_lots AS
    SELECT lot_id, serial_id, result_id, process_id, component_kind, component_lot, recorded_at FROM component_lots;
CREATE VIEW reporting.spc_baselines AS
    SELECT DISTINCT ON (process_id, characteristic, test_point_id, chart, subgroup)
        process_id, characteristic, test_point_id, chart, subgroup, version, mu, sigma,
        mu - 3 * sigma AS lcl, mu + 3 * sigma AS ucl, created_at
    FROM spc_baselines
    ORDER BY process_id, characteristic, test_point_id, chart, subgroup, version DESC;
CREATE VIEW reporting.alerts AS
    SELECT id AS alert_id, kind, rule, process_id, characteristic, COALESCE(test_point_id, '') AS test_point_id,
        lot_id, serial_id, station, value, cpk, threshold, point_time, raised_at, status, acknowledged_at
    FROM alerts;
CREATE VIEW reporting.station_states AS
    SELECT site, line, station, gateway_id, online, software_version, outbox_depth, oldest_pending_age_s,
        outbox_full, server_online, last_error_code, last_error_message, last_error_at, stuck_count, reported_at,
        received_at
    FROM station_states;
CREATE VIEW reporting.station_state_days AS
    SELECT day, site, line, station, reports, offline_reports, max_outbox_depth, max_oldest_pending_age_s,
        files_errored, first_reported_at, last_reported_at
    FROM station_state_days;
-- The last printer state a print result reported, per printer (the gateway reports it with every result). The
-- index makes "the newest result of this printer" one index probe (without it: ~0.9 s at three years).
CREATE INDEX label_print_jobs_printer_result_idx ON label_print_jobs (printer_id, result_at DESC)
    WHERE result_at IS NOT NULL;
CREATE VIEW reporting.printer_states AS
    SELECT p.printer_id, p.station, p.active, j.printer_state, j.status AS last_job_status, j.error_code,
        j.result_at
    FROM printers p
    LEFT JOIN LATERAL (
        SELECT printer_state, status, error_code, result_at FROM label_print_jobs
        WHERE printer_id = p.printer_id AND result_at IS NOT NULL ORDER BY result_at DESC LIMIT 1
    ) j ON true;
"""

GRANT_FUNCTION = """
CREATE FUNCTION grant_reporting_reader(reader name) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA reporting TO %I', reader);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO %I', reader);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA reporting GRANT SELECT ON TABLES TO %I', reader);
END
$$;
REVOKE EXECUTE ON FUNCTION grant_reporting_reader(name) FROM PUBLIC;
"""

GRANT_GRAFANA = """
DO $$
DECLARE
    may_create boolean := (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mes_grafana') AND may_create THEN
        CREATE ROLE mes_grafana NOLOGIN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mes_grafana') THEN
        PERFORM grant_reporting_reader('mes_grafana');
    ELSE
        RAISE NOTICE 'role mes_grafana not created (no CREATEROLE): run mes grafana grant-db as an administrator';
    END IF;
END
$$;
"""


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(VIEWS)
    op.execute(GRANT_FUNCTION)
    op.execute(GRANT_GRAFANA)


def downgrade() -> None:
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mes_grafana') THEN "
        "EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA reporting REVOKE ALL ON TABLES FROM mes_grafana'; "
        "END IF; END $$"
    )
    op.execute("DROP SCHEMA IF EXISTS reporting CASCADE")
    op.execute("DROP INDEX IF EXISTS label_print_jobs_printer_result_idx")
    op.execute("DROP FUNCTION IF EXISTS grant_reporting_reader(name)")
    op.execute("DROP TABLE IF EXISTS station_state_days")
    op.execute("DROP TABLE IF EXISTS station_states")
