"""The ingestor's start (착공) over MQTT: the one-statement start on psycopg's prepared statements (issue 18.3).

The same decision and the same SQL as handlers.handle_start's one-statement path (process_start.plan_for_lot,
adapters/start_sql.py), sent by adapters/start_fast.py without SQLAlchemy. Whatever this path cannot settle alone
(a refusal, a station not configured for the process, a changed LOT, a racing start or a redelivered message,
PROC-004/PROC-007, any database error) goes to handlers.handle_start's locked path, which decides again from the
locked state and stores every refusal: exactly-once stays that path's (a run and its stored answer are written by
one statement here, or not at all).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import psycopg

from cloud_api.adapters import start_fast, start_sql
from cloud_api.adapters.database import Database
from cloud_api.audit.trail import rows_json
from cloud_api.domain.errors import DomainError
from cloud_api.services.handlers import handle_start, parse_start_request
from cloud_api.services.ports import NO_HOOKS, Answer, CommitHooks
from cloud_api.services.process_start import PlannedStart, StartOrigin, plan_for_lot
from cloud_api.services.station_access import all_allowed
from mes_contracts.envelope import MessageType, Outcome
from mes_contracts.errors import success_message
from mes_contracts.start import success_body

log = logging.getLogger(__name__)
_STORED = {
    "message_type": MessageType.PROCESS_START_REQUEST.value,
    "outcome": Outcome.ACCEPTED.value,
    "http_status": 200,
}


async def handle_station_start(
    db: Database,
    conns: start_fast.FastStartConnections,
    raw: dict[str, Any],
    source: str,
    message_id: uuid.UUID,
    lang: str,
    hooks: CommitHooks = NO_HOOKS,
) -> Answer:
    """A station's start request: the fast path, else handle_start's locked path (its answers and refusals)."""
    origin = StartOrigin(source, message_id, lang)
    # all_allowed reads the cached station table and writes nothing: a refusal is stored and audited by
    # handle_start, once.
    if await all_allowed(db, [(source, raw)]):
        answer = await _fast(db, conns, raw, origin)
        if answer is not None:
            return answer
    return await handle_start(db, raw, source, message_id, lang, hooks=hooks, one_statement=False)


async def _fast(
    db: Database, conns: start_fast.FastStartConnections, raw: dict[str, Any], origin: StartOrigin
) -> Answer | None:
    try:
        request = parse_start_request(raw)
    except DomainError:
        return None
    try:
        async with conns.connection() as conn:
            lot = await start_fast.read_lot_for_start(conn, request.lot_number, request.worker_id)
            plan = await plan_for_lot(db, request, origin, lot, firmware=None)
            if plan is None:
                return None
            body = success_body(success_message("process_started", origin.lang), plan.data).to_json_dict()
            written = await start_fast.start_in_one_statement(
                conn, _params(plan, body), plan.transition is not None, answer=True
            )
    except psycopg.Error as error:
        # A racing start, a redelivery (IntegrityError) or a database gone away: the locked path answers it
        # (and raises SQLAlchemy's transient errors, which the ingestor's retry loop knows).
        log.debug("fast start of %s handed to the locked path: %s", origin.message_id, type(error).__name__)
        return None
    if written is None:
        return None  # the LOT changed status, or the worker was disabled, since the read
    body["data"]["work_order_id"] = written[1]
    return Answer(Outcome.ACCEPTED, 200, body)


def _params(plan: PlannedStart, body: dict[str, Any]) -> dict[str, Any]:
    return start_sql.one_statement_params(plan.run, plan.seen_status, plan.transition, rows_json(plan.audit)) | {
        **_STORED,
        "body": json.dumps(body, ensure_ascii=False),
    }
