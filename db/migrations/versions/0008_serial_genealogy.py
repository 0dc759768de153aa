"""Serial genealogy: serial status history and unit-level links (issue 13).

`serials.status` moves CREATED → IN_PROGRESS → PASSED | FAILED from completion results (rules in
cloud_api/domain/genealogy.py; the writer is adapters/completion_store.py); every change is a row of
`serial_status_history`. Indexes for the trace and recall reads. Existing serials are brought up to date from
the results already stored (LOT-level PROC-007 / PROC-008 results), with a history row naming this migration.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE serial_status_history (
    id bigserial PRIMARY KEY,
    serial_id bigint NOT NULL REFERENCES serials(id),
    from_status varchar(20) NOT NULL,
    to_status varchar(20) NOT NULL CHECK (to_status IN ('CREATED', 'IN_PROGRESS', 'PASSED', 'FAILED')),
    changed_at timestamptz NOT NULL DEFAULT now(),
    process_id varchar(20),
    cause varchar(100) NOT NULL,
    result_id bigint REFERENCES process_results(id),
    message_id uuid
);
CREATE INDEX serial_status_history_serial_idx ON serial_status_history (serial_id, changed_at);
-- Unit-level results and values of a serial (trace by serial); recall by a component lot of any kind
-- (component_lots_lookup_idx leads with the kind).
CREATE INDEX process_results_serial_idx ON process_results (serial_id) WHERE serial_id IS NOT NULL;
CREATE INDEX measurements_serial_idx ON measurements (serial_id) WHERE serial_id IS NOT NULL;
CREATE INDEX component_lots_component_lot_idx ON component_lots (component_lot);
"""

# Serials stored before this migration: the LOT-level results already say how far their LOT got.
BACKFILL = """
WITH latest AS (
    SELECT DISTINCT ON (lot_id, process_id) lot_id, process_id, result, id
    FROM process_results WHERE process_id IN ('PROC-007', 'PROC-008') AND serial_id IS NULL
    ORDER BY lot_id, process_id, complete_time DESC, id DESC
), target AS (
    SELECT s.id, s.status AS old,
           CASE WHEN p8.result = 'PASS' THEN 'PASSED' ELSE 'IN_PROGRESS' END AS new,
           COALESCE(p8.id, p7.id) AS result_id,
           CASE WHEN p8.result = 'PASS' THEN 'PROC-008' ELSE 'PROC-007' END AS process_id
    FROM serials s
    LEFT JOIN latest p7 ON p7.lot_id = s.lot_id AND p7.process_id = 'PROC-007'
    LEFT JOIN latest p8 ON p8.lot_id = s.lot_id AND p8.process_id = 'PROC-008'
    WHERE s.status = 'CREATED' AND (p7.id IS NOT NULL OR p8.result = 'PASS')
), changed AS (
    UPDATE serials s SET status = t.new FROM target t WHERE s.id = t.id RETURNING s.id
)
INSERT INTO serial_status_history (serial_id, from_status, to_status, process_id, cause, result_id)
SELECT t.id, t.old, t.new, t.process_id, 'migration 0008', t.result_id FROM target t JOIN changed c ON c.id = t.id;
"""


def upgrade() -> None:
    op.execute(SCHEMA)
    op.execute(BACKFILL)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS component_lots_component_lot_idx")
    op.execute("DROP INDEX IF EXISTS measurements_serial_idx")
    op.execute("DROP INDEX IF EXISTS process_results_serial_idx")
    op.execute("DROP TABLE IF EXISTS serial_status_history")
