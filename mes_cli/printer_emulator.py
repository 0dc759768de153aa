"""`mes printer-emulator`: an emulated label printer on TCP (and a pty) with an HTTP control port."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from mes_cli.logging_setup import configure_logging
from mes_contracts.labels import PrinterLanguage, PrinterState


def printer_emulator_command(
    port: Annotated[int, typer.Option(help="Printer port (raw TCP, like a Zebra's 9100); 0 = any free port")] = 9100,
    control_port: Annotated[int, typer.Option(help="HTTP control port (GET/PUT /state, GET /labels)")] = 9180,
    out_dir: Annotated[Path, typer.Option(help="Labels go to OUT_DIR/labels/")] = Path(".state/printer-emulator"),
    dpi: Annotated[int, typer.Option(help="Printer resolution for the PNG previews")] = 203,
    state: Annotated[PrinterState, typer.Option(help="State at start")] = PrinterState.READY,
    language: Annotated[PrinterLanguage, typer.Option(help="Printer language")] = PrinterLanguage.ZPL,
    serial: Annotated[bool, typer.Option("--serial", help="Also serve on a pseudo-terminal (path printed)")] = False,
    host: Annotated[str, typer.Option(help="Bind address of both ports")] = "127.0.0.1",
    log_file: Annotated[Path | None, typer.Option(help="Write JSON log lines here instead of stderr")] = None,
) -> None:
    """Run an emulated label printer: answers status queries, saves each label (+ PNG preview for ZPL)."""
    from printer_emulator.control import ControlServer
    from printer_emulator.server import PrinterEmulator

    configure_logging(os.environ.get("MES_LOG_LEVEL", "INFO"), True, log_file, "printer-emulator")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emulator = PrinterEmulator(out_dir.resolve(), host, port, language, dpi, state, serial).start()
    try:
        control = ControlServer(emulator, host, control_port).start()
    except OSError:
        emulator.stop()
        raise
    typer.echo(f"printer emulator ({language.value}, {dpi} dpi, {state.value}) on {host}:{emulator.port}")
    if emulator.serial_path:
        typer.echo(f"serial port: {emulator.serial_path}")
    typer.echo(f"control: {control.url}/state  labels: {emulator.store.dir}")
    try:
        while not stop.wait(1.0):  # a timed wait keeps the main thread responsive to signals everywhere
            pass
    finally:
        control.stop()
        emulator.stop()
        typer.echo("printer emulator stopped")
