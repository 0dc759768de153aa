"""The common start (착공) decided and written in one round trip: `mes_start_process` (issue 18 point 3).

Called by the ingestor's MQTT start (cloud_api/adapters/start_fast.py). In one statement, its own transaction:

1. The message id: an answer stored already for an accepted start is returned as the duplicate answer (what
   services/handlers._as_duplicate gives); any other stored answer (a refusal, a batch's pending claim) is
   `fallback`.
2. The LOT row is locked; then, in a fresh snapshot (a new statement under READ COMMITTED, so a run committed
   while we waited for the lock counts), the start rules that need the database: the LOT exists and its status
   is one of `p_active_statuses`, the worker is an active operator, the LOT has no run of the process, and the
   previous process (`p_previous_process_id`, none for the first) has a COMPLETED run. Whatever breaks one of
   them is `fallback`, with the rule's name: the locked path (services/process_start.start_process) then decides
   again and builds the refusal's rich body. The inputs that decide the rest come from the domain (cloud_api/
   domain/: the step, its predecessor, the active statuses and the status change of a start),
   and tests/test_start_function_rules.py runs every rule case both ways.
3. The writes of start_sql's one-statement start, in the same order of locks: the day's work-order counter, the
   run, the LOT's status change and its history when the LOT's status is `p_change_from`, the stored answer
   (the body in `p_writes`, with the new work-order id), then the audit rows last (their insert takes the chain lock, held until
   commit). The NOTIFY triggers of 0011 fire as for the statement they replace (one run INSERT, one LOT UPDATE).

A racing run or answer (a unique key) raises; the caller falls back. SECURITY INVOKER: it runs with the caller's
rights on the tables, which the application role has already. Plain PostgreSQL ≥ 14 and TimescaleDB alike (no
hypertable is written).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

SIGNATURE = (
    "mes_start_process(uuid, text, text, text, integer, text, text, timestamptz, date, text, text, text, text[], "
    "text, text, jsonb)"
)

FUNCTION = """
CREATE FUNCTION mes_start_process(
    p_message_id uuid,
    p_source text,
    p_lot_number text,
    p_process_id text,
    p_sequence integer,
    p_previous_process_id text,
    p_worker_id text,
    p_start_time timestamptz,
    p_work_day date,
    p_prefix text,
    p_change_reason text,
    p_message_type text,
    p_active_statuses text[],
    p_change_from text,
    p_change_to text,
    -- {"body": the stored answer, its data.work_order_id set here; "audit": rows as cloud_api/audit/sql.py's
    -- insert reads them, always written; "change_audit": rows written only when the LOT's status changes}
    p_writes jsonb,
    OUT answer_outcome text,
    OUT answer_status integer,
    OUT answer_work_order text,
    OUT answer_body jsonb,
    OUT fallback_reason text
)
LANGUAGE plpgsql
SET search_path = public, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_lot bigint;
    v_status text;
    v_counter integer;
    v_changed boolean;
BEGIN
    SELECT m.outcome, m.http_status, m.response INTO answer_outcome, answer_status, answer_body
        FROM processed_messages m WHERE m.message_id = p_message_id;
    IF FOUND THEN
        IF answer_outcome IN ('accepted', 'duplicate') THEN
            answer_outcome := 'duplicate';
            RETURN;
        END IF;
        SELECT 'fallback', NULL, NULL, 'answered' INTO answer_outcome, answer_status, answer_body, fallback_reason;
        RETURN;
    END IF;
    answer_outcome := 'fallback';

    SELECT l.id, l.status INTO v_lot, v_status FROM lots l WHERE l.lot_number = p_lot_number FOR UPDATE OF l;
    IF NOT FOUND THEN
        fallback_reason := 'lot_not_found';
        RETURN;
    END IF;
    IF NOT v_status = ANY (p_active_statuses) THEN
        fallback_reason := 'lot_status';
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM workers w WHERE w.worker_id = p_worker_id AND w.active) THEN
        fallback_reason := 'worker';
        RETURN;
    END IF;
    IF EXISTS (
        SELECT 1 FROM process_runs r WHERE r.lot_id = v_lot AND r.process_id = p_process_id AND r.serial_id IS NULL
    ) THEN
        fallback_reason := 'duplicate_start';
        RETURN;
    END IF;
    IF p_previous_process_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM process_runs r
        WHERE r.lot_id = v_lot AND r.process_id = p_previous_process_id AND r.serial_id IS NULL
            AND r.status = 'COMPLETED'
    ) THEN
        fallback_reason := 'previous_not_completed';
        RETURN;
    END IF;

    INSERT INTO work_order_sequences AS s (work_day, last_value) VALUES (p_work_day, 1)
        ON CONFLICT (work_day) DO UPDATE SET last_value = s.last_value + 1
        RETURNING s.last_value INTO v_counter;
    -- Padded as mes_contracts.numbering.format_work_order_id pads it (>= 3 digits), as start_sql does.
    answer_work_order := p_prefix || lpad(v_counter::text, GREATEST(3, length(v_counter::text)), '0');
    INSERT INTO process_runs (lot_id, process_id, work_order_id, sequence_number, status, start_time,
            start_worker_id, start_message_id, start_source)
        VALUES (v_lot, p_process_id, answer_work_order, p_sequence, 'STARTED', p_start_time, p_worker_id,
            p_message_id, p_source);
    v_changed := v_status = p_change_from;
    IF v_changed THEN
        UPDATE lots SET status = p_change_to, updated_at = now() WHERE id = v_lot;
        INSERT INTO lot_status_history (lot_id, from_status, to_status, actor, reason, message_id)
            VALUES (v_lot, v_status, p_change_to, p_worker_id, p_change_reason, p_message_id);
    END IF;
    INSERT INTO processed_messages (message_id, message_type, source_station, outcome, http_status, response)
        VALUES (p_message_id, p_message_type, p_source, 'accepted', 200,
            jsonb_set(p_writes->'body', '{data,work_order_id}', to_jsonb(answer_work_order)));
    -- Last: the audit insert takes the chain lock (migration 0004), held until this statement commits.
    INSERT INTO audit_log (actor, action, entity, entity_key, old_value, new_value, reason, request_id)
        SELECT x.actor, x.action, x.entity, x.entity_key, x.old_value,
            CASE WHEN x.new_value ? 'work_order_id'
                THEN jsonb_set(x.new_value, '{work_order_id}', to_jsonb(answer_work_order))
                ELSE x.new_value END,
            x.reason, x.request_id
        FROM jsonb_to_recordset(
                CASE WHEN v_changed THEN (p_writes->'audit') || (p_writes->'change_audit') ELSE p_writes->'audit' END)
            AS x(n integer, actor text, action text, entity text, entity_key text, old_value jsonb,
                new_value jsonb, reason text, request_id text)
        ORDER BY x.n;
    answer_outcome := 'accepted';
    answer_status := 200;
END
$fn$;
"""


def upgrade() -> None:
    op.execute(FUNCTION)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
