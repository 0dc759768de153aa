"""A leaner completion store: one foreign-key check per process result instead of three
(issue 18 point 3: ≤ 0.1 ms of PostgreSQL CPU per completion; the breakdown is in bench/README.md, "Lean store").

The audit chain's trigger (0004) is left as it is. Carrying the chain's tip from row to row in a transaction-local
setting saved ~1.5 µs per audit row, but the application role can write that setting itself, and a forged tip
would let a row skip the chain lock: a small gain is not worth a chain that the application could fork.

process_results had three foreign keys checked per row (run, LOT, process step). One composite key on (run_id, lot_id,
process_id) → process_runs (id, lot_id, process_id) replaces them: the run exists as before, and its own keys
(lot_id → lots, process_id → process_steps) give the LOT and the step; it also refuses a result whose LOT or process
is not its run's, which the three did not. It needs a unique index on process_runs (id, lot_id, process_id) (never
updated: runs keep HOT updates). Locks: ACCESS EXCLUSIVE on lots, process_runs, process_results and process_steps,
taken first and in the writers' order, for the index build on process_runs and the key swap (readers and writers of
those tables wait that long); the existing rows are then validated after the commit, with readers and writers going
on.

Plain PostgreSQL ≥ 14 and TimescaleDB alike (neither table is a hypertable). The downgrade restores the
three keys.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

RUN_KEY = "process_results_run_fkey"
OLD_KEYS = {
    "process_results_run_id_fkey": "FOREIGN KEY (run_id) REFERENCES process_runs(id)",
    "process_results_lot_id_fkey": "FOREIGN KEY (lot_id) REFERENCES lots(id)",
    "process_results_process_id_fkey": "FOREIGN KEY (process_id) REFERENCES process_steps(process_id)",
}


# Every table whose lock the new and the dropped keys need (dropping a foreign key takes ACCESS EXCLUSIVE on both of
# its tables), in the order the writers take theirs (a LOT first, then its runs, then their results): waiting for
# one, this migration holds none that a writer waits for, so it cannot deadlock with the ingestor or the API.
LOCK_ALL = "LOCK TABLE lots, process_runs, process_results, process_steps IN ACCESS EXCLUSIVE MODE"


def upgrade() -> None:
    # Idempotent: after a failed validation (below, committed before it) the migration runs again from here.
    op.execute(LOCK_ALL)
    op.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS process_runs_id_lot_process_uq ON process_runs (id, lot_id, process_id)"
    )
    op.execute(
        f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = '{RUN_KEY}') THEN
            ALTER TABLE process_results ADD CONSTRAINT {RUN_KEY} FOREIGN KEY (run_id, lot_id, process_id)
                REFERENCES process_runs (id, lot_id, process_id) NOT VALID;
        END IF;
        END $$"""
    )
    for name in OLD_KEYS:
        op.execute(f"ALTER TABLE process_results DROP CONSTRAINT IF EXISTS {name}")
    # Checked over the existing rows after the commit: SHARE UPDATE EXCLUSIVE, so readers and writers go on (the
    # key holds for new rows from the commit on; the old rows' run, LOT and step were checked by the old keys).
    with op.get_context().autocommit_block():
        op.execute(f"ALTER TABLE process_results VALIDATE CONSTRAINT {RUN_KEY}")


def downgrade() -> None:
    op.execute(LOCK_ALL)
    for name, definition in OLD_KEYS.items():
        op.execute(f"ALTER TABLE process_results ADD CONSTRAINT {name} {definition}")
    op.execute(f"ALTER TABLE process_results DROP CONSTRAINT {RUN_KEY}")
    op.execute("DROP INDEX process_runs_id_lot_process_uq")
