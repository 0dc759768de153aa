"""Printing through real transports: TCP 9100 and a pseudo-terminal, against the printer emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_gateway.printing.printer import encode_program, print_program
from edge_gateway.printing.transport import PrinterOffline, SerialTransport, TcpTransport, make_transport
from mes_contracts.errors import ErrorCode
from mes_contracts.labels import PrinterConfig, PrinterLanguage, PrinterState
from printer_emulator import PrinterEmulator


def fake_preview(zpl: str, dpi: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + zpl.encode()


def label(n: int) -> str:
    return (
        f"^XA^CI28^PW480^LL320^FO20,20^A0N,30,30^FD시리얼 {n:04d}^FS"
        f"^FO20,80^BY2^BCN,80,Y,N,N^FDWF-KR-251122D-001-{n:04d}^FS^XZ"
    )


@pytest.fixture
def printer(tmp_path: Path) -> Iterator[PrinterEmulator]:
    with PrinterEmulator(tmp_path, port=0, serial=True, preview=fake_preview) as emulator:
        yield emulator


def tcp_config(printer: PrinterEmulator, language: PrinterLanguage = PrinterLanguage.ZPL) -> PrinterConfig:
    return PrinterConfig(
        printer_id="ZT410-01", station="st07", transport="tcp", host="127.0.0.1", port=printer.port, language=language
    )


def serial_config(printer: PrinterEmulator) -> PrinterConfig:
    assert printer.serial_path is not None
    return PrinterConfig(
        printer_id="ZT230-02", station="st07", transport="serial", serial_port=printer.serial_path, baud=115200
    )


def saved_programs(printer: PrinterEmulator) -> list[str]:
    return [(printer.store.dir / str(e["file"])).read_text(encoding="utf-8") for e in printer.labels()]


def test_100_labels_over_one_connection_are_saved_in_order(printer: PrinterEmulator) -> None:
    with TcpTransport("127.0.0.1", printer.port) as transport:
        for n in range(1, 101):
            transport.write(encode_program(PrinterLanguage.ZPL, label(n)))
        transport.finish()
    assert printer.wait_printed(100)
    assert saved_programs(printer) == [label(n) for n in range(1, 101)]
    entries = printer.labels()
    assert [e["seq"] for e in entries] == list(range(1, 101))
    assert entries[41]["text"] == "시리얼 0042" and entries[41]["barcode"] == "WF-KR-251122D-001-0042"
    assert all((printer.store.dir / f"{n:06d}.png").read_bytes().startswith(b"\x89PNG") for n in (1, 100))


def test_labels_over_several_connections_with_status_checks(printer: PrinterEmulator) -> None:
    cfg = tcp_config(printer)
    outcomes = [print_program(cfg, label(n)) for n in range(1, 21)]
    assert all(o.printed and o.state is PrinterState.READY and o.error_code is None for o in outcomes)
    assert printer.wait_printed(20)
    assert saved_programs(printer) == [label(n) for n in range(1, 21)]
    index = (printer.store.dir / "index.jsonl").read_text(encoding="utf-8").splitlines()
    peers = {json.loads(line)["peer"] for line in index}
    assert len(peers) == 20  # one connection per label, each a new client port


def test_offline_printer_is_not_connected(printer: PrinterEmulator) -> None:
    printer.set_state(PrinterState.OFFLINE)
    outcome = print_program(tcp_config(printer), label(1), timeout=1.0)
    assert (outcome.printed, outcome.state, outcome.error_code) == (
        False,
        PrinterState.OFFLINE,
        ErrorCode.PRINTER_NOT_CONNECTED,
    )
    assert "refused" in outcome.detail
    printer.set_state(PrinterState.READY)  # back online on the same port
    assert print_program(tcp_config(printer), label(2)).printed
    assert printer.wait_printed(1)
    assert saved_programs(printer) == [label(2)]


def test_paper_out_is_out_of_paper_and_nothing_is_sent(printer: PrinterEmulator) -> None:
    printer.set_state(PrinterState.PAPER_OUT)
    outcome = print_program(tcp_config(printer), label(1))
    assert (outcome.printed, outcome.state, outcome.error_code) == (
        False,
        PrinterState.PAPER_OUT,
        ErrorCode.PRINTER_OUT_OF_PAPER,
    )
    assert printer.held == 0  # refused before sending: not even held in the printer's buffer
    printer.set_state(PrinterState.READY)
    assert printer.labels() == []


@pytest.mark.parametrize("state", [PrinterState.HEAD_OPEN, PrinterState.PAUSED], ids=lambda s: s.value)
def test_head_open_and_paused_are_not_connected_with_their_state(printer: PrinterEmulator, state: PrinterState) -> None:
    printer.set_state(state)
    outcome = print_program(tcp_config(printer), label(1))
    assert (outcome.printed, outcome.state, outcome.error_code) == (False, state, ErrorCode.PRINTER_NOT_CONNECTED)
    assert printer.held == 0


def test_nobody_listening_is_offline(tmp_path: Path) -> None:
    with PrinterEmulator(tmp_path, port=0, preview=None) as emulator:
        port = emulator.port
    cfg = PrinterConfig(printer_id="gone", station="st07", transport="tcp", host="127.0.0.1", port=port)
    outcome = print_program(cfg, label(1), timeout=1.0)
    assert (outcome.state, outcome.error_code) == (PrinterState.OFFLINE, ErrorCode.PRINTER_NOT_CONNECTED)


def test_serial_round_trip_over_a_pty(printer: PrinterEmulator) -> None:
    cfg = serial_config(printer)
    for n in range(1, 6):
        outcome = print_program(cfg, label(n))
        assert outcome.printed, outcome.detail
    assert printer.wait_printed(5)
    assert saved_programs(printer) == [label(n) for n in range(1, 6)]
    assert {e["peer"] for e in printer.labels()} == {f"serial:{printer.serial_path}"}


def test_serial_states_and_silence(printer: PrinterEmulator) -> None:
    cfg = serial_config(printer)
    printer.set_state(PrinterState.PAPER_OUT)
    assert print_program(cfg, label(1)).error_code == ErrorCode.PRINTER_OUT_OF_PAPER
    printer.set_state(PrinterState.OFFLINE)  # a switched-off printer on a serial line says nothing
    outcome = print_program(cfg, label(2), timeout=0.5)
    assert (outcome.state, outcome.error_code) == (PrinterState.OFFLINE, ErrorCode.PRINTER_NOT_CONNECTED)
    assert "no status answer" in outcome.detail
    printer.set_state(PrinterState.READY)
    assert print_program(cfg, label(3)).printed
    assert printer.wait_printed(1)
    assert saved_programs(printer) == [label(3)]


def test_missing_serial_device_is_offline() -> None:
    with pytest.raises(PrinterOffline):
        SerialTransport("/dev/does-not-exist-printer", 9600, 0.5).open()
    cfg = PrinterConfig(printer_id="usb", station="st07", transport="serial", serial_port="/dev/does-not-exist")
    assert print_program(cfg, label(1)).error_code == ErrorCode.PRINTER_NOT_CONNECTED


def test_configuration_errors_raise() -> None:
    with pytest.raises(ValueError, match="host"):
        make_transport(PrinterConfig(printer_id="p", station="st07", transport="tcp"))
    with pytest.raises(ValueError, match="serial_port"):
        make_transport(PrinterConfig(printer_id="p", station="st07", transport="serial"))
    tspl = PrinterConfig(
        printer_id="p", station="st07", transport="tcp", host="127.0.0.1", language=PrinterLanguage.TSPL
    )
    with pytest.raises(ValueError, match="latin-1"):
        print_program(tspl, 'TEXT 10,10,"3",0,1,1,"한글"\r\nPRINT 1\r\n')


def test_tspl_program_bytes_are_latin1(tmp_path: Path) -> None:
    bitmap = bytes(range(256))
    program = "SIZE 60 mm,40 mm\r\nCLS\r\nBITMAP 0,0,32,8,0," + bitmap.decode("latin-1") + "\r\nPRINT 1,1\r\n"
    with PrinterEmulator(tmp_path, port=0, language=PrinterLanguage.TSPL, preview=None) as emulator:
        outcome = print_program(tcp_config(emulator, PrinterLanguage.TSPL), program)
        assert outcome.printed, outcome.detail
        assert emulator.wait_printed(1)
        saved = (emulator.store.dir / "000001.tspl").read_bytes()
    assert bitmap in saved and saved.endswith(b"PRINT 1,1")
