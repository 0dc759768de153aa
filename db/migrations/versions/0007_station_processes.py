"""Station ↔ process permissions: which processes a station may start and complete over MQTT.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Keyed by the station's full address (site, line, station), as in its MQTT topic and broker account: two lines
# may both have an 'st01'. Seeded with the conventional line KR/L1 (stNN runs PROC-0NN, as `mes up` and the
# tests' line use it); `mes station allow/revoke` manages the rest.
SCHEMA = """
CREATE TABLE station_processes (
    site varchar(64) NOT NULL,
    line varchar(64) NOT NULL,
    station varchar(64) NOT NULL,
    process_id varchar(20) NOT NULL REFERENCES process_steps(process_id),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by varchar(100) NOT NULL DEFAULT 'migration',
    PRIMARY KEY (site, line, station, process_id)
);
INSERT INTO station_processes (site, line, station, process_id)
SELECT 'KR', 'L1', 'st' || lpad(sequence::text, 2, '0'), process_id FROM process_steps
ON CONFLICT DO NOTHING;
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS station_processes")
