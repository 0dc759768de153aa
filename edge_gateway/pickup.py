"""Completion-file pickup: watch + rescan pending/, wait for stable files, send them, move them by the reply."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge_gateway.counters import PickupCounters
from edge_gateway.dispositions import ErrorReport
from edge_gateway.mover import BatchMover
from edge_gateway.names import is_candidate_name
from edge_gateway.pending_io import probe_many, scan_candidates
from edge_gateway.ports import Link, LinkError
from edge_gateway.settings import GatewaySettings
from edge_gateway.stability import Decision, Probe, StabilityTracker
from edge_gateway.tasks import cancel_and_wait
from edge_gateway.validation import Completion, Rejection, check_completion, reply_rejection
from mes_contracts.completion import CompletionEvent
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload, Source, make_envelope
from mes_contracts.topics import Name

logger = logging.getLogger(__name__)

PROBE_BATCH = 256
PROBE_TICK_S = 0.05  # new names and due re-checks are gathered into one thread hop per tick
SENT_OUTCOMES = (Outcome.ACCEPTED, Outcome.DUPLICATE)
MAX_CENTRE_FAILURES = 5  # 5xx answers for one file before it goes to error/ for a person to look at


@dataclass(frozen=True, slots=True)
class ReadyFile:
    name: str
    data: bytes
    parsed_ok: bool
    parsed: Any


@dataclass(frozen=True, slots=True)
class Minted:
    """The envelope minted once for a file's content; retries resend it with `replay=True`."""

    sha256: str
    envelope: Envelope


def completion_payload(completion: Completion) -> dict[str, Any]:
    event = CompletionEvent(record=completion.record, file_name=completion.file_name, sha256=completion.sha256)
    return event.model_dump(mode="json")


class Pickup:
    """Every candidate file is in exactly one stage: tracked (stabilising), busy (queued/in flight) or backoff."""

    def __init__(self, settings: GatewaySettings, link: Link) -> None:
        self._pending_dir = settings.pending_dir
        self._link = link
        address = settings.address
        self._topic = address.event(Name.PROCESS_COMPLETED)
        self._source = Source.of(address, settings.gateway_id)
        self._reply_timeout = settings.reply_timeout_s
        self._retry_interval = settings.retry_interval_s
        self._rescan_interval = settings.rescan_interval_s
        self._workers = settings.max_in_flight
        self._tracker = StabilityTracker(settings.stable_window_s)
        self._mover = BatchMover(settings.completed_dir, settings.error_dir)
        self._queue: asyncio.Queue[ReadyFile] = asyncio.Queue()
        self._busy: set[str] = set()
        self._backoff: dict[str, float] = {}
        self._backoff_heap: list[tuple[float, str]] = []
        self._retrying: set[str] = set()
        self._minted: dict[str, Minted] = {}
        self._centre_failures: dict[str, int] = {}
        self._wakeup = asyncio.Event()
        self._counters = PickupCounters()

    # -- status ---------------------------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        self._counters.pending = len(self._tracker) + len(self._backoff) + len(self._busy) - self._in_flight
        return self._counters.as_dict()

    @property
    def _in_flight(self) -> int:
        return self._counters.in_flight

    def _owned(self, name: str) -> bool:
        return name in self._tracker or name in self._busy or name in self._backoff

    # -- discovery ------------------------------------------------------------------------------------------

    def notify(self, names: Iterable[str]) -> None:
        """Names the watcher saw change (called in the loop thread)."""
        now = asyncio.get_running_loop().time()
        added = False
        for name in names:
            if is_candidate_name(name) and not self._owned(name):
                added = self._tracker.add(name, now) or added
        if added:
            self._wakeup.set()

    async def _rescan(self) -> None:
        try:
            names = await asyncio.to_thread(scan_candidates, self._pending_dir)
        except OSError as error:
            logger.error("cannot list %s: %s", self._pending_dir, error)
            await asyncio.to_thread(self._pending_dir.mkdir, parents=True, exist_ok=True)
            return
        now = asyncio.get_running_loop().time()
        for name in names:
            if not self._owned(name):
                self._tracker.add(name, now)

    # -- main loop ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled; cancelling abandons in-flight work, whose files stay in pending/."""
        workers = [asyncio.create_task(self._worker(), name=f"pickup-worker-{i}") for i in range(self._workers)]
        mover = asyncio.create_task(self._mover.run(), name="pickup-mover")
        try:
            await self._loop()
        finally:
            await cancel_and_wait(workers)  # the mover outlives them: a worker past its reply still moves its file
            await cancel_and_wait([mover])

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_rescan = loop.time()
        next_probe = loop.time()
        while True:
            self._wakeup.clear()
            if loop.time() >= next_rescan:
                await self._rescan()
                next_rescan = loop.time() + self._rescan_interval
            self._release_backoff(loop.time())
            now = loop.time()
            if now >= next_probe:
                due = self._tracker.due(now, PROBE_BATCH)
                if due:
                    probes = await asyncio.to_thread(probe_many, self._pending_dir, due, now,
                                                     self._tracker.wants_content)
                    self._apply(probes, loop.time())
                    if len(due) < PROBE_BATCH:
                        next_probe = now + PROBE_TICK_S
                    continue
            wake = next_rescan
            tracked = self._tracker.next_deadline()
            if tracked is not None:
                wake = min(wake, max(tracked, next_probe))
            backoff = self._next_backoff()
            if backoff is not None:
                wake = min(wake, backoff)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake - loop.time())):  # not wait_for: it can eat a cancel
                    await self._wakeup.wait()

    def _apply(self, probes: list[Probe], now: float) -> None:
        for probe in probes:
            decision = self._tracker.apply(probe, now)
            if decision in (Decision.READY, Decision.MALFORMED) and probe.data is not None:
                self._busy.add(probe.name)
                self._queue.put_nowait(ReadyFile(probe.name, probe.data, probe.parsed_ok, probe.parsed))

    # -- retry ----------------------------------------------------------------------------------------------

    def _retry_later(self, name: str, reason: object) -> None:
        deadline = asyncio.get_running_loop().time() + self._retry_interval
        self._backoff[name] = deadline
        heapq.heappush(self._backoff_heap, (deadline, name))
        self._retrying.add(name)
        self._counters.retried += 1
        logger.debug("%s stays in pending, retry in %.1f s: %s", name, self._retry_interval, reason)

    def _next_backoff(self) -> float | None:
        if not self._backoff_heap:
            return None
        return self._backoff_heap[0][0] if self._link.connected else None

    def _release_backoff(self, now: float) -> None:
        """Back to the tracker (fresh stat and read) once due, but only while the broker link is up."""
        if not self._link.connected:
            return
        while self._backoff_heap and self._backoff_heap[0][0] <= now:
            deadline, name = heapq.heappop(self._backoff_heap)
            if self._backoff.get(name) == deadline:
                del self._backoff[name]
                self._tracker.add(name, now)

    # -- processing -----------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            item = await self._queue.get()
            self._counters.in_flight += 1
            try:
                await self._process(item)
            except Exception:
                logger.exception("unexpected failure on %s; it stays in pending", item.name)
                self._retry_later(item.name, "unexpected failure")
            finally:
                self._counters.in_flight -= 1
                self._busy.discard(item.name)

    async def _process(self, item: ReadyFile) -> None:
        retry = item.name in self._retrying
        if not retry:
            self._counters.picked_up += 1
        if item.parsed_ok:
            checked = check_completion(item.name, item.data, item.parsed)
        else:
            checked = check_completion(item.name, item.data)
        if isinstance(checked, Rejection):
            await self._dispose_error(item.name, checked)
            return
        envelope = self._envelope_for(checked, retry)
        try:
            reply = await self._link.request(self._topic, envelope, self._reply_timeout)
        except LinkError as error:
            self._retry_later(item.name, error)
            return
        await self._dispose_by_reply(item.name, envelope, reply)

    def _envelope_for(self, completion: Completion, retry: bool) -> Envelope:
        """The file's envelope, minted once per name + content; a resend carries the same id and `replay`."""
        known = self._minted.get(completion.file_name)
        if known is not None and known.sha256 == completion.sha256:
            return known.envelope.model_copy(update={"replay": True})
        envelope = make_envelope(MessageType.PROCESS_COMPLETED, self._source, self._link.next_seq(),
                                 completion_payload(completion), replay=retry)
        self._minted[completion.file_name] = Minted(completion.sha256, envelope)
        return envelope

    async def _dispose_by_reply(self, name: str, envelope: Envelope, reply: ReplyPayload) -> None:
        if reply.outcome in SENT_OUTCOMES:
            if await self._move(name, None):
                self._counters.completed += 1
                logger.debug("%s %s (%s)", name, reply.outcome, envelope.message_id)
            return
        failures = self._centre_failures.get(name, 0) + 1
        if reply.http_status >= 500 and failures < MAX_CENTRE_FAILURES:
            # The centre failed, not the file: keep it and ask again. The centre may have stored this answer
            # under the message id, so the next attempt gets a fresh id (it deduplicates completions by sha256).
            logger.warning("%s: centre answered %s %s (%d/%d); will retry", name, reply.http_status,
                           reply.body.get("error_code"), failures, MAX_CENTRE_FAILURES)
            self._centre_failures[name] = failures
            self._minted.pop(name, None)
            self._retry_later(name, f"centre answered {reply.http_status}")
            return
        await self._dispose_error(name, reply_rejection(reply.body, reply.http_status, envelope.message_id))

    async def _dispose_error(self, name: str, rejection: Rejection) -> None:
        report = ErrorReport(name, rejection.code, rejection.message, rejection.details)
        if await self._move(name, report):
            self._counters.errored += 1
            logger.info("%s moved to error/: %s %s", name, rejection.code, rejection.message)

    async def _move(self, name: str, report: ErrorReport | None) -> bool:
        try:
            await self._mover.move(self._pending_dir / name, report)
        except FileNotFoundError:
            logger.warning("%s left pending/ before it could be moved", name)
            self._forget(name)
            return False
        except OSError as error:
            logger.warning("cannot move %s yet (%s); will try again", name, error)
            self._retry_later(name, error)
            return False
        self._forget(name)
        return True

    def _forget(self, name: str) -> None:
        self._minted.pop(name, None)
        self._centre_failures.pop(name, None)
        self._retrying.discard(name)
