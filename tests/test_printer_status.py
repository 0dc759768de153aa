"""Printer status: each state of the emulator, asked over a real socket in ZPL, TSPL and EZPL, and the error codes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_gateway.printing.status import (
    error_code_for,
    parse_ezpl_status,
    parse_tspl_status,
    parse_zpl_hs,
    query_status,
)
from edge_gateway.printing.transport import TcpTransport
from mes_contracts.errors import ErrorCode
from mes_contracts.labels import PrinterLanguage, PrinterState
from printer_emulator import PrinterEmulator

ANSWERING_STATES = [PrinterState.READY, PrinterState.PAPER_OUT, PrinterState.HEAD_OPEN, PrinterState.PAUSED]


def _emulator(tmp_path: Path, language: PrinterLanguage) -> PrinterEmulator:
    return PrinterEmulator(tmp_path / language.value, port=0, language=language, preview=None)


@pytest.fixture(params=list(PrinterLanguage), ids=lambda lang: lang.value)
def emulator(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PrinterEmulator]:
    with _emulator(tmp_path, request.param) as printer:
        yield printer


def _ask(printer: PrinterEmulator, timeout: float = 2.0) -> tuple[PrinterState, str, bytes]:
    with TcpTransport("127.0.0.1", printer.port, timeout) as transport:
        status = query_status(transport, printer.language, timeout)
    return status.state, status.detail, status.raw


@pytest.mark.parametrize("state", ANSWERING_STATES, ids=lambda s: s.value)
def test_each_state_of_the_emulator_is_read_back(emulator: PrinterEmulator, state: PrinterState) -> None:
    emulator.set_state(state)
    found, detail, raw = _ask(emulator)
    assert found is state, detail
    assert raw  # the printer's own answer is kept for the log


def test_offline_emulator_refuses_and_reads_as_offline(emulator: PrinterEmulator) -> None:
    from edge_gateway.printing.transport import PrinterOffline

    emulator.set_state(PrinterState.OFFLINE)
    with pytest.raises(PrinterOffline, match="refused"):
        TcpTransport("127.0.0.1", emulator.port, 1.0).open()


def test_zpl_answer_is_the_three_documented_strings(tmp_path: Path) -> None:
    with _emulator(tmp_path, PrinterLanguage.ZPL) as printer:
        printer.set_state(PrinterState.PAPER_OUT)
        _, _, raw = _ask(printer)
    strings = raw.split(b"\r\n")[:3]
    assert all(s.startswith(b"\x02") and s.endswith(b"\x03") for s in strings)
    one, two, three = (s.strip(b"\x02\x03").split(b",") for s in strings)
    assert (len(one), len(two), len(three)) == (12, 11, 2)
    assert one[1] == b"1" and one[2] == b"0" and two[2] == b"0"  # paper out; not paused; head down


def test_zpl_flags_from_the_manual_layout() -> None:
    def hs(paper: int, pause: int, head: int, ribbon: int = 0) -> bytes:
        return (
            f"\x02030,{paper},{pause},0320,000,0,0,0,000,0,0,0\x03\r\n"
            f"\x02001,0,{head},{ribbon},0,2,6,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n"
        ).encode()

    assert parse_zpl_hs(hs(0, 0, 0)).state is PrinterState.READY
    assert parse_zpl_hs(hs(1, 0, 0)).state is PrinterState.PAPER_OUT
    assert parse_zpl_hs(hs(0, 1, 0)).state is PrinterState.PAUSED
    assert parse_zpl_hs(hs(0, 0, 1)).state is PrinterState.HEAD_OPEN
    assert parse_zpl_hs(hs(1, 1, 1)).state is PrinterState.HEAD_OPEN  # head first: the media sensor means nothing
    assert parse_zpl_hs(hs(1, 1, 0)).state is PrinterState.PAPER_OUT  # a Zebra pauses on media out
    ribbon = parse_zpl_hs(hs(0, 0, 0, ribbon=1))
    assert (ribbon.state, ribbon.detail) == (PrinterState.PAUSED, "ribbon out")
    assert parse_zpl_hs(b"garbage").state is PrinterState.OFFLINE


def test_tspl_status_bits() -> None:
    assert parse_tspl_status(b"\x00").state is PrinterState.READY
    assert parse_tspl_status(b"\x20").state is PrinterState.READY  # printing an earlier label
    assert parse_tspl_status(b"\x01").state is PrinterState.HEAD_OPEN
    assert parse_tspl_status(b"\x05").state is PrinterState.HEAD_OPEN  # out of paper and head opened
    assert parse_tspl_status(b"\x04").state is PrinterState.PAPER_OUT
    assert parse_tspl_status(b"\x0c").state is PrinterState.PAPER_OUT  # out of ribbon and out of paper
    assert parse_tspl_status(b"\x02").detail.startswith("paper jam")
    assert parse_tspl_status(b"\x10").state is PrinterState.PAUSED
    assert parse_tspl_status(b"").state is PrinterState.OFFLINE


def test_ezpl_status_codes() -> None:
    assert parse_ezpl_status(b"00\r\n").state is PrinterState.READY
    assert parse_ezpl_status(b"00,00000\r\n").state is PrinterState.READY
    assert parse_ezpl_status(b"01\r\n").state is PrinterState.PAPER_OUT
    assert parse_ezpl_status(b"04\r\n").state is PrinterState.HEAD_OPEN
    assert parse_ezpl_status(b"20\r\n").state is PrinterState.PAUSED
    assert parse_ezpl_status(b"03\r\n").detail.startswith("ribbon empty")
    assert parse_ezpl_status(b"77\r\n").state is PrinterState.PAUSED  # unknown: never taken as ready
    assert parse_ezpl_status(b"OK\r\n").state is PrinterState.OFFLINE


def test_error_codes_of_the_states() -> None:
    assert error_code_for(PrinterState.READY) is None
    assert error_code_for(PrinterState.PAPER_OUT) is ErrorCode.PRINTER_OUT_OF_PAPER
    for state in (PrinterState.OFFLINE, PrinterState.HEAD_OPEN, PrinterState.PAUSED):
        assert error_code_for(state) is ErrorCode.PRINTER_NOT_CONNECTED


def test_a_printer_that_never_answers_is_offline() -> None:
    """Some Zebras stay silent to ~HS while open or out of media: that must not read as ready."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    thread.start()
    try:
        with TcpTransport("127.0.0.1", server.getsockname()[1], 0.5) as transport:
            status = query_status(transport, PrinterLanguage.ZPL, 0.5)
        assert status.state is PrinterState.OFFLINE
        assert "no status answer" in status.detail
    finally:
        thread.join(5)
        for sock in accepted:
            sock.close()
        server.close()
