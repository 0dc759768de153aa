"""Live events: one LISTEN `mes_events` link per API process, fanned out to every SSE client (issue 13).

Why one link: a PostgreSQL connection per browser would exhaust the server at 100+ dashboards; here every
client costs a queue. Each event gets an id `{boot}.{n}`: `boot` is random per process start, `n` counts up. The
last RING_SIZE events are kept, so a client that reconnects with `Last-Event-ID` gets what it missed; when it
cannot (an id from another API process or an earlier start, or older than the ring), and whenever this process
may itself have missed notifications (the LISTEN link was re-made), the client gets a `reset` event: reload
everything. A client that does not keep up (its queue is full) gets a `reset` instead of the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloud_api.adapters import dashboard_sql

log = logging.getLogger(__name__)

RING_SIZE = 2000
QUEUE_SIZE = 500
RECONNECT_S = 2.0


@dataclass(frozen=True, slots=True)
class LiveEvent:
    id: str
    kind: str
    data: str  # JSON text, as sent to the client


class Subscription:
    """One client's queue of events, filled by the hub."""

    def __init__(self, backlog: list[LiveEvent]) -> None:
        self.queue: asyncio.Queue[LiveEvent] = asyncio.Queue(QUEUE_SIZE)
        for event in backlog[-QUEUE_SIZE:]:
            self.queue.put_nowait(event)

    def offer(self, event: LiveEvent, reset: Callable[[], LiveEvent]) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # Too slow for the line: drop its backlog and tell it to reload, rather than grow without bound.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(reset())

    async def next(self, timeout: float) -> LiveEvent | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


class LiveEvents:
    """The hub: `start()` in the app's lifespan, `subscribe()` per SSE request, `stop()` at shutdown."""

    def __init__(self, database_url: str, listen: Callable[[str], Any] = dashboard_sql.listen) -> None:
        self.database_url = database_url
        self.boot = secrets.token_hex(4)
        self.listening = asyncio.Event()
        self._listen = listen
        self._seq = 0
        self._ring: deque[LiveEvent] = deque(maxlen=RING_SIZE)
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def head(self) -> str:
        """The id of the newest event (`{boot}.0` before the first): where a new client starts."""
        return f"{self.boot}.{self._seq}"

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="live-events-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def subscribe(self, last_event_id: str | None) -> Subscription:
        """A new client's queue, holding what it missed since `last_event_id` (or a `reset` when unknown)."""
        subscription = Subscription(self._missed(last_event_id))
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, kind: str, data: dict[str, Any]) -> LiveEvent:
        return self._publish(kind, json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    def _missed(self, last_event_id: str | None) -> list[LiveEvent]:
        if not last_event_id:
            return []
        boot, _, number = last_event_id.partition(".")
        if boot != self.boot or not number.isdigit() or int(number) > self._seq:
            return [self._reset_event("unknown_event_id")]
        seen = int(number)
        oldest = self._seq - len(self._ring) + 1
        if seen + 1 < oldest:
            return [self._reset_event("too_old")]
        return [event for event in self._ring if int(event.id.partition(".")[2]) > seen]

    def _reset_event(self, reason: str) -> LiveEvent:
        # Not in the ring and no new number: a reset is addressed to one client, the others have nothing to do.
        return LiveEvent(self.head, "reset", json.dumps({"kind": "reset", "reason": reason}))

    def _publish(self, kind: str, data: str) -> LiveEvent:
        self._seq += 1
        event = LiveEvent(f"{self.boot}.{self._seq}", kind, data)
        self._ring.append(event)
        for subscription in list(self._subscribers):
            subscription.offer(event, lambda: self._reset_event("slow_client"))
        return event

    def _notification(self, payload: str) -> None:
        try:
            kind = str(json.loads(payload).get("kind") or "message")
        except (ValueError, AttributeError):
            kind = "message"
        self._publish(kind, payload)

    async def _run(self) -> None:
        links = 0
        while True:
            try:
                async for payload in self._listen(self.database_url):
                    if payload == "":  # listening: events from now on arrive
                        links += 1
                        if links > 1:  # notifications sent while the link was down are lost: clients reload
                            self.publish("reset", {"kind": "reset", "reason": "listener_reconnected"})
                        self.listening.set()
                        continue
                    self._notification(payload)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database went away or restarted: keep trying, the API stays up
                log.warning("live events: LISTEN link lost (%s); retrying in %.0f s", type(error).__name__, RECONNECT_S)
            self.listening.clear()
            await asyncio.sleep(RECONNECT_S)
