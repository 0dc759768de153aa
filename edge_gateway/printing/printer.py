"""Print one label program on one printer: connect, check its status, send, close; printer faults are results."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edge_gateway.printing.status import error_code_for, query_status
from edge_gateway.printing.transport import DEFAULT_TIMEOUT_S, PrinterOffline, make_transport
from mes_contracts.errors import ErrorCode
from mes_contracts.labels import PrinterConfig, PrinterLanguage, PrinterState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PrintOutcome:
    printed: bool
    state: PrinterState
    error_code: str | None
    detail: str


def encode_program(language: PrinterLanguage, program: str) -> bytes:
    """The bytes a printer gets for a program text.

    ZPL: UTF-8, because the templates switch the printer to UTF-8 with ^CI28 (Korean text in ^FD).
    TSPL / EZPL: latin-1, one byte per character, because their programs carry raw bitmap bytes (BITMAP, ^G)
    as characters U+0000…U+00FF; a character above U+00FF there is a template bug and raises ValueError.
    """
    if language is PrinterLanguage.ZPL:
        return program.encode("utf-8")
    try:
        return program.encode("latin-1")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{language} program has a character outside latin-1 at {error.start}; render text as a bitmap"
        ) from error


def _refused(state: PrinterState, detail: str) -> PrintOutcome:
    code = error_code_for(state) or ErrorCode.PRINTER_NOT_CONNECTED
    return PrintOutcome(False, state, code.value, detail)


def print_program(
    cfg: PrinterConfig, program: str, check_status: bool = True, timeout: float = DEFAULT_TIMEOUT_S
) -> PrintOutcome:
    """Send `program` to the printer `cfg` describes, after checking that it is READY.

    Blocking (the gateway's queue runs each printer in its own worker thread). A printer that is offline,
    out of paper, open or paused gives `printed=False` with its state and the spec's error code
    (PRINTER_NOT_CONNECTED / PRINTER_OUT_OF_PAPER); nothing is sent then. Raises only for programming errors:
    a description without host/serial port, or a TSPL/EZPL program that is not latin-1 (see encode_program).
    `printed=True` means the printer accepted every byte, not that the label has left the printer.
    """
    data = encode_program(cfg.language, program)
    transport = make_transport(cfg, timeout)
    try:
        transport.open()
    except PrinterOffline as error:
        log.warning("printer %s offline: %s", cfg.printer_id, error)
        return _refused(PrinterState.OFFLINE, str(error))
    try:
        if check_status:
            status = query_status(transport, cfg.language, timeout)
            if status.state is not PrinterState.READY:
                log.warning("printer %s not ready: %s (%s)", cfg.printer_id, status.state, status.detail)
                return _refused(status.state, status.detail)
        try:
            transport.write(data)
            transport.finish()
        except PrinterOffline as error:
            # Part of the label may have gone out: the caller reprints the whole label when it is back.
            log.warning("printer %s lost while printing: %s", cfg.printer_id, error)
            return _refused(PrinterState.OFFLINE, f"connection lost while sending the label: {error}")
    finally:
        transport.close()
    log.info("printer %s took %s bytes (%s)", cfg.printer_id, len(data), cfg.language)
    return PrintOutcome(True, PrinterState.READY, None, "printed")
