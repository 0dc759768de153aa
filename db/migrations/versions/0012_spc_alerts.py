"""SPC baselines (versioned) and alerts (issue 14).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# spc_baselines: append-only; a new version of a chart's limits is a new row (who, when, why, which period). The
# limits are kept as the two numbers every chart is drawn from (mu, sigma), frozen when the baseline is set.
# alerts: one row per broken rule per point (dedupe_key), written only by the ingestor's alert watch; the API
# updates only the acknowledgement columns. alert_cursor: how far the watch has read process_results, moved in
# the transaction that stores the alerts (a restart neither misses nor repeats a point).
SCHEMA = """
CREATE TABLE spc_baselines (
    id bigserial PRIMARY KEY,
    process_id varchar(20) NOT NULL REFERENCES process_steps(process_id),
    characteristic varchar(50) NOT NULL,
    test_point_id varchar(50) NOT NULL DEFAULT '',
    chart varchar(10) NOT NULL CHECK (chart IN ('imr', 'xbar_r', 'xbar_s')),
    subgroup varchar(10) NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    period_from timestamptz NOT NULL,
    period_to timestamptz NOT NULL CHECK (period_to > period_from),
    mu double precision NOT NULL,
    sigma double precision NOT NULL CHECK (sigma >= 0),
    points integer NOT NULL,
    values_count integer NOT NULL,
    reason varchar(500) NOT NULL,
    created_by varchar(100) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (process_id, characteristic, test_point_id, chart, subgroup, version)
);
CREATE TABLE alerts (
    id bigserial PRIMARY KEY,
    dedupe_key varchar(300) NOT NULL UNIQUE,
    kind varchar(20) NOT NULL CHECK (kind IN ('nelson', 'cpk_low')),
    rule smallint CHECK (rule BETWEEN 1 AND 8),
    process_id varchar(20) NOT NULL,
    characteristic varchar(50) NOT NULL,
    test_point_id varchar(50),
    result_id bigint NOT NULL,
    lot_id bigint,
    serial_id bigint,
    station varchar(255),
    value double precision,
    cpk double precision,
    threshold double precision,
    baseline_id bigint REFERENCES spc_baselines(id),
    point_time timestamptz NOT NULL,
    raised_at timestamptz NOT NULL DEFAULT now(),
    status varchar(20) NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged')),
    acknowledged_by varchar(100),
    acknowledged_at timestamptz,
    ack_note varchar(500),
    published_at timestamptz
);
CREATE INDEX alerts_raised_idx ON alerts (raised_at DESC);
CREATE INDEX alerts_open_idx ON alerts (process_id, characteristic) WHERE status = 'open';
CREATE INDEX alerts_unpublished_idx ON alerts (id) WHERE published_at IS NULL;
CREATE TABLE alert_cursor (
    name varchar(50) PRIMARY KEY,
    last_result_id bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    for table in ("alert_cursor", "alerts", "spc_baselines"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
