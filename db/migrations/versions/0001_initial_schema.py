"""Initial schema: product models, workers, route, LOTs, serials, runs, results, measurements.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The route is copied here, not imported: a migration must not change when the contract package does.
ROUTE = [
    ("PROC-001", "레이저 마킹", "Laser marking", 1),
    ("PROC-002", "LMA 조립", "LMA assembly", 2),
    ("PROC-003", "센서 검사", "Sensor test", 3),
    ("PROC-004", "펌웨어 업로드", "Firmware upload", 4),
    ("PROC-005", "로봇 조립", "Robot assembly", 5),
    ("PROC-006", "성능검사", "Performance test", 6),
    ("PROC-007", "라벨 프린팅", "Label printing", 7),
    ("PROC-008", "포장 + 외관검사", "Packing and visual inspection", 8),
]

SCHEMA = """
CREATE TABLE product_models (
    id serial PRIMARY KEY,
    model_code varchar(40) NOT NULL UNIQUE,
    model_name varchar(100) NOT NULL,
    description text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE workers (
    id serial PRIMARY KEY,
    worker_id varchar(50) NOT NULL UNIQUE,
    name varchar(100) NOT NULL,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE process_steps (
    process_id varchar(20) PRIMARY KEY,
    name_ko varchar(50) NOT NULL,
    name_en varchar(100) NOT NULL,
    sequence integer NOT NULL UNIQUE CHECK (sequence > 0)
);
CREATE TABLE lot_number_sequences (
    production_date date PRIMARY KEY,
    last_value integer NOT NULL CHECK (last_value BETWEEN 0 AND 999)
);
CREATE TABLE lots (
    id bigserial PRIMARY KEY,
    lot_number varchar(40) NOT NULL UNIQUE,
    product_model_id integer NOT NULL REFERENCES product_models(id),
    target_quantity integer NOT NULL CHECK (target_quantity BETWEEN 1 AND 9999),
    shift char(1) NOT NULL CHECK (shift IN ('D', 'N')),
    production_date date NOT NULL,
    sequence integer NOT NULL,
    status varchar(20) NOT NULL CHECK (status IN ('CREATED', 'IN_PROGRESS', 'COMPLETED', 'CLOSED')),
    created_by varchar(50) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lots_production_date_idx ON lots (production_date, shift);
CREATE INDEX lots_status_idx ON lots (status) WHERE status IN ('CREATED', 'IN_PROGRESS');
CREATE TABLE lot_status_history (
    id bigserial PRIMARY KEY,
    lot_id bigint NOT NULL REFERENCES lots(id),
    from_status varchar(20),
    to_status varchar(20) NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    actor varchar(50) NOT NULL,
    reason text,
    message_id uuid
);
CREATE INDEX lot_status_history_lot_idx ON lot_status_history (lot_id, changed_at);
CREATE TABLE serials (
    id bigserial PRIMARY KEY,
    serial_number varchar(50) NOT NULL UNIQUE,
    lot_id bigint NOT NULL REFERENCES lots(id),
    sequence integer NOT NULL CHECK (sequence BETWEEN 1 AND 9999),
    status varchar(20) NOT NULL DEFAULT 'CREATED'
        CHECK (status IN ('CREATED', 'IN_PROGRESS', 'PASSED', 'FAILED')),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (lot_id, sequence)
);
CREATE TABLE work_order_sequences (
    work_day date PRIMARY KEY,
    last_value integer NOT NULL
);
CREATE TABLE process_runs (
    id bigserial PRIMARY KEY,
    lot_id bigint NOT NULL REFERENCES lots(id),
    serial_id bigint REFERENCES serials(id),
    process_id varchar(20) NOT NULL REFERENCES process_steps(process_id),
    work_order_id varchar(30) NOT NULL UNIQUE,
    sequence_number integer NOT NULL,
    status varchar(20) NOT NULL CHECK (status IN ('STARTED', 'COMPLETED')),
    start_time timestamptz NOT NULL,
    start_worker_id varchar(50) NOT NULL,
    start_message_id uuid UNIQUE,
    start_source varchar(100) NOT NULL,
    started_recorded_at timestamptz NOT NULL DEFAULT now(),
    complete_time timestamptz,
    complete_worker_id varchar(50),
    result varchar(10) CHECK (result IN ('PASS', 'FAIL')),
    completion_count integer NOT NULL DEFAULT 0,
    completed_recorded_at timestamptz
);
-- One LOT-level run per process; unit-level runs (serial_id set) are unique per serial.
CREATE UNIQUE INDEX process_runs_lot_process_uq ON process_runs (lot_id, process_id) WHERE serial_id IS NULL;
CREATE UNIQUE INDEX process_runs_serial_process_uq ON process_runs (serial_id, process_id)
    WHERE serial_id IS NOT NULL;
CREATE INDEX process_runs_start_time_idx ON process_runs (start_time);
CREATE INDEX process_runs_complete_time_idx ON process_runs (complete_time) WHERE complete_time IS NOT NULL;
CREATE TABLE process_results (
    id bigserial PRIMARY KEY,
    run_id bigint NOT NULL REFERENCES process_runs(id),
    lot_id bigint NOT NULL REFERENCES lots(id),
    serial_id bigint REFERENCES serials(id),
    process_id varchar(20) NOT NULL REFERENCES process_steps(process_id),
    message_id uuid NOT NULL UNIQUE,
    source_station varchar(100) NOT NULL,
    source_file_name varchar(255),
    source_sha256 char(64) UNIQUE,
    worker_id varchar(50) NOT NULL,
    start_time timestamptz NOT NULL,
    complete_time timestamptz NOT NULL,
    result varchar(10) NOT NULL CHECK (result IN ('PASS', 'FAIL')),
    failure_reasons jsonb NOT NULL DEFAULT '[]',
    process_data jsonb NOT NULL,
    replay boolean NOT NULL DEFAULT false,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX process_results_lot_idx ON process_results (lot_id, process_id);
CREATE INDEX process_results_complete_time_idx ON process_results (complete_time);
CREATE INDEX process_results_fail_idx ON process_results (complete_time) WHERE result = 'FAIL';
CREATE TABLE measurements (
    time timestamptz NOT NULL,
    lot_id bigint NOT NULL,
    serial_id bigint,
    process_id varchar(20) NOT NULL,
    result_id bigint NOT NULL,
    test_point_id varchar(50),
    characteristic varchar(50) NOT NULL,
    value double precision,
    unit varchar(20),
    target double precision,
    tolerance double precision,
    lower_limit double precision,
    upper_limit double precision,
    result varchar(10)
);
CREATE INDEX measurements_time_idx ON measurements (time DESC);
CREATE INDEX measurements_lot_idx ON measurements (lot_id, time DESC);
CREATE INDEX measurements_characteristic_idx ON measurements (process_id, characteristic, test_point_id, time DESC);
CREATE INDEX measurements_result_idx ON measurements (result_id);
CREATE TABLE component_lots (
    id bigserial PRIMARY KEY,
    lot_id bigint NOT NULL REFERENCES lots(id),
    serial_id bigint REFERENCES serials(id),
    result_id bigint NOT NULL REFERENCES process_results(id),
    process_id varchar(20) NOT NULL,
    component_kind varchar(50) NOT NULL,
    component_lot varchar(100) NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX component_lots_lookup_idx ON component_lots (component_kind, component_lot);
CREATE INDEX component_lots_lot_idx ON component_lots (lot_id);
CREATE TABLE processed_messages (
    message_id uuid PRIMARY KEY,
    message_type varchar(40) NOT NULL,
    source_station varchar(100) NOT NULL,
    outcome varchar(20) NOT NULL,
    http_status integer NOT NULL,
    response jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_messages_received_idx ON processed_messages (received_at);
"""

TIMESCALE = """
DO $$
DECLARE
    installed boolean := EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb');
    -- The loader's own setting exists only when the library is preloaded; shared_preload_libraries itself is
    -- hidden from a non-superuser owner. Installed but not preloaded: CREATE EXTENSION would terminate the
    -- session, so say in one line what to change and go on as plain PostgreSQL (every feature has a fallback).
    preloaded boolean := EXISTS (SELECT 1 FROM pg_settings WHERE name = 'timescaledb.max_background_workers');
BEGIN
    IF installed AND NOT preloaded THEN
        RAISE WARNING 'TimescaleDB is installed but not preloaded: set shared_preload_libraries = ''timescaledb'' '
            'in postgresql.conf and restart PostgreSQL (continuing on plain PostgreSQL)';
    ELSIF installed THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('measurements', 'time', chunk_time_interval => INTERVAL '7 days');
    END IF;
END
$$;
"""


def upgrade() -> None:
    op.execute(SCHEMA)
    for process_id, name_ko, name_en, sequence in ROUTE:
        op.execute(
            "INSERT INTO process_steps (process_id, name_ko, name_en, sequence) "
            f"VALUES ('{process_id}', '{name_ko}', '{name_en}', {sequence})"
        )
    op.execute(
        "INSERT INTO product_models (model_code, model_name, description) VALUES "
        "('WF-WAIST-01', 'Withforce', '웨어러블 허리 보조 로봇 (산업용/농업용)')"
    )
    op.execute(TIMESCALE)


def downgrade() -> None:
    for table in (
        "processed_messages",
        "component_lots",
        "measurements",
        "process_results",
        "process_runs",
        "work_order_sequences",
        "serials",
        "lot_status_history",
        "lots",
        "lot_number_sequences",
        "process_steps",
        "workers",
        "product_models",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
