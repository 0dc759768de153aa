"""Live view: NOTIFY triggers that drive /api/v1/events (issue 13).

One NOTIFY per statement and table on the channel `mes_events` (never one per row: these tables are on the write
hot path, and a batch of 200 completions is one statement). NOTIFY is delivered at commit, so a listener hears of
a change exactly when it becomes visible; a rolled-back statement sends nothing. The payload is JSON
`{"kind": "lot"|"run"|"result"|"serial", "op": "INSERT"|"UPDATE", "items": [...]}` with LOT numbers, process ids
and states; with more than 60 distinct items (NOTIFY refuses 8000 bytes) it becomes `{"kind", "op", "truncated":
true, "count"}` (clients then reload everything). Other writers may send their own kinds (H6: "alert") on the
same channel.

Also a partial index for the dashboard's "in progress" count (runs still STARTED): without it that count scans
every run ever made.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

MAX_ITEMS = 60  # ~70 bytes an item: well under NOTIFY's 8000-byte limit; more says "truncated" instead

# (table, function, kind, the items as rows over the transition table `changed`: deduplicated before the join to
# lots, and at most MAX_ITEMS + 1 of them, so a batch of 200 completions costs a few index lookups, not 200)
SOURCES = [
    ("lots", "mes_events_lots", "lot", "SELECT c.lot_number AS lot, c.status FROM changed c"),
    (
        "process_runs",
        "mes_events_runs",
        "run",
        "SELECT l.lot_number AS lot, d.process_id, d.status "
        "FROM (SELECT DISTINCT lot_id, process_id, status FROM changed) d JOIN lots l ON l.id = d.lot_id",
    ),
    (
        "process_results",
        "mes_events_results",
        "result",
        "SELECT l.lot_number AS lot, d.process_id, d.result "
        "FROM (SELECT DISTINCT lot_id, process_id, result FROM changed) d JOIN lots l ON l.id = d.lot_id",
    ),
    (
        "serials",
        "mes_events_serials",
        "serial",
        "SELECT l.lot_number AS lot, d.n AS serials "
        "FROM (SELECT lot_id, count(*) AS n FROM changed GROUP BY lot_id) d JOIN lots l ON l.id = d.lot_id",
    ),
]

SEND = f"""
CREATE FUNCTION mes_events_send(kind text, op text, items jsonb, n bigint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF jsonb_array_length(items) > {MAX_ITEMS} THEN
        PERFORM pg_notify('mes_events',
            jsonb_build_object('kind', kind, 'op', op, 'truncated', true, 'count', n)::text);
    ELSE
        PERFORM pg_notify('mes_events', jsonb_build_object('kind', kind, 'op', op, 'items', items)::text);
    END IF;
END
$fn$;
"""


def _function(name: str, kind: str, items_sql: str) -> str:
    return f"""
CREATE FUNCTION {name}() RETURNS trigger
LANGUAGE plpgsql
SET search_path = public, pg_catalog, pg_temp
AS $fn$
DECLARE
    items jsonb;
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM changed;
    IF n = 0 THEN  -- statement triggers fire for statements that changed nothing, too
        RETURN NULL;
    END IF;
    SELECT COALESCE(jsonb_agg(to_jsonb(x)), '[]') INTO items FROM ({items_sql} LIMIT {MAX_ITEMS + 1}) x;
    PERFORM mes_events_send('{kind}', TG_OP, items, n);
    RETURN NULL;
END
$fn$;
"""


def _triggers(table: str, name: str) -> str:
    # Transition tables allow one event per trigger: one for INSERT, one for UPDATE, same function.
    return "".join(
        f"CREATE TRIGGER {name}_{event.lower()} AFTER {event} ON {table} REFERENCING NEW TABLE AS changed "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {name}();\n"
        for event in ("INSERT", "UPDATE")
    )


def upgrade() -> None:
    op.execute(SEND)
    for table, name, kind, items_sql in SOURCES:
        op.execute(_function(name, kind, items_sql))
        op.execute(_triggers(table, name))
    op.execute(
        "CREATE INDEX process_runs_started_idx ON process_runs (process_id, start_time) WHERE status = 'STARTED'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS process_runs_started_idx")
    for table, name, _kind, _sql in SOURCES:
        for event in ("insert", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}_{event} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.execute("DROP FUNCTION IF EXISTS mes_events_send(text, text, jsonb, bigint)")
