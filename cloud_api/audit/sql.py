"""The audit_log insert from a JSON array of rows: one statement for any number of rows, in the given order."""

from __future__ import annotations

# The BEFORE INSERT trigger of migration 0004 assigns id, time and the chain hashes: these columns are all a
# caller can set. ORDER BY n keeps the chain in the caller's order.
AUDIT_COLUMNS = "actor, action, entity, entity_key, old_value, new_value, reason, request_id"


def insert_from_json(param: str) -> str:
    """INSERT … SELECT from the jsonb array bound to `:param` (usable alone or as a data-modifying CTE)."""
    return (
        f"INSERT INTO audit_log ({AUDIT_COLUMNS}) SELECT {AUDIT_COLUMNS} "
        f"FROM jsonb_to_recordset(CAST(:{param} AS jsonb)) AS x(n integer, actor text, action text, entity text, "
        "entity_key text, old_value jsonb, new_value jsonb, reason text, request_id text) ORDER BY n"
    )
