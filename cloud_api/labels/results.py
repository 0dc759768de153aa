"""Print results from the stations (evt/print-result): recorded on their job once per result message."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.domain.errors import DomainError
from cloud_api.labels import repository as repo
from cloud_api.labels.domain import result_update
from cloud_api.labels.rows import JobAfterResult
from mes_contracts.errors import ErrorCode
from mes_contracts.labels import PrintResult
from mes_contracts.process_data import describe_validation_error

log = logging.getLogger(__name__)


async def record_result(
    conn: AsyncConnection, result: PrintResult, message_id: uuid.UUID, station: str
) -> JobAfterResult:
    """Apply `result` to its job; `station` is the sender's topic prefix and must be where the job went."""
    job = await repo.apply_result(conn, result.job_id, result_update(result), message_id, result.print_time, station)
    if job is None:
        raise DomainError(ErrorCode.NOT_FOUND, {"job_id": str(result.job_id)}, "unknown print job")
    if job.target != station:
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            {"job_id": str(result.job_id)},
            f"result from {station}, job sent to {job.target}",
        )
    if job.printer_id != result.printer_id:
        log.warning(
            "print result for job %s names printer %s, job printer %s",
            result.job_id,
            result.printer_id,
            job.printer_id,
        )
    return job


def parse_result(raw: dict[str, Any]) -> PrintResult:
    try:
        return PrintResult.model_validate(raw)
    except ValidationError as error:
        raise DomainError(ErrorCode.INVALID_REQUEST, {"errors": describe_validation_error(error)}) from error
