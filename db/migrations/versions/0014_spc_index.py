"""SPC over 90 days on plain PostgreSQL: a covering index for the chart's value query (issue 14 point 6).

A 90-day I chart reads ~45,000 values of one characteristic. With (process_id, characteristic, test_point_id,
time DESC) every value costs a heap page (the characteristic's rows are spread among all the others: 45,800
buffers for 45,000 values, random reads when cold). The covering index holds what the chart reads (value, LOT,
serial, spec limits) in the order it reads them (time, result_id), so the query is an index-only scan of ~600
pages with no sort. It replaces `measurements_characteristic_idx`: the same leading columns, so every query that
used that index (trend, alert watch, reporting) is served by this one (backwards where it wants newest first).
Cost: ~35 bytes more per measurement row than the index it replaces (the INCLUDE columns).

TimescaleDB keeps its indexes: compressed chunks are read by their segments (segmentby process_id,
characteristic, test_point_id in 0010) and the uncompressed newest chunks are small.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

IS_TIMESCALE = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
CREATE = (
    "CREATE INDEX measurements_spc_idx ON measurements (process_id, characteristic, test_point_id, time, result_id) "
    "INCLUDE (value, lot_id, serial_id, lower_limit, upper_limit)"
)
OLD = (
    "CREATE INDEX measurements_characteristic_idx ON measurements "
    "(process_id, characteristic, test_point_id, time DESC)"
)


def upgrade() -> None:
    if op.get_bind().exec_driver_sql(IS_TIMESCALE).scalar():
        return
    op.execute(CREATE)
    op.execute("DROP INDEX measurements_characteristic_idx")


def downgrade() -> None:
    if op.get_bind().exec_driver_sql(IS_TIMESCALE).scalar():
        return
    op.execute(OLD)
    op.execute("DROP INDEX measurements_spc_idx")
