"""The outbox record of a valid completion file: its message id and v1 envelope, minted once, before sending."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from edge_gateway.message_ids import MessageIds
from edge_gateway.outbox_store import NewRecord
from edge_gateway.ready import ReadyFile, completion_payload
from edge_gateway.validation import Completion
from mes_contracts.envelope import Envelope, MessageType, Source


class CompletionRecords:
    """One per pickup: the station's source and the id minter (ids cut from one urandom call per block)."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._ids = MessageIds()

    def new(self, item: ReadyFile, completion: Completion, seq: int) -> NewRecord:
        message_id = self._ids.next()
        # Built, not validated (issue 18): every field is the gateway's own, of the right type already; the
        # payload is the record `check_completion` validated. The JSON is pydantic's, as `make_envelope` gives.
        envelope = Envelope.model_construct(
            v=1,
            message_id=uuid.UUID(message_id),
            type=MessageType.PROCESS_COMPLETED,
            source=self._source,
            occurred_at=datetime.now(UTC),
            seq=seq,
            replay=False,
            payload=completion_payload(completion),
        )
        return NewRecord(message_id, item.name, completion.sha256, item.data, envelope.model_dump_json(), time.time())
