"""The printer emulator itself: held labels, split packets, control port, previews, the CLI under SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.common import find_free_port
from edge_gateway.printing.printer import print_program
from edge_gateway.printing.status import parse_zpl_hs
from edge_gateway.printing.transport import TcpTransport
from mes_contracts.labels import PrinterConfig, PrinterLanguage, PrinterState
from printer_emulator import PrinterEmulator
from printer_emulator.control import ControlServer
from printer_emulator.protocol import ProgramStream

pytestmark = pytest.mark.processes  # runs `mes printer-emulator` as a process


def fake_preview(zpl: str, dpi: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + f"{dpi}:".encode() + zpl.encode()


def label(text: str) -> str:
    return f"^XA^CI28^FO20,20^A0N,30,30^FD{text}^FS^XZ"


def cfg_for(printer: PrinterEmulator) -> PrinterConfig:
    return PrinterConfig(printer_id="ZT410-01", station="st07", transport="tcp", host="127.0.0.1", port=printer.port)


def texts(printer: PrinterEmulator) -> list[Any]:
    return [e["text"] for e in printer.labels()]


@pytest.fixture
def printer(tmp_path: Path) -> Iterator[PrinterEmulator]:
    with PrinterEmulator(tmp_path, port=0, preview=fake_preview) as emulator:
        yield emulator


def send_raw(port: int, *chunks: bytes) -> None:
    with TcpTransport("127.0.0.1", port) as transport:
        for chunk in chunks:
            transport.write(chunk)
        transport.finish()


def test_labels_sent_while_not_ready_are_held_then_printed_in_order(printer: PrinterEmulator) -> None:
    assert print_program(cfg_for(printer), label("first")).printed
    assert printer.wait_printed(1)
    for state, text in (
        (PrinterState.PAUSED, "second"),
        (PrinterState.PAPER_OUT, "third"),
        (PrinterState.HEAD_OPEN, "fourth"),
    ):
        printer.set_state(state)
        send_raw(printer.port, label(text).encode())  # a client that does not ask first, like a spooler
    assert printer.held == 3
    assert texts(printer) == ["first"]
    with TcpTransport("127.0.0.1", printer.port) as transport:  # a Zebra reports its buffered formats
        transport.write(b"~HS")
        raw = transport.read(2.0)
        while raw.count(b"\x03") < 3:
            raw += transport.read(2.0)
    assert raw.split(b",")[4] == b"003"
    assert parse_zpl_hs(raw).state is PrinterState.HEAD_OPEN
    printer.set_state(PrinterState.READY)
    assert printer.held == 0
    assert texts(printer) == ["first", "second", "third", "fourth"]
    assert print_program(cfg_for(printer), label("fifth")).printed
    assert printer.wait_printed(5)
    assert texts(printer) == ["first", "second", "third", "fourth", "fifth"]


def test_held_labels_survive_offline_and_print_when_back(printer: PrinterEmulator) -> None:
    printer.set_state(PrinterState.PAUSED)
    send_raw(printer.port, label("held").encode())
    printer.set_state(PrinterState.OFFLINE)
    printer.set_state(PrinterState.READY)
    assert texts(printer) == ["held"]


def test_labels_and_status_queries_split_across_packets(printer: PrinterEmulator) -> None:
    data = (label("one") + "\r\n" + label("two") + label("three")).encode()
    with TcpTransport("127.0.0.1", printer.port) as transport:
        for i in range(len(data)):  # one byte per packet (TCP_NODELAY): every token is split somewhere
            transport.write(data[i : i + 1])
        for piece in (b"^X", b"A^FO1,1^FDfo", b"ur~H", b"S^FS^X", b"Z"):  # ~HS in the middle of a label
            transport.write(piece)
        raw = b""
        while raw.count(b"\x03") < 3:
            raw += transport.read(2.0)
        transport.finish()
    assert parse_zpl_hs(raw).state is PrinterState.READY
    assert printer.wait_printed(4)
    assert texts(printer) == ["one", "two", "three", "four"]
    assert (printer.store.dir / "000004.zpl").read_text() == "^XA^FO1,1^FDfour^FS^XZ"


def test_program_stream_keeps_a_graphic_download_with_its_label() -> None:
    stream = ProgramStream(PrinterLanguage.ZPL)
    parsed = stream.feed(b"~DGR:LOGO.GRF,4,1,FF00FF00\r\n^XA^FO0,0^XGR:LOGO.GRF^FS^XZ\r\n^XA^FD")
    assert parsed.programs == [b"~DGR:LOGO.GRF,4,1,FF00FF00\r\n^XA^FO0,0^XGR:LOGO.GRF^FS^XZ"]
    assert stream.close() == b"^XA^FD"  # unfinished at the end of the stream


def test_ezpl_and_tspl_programs_are_kept_without_preview(tmp_path: Path) -> None:
    ezpl = "^Q40,3\r\n^W60\r\n^H10\r\n^P1\r\n^L\r\nAC,20,20,1,1,0,0,WF-0001\r\nE\r\n"
    with PrinterEmulator(tmp_path, port=0, language=PrinterLanguage.EZPL, preview=fake_preview) as emulator:
        cfg = cfg_for(emulator).model_copy(update={"language": PrinterLanguage.EZPL})
        assert print_program(cfg, ezpl + ezpl).printed
        assert emulator.wait_printed(2)
        entries = emulator.labels()
    assert [e["file"] for e in entries] == ["000001.ezpl", "000002.ezpl"]
    assert all(e["png"] is None for e in entries)
    assert (emulator.store.dir / "000002.ezpl").read_bytes() == ezpl.strip().encode()
    assert not list(emulator.store.dir.glob("*.png"))


def test_a_failing_preview_keeps_the_label(tmp_path: Path) -> None:
    def broken(zpl: str, dpi: int) -> bytes:
        raise RuntimeError("renderer bug")

    with PrinterEmulator(tmp_path, port=0, preview=broken) as emulator:
        assert print_program(cfg_for(emulator), label("kept")).printed
        assert print_program(cfg_for(emulator), label("kept too")).printed
        assert emulator.wait_printed(2)
        entries = emulator.labels()
    assert [(e["text"], e["png"]) for e in entries] == [("kept", None), ("kept too", None)]
    assert (emulator.store.dir / "000001.zpl").read_text() == label("kept")


def test_real_preview_is_a_png(tmp_path: Path) -> None:
    from PIL import Image

    with PrinterEmulator(tmp_path, port=0, dpi=203) as emulator:  # the default renderer: mes_labels
        program = (
            "^XA^CI28^PW480^LL320^FO20,20^A0N,30,30^FDWF-KR-251122D-001^FS"
            "^FO20,80^BY2^BCN,80,Y,N,N^FDWF-KR-251122D-001^FS^XZ"
        )
        assert print_program(cfg_for(emulator), program).printed
        assert emulator.wait_printed(1)
        entry = emulator.labels()[0]
    assert entry["png"] == "000001.png"
    with Image.open(emulator.store.dir / "000001.png") as image:
        assert image.format == "PNG" and image.width > 0 and image.height > 0


def test_numbering_continues_in_the_same_folder(tmp_path: Path) -> None:
    for number, text in ((1, "run one"), (2, "run two")):
        with PrinterEmulator(tmp_path, port=0, preview=None) as emulator:
            assert print_program(cfg_for(emulator), label(text)).printed
            assert emulator.wait_printed(number)
    assert [(e["seq"], e["text"]) for e in emulator.labels()] == [(1, "run one"), (2, "run two")]


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, bytes, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers["Content-Type"]


def test_control_endpoint(printer: PrinterEmulator) -> None:
    control = ControlServer(printer, port=0).start()
    try:
        status, body, _ = http("GET", f"{control.url}/state")
        assert status == 200 and json.loads(body)["state"] == "ready" and json.loads(body)["port"] == printer.port
        status, body, _ = http("PUT", f"{control.url}/state", {"state": "paper_out"})
        assert status == 200 and json.loads(body)["state"] == "paper_out"
        assert print_program(cfg_for(printer), label("x")).error_code == "PRINTER_OUT_OF_PAPER"
        assert http("PUT", f"{control.url}/state", {"state": "jammed"})[0] == 400
        assert http("PUT", f"{control.url}/state", {"mode": "ready"})[0] == 400
        assert http("PUT", f"{control.url}/state", {"state": "offline"})[0] == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", printer.port), timeout=2).close()
        assert http("PUT", f"{control.url}/state", {"state": "ready"})[0] == 200
        assert print_program(cfg_for(printer), label("시리얼 0001")).printed
        assert printer.wait_printed(1)
        status, body, _ = http("GET", f"{control.url}/labels")
        labels = json.loads(body)["labels"]
        assert status == 200 and [(e["seq"], e["text"]) for e in labels] == [(1, "시리얼 0001")]
        status, png, content_type = http("GET", f"{control.url}/labels/000001.png")
        assert (status, content_type) == (200, "image/png") and png.startswith(b"\x89PNG")
        assert http("GET", f"{control.url}/labels/000001.zpl")[1].decode() == label("시리얼 0001")
        assert http("GET", f"{control.url}/labels/000002.png")[0] == 404
        assert http("GET", f"{control.url}/labels/..%2Findex.jsonl")[0] == 404
        assert http("GET", f"{control.url}/nothing")[0] == 404
    finally:
        control.stop()


def test_cli_starts_listens_and_stops_on_sigterm(tmp_path: Path) -> None:
    port, control_port = find_free_port(), find_free_port()
    argv = mes_command(
        "printer-emulator",
        "--port",
        str(port),
        "--control-port",
        str(control_port),
        "--out-dir",
        str(tmp_path / "out"),
        "--state",
        "paused",
    )
    child = ChildProcess("printer-emulator", argv, {}, tmp_path / "emulator.log").start()
    try:
        wait_http_ok(f"http://127.0.0.1:{control_port}/state", 30, child)
        cfg = PrinterConfig(printer_id="cli", station="st07", transport="tcp", host="127.0.0.1", port=port)
        assert print_program(cfg, label("cli")).state is PrinterState.PAUSED
        assert http("PUT", f"http://127.0.0.1:{control_port}/state", {"state": "ready"})[0] == 200
        assert print_program(cfg, label("cli")).printed
        assert child.process is not None
        child.process.send_signal(signal.SIGTERM)
        assert child.process.wait(15) == 0, child.log_tail()
    except (AssertionError, subprocess.TimeoutExpired):
        child.kill()
        raise
    assert (tmp_path / "out" / "labels" / "000001.zpl").read_text() == label("cli")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert "printer emulator stopped" in child.log_tail()
