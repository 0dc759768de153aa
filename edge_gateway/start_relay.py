"""Start (착공) requests from the station window: validate, forward over MQTT, answer with the centre's reply."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from edge_gateway.firmware_sync import FirmwareSyncer
from edge_gateway.health import Unavailable
from edge_gateway.ports import Link, NotConnected, ReplyTimeout
from edge_gateway.validation import decode_json
from mes_contracts.envelope import MessageType, Source, make_envelope
from mes_contracts.errors import ERRORS, ErrorCode, error_message
from mes_contracts.process_data import describe_validation_error
from mes_contracts.start import StartRequest, error_body
from mes_contracts.topics import Name, StationAddress

logger = logging.getLogger(__name__)

Answer = tuple[int, dict[str, Any]]


def error_answer(code: ErrorCode, data: dict[str, Any] | None = None) -> Answer:
    return ERRORS[code].http_status, error_body(code.value, error_message(code), data).to_json_dict()


def parse_start_body(raw: bytes) -> dict[str, Any] | Answer:
    """The request JSON object when it is a valid StartRequest, else the 422 INVALID_REQUEST answer."""
    try:
        body = decode_json(raw)
    except ValueError as error:
        return error_answer(ErrorCode.INVALID_REQUEST, {"errors": [f"body: {error}"]})
    if not isinstance(body, dict):
        return error_answer(ErrorCode.INVALID_REQUEST, {"errors": ["body: a JSON object is required"]})
    try:
        StartRequest.model_validate(body)
    except ValidationError as error:
        return error_answer(ErrorCode.INVALID_REQUEST, {"errors": describe_validation_error(error)})
    return body


class StartRelay:
    """One start request → one PROCESS_START_REQUEST envelope (fresh message id) → the reply's status and body."""

    def __init__(
        self,
        link: Link,
        address: StationAddress,
        gateway_id: str,
        timeout: float,
        unavailable: Callable[[], Unavailable | None] | None = None,
        firmware: FirmwareSyncer | None = None,
    ) -> None:
        self._link = link
        self._firmware = firmware
        self._topic = address.request(Name.PROCESS_START)
        self._source = Source.of(address, gateway_id)
        self._timeout = timeout
        self._unavailable = unavailable

    async def start(self, raw: bytes) -> Answer:
        parsed = parse_start_body(raw)
        if isinstance(parsed, tuple):
            return parsed
        reason = self._unavailable() if self._unavailable is not None else None
        if reason is not None:  # answer at once instead of letting the operator wait out the reply timeout
            logger.warning("start %s/%s refused: %s", parsed.get("lot_number"), parsed.get("process_id"), reason)
            return error_answer(ErrorCode.SERVICE_UNAVAILABLE, {"reason": reason.value})
        envelope = make_envelope(MessageType.PROCESS_START_REQUEST, self._source, self._link.next_seq(), parsed)
        try:
            reply = await self._link.request(self._topic, envelope, self._timeout)
        except NotConnected as error:
            logger.warning("start %s/%s refused: %s", parsed.get("lot_number"), parsed.get("process_id"), error)
            return error_answer(ErrorCode.SERVICE_UNAVAILABLE, {"reason": Unavailable.BROKER_DOWN.value})
        except ReplyTimeout as error:
            logger.warning("start %s/%s: %s", parsed.get("lot_number"), parsed.get("process_id"), error)
            return error_answer(ErrorCode.GATEWAY_TIMEOUT, {"message_id": str(envelope.message_id)})
        logger.info(
            "start %s/%s → %s %s", parsed.get("lot_number"), parsed.get("process_id"), reply.http_status, reply.outcome
        )
        body = reply.body
        if self._firmware is not None and reply.http_status == 200:
            # PROC-004: bring the local firmware in line before the vendor app flashes (spec §3.4.4).
            body = await self._firmware.after_start(body)
        return reply.http_status, body
