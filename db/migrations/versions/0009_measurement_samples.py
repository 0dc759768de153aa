"""Measurement streams: the measurement_samples hypertable (plain table on plain PostgreSQL) (issue 14).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

Raw samples of the station's curves (PROC-006 force/displacement at up to 1 kHz, PROC-003 temperature) and of
serial-port gauges. One writer: the ingestor's COPY (cloud_api/adapters/samples_copy.py). No foreign keys and
no unique index: a COPY of 20,000 rows must not look up lots/serials per row, and idempotency is the message id
claimed in processed_messages in the same transaction as the COPY. `seq` is the sample's position in its
message, so (message_id, seq) names one sample for ever.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE measurement_samples (
    time timestamptz NOT NULL,
    lot_id bigint NOT NULL,
    serial_id bigint NULL,
    process_id varchar(20) NOT NULL,
    station varchar(100) NOT NULL,
    test_point_id varchar(50) NULL,
    channel varchar(50) NOT NULL,
    value double precision NOT NULL,
    unit varchar(20) NULL,
    message_id uuid NOT NULL,
    seq integer NOT NULL
);
"""

# A curve is read by serial (or LOT) + process + channel, in time order; the LOT index also serves the
# per-LOT views. Only two indexes: every index costs COPY throughput (bench/README.md).
INDEXES = """
CREATE INDEX measurement_samples_serial_idx ON measurement_samples (serial_id, process_id, channel, time)
    WHERE serial_id IS NOT NULL;
CREATE INDEX measurement_samples_lot_idx ON measurement_samples (lot_id, process_id, channel, time);
"""

# Hypertable only when the extension is there (0001 creates it when the server preloads the library); chunks of
# one day: ~1.7M samples per 8-hour shift of PROC-006 at 1 kHz keep a day's chunk and its indexes in memory.
# No default time index: the two above lead with the ids the reads filter on, and `time` ranges use chunk pruning.
TIMESCALE = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('measurement_samples', 'time',
            chunk_time_interval => INTERVAL '1 day', create_default_indexes => false);
    END IF;
END
$$;
"""


def upgrade() -> None:
    op.execute(SCHEMA)
    op.execute(TIMESCALE)
    op.execute(INDEXES)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS measurement_samples CASCADE")
