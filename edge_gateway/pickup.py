"""Completion-file pickup: watch + rescan pending/, wait for stable files, validate, commit them to the outbox.

No single file may stop it: whatever happens while looking at, checking or moving one name is that name's
outcome (error/ with a code, or a report in the station state), never the pickup's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterable

from edge_gateway.completion_records import CompletionRecords
from edge_gateway.counters import PickupCounters
from edge_gateway.dispositions import ErrorReport
from edge_gateway.error_watch import ErrorWatch, MovedBack
from edge_gateway.health import Health
from edge_gateway.local_retry import LocalRetry
from edge_gateway.mover import BatchMover
from edge_gateway.names import is_candidate_name
from edge_gateway.outbox import Outbox, OutboxClosed
from edge_gateway.outbox_store import Admission, AdmitStatus, NewRecord
from edge_gateway.pending_io import ProbeLimits, probe_many, refusal, scan_names
from edge_gateway.ready import ReadyFile, verdict
from edge_gateway.settings import GatewaySettings
from edge_gateway.stability import Decision, Probe, StabilityTracker
from edge_gateway.tasks import cancel_and_wait
from edge_gateway.validation import Completion, Rejection
from edge_gateway.watchlist import Watchlist
from mes_contracts.envelope import Source

logger = logging.getLogger(__name__)

PROBE_BATCH = 256
ADMITTERS = 2  # tasks taking ready files in batches: one admits while the other's rejections are being moved
PROBE_TICK_S = 0.05  # new names and due re-checks are gathered into one thread hop per tick
UNEXPECTED_FAILURES_MAX = 3  # a file whose commit keeps failing unexpectedly goes to error/ after this many


class Pickup:
    """Every candidate name is in one stage: tracked (stabilising), busy (queued, being checked or committed),
    backoff (a local retry), or outboxed (its record is in the outbox; the dispatcher owns it until it is moved).
    """

    def __init__(
        self,
        settings: GatewaySettings,
        outbox: Outbox,
        mover: BatchMover,
        counters: PickupCounters,
        health: Health,
        on_admitted: Callable[[], None],
    ) -> None:
        self._pending_dir = settings.pending_dir
        self._outbox = outbox
        self._mover = mover
        self._health = health
        self._on_admitted = on_admitted
        self._records = CompletionRecords(Source.of(settings.address, settings.gateway_id))
        self._retry_interval = settings.retry_interval_s
        self._retry_max = max(settings.retry_interval_s, settings.retry_max_s)
        self._rescan_interval = settings.rescan_interval_s
        self._workers = min(ADMITTERS, settings.max_in_flight)
        self._ready_limit = max(PROBE_BATCH, 2 * settings.max_in_flight)  # bounds the bytes read ahead
        self._tracker = StabilityTracker(settings.stable_window_s, settings.malformed_grace_s)
        self._limits = ProbeLimits(settings.max_file_bytes, self._tracker.needs_writer_check)
        self.watchlist = Watchlist(settings.stale_pending_s, health.note_error)
        self._error_watch = ErrorWatch(settings.pending_dir, settings.error_watch_s)
        self._failures: dict[str, int] = {}  # consecutive move or unexpected failures per name
        self._queue: asyncio.Queue[ReadyFile] = asyncio.Queue()
        self._busy: set[str] = set()
        self._backoff = LocalRetry()
        self._retrying: set[str] = set()
        self._outboxed: dict[str, int] = {}
        self._was_full = False
        self._rescan_now = False
        self._wakeup = asyncio.Event()
        self._counters = counters
        # Names another pickup holds (curve files waiting in the measurement outbox) are not reported stale.
        self.owned_elsewhere: Callable[[str], bool] = lambda name: False
        outbox.subscribe(self._outbox_changed)

    # -- outbox ownership -----------------------------------------------------------------------------------

    async def load_outboxed(self) -> None:
        """Before the first scan: names with a record are the dispatcher's, so they are neither read nor re-sent."""
        for name in await self._outbox.names():
            self._outboxed[name] = self._outboxed.get(name, 0) + 1

    def release(self, name: str, look_again: bool = False) -> None:
        """The dispatcher is done with `name`'s record; a file now under that name is a new one."""
        left = self._outboxed.get(name, 0) - 1
        if left > 0:
            self._outboxed[name] = left
        else:
            self._outboxed.pop(name, None)
        if look_again:
            self.notify([name])

    def waiting(self) -> int:
        """Files seen but not yet in the outbox (stabilising, queued, or waiting for a local retry)."""
        return len(self._tracker) + len(self._backoff) + len(self._busy)

    def _outbox_changed(self) -> None:
        if self._was_full and not self._outbox.full:
            self._rescan_now = True  # the files left in pending/ while it was full
            self._wakeup.set()
        self._was_full = self._outbox.full

    def _owned(self, name: str) -> bool:
        return name in self._tracker or name in self._busy or name in self._backoff or name in self._outboxed

    # -- discovery ------------------------------------------------------------------------------------------

    def notify(self, names: Iterable[str]) -> None:
        """Names the watcher saw change (called in the loop thread); ignored while the outbox is full."""
        if self._outbox.full:
            return  # they stay in pending/; the rescan after the outbox has room finds them
        now = asyncio.get_running_loop().time()
        added = False
        for name in names:
            if is_candidate_name(name) and not self._owned(name):
                added = self._tracker.add(name, now) or added
        if added:
            self._wakeup.set()

    def _scan(self, now: float) -> tuple[set[str], list[MovedBack]]:
        """In a worker thread: error/ files that changed go back first, so this very scan finds them."""
        moved = self._error_watch.check(now) if len(self._error_watch) else []
        return scan_names(self._pending_dir), moved

    async def _rescan(self) -> None:
        if self._outbox.full:
            return
        loop = asyncio.get_running_loop()
        try:
            names, moved_back = await asyncio.to_thread(self._scan, loop.time())
        except OSError as error:
            logger.error("cannot list %s: %s", self._pending_dir, error)
            await asyncio.to_thread(self._pending_dir.mkdir, parents=True, exist_ok=True)
            return
        self._counters.reexamined += len(moved_back)
        now = loop.time()
        for name in names:
            if is_candidate_name(name) and not self._owned(name):
                self._tracker.add(name, now)
        self.watchlist.seen(names, now, lambda name: name in self._outboxed or self.owned_elsewhere(name))

    # -- main loop ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled; cancelling abandons work in progress, whose files stay in pending/."""
        workers = [asyncio.create_task(self._worker(), name=f"pickup-worker-{i}") for i in range(self._workers)]
        try:
            await self._loop()
        finally:
            await cancel_and_wait(workers)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_rescan = loop.time()
        next_probe = loop.time()
        while True:
            self._wakeup.clear()
            if self._rescan_now or loop.time() >= next_rescan:
                self._rescan_now = False
                await self._rescan()
                next_rescan = loop.time() + self._rescan_interval
            self._release_backoff(loop.time())
            now = loop.time()
            if now >= next_probe and self._queue.qsize() < self._ready_limit:
                due = self._tracker.due(now, PROBE_BATCH)
                if due:
                    probes = await asyncio.to_thread(
                        probe_many, self._pending_dir, due, now, self._tracker.wants_content, self._limits
                    )
                    self._apply(probes, loop.time())
                    if len(due) < PROBE_BATCH:
                        next_probe = now + PROBE_TICK_S
                    continue
            wake = next_rescan
            tracked = self._tracker.next_deadline()
            if tracked is not None:
                wake = min(wake, max(tracked, next_probe))
            retry_at = self._backoff.next_deadline()
            if retry_at is not None:
                wake = min(wake, retry_at)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake - loop.time())):  # not wait_for: it can eat a cancel
                    await self._wakeup.wait()

    def _apply(self, probes: list[Probe], now: float) -> None:
        for probe in probes:
            decision = self._tracker.apply(probe, now)
            if decision is Decision.REFUSED or (
                decision in (Decision.READY, Decision.MALFORMED) and probe.data is not None
            ):
                self._busy.add(probe.name)
                self._queue.put_nowait(ReadyFile.of(probe))

    # -- local retry ----------------------------------------------------------------------------------------

    def _retry_later(self, name: str, reason: object, delay: float | None = None) -> None:
        delay = self._retry_interval if delay is None else delay
        deadline = asyncio.get_running_loop().time() + delay
        self._backoff.schedule(name, deadline)
        self._retrying.add(name)
        self._counters.retried += 1
        logger.debug("%s stays in pending, retry in %.1f s: %s", name, delay, reason)
        self._wakeup.set()  # the loop's current wait may end later than this retry

    def _release_backoff(self, now: float) -> None:
        """Back to the tracker (fresh stat and read) once due."""
        for name in self._backoff.due(now):
            self._tracker.add(name, now)

    # -- processing -----------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        """Takes every file ready at once: their records share one outbox op and commit (issue 18)."""
        while True:
            items = [await self._queue.get()]
            while not self._queue.empty() and len(items) < PROBE_BATCH:
                items.append(self._queue.get_nowait())
            try:
                await self._process_batch(items)
            except Exception as error:  # a bug in the batch's bookkeeping: each file's own retry, never the loop's end
                logger.exception("unexpected failure on a batch of %d file(s)", len(items))
                for item in items:
                    await self._unexpected(item, error)
            finally:
                for item in items:
                    self._busy.discard(item.name)

    async def _process_batch(self, items: list[ReadyFile]) -> None:
        """Verdicts, then one admission for the valid ones while the rejected ones are moved to error/."""
        admitting: list[tuple[ReadyFile, NewRecord]] = []
        rejecting: list[tuple[ReadyFile, Rejection]] = []
        for item in items:
            try:
                checked = verdict(item)
                if isinstance(checked, Rejection):
                    if item.name not in self._retrying:
                        self._counters.picked_up += 1
                    rejecting.append((item, checked))
                else:
                    admitting.append((item, self._record(item, checked)))
            except Exception as error:  # this file's trouble alone
                await self._unexpected(item, error)
        await asyncio.gather(self._admit_all(admitting), *(self._reject(item, why) for item, why in rejecting))

    async def _reject(self, item: ReadyFile, rejection: Rejection) -> None:
        try:
            await self._dispose_error(item, rejection)
        except Exception as error:
            await self._unexpected(item, error)

    async def _admit_all(self, admitting: list[tuple[ReadyFile, NewRecord]]) -> None:
        """One op, one commit, one callback for the pass; a failed commit leaves every one of them in pending/."""
        if not admitting:
            return
        try:
            admissions = await self._outbox.admit_many([record for _, record in admitting])
        except (sqlite3.Error, OutboxClosed) as error:
            logger.error("cannot commit %d file(s) to the outbox (%s); they stay in pending", len(admitting), error)
            self._health.note_error("OUTBOX_ERROR", f"{admitting[0][0].name} (+{len(admitting) - 1}): {error}")
            for item, _ in admitting:
                self._retry_later(item.name, error)
            return
        except Exception as error:
            for item, _ in admitting:
                await self._unexpected(item, error)
            return
        created = False
        for (item, _), admission in zip(admitting, admissions, strict=True):
            created = self._admitted(item.name, admission) or created
        if created:
            self._on_admitted()

    async def _unexpected(self, item: ReadyFile, error: Exception) -> None:
        failures = self._failures[item.name] = self._failures.get(item.name, 0) + 1
        if failures < UNEXPECTED_FAILURES_MAX:
            logger.exception(
                "unexpected failure on %s (%d/%d); it stays in pending", item.name, failures, UNEXPECTED_FAILURES_MAX
            )
            self._retry_later(item.name, "unexpected failure")
            return
        logger.error("unexpected failure on %s %d times (%r); moving it to error/", item.name, failures, error)
        with contextlib.suppress(Exception):
            await self._dispose_error(item, refusal(item.name, f"could not be processed: {error!r}"))

    def _record(self, item: ReadyFile, completion: Completion) -> NewRecord:
        """The record to commit (id minted here, once) before anything is published; the file stays in pending/."""
        return self._records.new(item, completion, self._outbox.next_seq())

    def _admitted(self, name: str, admission: Admission) -> bool:
        """Book one committed admission; True when it created a record to send."""
        if admission.status is AdmitStatus.FULL:
            self._forget(name)  # not lost: it stays in pending/ and is found again once there is room
            self._health.note_error(
                "OUTBOX_FULL", f"outbox full ({self._outbox.depth} records); {name} waits in pending/"
            )
            return False
        self._outboxed[name] = self._outboxed.get(name, 0) + 1
        self._forget(name)
        if admission.status is AdmitStatus.CREATED:
            self._counters.picked_up += 1
            return True
        logger.info("%s is already in the outbox as %s; that record is reused", name, admission.message_id)
        return False

    async def _dispose_error(self, item: ReadyFile, rejection: Rejection) -> None:
        name = item.name
        report = ErrorReport(name, rejection.code, rejection.message, rejection.details)
        try:
            stored = await self._mover.move(self._pending_dir / name, report)
        except FileNotFoundError:
            logger.warning("%s left pending/ before it could be moved", name)
            self._forget(name)
            return
        except OSError as error:
            self._move_failed(name, error)
            return
        self._forget(name)
        self.watchlist.resolved(name)
        self._error_watch.add(stored, name, item.stat, asyncio.get_running_loop().time())
        self._counters.errored += 1
        shortened = "" if stored.name == name else f" (stored as {stored.name})"  # name taken, or too long
        logger.info(
            "%s moved to error/%s: %s %s %s",
            name,
            shortened,
            rejection.code,
            rejection.message,
            rejection.details.get("reason") or rejection.details.get("error") or "",
        )

    def _move_failed(self, name: str, error: OSError) -> None:
        """Reported once (log + station state), then retried quietly with a growing delay."""
        failures = self._failures.get(name, 0)
        self._failures[name] = failures + 1
        if self.watchlist.move_failed(name, error):
            logger.error("cannot move %s to error/: %s; it stays in pending/ and is retried quietly", name, error)
        self._retry_later(name, error, min(self._retry_interval * 2 ** min(failures, 16), self._retry_max))

    def _forget(self, name: str) -> None:
        self._retrying.discard(name)
        self._failures.pop(name, None)
