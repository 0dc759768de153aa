"""Use case: store a station's batch of samples (evt/measurement) once, with COPY, answered after the commit.

The same guarantees as a completion: the message id is claimed in processed_messages in the transaction of the
COPY (services/handlers.run_once), so a redelivered or replayed batch is answered "duplicate" with the first
answer and adds no row; the station must be configured for the batch's process (station_processes).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import samples_copy
from cloud_api.adapters.database import Database
from cloud_api.domain.errors import DomainError
from cloud_api.domain.samples import decide_owner
from cloud_api.domain.stations import StationKey
from cloud_api.services import idempotency
from cloud_api.services.handlers import Work, run_once
from cloud_api.services.ports import NO_HOOKS, Answer, CommitHooks
from cloud_api.services.station_access import check_station_allowed
from mes_contracts.envelope import MessageType, Outcome
from mes_contracts.errors import ErrorCode, success_message
from mes_contracts.measurement import MeasurementBatch
from mes_contracts.process_data import describe_validation_error
from mes_contracts.start import success_body

log = logging.getLogger(__name__)
KIND = MessageType.MEASUREMENT


def parse_batch(raw: dict[str, Any]) -> MeasurementBatch:
    try:
        return MeasurementBatch.model_validate(raw)
    except ValidationError as error:
        raise DomainError(ErrorCode.INVALID_MEASUREMENT_DATA, {"errors": describe_validation_error(error)}) from error


async def handle_measurement(
    db: Database,
    raw: dict[str, Any],
    source: str,
    message_id: uuid.UUID,
    lang: str,
    hooks: CommitHooks = NO_HOOKS,
) -> Answer:
    """`source` is the topic's station ('mes/v1/<site>/<line>/<station>'); the rows name it as site/line/station."""
    repeat = await _stored_answer(db, message_id)
    if repeat is not None:
        return repeat  # a replay after a lost answer: no COPY of 20,000 rows only to roll it back
    try:
        await check_station_allowed(db, source, raw, message_id, KIND.value)
    except DomainError as refused:
        return await run_once(db, _refuse(refused), message_id, KIND, source, lang, hooks)

    async def work(conn: AsyncConnection) -> Answer:
        batch = parse_batch(raw)
        known = await samples_copy.known_ids(conn, batch.lot_number, batch.serial_number)
        owner = decide_owner(batch.lot_number, batch.serial_number, known)
        target = samples_copy.SampleTarget(
            owner.lot_id, owner.serial_id, batch.process_id, _station(source), message_id
        )
        stored = await samples_copy.copy_samples(conn, target, batch)
        data = {"samples": stored, "chunk": batch.chunk, "chunks": batch.chunks, "file_name": batch.file_name}
        return Answer(
            Outcome.ACCEPTED, 200, success_body(success_message("samples_recorded", lang), data).to_json_dict()
        )

    return await run_once(db, work, message_id, KIND, source, lang, hooks)


def _refuse(error: DomainError) -> Work:
    """A refusal stored like any answer (run_once): a redelivery gets the same one."""

    async def work(conn: AsyncConnection) -> Answer:
        raise error

    return work


def _station(source: str) -> str:
    key = StationKey.of_source(source)
    return str(key) if key is not None else source[:100]


async def _stored_answer(db: Database, message_id: uuid.UUID) -> Answer | None:
    async with db.autocommit() as conn:
        stored = await idempotency.load(conn, message_id)
    if stored is None:
        return None
    outcome = Outcome.REJECTED if stored.outcome is Outcome.REJECTED else Outcome.DUPLICATE
    return Answer(outcome, stored.http_status, stored.body)
