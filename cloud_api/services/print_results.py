"""The ingestor's use case for a printer's print result: record it once per message id (idempotent redelivery).

A use case (services), not part of cloud_api.labels: it runs in the store-once frame of services.handlers, and the
labels feature sits below the use cases (layers in pyproject.toml).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters.database import Database
from cloud_api.labels.results import parse_result, record_result
from cloud_api.services.handlers import Answer, run_once
from mes_contracts.envelope import MessageType, Outcome
from mes_contracts.errors import success_message
from mes_contracts.start import success_body

log = logging.getLogger(__name__)


async def handle_print_result(
    db: Database, raw: dict[str, Any], station: str, message_id: uuid.UUID, lang: str
) -> Answer:
    """The ingestor's entry point: idempotent by message id (processed_messages) and by result id on the job."""

    async def work(conn: AsyncConnection) -> Answer:
        result = parse_result(raw)
        job = await record_result(conn, result, message_id, station)
        log.info(
            "print job %s (%s %s) on %s: %s",
            result.job_id,
            job.label_type,
            job.label_key,
            job.printer_id,
            job.status,
        )
        data = {"job_id": str(result.job_id), "status": job.status}
        return Answer(
            Outcome.ACCEPTED, 200, success_body(success_message("print_result_recorded", lang), data).to_json_dict()
        )

    return await run_once(db, work, message_id, MessageType.LABEL_PRINT_RESULT, station, lang)
