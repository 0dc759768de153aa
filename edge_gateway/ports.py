"""What the pickup and the start relay need from the broker link, so they can run against a fake in tests."""

from __future__ import annotations

from typing import Protocol

from mes_contracts.envelope import Envelope, ReplyPayload


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


class Link(Protocol):
    """Request/response over the broker, plus the gateway's envelope sequence."""

    @property
    def connected(self) -> bool: ...

    def next_seq(self) -> int: ...

    async def request(self, topic: str, envelope: Envelope, timeout: float) -> ReplyPayload: ...


class Publisher(Protocol):
    """A plain retained-capable publish, for the station state."""

    @property
    def connected(self) -> bool: ...

    async def publish(self, topic: str, payload: bytes, retain: bool = False, timeout: float | None = None) -> None: ...
