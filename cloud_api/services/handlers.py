"""Transactional entry points shared by the REST routes and the MQTT handler: idempotency + error bodies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters.database import Database
from cloud_api.audit.trail import deferred_audit, record_audit_many, rows_json
from cloud_api.domain.errors import DomainError
from cloud_api.services import idempotency
from cloud_api.services.ports import NO_HOOKS, Answer, CommitHooks
from cloud_api.services.process_complete import CompletionSource, complete_process, parse_completion
from cloud_api.services.process_start import StartOrigin, plan_start, start_process, write_planned_start
from cloud_api.services.station_access import check_station_allowed
from mes_contracts.envelope import MessageType, Outcome
from mes_contracts.errors import ErrorCode, success_message
from mes_contracts.process_data import describe_validation_error
from mes_contracts.start import StartRequest, error_body, success_body


def error_answer(error: DomainError, lang: str) -> Answer:
    body = error_body(error.code.value, error.message(lang), error.data).to_json_dict()
    return Answer(Outcome.REJECTED, error.http_status, body)


def parse_start_request(raw: dict[str, Any]) -> StartRequest:
    try:
        return StartRequest.model_validate(raw)
    except ValidationError as error:
        raise DomainError(ErrorCode.INVALID_REQUEST, {"errors": describe_validation_error(error)}) from error


Work = Callable[[AsyncConnection], Awaitable[Answer]]


class _AnsweredElsewhere(Exception):
    """Another handler stored an answer for this message id first: undo our work, give its answer."""


async def run_once(
    db: Database,
    work: Work,
    message_id: uuid.UUID | None,
    message_type: MessageType,
    source: str,
    lang: str,
    hooks: CommitHooks = NO_HOOKS,
) -> Answer:
    """Run `work` and store its answer in one transaction; a redelivery gets the first answer, never a 2nd row.

    The stored answer is looked up only when the message turns out to be a repeat (the insert of its id
    conflicts, or the work refuses it): a first delivery costs no extra round trip.
    """
    for attempt in (1, 2):
        try:
            return await _attempt(db, work, message_id, message_type, source, hooks)
        except DomainError as error:
            return await _rejected(db, error, message_id, message_type, source, lang)
        except (_AnsweredElsewhere, IntegrityError):
            # Someone committed the same thing first (this id, or a unique key of the work such as the file's
            # hash under another id): the first answer stands, or a fresh attempt sees the row and says so.
            if message_id is not None:
                async with db.transaction() as conn:
                    stored = await idempotency.load(conn, message_id)
                if stored is not None:
                    return _as_duplicate(stored)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _attempt(
    db: Database,
    work: Work,
    message_id: uuid.UUID | None,
    message_type: MessageType,
    source: str,
    hooks: CommitHooks,
) -> Answer:
    async with db.transaction() as conn:
        with deferred_audit() as audit:
            answer = await work(conn)
        if message_id is None:
            await record_audit_many(conn, audit)
        elif not await idempotency.record(
            conn, message_id, message_type, source, answer.outcome, answer.http_status, answer.body, rows_json(audit)
        ):
            raise _AnsweredElsewhere
        await hooks.before_commit(message_type, message_id, answer)  # injected by the ingestor (its crash tests)
        return answer


async def _rejected(
    db: Database,
    error: DomainError,
    message_id: uuid.UUID | None,
    message_type: MessageType,
    source: str,
    lang: str,
) -> Answer:
    answer = error_answer(error, lang)
    if message_id is None:
        return answer
    async with db.transaction() as conn:
        stored = await idempotency.record_rejection(
            conn, message_id, message_type, source, answer.http_status, answer.body
        )
    if stored.body == answer.body and stored.http_status == answer.http_status:
        return answer
    return _as_duplicate(stored)  # a redelivery refused by the state its first delivery created


def _as_duplicate(stored: idempotency.StoredReply) -> Answer:
    outcome = Outcome.DUPLICATE if stored.outcome is not Outcome.REJECTED else Outcome.REJECTED
    return Answer(outcome, stored.http_status, stored.body)


async def handle_start(
    db: Database,
    raw: dict[str, Any],
    source: str,
    message_id: uuid.UUID | None,
    lang: str,
    actor: str | None = None,
    hooks: CommitHooks = NO_HOOKS,
    one_statement: bool = True,
) -> Answer:
    """`actor` is the signed-in user for REST; None at a station (the audit trail then names worker@station).

    An allowed start is written by one statement (process_start.plan_start); everything else, and whatever that
    path cannot settle, goes through run_once and the locked decision. `one_statement=False`: the caller tried
    that already (the ingestor's psycopg path, services/start_fast.py), straight to the locked decision.
    """
    origin = StartOrigin(source, message_id, lang, actor)
    try:  # a station may start only the processes it is configured for (services/station_access.py)
        await check_station_allowed(db, source, raw, message_id, MessageType.PROCESS_START_REQUEST.value)
    except DomainError as refused:
        return await _rejected(db, refused, message_id, MessageType.PROCESS_START_REQUEST, source, lang)
    answer = await _start_in_one_statement(db, raw, origin) if one_statement else None
    if answer is not None:
        return answer

    async def work(conn: AsyncConnection) -> Answer:
        request = parse_start_request(raw)
        data = await start_process(db, conn, request, origin)
        body = success_body(success_message("process_started", lang), data).to_json_dict()
        return Answer(Outcome.ACCEPTED, 200, body)

    return await run_once(db, work, message_id, MessageType.PROCESS_START_REQUEST, source, lang, hooks)


async def _start_in_one_statement(db: Database, raw: dict[str, Any], origin: StartOrigin) -> Answer | None:
    try:
        request = parse_start_request(raw)
    except DomainError:
        return None
    async with db.autocommit() as conn:
        plan = await plan_start(db, conn, request, origin)
        if plan is None:
            return None
        body = success_body(success_message("process_started", origin.lang), plan.data).to_json_dict()
        stored = (
            None
            if origin.message_id is None
            else {
                "message_type": MessageType.PROCESS_START_REQUEST.value,
                "outcome": Outcome.ACCEPTED.value,
                "http_status": 200,
                "body": json.dumps(body, ensure_ascii=False),
            }
        )
        try:
            work_order_id = await write_planned_start(conn, plan, stored)
        except IntegrityError:
            return None  # a racing start of the process, or this message answered already: run_once says which
    if work_order_id is None:
        return None  # the LOT changed status, or the worker was disabled, since the read
    body["data"]["work_order_id"] = work_order_id
    return Answer(Outcome.ACCEPTED, 200, body)


async def handle_completion(
    db: Database, raw: dict[str, Any], source: CompletionSource, lang: str, hooks: CommitHooks = NO_HOOKS
) -> Answer:
    try:  # a station may complete only the processes it is configured for (services/station_access.py)
        await check_station_allowed(db, source.station, raw, source.message_id, MessageType.PROCESS_COMPLETED.value)
    except DomainError as refused:
        return await _rejected(db, refused, source.message_id, MessageType.PROCESS_COMPLETED, source.station, lang)

    async def work(conn: AsyncConnection) -> Answer:
        record = parse_completion(raw)
        outcome = await complete_process(db, conn, record, source)
        key = "duplicate_completion" if outcome.duplicate else "process_completed"
        body = success_body(success_message(key, lang), outcome.data).to_json_dict()
        return Answer(Outcome.DUPLICATE if outcome.duplicate else Outcome.ACCEPTED, 200, body)

    return await run_once(db, work, source.message_id, MessageType.PROCESS_COMPLETED, source.station, lang, hooks)
