"""The ingestor's start (착공) over MQTT: one database round trip for the common start (issue 18.3).

The common start (a valid request for a route step other than PROC-004/-007, a LOT in production whose previous
process is completed, an active worker, no run of the process yet, a new message id) is decided and written by
`mes_start_processes` (migration 0015) in one statement, called by adapters/start_fast.py, together with the
starts that arrived meanwhile (services/start_queue.py). What it checks comes from the domain: the route step and
its predecessor (resolve_step, previous_step), the statuses a start may begin from (ACTIVE_STATUSES) and the status
change a start makes (status_after_start); tests/test_start_function_rules.py runs every rule case both ways. A
redelivered accepted start gets its stored answer, as the locked path gives it.

Whatever the function does not settle (any refusal, a stored refusal, a racing start, PROC-004/-007, a database
without the function, any database error) goes to handlers.handle_start's locked path, which decides again from
the locked state and stores every refusal with its rich body: exactly-once stays that path's (a run and its stored
answer are written by one statement here, or not at all).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import psycopg
from pydantic import AwareDatetime, TypeAdapter

from cloud_api.adapters import start_fast
from cloud_api.adapters.database import Database
from cloud_api.audit.trail import current_request_id, station_actor
from cloud_api.domain.errors import DomainError
from cloud_api.domain.sequencing import resolve_step
from cloud_api.services.handlers import handle_start, parse_start_request
from cloud_api.services.ports import NO_HOOKS, Answer, CommitHooks
from cloud_api.services.start_queue import queue_of
from cloud_api.services.station_access import all_allowed
from mes_contracts.envelope import Outcome
from mes_contracts.errors import success_message
from mes_contracts.numbering import work_order_prefix
from mes_contracts.route import FIRMWARE_PROCESS_ID, SERIAL_PROCESS_ID, previous_step
from mes_contracts.start import StartRequest

log = logging.getLogger(__name__)

# PROC-004 answers with the active firmware, PROC-007 issues serials: both are the locked path's.
NOT_IN_ONE_ROUND_TRIP = frozenset({FIRMWARE_PROCESS_ID, SERIAL_PROCESS_ID})
CHANGE_FROM, CHANGE_TO = start_fast.CHANGE_FROM, start_fast.CHANGE_TO  # the domain's status change of a start
_MESSAGES = {lang: success_message("process_started", lang) for lang in ("ko", "en")}
# The start time in the answer exactly as the StartData model writes it (pydantic's JSON, not isoformat()).
_TIME_JSON = TypeAdapter(AwareDatetime)
# After UndefinedFunction (a database not yet at migration 0015), the locked path answers for this long.
MISSING_FUNCTION_RETRY_S = 30.0
_missing_until = 0.0


async def handle_station_start(
    db: Database,
    conns: start_fast.FastStartConnections,
    raw: dict[str, Any],
    source: str,
    message_id: uuid.UUID,
    lang: str,
    hooks: CommitHooks = NO_HOOKS,
) -> Answer:
    """A station's start request: one round trip, else handle_start's locked path (its answers and refusals)."""
    # all_allowed reads the cached station table and writes nothing: a refusal is stored and audited by
    # handle_start, once.
    if time.monotonic() >= _missing_until and await all_allowed(db, [(source, raw)]):
        answer = await _fast(db, conns, raw, source, message_id, lang)
        if answer is not None:
            return answer
    return await handle_start(db, raw, source, message_id, lang, hooks=hooks, one_statement=False)


async def _fast(
    db: Database,
    conns: start_fast.FastStartConnections,
    raw: dict[str, Any],
    source: str,
    message_id: uuid.UUID,
    lang: str,
) -> Answer | None:
    built = start_call(db, raw, source, message_id, lang)
    if built is None:
        return None
    call, body = built
    try:
        result = await queue_of(conns).submit(call)
    except psycopg.errors.UndefinedFunction:
        _function_missing()
        return None
    except (psycopg.Error, InterruptedError) as error:
        # A racing start, a reused message id (IntegrityError), a database gone away, or the call carrying this
        # start cancelled (start_queue.py): the locked path answers it (and raises SQLAlchemy's transient errors,
        # which the ingestor's retry loop knows).
        log.debug("start %s handed to the locked path: %s", message_id, type(error).__name__)
        return None
    except Exception:  # never seen; the locked path still answers the start
        log.exception("start %s: the one-round-trip call failed; handed to the locked path", message_id)
        return None
    if result.outcome == "accepted":
        body["data"]["work_order_id"] = result.work_order_id
        return Answer(Outcome.ACCEPTED, 200, body)
    if result.outcome == "duplicate" and result.body is not None and result.http_status is not None:
        return Answer(Outcome.DUPLICATE, result.http_status, result.body)
    log.debug("start %s handed to the locked path: %s", message_id, result.fallback_reason)
    return None


def start_call(
    db: Database, raw: dict[str, Any], source: str, message_id: uuid.UUID, lang: str
) -> tuple[start_fast.StartCall, dict[str, Any]] | None:
    """mes_start_processes's input for a start request, and the answer's body (its work_order_id still "").
    None when the request is not a common start (malformed, an unknown process or a wrong name, PROC-004/-007):
    the locked path refuses or carries it out."""
    try:
        request = parse_start_request(raw)
        step = resolve_step(request.process_id, request.process_name, request.lot_number, lang)
    except DomainError:
        return None
    if step.process_id in NOT_IN_ONE_ROUND_TRIP:
        return None
    previous = previous_step(step.process_id)
    work_day = db.local(request.start_time).date()
    body = answer_body(request, step.process_id, step.sequence, lang)
    start_time = request.start_time.isoformat()
    audit, change_audit = audit_rows(request, step.process_id, source, message_id, start_time)
    call: start_fast.StartCall = {
        "n": 0,
        "message_id": str(message_id),
        "source": source,
        "lot_number": request.lot_number,
        "process_id": step.process_id,
        "sequence": step.sequence,
        "previous_process_id": previous.process_id if previous else None,
        "worker_id": request.worker_id,
        "start_time": start_time,
        "work_day": work_day.isoformat(),
        "prefix": work_order_prefix(work_day),
        "change_reason": f"{step.process_id} start",
        "body": body,
        "audit": audit,
        "change_audit": change_audit,
    }
    return call, body


def answer_body(request: StartRequest, process_id: str, sequence: int, lang: str) -> dict[str, Any]:
    """success_body(…, StartData(…)).to_json_dict() of a start without firmware or serials, without the two pydantic
    models (tests/test_start_function_answers.py compares the two); work_order_id is set once it is known."""
    return {
        "status": "success",
        "message": _MESSAGES["en" if lang == "en" else "ko"],
        "data": {
            "lot_number": request.lot_number,
            "process_id": process_id,
            "process_name": request.process_name,
            "worker_id": request.worker_id,
            "start_time": _TIME_JSON.dump_python(request.start_time, mode="json"),
            "work_order_id": "",
            "sequence_number": sequence,
        },
    }


def audit_rows(
    request: StartRequest, process_id: str, source: str, message_id: uuid.UUID, start_time: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The audit rows of process_start._audit_entries as audit.trail.rows_json writes them (the same columns and
    values; tests/test_start_function_answers.py compares them): process.start, and lot.status for a LOT the start
    moves."""
    who = station_actor(request.worker_id, source)
    request_id = current_request_id() or str(message_id)
    start = {
        "n": 0,
        "actor": who,
        "action": "process.start",
        "entity": "process_run",
        "entity_key": f"{request.lot_number}/{process_id}",
        "old_value": None,
        "new_value": {
            "work_order_id": "",
            "lot_number": request.lot_number,
            "process_id": process_id,
            "worker_id": request.worker_id,
            "start_time": start_time,  # the request's, as audit.trail._default writes a datetime (isoformat)
            "source": source,
        },
        "reason": None,
        "request_id": request_id,
    }
    change = {
        "n": 1,
        "actor": who,
        "action": "lot.status",
        "entity": "lot",
        "entity_key": request.lot_number,
        "old_value": {"status": CHANGE_FROM},
        "new_value": {"status": CHANGE_TO},
        "reason": f"{process_id} start",
        "request_id": request_id,
    }
    return [start], [change]


def _function_missing() -> None:
    global _missing_until
    _missing_until = time.monotonic() + MISSING_FUNCTION_RETRY_S
    log.warning(
        "mes_start_processes is missing (database before migration 0015: run `mes db upgrade`); starts take the "
        "locked path for %.0f s",
        MISSING_FUNCTION_RETRY_S,
    )
