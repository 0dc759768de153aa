"""Printers, serial issuing, label print jobs and reprint history (labels).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# serials already has UNIQUE (serial_number) and UNIQUE (lot_id, sequence) since 0001: a second issue of the
# same numbers for a LOT fails on them whatever the code does.
SCHEMA = """
CREATE TABLE printers (
    id bigserial PRIMARY KEY,
    printer_id varchar(40) NOT NULL UNIQUE,
    site varchar(64) NOT NULL DEFAULT 'KR',
    line varchar(64) NOT NULL DEFAULT 'L1',
    station varchar(64) NOT NULL,
    transport varchar(10) NOT NULL CHECK (transport IN ('tcp', 'serial')),
    host varchar(255),
    port integer NOT NULL DEFAULT 9100 CHECK (port BETWEEN 1 AND 65535),
    serial_port varchar(255),
    baud integer NOT NULL DEFAULT 9600 CHECK (baud BETWEEN 1200 AND 921600),
    language varchar(8) NOT NULL DEFAULT 'ZPL' CHECK (language IN ('ZPL', 'TSPL', 'EZPL')),
    dpi integer NOT NULL DEFAULT 203 CHECK (dpi IN (203, 300)),
    width_mm double precision NOT NULL DEFAULT 60 CHECK (width_mm > 10 AND width_mm <= 200),
    height_mm double precision NOT NULL DEFAULT 40 CHECK (height_mm > 10 AND height_mm <= 300),
    purposes text[] NOT NULL DEFAULT '{LOT,SERIAL}'
        CHECK (cardinality(purposes) > 0 AND purposes <@ ARRAY['LOT', 'SERIAL']::text[]),
    active boolean NOT NULL DEFAULT true,
    description text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((transport = 'tcp' AND host IS NOT NULL) OR (transport = 'serial' AND serial_port IS NOT NULL))
);
CREATE INDEX printers_station_idx ON printers (site, line, station) WHERE active;

CREATE TABLE label_print_jobs (
    job_id uuid PRIMARY KEY,
    -- Dispatch order: serial labels of a LOT are inserted by one statement in sequence order.
    queue_seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    printer_id varchar(40) NOT NULL REFERENCES printers(printer_id),
    label_type varchar(10) NOT NULL CHECK (label_type IN ('LOT', 'SERIAL')),
    lot_id bigint NOT NULL REFERENCES lots(id),
    serial_id bigint REFERENCES serials(id),
    label_key varchar(50) NOT NULL,
    -- NULL until rendered: automatic serial labels are rendered by the dispatcher, not in the start transaction.
    program text,
    mode varchar(10) NOT NULL CHECK (mode IN ('immediate', 'queued')),
    reprint boolean NOT NULL DEFAULT false,
    requested_by varchar(50) NOT NULL,
    worker_id varchar(50),
    reason text,
    status varchar(12) NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'dispatched', 'printed', 'failed', 'waiting')),
    printer_state varchar(12),
    error_code varchar(40),
    detail text,
    target varchar(200),
    dispatch_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    dispatched_at timestamptz,
    printed_at timestamptz,
    result_at timestamptz,
    result_message_id uuid UNIQUE,
    CHECK ((label_type = 'SERIAL') = (serial_id IS NOT NULL)),
    CHECK (NOT reprint OR (reason IS NOT NULL AND length(btrim(reason)) > 0 AND worker_id IS NOT NULL))
);
CREATE INDEX label_print_jobs_pending_idx ON label_print_jobs (queue_seq)
    WHERE mode = 'queued' AND status IN ('queued', 'dispatched');
CREATE INDEX label_print_jobs_serial_idx ON label_print_jobs (serial_id, created_at) WHERE serial_id IS NOT NULL;
CREATE INDEX label_print_jobs_lot_idx ON label_print_jobs (lot_id, created_at);

-- FR-SN-003 / TC-SN-004: who reprinted which label, when (database clock) and why.
CREATE VIEW label_reprints AS
SELECT j.job_id, j.label_type, j.label_key, j.lot_id, j.serial_id, j.printer_id, j.reason, j.worker_id,
       j.requested_by, j.created_at AS requested_at, j.status, j.printed_at
FROM label_print_jobs j WHERE j.reprint;

-- Wakes the ingestor's dispatcher at commit; a short poll covers a lost listener.
CREATE FUNCTION label_print_jobs_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM new_jobs WHERE mode = 'queued') THEN
        PERFORM pg_notify('mes_label_jobs', '');
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER label_print_jobs_notify AFTER INSERT ON label_print_jobs
    REFERENCING NEW TABLE AS new_jobs FOR EACH STATEMENT EXECUTE FUNCTION label_print_jobs_notify();
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS label_reprints")
    op.execute("DROP TABLE IF EXISTS label_print_jobs")
    op.execute("DROP FUNCTION IF EXISTS label_print_jobs_notify()")
    op.execute("DROP TABLE IF EXISTS printers")
