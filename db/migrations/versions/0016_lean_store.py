"""A leaner completion store: the audit chain's tip carried within a transaction, one foreign-key check per result
(issue 18 point 3: ≤ 0.1 ms of PostgreSQL CPU per completion; the breakdown is in bench/README.md, "Lean store").

1. `audit_log_chain()` (migration 0004) looked up the chain's last row (`ORDER BY id DESC LIMIT 1`) for every
   row. The first audit row of a transaction still does (after taking the chain lock, held until commit); every
   later row of the same transaction takes its predecessor's hash from a transaction-local setting that the
   trigger itself sets (`set_config(..., true)`), keyed by the transaction id. The setting lives exactly as long
   as the lock that makes it true: a ROLLBACK TO SAVEPOINT reverts both (the lock taken in an aborted
   subtransaction is released and the setting set there goes back to its value before it), a RELEASE keeps both,
   and both end with the transaction. A value the trigger did not set for this transaction (a session-level SET,
   another transaction's value) does not match the transaction id and is ignored: the row looks the tip up as
   before. Ids, times and hashes are computed as before, so `mes audit verify` reads the same chain. What a
   caller that sets the setting itself in its own transaction can do is write rows whose prev_hash links to
   nothing: `mes audit verify` reports that row as a break, as it reports any other.
2. process_results had three foreign keys checked per row (run, LOT, process step). One composite key on
   (run_id, lot_id, process_id) → process_runs (id, lot_id, process_id) replaces them: the run exists as before,
   and its own keys (lot_id → lots, process_id → process_steps) give the LOT and the step; it also refuses a
   result whose LOT or process is not its run's, which the three did not. It needs a unique index on
   process_runs (id, lot_id, process_id) (never updated: runs keep HOT updates). Locks: ACCESS EXCLUSIVE on lots,
   process_runs, process_results and process_steps, taken first and in the writers' order, for the index build on
   process_runs and the key swap (readers and writers of those tables wait that long); the existing rows are then
   validated after the commit, with readers and writers going on.

Plain PostgreSQL ≥ 14 and TimescaleDB alike (neither table is a hypertable). The downgrade restores 0004's trigger
function and the three keys.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

CHAIN_LOCK = 5567948054382004564  # migration 0004's int.from_bytes(b"MESAUDIT", "big")
GENESIS = "0" * 64
TIP_SETTING = "mes.audit_chain_tip"  # "<top-level xid>:<row_hash>" of this transaction's last audit row

# The one-row check and the hash are 0004's; only where the previous hash comes from differs.
LEAN_CHAIN = f"""
CREATE OR REPLACE FUNCTION audit_log_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    xid text := pg_current_xact_id()::text;
    tip text := current_setting('{TIP_SETTING}', true);
    last_hash char(64);
BEGIN
    IF tip IS NOT NULL AND starts_with(tip, xid || ':') THEN
        -- Set by this trigger in this transaction, in a (sub)transaction still alive: the chain lock is held.
        last_hash := substr(tip, length(xid) + 2);
    ELSE
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            -- An older snapshot would not see the latest committed row and would fork the chain.
            RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
                MESSAGE = 'audit_log rows are appended in READ COMMITTED transactions only';
        END IF;
        PERFORM pg_advisory_xact_lock({CHAIN_LOCK});
        SELECT a.row_hash INTO last_hash FROM public.audit_log a ORDER BY a.id DESC LIMIT 1;
    END IF;
    NEW.id := nextval('public.audit_log_id_seq');
    NEW.occurred_at := clock_timestamp();
    NEW.prev_hash := COALESCE(last_hash, '{GENESIS}');
    NEW.row_hash := public.audit_row_hash(NEW);
    PERFORM set_config('{TIP_SETTING}', xid || ':' || NEW.row_hash, true);
    RETURN NEW;
END
$fn$;
"""

# Migration 0004's function, as it was.
CHAIN_0004 = f"""
CREATE OR REPLACE FUNCTION audit_log_chain() RETURNS trigger
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
"""

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
    op.execute(LEAN_CHAIN)
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
    op.execute(CHAIN_0004)
