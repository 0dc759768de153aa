"""The station gateway's print queue against a real broker, real printer emulators and a real gateway process."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deploy.localstack.services import MosquittoServer
from edge_gateway.settings import PRINT_QUEUE_FILE
from mes_cli.gateway_status import gateway_status
from mes_contracts.labels import PrinterState, PrintMode, PrintStatus
from mes_contracts.topics import StationAddress
from tests.support.print_centre import (
    GatewayProcess,
    PrintCentre,
    Printer,
    eventually,
    immediate,
    make_job,
)

_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def print_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """Our own broker: one test stops and restarts it."""
    server = MosquittoServer(tmp_path_factory.mktemp("print-broker"))
    server.start()
    yield server
    server.stop()


class Rig:
    """One station (its own topic space), its gateway, printers attached to it, and the test centre."""

    def __init__(self, root: Path, broker: MosquittoServer) -> None:
        self.root = root
        self.broker = broker
        self.station = StationAddress("KR", "L1", f"pq{next(_numbers):02d}")
        self.gateway = GatewayProcess(self.station, root / self.station.station, broker.port)
        self.printers: list[Printer] = []
        self.centre: PrintCentre | None = None

    def printer(self, name: str, state: PrinterState = PrinterState.READY) -> Printer:
        printer = Printer(f"{self.station.station.upper()}-{name}", self.station.station, self.root / name)
        self.printers.append(printer.start(state))
        return printer

    def start(self) -> PrintCentre:
        self.gateway.start()
        self.gateway.wait_connected()
        self.centre = PrintCentre(self.broker.port, self.station)
        return self.centre

    def close(self) -> None:
        if self.centre is not None:
            self.centre.close()
        self.gateway.stop()
        for printer in self.printers:
            printer.stop()


@pytest.fixture
def rig(tmp_path: Path, print_broker: MosquittoServer) -> Iterator[Rig]:
    if not print_broker.is_running():
        print_broker.start()
    the_rig = Rig(tmp_path, print_broker)
    yield the_rig
    the_rig.close()


@pytest.mark.timeout(180)
def test_fifty_jobs_print_in_order_each_once(rig: Rig) -> None:
    printer = rig.printer("P1")
    centre = rig.start()
    jobs = [make_job(printer.config, f"SN-{n:04d}") for n in range(1, 51)]
    for job in jobs:
        centre.send(job)
    finals = centre.wait_final(jobs, timeout=120)
    assert [f.status for f in finals] == [PrintStatus.PRINTED] * 50
    assert all(f.printer_state is PrinterState.READY and f.print_time is not None for f in finals)
    assert printer.labels() == [job.label_key for job in jobs]
    assert rig.gateway.queue(printer.printer_id)["waiting"] == 0


@pytest.mark.timeout(120)
def test_a_redelivered_job_prints_once_and_garbage_is_ignored(rig: Rig) -> None:
    printer = rig.printer("P1")
    centre = rig.start()
    first, second = make_job(printer.config, "SN-A"), make_job(printer.config, "SN-B")
    envelope = centre.send(first)
    centre.publish(envelope.to_bytes())  # the same message again (a broker redelivery)
    centre.send(first)  # the same job in a new envelope (the centre re-sending it)
    centre.publish(b"not json")  # acknowledged and dropped: the link keeps going
    centre.send(second)
    centre.send(first)
    centre.wait_final([first, second])
    eventually(lambda: rig.gateway.queue(printer.printer_id).get("waiting") == 0, what="an empty queue")
    assert printer.labels() == ["SN-A", "SN-B"]
    assert [r.status for r in centre.of(first)] == [PrintStatus.PRINTED]
    assert [r.status for r in centre.of(second)] == [PrintStatus.PRINTED]
    assert rig.gateway.status()["last_error"]["code"] == "INVALID_PRINT_JOB"


@pytest.mark.timeout(120)
def test_immediate_job_on_a_faulted_printer_fails_at_once_and_prints_nothing(rig: Rig) -> None:
    printer = rig.printer("P1", PrinterState.PAPER_OUT)
    centre = rig.start()
    job = immediate(printer.config, "SN-IMM")
    centre.send(job)
    (result,) = centre.wait_final([job])
    assert result.status is PrintStatus.FAILED
    assert result.error_code == "PRINTER_OUT_OF_PAPER" and result.printer_state is PrinterState.PAPER_OUT
    assert [r.status for r in centre.of(job)] == [PrintStatus.FAILED]  # no WAITING: a person decides
    printer.set_state(PrinterState.OFFLINE)
    offline = immediate(printer.config, "SN-OFF")
    centre.send(offline)
    (result,) = centre.wait_final([offline])
    assert result.error_code == "PRINTER_NOT_CONNECTED" and result.printer_state is PrinterState.OFFLINE
    printer.set_state(PrinterState.READY)
    later = make_job(printer.config, "SN-NEXT")
    centre.send(later)
    assert centre.wait_final([later])[0].status is PrintStatus.PRINTED
    assert printer.labels() == ["SN-NEXT"] and printer.held() == 0  # the failed jobs never reached the printer


@pytest.mark.timeout(120)
def test_expired_immediate_job_fails_without_printing(rig: Rig) -> None:
    printer = rig.printer("P1")
    centre = rig.start()
    stale = make_job(printer.config, "SN-OLD", PrintMode.IMMEDIATE, datetime.now(UTC) - timedelta(seconds=1))
    fresh = make_job(printer.config, "SN-NEW")
    centre.send(stale)
    centre.send(fresh)
    old_result, new_result = centre.wait_final([stale, fresh])
    assert old_result.status is PrintStatus.FAILED and old_result.error_code == "GATEWAY_TIMEOUT"
    assert new_result.status is PrintStatus.PRINTED
    assert printer.labels() == ["SN-NEW"]


@pytest.mark.timeout(120)
def test_queued_jobs_wait_for_paper_then_print_in_order(rig: Rig) -> None:
    printer = rig.printer("P1", PrinterState.PAPER_OUT)
    centre = rig.start()
    jobs = [make_job(printer.config, f"SN-{n}") for n in range(1, 6)]
    for job in jobs:
        centre.send(job)
    waiting = eventually(lambda: centre.of(jobs[0]), what="a WAITING result")
    assert waiting[0].status is PrintStatus.WAITING
    assert waiting[0].error_code == "PRINTER_OUT_OF_PAPER" and waiting[0].printer_state is PrinterState.PAPER_OUT
    queue = eventually(
        lambda: (q := rig.gateway.queue(printer.printer_id)).get("waiting") == 5 and q, what="five jobs waiting"
    )
    assert queue["state"] == "paper_out" and queue["last_error"]["code"] == "PRINTER_OUT_OF_PAPER"
    lines: list[str] = []
    assert gateway_status(rig.station.station, rig.gateway.local_port, rig.gateway.work_dir, lines.append) == 0
    assert any(printer.printer_id in line and "대기 5건" in line and "paper_out" in line for line in lines), lines

    # A person waiting behind the blocked queue is told at once; nothing of it is printed later.
    urgent = immediate(printer.config, "SN-URGENT")
    centre.send(urgent)
    (failed,) = centre.wait_final([urgent])
    assert failed.status is PrintStatus.FAILED and failed.error_code == "PRINTER_OUT_OF_PAPER"

    printer.set_state(PrinterState.HEAD_OPEN)  # a new state: one more WAITING, with it
    eventually(lambda: len(centre.of(jobs[0])) == 2, what="a second WAITING result")
    printer.set_state(PrinterState.READY)
    finals = centre.wait_final(jobs)
    assert [f.status for f in finals] == [PrintStatus.PRINTED] * 5
    assert printer.labels() == [job.label_key for job in jobs]
    queue = rig.gateway.queue(printer.printer_id)
    assert queue["state"] == "ready" and queue["waiting"] == 0
    assert queue["last_error"]["code"] == "PRINTER_NOT_CONNECTED"  # head_open, kept after the recovery
    head = centre.of(jobs[0])
    assert [(r.status, r.printer_state) for r in head] == [
        (PrintStatus.WAITING, PrinterState.PAPER_OUT),
        (PrintStatus.WAITING, PrinterState.HEAD_OPEN),
        (PrintStatus.PRINTED, PrinterState.READY),
    ]  # once per state change, not once per retry
    assert all(r.status is not PrintStatus.WAITING for job in jobs[1:] for r in centre.of(job))


@pytest.mark.timeout(120)
def test_a_faulted_printer_does_not_block_another(rig: Rig) -> None:
    stuck, good = rig.printer("P1", PrinterState.PAUSED), rig.printer("P2")
    centre = rig.start()
    stuck_jobs = [make_job(stuck.config, f"A-{n}") for n in range(1, 11)]
    good_jobs = [make_job(good.config, f"B-{n}") for n in range(1, 11)]
    for a, b in zip(stuck_jobs, good_jobs, strict=True):
        centre.send(a)
        centre.send(b)
    finals = centre.wait_final(good_jobs)
    assert [f.status for f in finals] == [PrintStatus.PRINTED] * 10
    assert good.labels() == [job.label_key for job in good_jobs]
    assert stuck.labels() == [] and all(centre.final(job) is None for job in stuck_jobs)
    assert centre.of(stuck_jobs[0])[0].error_code == "PRINTER_NOT_CONNECTED"
    stuck.set_state(PrinterState.READY)
    centre.wait_final(stuck_jobs)
    assert stuck.labels() == [job.label_key for job in stuck_jobs]


@pytest.mark.timeout(180)
def test_queued_jobs_print_while_the_broker_is_down_and_results_follow(rig: Rig) -> None:
    printer = rig.printer("P1", PrinterState.PAUSED)
    centre = rig.start()
    jobs = [make_job(printer.config, f"SN-{n:02d}") for n in range(1, 11)]
    for job in jobs:
        centre.send(job)
    eventually(lambda: rig.gateway.queue(printer.printer_id).get("waiting") == 10, what="ten jobs waiting")
    rig.broker.stop()
    eventually(lambda: rig.gateway.status().get("connected") is False, what="the gateway seeing the broker gone")
    printer.set_state(PrinterState.READY)
    eventually(lambda: len(printer.labels()) == 10, 60, "ten labels printed without a broker")
    assert printer.labels() == [job.label_key for job in jobs]
    assert all(centre.final(job) is None for job in jobs)
    assert rig.gateway.status()["print_queue"]["unreported_results"] >= 10
    rig.broker.start()
    finals = centre.wait_final(jobs, timeout=60)
    assert [f.status for f in finals] == [PrintStatus.PRINTED] * 10
    eventually(lambda: rig.gateway.status()["print_queue"]["unreported_results"] == 0, what="all results reported")
    assert printer.labels() == [job.label_key for job in jobs]


@pytest.mark.timeout(180)
def test_sigkilled_gateway_prints_the_rest_after_restart_none_twice(rig: Rig) -> None:
    printer = rig.printer("P1", PrinterState.PAUSED)
    centre = rig.start()
    jobs = [make_job(printer.config, f"SN-{n:02d}") for n in range(1, 21)]
    for job in jobs:
        centre.send(job)
    eventually(lambda: rig.gateway.queue(printer.printer_id).get("waiting") == 20, what="twenty jobs waiting")
    rig.gateway.kill()
    lines: list[str] = []
    assert gateway_status(rig.station.station, rig.gateway.local_port, rig.gateway.work_dir, lines.append) == 1
    assert any(printer.printer_id in line and "대기 20건" in line for line in lines), lines
    late = [make_job(printer.config, f"SN-{n:02d}") for n in range(21, 26)]  # wait at the broker meanwhile
    for job in late:
        centre.send(job)
    printer.set_state(PrinterState.READY)
    rig.gateway.start()
    finals = centre.wait_final(jobs + late, timeout=90)
    labels = printer.labels()
    assert len(labels) == len(set(labels)), f"a label printed twice: {labels}"
    interrupted = [job.label_key for job, f in zip(jobs + late, finals, strict=True) if f.status is PrintStatus.FAILED]
    # The printer was paused, so a job caught 'printing' by the kill had not printed; it is reported, not redone.
    assert len(interrupted) <= 1
    assert labels == [job.label_key for job in jobs + late if job.label_key not in interrupted]


@pytest.mark.timeout(180)
def test_sigkill_while_printing_never_prints_a_label_twice(rig: Rig) -> None:
    printer = rig.printer("P1")
    centre = rig.start()
    jobs = [make_job(printer.config, f"SN-{n:02d}") for n in range(1, 61)]
    for job in jobs:
        centre.send(job)
    eventually(lambda: len(printer.labels()) >= 5, what="printing under way")
    rig.gateway.kill()
    done_before = len(printer.labels())
    rig.gateway.start()
    finals = centre.wait_final(jobs, timeout=120)
    labels = printer.labels()
    keys = [job.label_key for job in jobs]
    assert len(labels) == len(set(labels)), f"a label printed twice: {labels}"
    assert labels == [k for k in keys if k in labels]  # in order
    by_key = dict(zip(keys, finals, strict=True))
    uncertain = [k for k, f in by_key.items() if f.status is PrintStatus.FAILED]
    assert len(uncertain) <= 1 and all("interrupted" in (by_key[k].detail or "") for k in uncertain)
    assert all(k in labels for k, f in by_key.items() if f.status is PrintStatus.PRINTED)
    assert all(k in uncertain for k in keys if k not in labels)  # a missing label is always reported
    assert done_before < 60, "the kill must land while jobs were still queued"
    with sqlite3.connect(rig.gateway.work_dir / PRINT_QUEUE_FILE) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    assert states.get("queued", 0) == 0 and states.get("printing", 0) == 0
    assert states.get("printed", 0) == 60 - len(uncertain) and states.get("uncertain", 0) == len(uncertain)


@pytest.mark.timeout(120)
def test_a_clean_stop_leaves_waiting_jobs_queued(rig: Rig) -> None:
    printer = rig.printer("P1", PrinterState.PAUSED)
    centre = rig.start()
    jobs = [make_job(printer.config, f"SN-{n}") for n in range(1, 4)]
    for job in jobs:
        centre.send(job)
    eventually(lambda: rig.gateway.queue(printer.printer_id).get("waiting") == 3, what="three jobs waiting")
    rig.gateway.stop()
    assert rig.gateway.child is not None and rig.gateway.child.process is not None
    assert rig.gateway.child.process.returncode == 0, "the gateway did not stop by itself on Ctrl-C"
    with sqlite3.connect(rig.gateway.work_dir / PRINT_QUEUE_FILE) as conn:
        assert conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall() == [("queued", 3)]
    printer.set_state(PrinterState.READY)
    rig.gateway.start()
    centre.wait_final(jobs)
    assert printer.labels() == ["SN-1", "SN-2", "SN-3"]
