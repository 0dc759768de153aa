"""The common start (착공) decided and written in one round trip: `mes_start_processes` (issue 18 point 3).

Called by the ingestor's MQTT start (cloud_api/adapters/start_fast.py) with one start, or with the starts that
arrived while the previous call was in flight (services/start_fast.py): one statement, its own transaction, one
commit (one WAL flush while the audit chain's lock is held) for all of them. For each start, in the given order:

1. The message id: an answer stored already for an accepted start is returned as the duplicate answer (what
   services/handlers._as_duplicate gives); any other stored answer (a refusal, a batch's pending claim), or a
   message id met earlier in the same call, is `fallback`.
2. The start rules that need the database, on LOT rows locked first (all of the call's LOTs, in id order as the
   completion batch locks them) and read afresh by later statements (READ COMMITTED: a run committed while we
   waited for a lock counts): the LOT exists and its status (after this call's earlier starts) is one of
   `p_active_statuses`, the worker is an active operator, the LOT has no run of the process (nor one started by
   this call), and the previous process (none for the first) has a COMPLETED run. Whatever breaks one of them is
   `fallback`, with the rule's name: the locked path (services/process_start.start_process) then decides again
   and builds the refusal's rich body. The inputs that decide the rest come from the domain (cloud_api/domain/:
   the step, its predecessor, the active statuses and the status change of a start), and
   tests/test_start_function_rules.py runs every rule case both ways.
3. The writes of start_sql's one-statement start, in the same order of locks: the day's work-order counter, the
   run, the LOT's status change and its history when the LOT's status is `p_change_from`, the stored answer (the
   start's `body` with the new work-order id); the audit rows of every start of the call last, in one insert
   (it takes the chain lock, held until commit). The NOTIFY triggers of 0011 fire per start as for the statement
   this replaces (one run INSERT, one LOT UPDATE).

A racing run or answer (a unique key) or a deadlock raises for the whole call; the caller then sends its starts
one by one and falls back for the one that still fails. SECURITY INVOKER: it runs with the caller's rights on
the tables, which the application role has already. Plain PostgreSQL ≥ 14 and TimescaleDB alike (no hypertable
is written).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

SIGNATURE = "mes_start_processes(jsonb, text, text[], text, text)"

FUNCTION = """
CREATE FUNCTION mes_start_processes(
    -- [{"n", "message_id", "source", "lot_number", "process_id", "sequence", "previous_process_id", "worker_id",
    --   "start_time", "work_day", "prefix", "change_reason", "body", "audit", "change_audit"}, ...]: "body" the
    -- answer to store (data.work_order_id set here), "audit" rows as cloud_api/audit/sql.py's insert reads them,
    -- always written, "change_audit" rows written only when the start changes the LOT's status
    p_starts jsonb,
    p_message_type text,
    p_active_statuses text[],
    p_change_from text,
    p_change_to text
)
RETURNS TABLE (
    start_n integer,
    answer_outcome text,
    answer_status integer,
    answer_work_order text,
    answer_body jsonb,
    fallback_reason text
)
LANGUAGE plpgsql
SET search_path = public, pg_catalog, pg_temp
AS $fn$
DECLARE
    s record;
    l record;
    v_lots jsonb := '{}';  -- lot_number -> [id, status] of the call's LOTs, locked; status as this call left it
    v_lot bigint;
    v_status text;
    v_taken text[] := '{}';  -- message ids and "lot id/process id" of the call's starts so far
    v_counter integer;
    v_changed boolean;
    v_audit jsonb := '[]';
BEGIN
    FOR l IN SELECT x.id, x.lot_number, x.status FROM lots x
            WHERE x.lot_number = ANY (ARRAY(SELECT e->>'lot_number' FROM jsonb_array_elements(p_starts) e))
            ORDER BY x.id FOR UPDATE OF x LOOP
        v_lots := v_lots || jsonb_build_object(l.lot_number, jsonb_build_array(l.id, l.status));
    END LOOP;

    FOR s IN SELECT * FROM jsonb_to_recordset(p_starts) AS x(n integer, message_id uuid, source text,
            lot_number text, process_id text, sequence integer, previous_process_id text, worker_id text,
            start_time timestamptz, work_day date, prefix text, change_reason text, body jsonb, audit jsonb,
            change_audit jsonb) ORDER BY x.n LOOP
        start_n := s.n;
        answer_outcome := 'fallback';
        answer_status := NULL;
        answer_work_order := NULL;
        answer_body := NULL;
        fallback_reason := NULL;
        SELECT m.outcome, m.http_status, m.response INTO answer_outcome, answer_status, answer_body
            FROM processed_messages m WHERE m.message_id = s.message_id;
        IF FOUND THEN
            IF answer_outcome IN ('accepted', 'duplicate') THEN
                answer_outcome := 'duplicate';
            ELSE
                SELECT 'fallback', NULL, NULL, 'answered'
                    INTO answer_outcome, answer_status, answer_body, fallback_reason;
            END IF;
            RETURN NEXT;
            CONTINUE;
        END IF;
        answer_outcome := 'fallback';
        v_lot := (v_lots -> s.lot_number ->> 0)::bigint;
        v_status := v_lots -> s.lot_number ->> 1;
        IF s.message_id::text = ANY (v_taken) THEN
            fallback_reason := 'answered';
        ELSIF v_lot IS NULL THEN
            fallback_reason := 'lot_not_found';
        ELSIF NOT v_status = ANY (p_active_statuses) THEN
            fallback_reason := 'lot_status';
        ELSIF NOT EXISTS (SELECT 1 FROM workers w WHERE w.worker_id = s.worker_id AND w.active) THEN
            fallback_reason := 'worker';
        ELSIF v_lot || '/' || s.process_id = ANY (v_taken) OR EXISTS (
            SELECT 1 FROM process_runs r
            WHERE r.lot_id = v_lot AND r.process_id = s.process_id AND r.serial_id IS NULL
        ) THEN
            fallback_reason := 'duplicate_start';
        ELSIF s.previous_process_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM process_runs r
            WHERE r.lot_id = v_lot AND r.process_id = s.previous_process_id AND r.serial_id IS NULL
                AND r.status = 'COMPLETED'
        ) THEN
            fallback_reason := 'previous_not_completed';
        END IF;
        IF fallback_reason IS NOT NULL THEN
            RETURN NEXT;
            CONTINUE;
        END IF;

        INSERT INTO work_order_sequences AS q (work_day, last_value) VALUES (s.work_day, 1)
            ON CONFLICT (work_day) DO UPDATE SET last_value = q.last_value + 1
            RETURNING q.last_value INTO v_counter;
        -- Padded as mes_contracts.numbering.format_work_order_id pads it (>= 3 digits), as start_sql does.
        answer_work_order := s.prefix || lpad(v_counter::text, GREATEST(3, length(v_counter::text)), '0');
        INSERT INTO process_runs (lot_id, process_id, work_order_id, sequence_number, status, start_time,
                start_worker_id, start_message_id, start_source)
            VALUES (v_lot, s.process_id, answer_work_order, s.sequence, 'STARTED', s.start_time, s.worker_id,
                s.message_id, s.source);
        v_changed := v_status = p_change_from;
        IF v_changed THEN
            UPDATE lots SET status = p_change_to, updated_at = now() WHERE id = v_lot;
            INSERT INTO lot_status_history (lot_id, from_status, to_status, actor, reason, message_id)
                VALUES (v_lot, v_status, p_change_to, s.worker_id, s.change_reason, s.message_id);
            v_lots := v_lots || jsonb_build_object(s.lot_number, jsonb_build_array(v_lot, p_change_to));
        END IF;
        INSERT INTO processed_messages (message_id, message_type, source_station, outcome, http_status, response)
            VALUES (s.message_id, p_message_type, s.source, 'accepted', 200,
                jsonb_set(s.body, '{data,work_order_id}', to_jsonb(answer_work_order)));
        -- The audit rows wait for the end (one insert, the chain lock taken last), with the new work order.
        v_audit := v_audit || (
            SELECT COALESCE(jsonb_agg(CASE WHEN a ? 'new_value' AND (a->'new_value') ? 'work_order_id'
                THEN jsonb_set(a, '{new_value,work_order_id}', to_jsonb(answer_work_order)) ELSE a END
                ORDER BY (a->>'n')::integer), '[]')
            FROM jsonb_array_elements(CASE WHEN v_changed THEN s.audit || s.change_audit ELSE s.audit END) a
        );
        v_taken := v_taken || s.message_id::text || (v_lot || '/' || s.process_id);
        answer_outcome := 'accepted';
        answer_status := 200;
        RETURN NEXT;
    END LOOP;

    INSERT INTO audit_log (actor, action, entity, entity_key, old_value, new_value, reason, request_id)
        SELECT x.actor, x.action, x.entity, x.entity_key, x.old_value, x.new_value, x.reason, x.request_id
        FROM jsonb_array_elements(v_audit) WITH ORDINALITY AS e(row, position),
            jsonb_to_record(e.row) AS x(actor text, action text, entity text, entity_key text, old_value jsonb,
                new_value jsonb, reason text, request_id text)
        ORDER BY e.position;
END
$fn$;
"""


def upgrade() -> None:
    op.execute(FUNCTION)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
