"""The station's print queue: durable jobs, one worker per printer (FIFO, never interleaved), stored results."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from edge_gateway.health import Health
from edge_gateway.ports import BatchPublisher, LinkError
from edge_gateway.printing.jobs import (
    EXPIRED_CODE,
    EXPIRED_DETAIL,
    INTERRUPTED_CODE,
    INTERRUPTED_DETAIL,
    INVALID_CODE,
    Backoff,
    InvalidJob,
    ResultMaker,
    is_expired,
    parse_job,
)
from edge_gateway.printing.printer import PrintOutcome, print_program
from edge_gateway.printing.queue_store import JobState, PrinterSeen, PrintQueueStore, StoredJob
from edge_gateway.printing.results import ResultPublisher
from edge_gateway.settings import GatewaySettings
from edge_gateway.tasks import cancel_and_wait
from mes_contracts.envelope import Source
from mes_contracts.labels import PrinterConfig, PrinterState, PrintMode, PrintStatus
from mes_contracts.topics import Name

log = logging.getLogger(__name__)

T = TypeVar("T")
PrintFn = Callable[[PrinterConfig, str, bool, float], PrintOutcome]
RESULT_BATCH = 100
RESULT_RETRY_S = 5.0  # unreported results are tried again this often while the broker link is up
PURGE_EVERY_S = 3600.0
STOP_GRACE_S = 12.0  # a label in the printer's hands finishes (connect + status + send timeouts) before we stop


class QueueClosed(RuntimeError):
    """The print queue is not open; a job offered now is not acknowledged to the broker (it comes again)."""


@dataclass(eq=False)
class _Worker:
    printer_id: str
    backoff: Backoff
    executor: ThreadPoolExecutor
    state: PrinterState | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # any new job (an idle worker wakes)
    urgent: asyncio.Event = field(default_factory=asyncio.Event)  # an IMMEDIATE job: a waiting worker retries now
    task: asyncio.Task[None] | None = None


class PrintQueue:
    """`accept` commits cmd/print-label jobs; `start` runs a worker per printer and the result publisher."""

    def __init__(
        self,
        settings: GatewaySettings,
        link: BatchPublisher,
        health: Health,
        seq: Callable[[], int],
        printer: PrintFn = print_program,
    ) -> None:
        self.path = settings.print_queue_file
        self._topic = settings.address.event(Name.PRINT_RESULT)
        self._results = ResultMaker(Source.of(settings.address, settings.gateway_id), seq)
        self._retry = (settings.print_retry_s, settings.print_retry_max_s)
        self._timeout = settings.print_timeout_s
        self._keep_s = settings.print_keep_days * 86400
        self._link = link
        self._result_publisher = ResultPublisher(
            link, self._topic, settings.batch_max_records, settings.reply_timeout_s
        )
        self._health = health
        self._printer = printer
        self._db_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="print-queue-db")
        self._store: PrintQueueStore | None = None
        self._workers: dict[str, _Worker] = {}
        self._results_ready = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self._running = False
        self._stopping = False
        health.subscribe(self._results_ready.set)  # the link came back: results that waited go out

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file and settle jobs a crash left 'printing' (reported FAILED, never reprinted by itself)."""
        self._store = await self._call(PrintQueueStore, self.path)
        for stored in await self._db(PrintQueueStore.interrupted):
            last = await self._db(PrintQueueStore.printer_state, stored.job.printer.printer_id)
            log.error(
                "print job %s (%s) was interrupted while printing on %s: not reprinted; check the printer",
                stored.job.job_id,
                stored.job.label_key,
                stored.job.printer.printer_id,
            )
            await self._finish(
                stored,
                JobState.UNCERTAIN,
                PrintStatus.FAILED,
                PrinterState(last or "offline"),
                INTERRUPTED_CODE,
                INTERRUPTED_DETAIL,
            )
        await self._db(PrintQueueStore.purge, time.time() - self._keep_s)
        summary = await self._db(PrintQueueStore.summary)
        log.info(
            "print queue %s open: %d job(s) waiting, %d result(s) to report",
            self.path,
            sum(p["waiting"] for p in summary["printers"].values()),
            summary["unreported_results"],
        )

    async def start(self) -> None:
        """A worker for every printer with jobs waiting, and the result publisher."""
        self._running = True
        self._publisher = asyncio.get_running_loop().create_task(self._publish_loop(), name="print-results")
        for printer_id in await self._db(PrintQueueStore.open_printers):
            self._worker(printer_id)

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Start no new label; let the ones in the printers' hands finish and be recorded; stop publishing."""
        self._stopping = True
        for worker in self._workers.values():
            worker.arrived.set()
            worker.urgent.set()
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            await cancel_and_wait(late)  # a job left 'printing' is reported 'interrupted' at the next start
        if self._publisher is not None:
            await cancel_and_wait([self._publisher])
        self._running = False

    async def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await self._call(store.close)
        self._db_executor.shutdown(wait=False)
        for worker in self._workers.values():
            worker.executor.shutdown(wait=False)

    # -- intake (called by the MQTT link before it acknowledges the message) ---------------------------------

    async def accept(self, raw: bytes) -> None:
        """Commit a cmd/print-label job; raises when it could not be stored (the link then does not ack it)."""
        try:
            job = parse_job(raw)
        except InvalidJob as error:
            log.error("print job refused: %s", error)
            self._health.note_error("INVALID_PRINT_JOB", str(error))
            return
        created = await self._db(PrintQueueStore.accept, job, time.time())
        printer_id = job.printer.printer_id
        if not created:
            log.info("print job %s for %s is already known; not queued again", job.job_id, printer_id)
            return
        log.info("print job %s queued for %s (%s, %s)", job.job_id, printer_id, job.mode, job.label_key)
        if self._running and not self._stopping:
            worker = self._worker(printer_id)
            worker.arrived.set()
            if job.mode is PrintMode.IMMEDIATE:
                worker.urgent.set()

    # -- workers --------------------------------------------------------------------------------------------

    def _worker(self, printer_id: str) -> _Worker:
        worker = self._workers.get(printer_id)
        if worker is None:
            worker = _Worker(
                printer_id,
                Backoff(*self._retry),
                ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"printer-{printer_id}"),
            )
            self._workers[printer_id] = worker
        if worker.task is None or worker.task.done():
            worker.task = asyncio.get_running_loop().create_task(self._run_worker(worker), name=f"printer-{printer_id}")
        return worker

    async def _run_worker(self, worker: _Worker) -> None:
        """Print the printer's jobs one at a time in arrival order; wait at the head while it cannot print."""
        while not self._stopping:
            worker.arrived.clear()
            worker.urgent.clear()
            try:
                head = await self._db(PrintQueueStore.head, worker.printer_id)
                if head is None:
                    await worker.arrived.wait()
                    continue
                must_wait = await self._attempt(worker, head)
            except Exception:
                log.exception("printer %s worker failed; trying again later", worker.printer_id)
                must_wait = True
            if not must_wait:
                worker.backoff.reset()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(worker.backoff.next()):
                    await worker.urgent.wait()  # a person waiting for an IMMEDIATE label: look again now

    async def _attempt(self, worker: _Worker, head: StoredJob) -> bool:
        """One try at the head job; True when a QUEUED job waits for the printer (pause before the next try)."""
        job = head.job
        last = worker.state or PrinterState.OFFLINE
        if is_expired(job):
            log.warning("print job %s expired before %s could take it", job.job_id, worker.printer_id)
            await self._finish(head, JobState.FAILED, PrintStatus.FAILED, last, EXPIRED_CODE, EXPIRED_DETAIL)
            return False
        await self._db(PrintQueueStore.mark_printing, head.row_id)
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(
                worker.executor, self._printer, job.printer, job.program, True, self._timeout
            )
        except ValueError as error:  # a program this printer's language cannot carry: it never will
            log.error("print job %s cannot be printed on %s: %s", job.job_id, worker.printer_id, error)
            await self._finish(head, JobState.FAILED, PrintStatus.FAILED, last, INVALID_CODE, str(error))
            return False
        except Exception as error:  # unknown: bytes may have gone out, so it is treated like a crash mid-print
            log.exception("printing job %s on %s failed unexpectedly", job.job_id, worker.printer_id)
            await self._finish(
                head, JobState.UNCERTAIN, PrintStatus.FAILED, last, INTERRUPTED_CODE, f"{INTERRUPTED_DETAIL}: {error}"
            )
            return False
        seen = PrinterSeen(worker.printer_id, outcome.state.value, outcome.error_code, outcome.detail, time.time())
        if outcome.state is not worker.state:
            log.log(
                logging.INFO if outcome.state is PrinterState.READY else logging.WARNING,
                "printer %s is %s (%s)",
                worker.printer_id,
                outcome.state,
                outcome.detail,
            )
        worker.state = outcome.state
        if outcome.printed:
            await self._finish(head, JobState.PRINTED, PrintStatus.PRINTED, outcome.state, seen=seen)
            return False
        if job.mode is PrintMode.IMMEDIATE:  # the person is told at once and decides
            await self._finish(
                head, JobState.FAILED, PrintStatus.FAILED, outcome.state, outcome.error_code, outcome.detail, seen
            )
            return False
        changed = head.waiting_state != outcome.state.value
        result = (
            self._results.make(job, PrintStatus.WAITING, outcome.state, outcome.error_code, outcome.detail)
            if changed
            else None
        )
        await self._db(PrintQueueStore.requeue, head.row_id, outcome.state.value, result, seen)
        if result is not None:
            self._results_ready.set()
        for waiting in await self._db(PrintQueueStore.immediate_behind, worker.printer_id, head.row_id):
            await self._finish(
                waiting, JobState.FAILED, PrintStatus.FAILED, outcome.state, outcome.error_code, outcome.detail
            )
        return True

    async def _finish(
        self,
        stored: StoredJob,
        state: JobState,
        status: PrintStatus,
        printer_state: PrinterState,
        error_code: str | None = None,
        detail: str | None = None,
        seen: PrinterSeen | None = None,
    ) -> None:
        result = self._results.make(stored.job, status, printer_state, error_code, detail)
        await self._db(PrintQueueStore.finish, stored.row_id, state, result, seen, time.time())
        log.info(
            "print job %s on %s: %s%s",
            stored.job.job_id,
            stored.job.printer.printer_id,
            status,
            f" ({error_code}: {detail})" if error_code else "",
        )
        self._results_ready.set()

    # -- results ----------------------------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        """Publish stored results in order whenever the link is up; they wait in the file while it is not."""
        next_purge = time.monotonic() + PURGE_EVERY_S
        while True:
            self._results_ready.clear()
            more = False
            try:
                more = await self._publish_some()
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + PURGE_EVERY_S
                    await self._db(PrintQueueStore.purge, time.time() - self._keep_s)
            except Exception:
                log.exception("print results not published; trying again")
            if more:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESULT_RETRY_S):
                    await self._results_ready.wait()

    async def _publish_some(self) -> bool:
        """One batch; True when there may be more right away."""
        if not self._link.connected:
            return False
        rows = await self._db(PrintQueueStore.unreported, RESULT_BATCH)
        sent: list[int] = []
        try:
            await self._result_publisher.publish(rows, sent)
        except LinkError as error:
            log.info("print results wait for the broker (%d sent of %d): %s", len(sent), len(rows), error)
            return False
        finally:
            if sent:  # a crash before this re-publishes them with the same message ids: the centre de-duplicates
                await self._db(PrintQueueStore.mark_reported, sent, time.time())
        return len(rows) == RESULT_BATCH and len(sent) == len(rows)  # one left unanswered waits for the retry

    # -- status ---------------------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        summary: dict[str, Any] = await self._db(PrintQueueStore.summary)
        for entry in summary["printers"].values():
            for holder, key in ((entry, "updated_at"), (entry["last_error"] or {}, "at")):
                if holder.get(key) is not None:
                    holder[key] = datetime.fromtimestamp(holder[key], UTC).isoformat(timespec="seconds")
        return {"path": str(self.path), **summary}

    async def oldest_unreported_at(self) -> float | None:
        return await self._db(PrintQueueStore.oldest_unreported_at)

    # -- machinery ------------------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db_executor, fn, *args)

    async def _db(self, method: Callable[..., T], *args: Any) -> T:
        """A store method on the store's own thread (one connection, one thread; fsyncs off the event loop)."""
        store = self._store
        if store is None:
            raise QueueClosed(f"print queue {self.path} is not open")
        return await self._call(method, store, *args)
