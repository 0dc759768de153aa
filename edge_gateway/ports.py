"""What the pickup and the start relay need from the broker link, so they can run against a fake in tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from mes_contracts.envelope import Envelope, ReplyPayload

if TYPE_CHECKING:
    from edge_gateway.batching import OutgoingBatch


class LinkError(Exception):
    """The centre could not be asked or did not answer; the caller keeps its work and may retry."""


class NotConnected(LinkError):
    """The broker link is down."""

    def __init__(self, message: str = "MQTT broker link is down") -> None:
        super().__init__(message)


class ReplyTimeout(LinkError):
    """The request went out but no reply arrived in time."""

    def __init__(self, message_id: object, timeout: float) -> None:
        super().__init__(f"no reply to {message_id} within {timeout:g} s")
        self.message_id = message_id
        self.timeout = timeout


class BatchesUnsupported(LinkError):
    """The centre is older than envelope v2 and refused a v2 message without storing any of it: send singly."""


class Link(Protocol):
    """Request/response over the broker, plus the gateway's envelope sequence."""

    @property
    def connected(self) -> bool: ...

    def next_seq(self) -> int: ...

    async def request(self, topic: str, envelope: Envelope, timeout: float) -> ReplyPayload: ...


class BatchLink(Link, Protocol):
    """A link that can also send many records in one v2 message (mes_contracts/batch.py)."""

    @property
    def speaks_v2(self) -> bool:
        """False once the centre refused a v2 message as too new: from then on every record goes alone as v1."""
        ...

    async def request_batch(self, topic: str, batch: OutgoingBatch, timeout: float) -> list[ReplyPayload | None]:
        """Publish one v2 message; each record's reply in order, None where the answer had none for it. Raises
        LinkError like `request` (every record failed alike), BatchesUnsupported for a centre older than v2."""
        ...


class Publisher(Protocol):
    """A plain retained-capable publish, for the station state."""

    @property
    def connected(self) -> bool: ...

    async def publish(self, topic: str, payload: bytes, retain: bool = False, timeout: float | None = None) -> None: ...


class BatchPublisher(Publisher, Protocol):
    """Plain publishes, and v2 messages answered by the centre (print results: one at a time or batched)."""

    @property
    def speaks_v2(self) -> bool: ...

    async def request_batch(self, topic: str, batch: OutgoingBatch, timeout: float) -> list[ReplyPayload | None]: ...
