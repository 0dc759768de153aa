"""Publishing stored print results: one at a time as v1 events, or several in v2 messages the centre answers.

A lone result is published as before (QoS 1, no answer asked: the broker's acknowledgement is enough). Several
waiting together (the link was down, or a burst of labels) go in v2 messages, and those ask for the centre's
answer: a centre older than v2 would otherwise drop them as unreadable without anyone noticing. A result counts
as reported once the broker has its v1 message or the centre answered its record in a v2 one.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_gateway.batching import Unbatchable, encode_batch, pack
from edge_gateway.ports import BatchesUnsupported, BatchPublisher
from edge_gateway.printing.queue_store import Unreported


class ResultPublisher:
    def __init__(self, link: BatchPublisher, topic: str, batch_max_records: int, reply_timeout_s: float) -> None:
        self._link = link
        self._topic = topic
        self._batch_max = batch_max_records
        self._timeout = reply_timeout_s

    async def publish(self, rows: Sequence[Unreported], sent: list[int]) -> None:
        """`rows` in order; each reported row's id is appended to `sent` as it goes, so the caller can record
        them even when a LinkError stops the rest."""
        singles = await self._batched(rows, sent) if len(rows) > 1 else rows
        for row in singles:
            await self._link.publish(self._topic, row.envelope.encode())
            sent.append(row.row_id)

    async def _batched(self, rows: Sequence[Unreported], sent: list[int]) -> Sequence[Unreported]:
        """What is left for one-by-one v1 publishing: everything when the centre is older than v2."""
        if self._batch_max < 2 or not self._link.speaks_v2:
            return rows
        for run in pack([len(row.envelope.encode()) for row in rows], self._batch_max):
            chunk = rows[run.start : run.stop]
            if len(chunk) == 1:  # the last one alone, or one too big to share a message
                return rows[run.start :]
            try:
                outgoing = encode_batch([row.envelope for row in chunk], [False] * len(chunk))
                replies = await self._link.request_batch(self._topic, outgoing, self._timeout)
            except (BatchesUnsupported, Unbatchable):  # an old centre, or results that cannot share a message
                return rows[run.start :]
            # A record the answer did not cover stays unreported: the next round sends it again, same id.
            sent.extend(row.row_id for row, reply in zip(chunk, replies, strict=True) if reply is not None)
        return []
